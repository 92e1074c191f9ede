//! Subject links after a token key rotation at a source (docs/operations.md, "Agent
//! tokenization key"). The source's agent tokenizes each resident it reads under its
//! old and new token keys and uploads the pairs; the hub records `new → canonical`
//! in `hub_subject_links` and, whenever that same source names the new token (record
//! upload, counter consent, enrollment answer), uses the canonical one instead. The
//! history stays where it is: consents, enrollments, key grants and the `rp1_`
//! pseudonyms (derived from the canonical token) carry on unchanged, and nothing
//! hash-chained (audit log, consent ledger) is rewritten. The hub learns that two
//! tokens are one resident, never who.
//!
//! The rule, conservative on purpose (each refusal is a 409 naming the pair, and
//! rolls back the batch):
//!
//! - only a `source` participant links, and a link resolves only that source's own
//!   names: another source naming the new token is never redirected;
//! - the old token's history (its canonical token) may hold records of the linking
//!   source only, and the old token may not be another source's linked name;
//! - the new token must have no history at all: no records (from anyone), no
//!   consents, no pseudonyms, no other source's links pointing at it, and no link to
//!   a different canonical token. Nothing is ever merged: a link only decides where
//!   the source's later submissions go;
//! - an identical pair uploaded again is a no-op (idempotent).
//!
//! So a link gives a source no power it lacks without links: it could always have
//! named the canonical token itself. It cannot reach another source's records, cannot
//! move anything already stored, and cannot join two existing histories.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::token::SubjectToken;
use sqlx::{AnyConnection, Row};

use super::{Hub, authorize_caller};
use crate::audit::{self, Entry};
use crate::db;
use crate::error::{Error, Result};
pub use renkei_protocol::{LinkReport, SubjectLink};

/// The canonical token `token` stands for when `source` names it, if `source` linked it.
pub async fn canonical(
    conn: &mut AnyConnection,
    source: &str,
    token: &str,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT canonical_token FROM hub_subject_links WHERE new_token = $1 AND source = $2",
    )
    .bind(token)
    .bind(source)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get("canonical_token")).transpose()?)
}

/// The token a source's named subject is stored under: its canonical token when the
/// source linked it, else the token itself.
pub async fn resolve(conn: &mut AnyConnection, source: &str, token: &str) -> Result<String> {
    Ok(canonical(conn, source, token)
        .await?
        .unwrap_or_else(|| token.to_owned()))
}

/// Checks the shape of a batch before touching the database: the size, every token,
/// no pair linking a token to itself, and no new token twice.
pub fn check_batch(pairs: &[SubjectLink], max: usize) -> Result<()> {
    if pairs.is_empty() {
        return Err(Error::bad_request("links: name at least one pair"));
    }
    if pairs.len() > max {
        return Err(Error::bad_request(format!(
            "links: {} pairs exceed the limit of {max} per request",
            pairs.len()
        )));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, p) in pairs.iter().enumerate() {
        for (field, value) in [("old", &p.old), ("new", &p.new)] {
            SubjectToken::parse(value).map_err(|e| {
                Error::bad_request_from(
                    format!(
                        "links[{i}].{field} `{}`",
                        value.chars().take(64).collect::<String>()
                    ),
                    e,
                )
            })?;
        }
        if p.old == p.new {
            return Err(Error::bad_request(format!(
                "links[{i}]: old and new are the same token `{}`",
                p.new
            )));
        }
        if let Some(j) = seen.insert(&p.new, i) {
            return Err(Error::bad_request(format!(
                "links[{i}]: new token `{}` is also the new token of links[{j}]",
                p.new
            )));
        }
    }
    Ok(())
}

/// Whether `sql` finds a row, with `binds` as `$1`, `$2`, ….
async fn exists(conn: &mut AnyConnection, sql: &str, binds: &[&str]) -> Result<bool> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    Ok(q.fetch_optional(&mut *conn).await?.is_some())
}

/// Why the pair cannot be linked, if it cannot; `Ok(None)` when it may be.
async fn refusal(
    conn: &mut AnyConnection,
    who: &str,
    old: &str,
    canon: &str,
    new: &str,
) -> Result<Option<String>> {
    if canon == new {
        return Ok(Some(format!(
            "`{new}` is already the canonical token of `{old}`"
        )));
    }
    let checks: [(&str, Vec<&str>, String); 8] = [
        (
            "SELECT 1 AS one FROM hub_subjects WHERE subject_token = $1 AND owner <> $2",
            vec![canon, who],
            format!("old token `{old}` belongs to another source"),
        ),
        (
            "SELECT 1 AS one FROM hub_subjects WHERE subject_token = $1 AND owner <> $2",
            vec![new, who],
            format!("new token `{new}` belongs to another source"),
        ),
        (
            "SELECT 1 AS one FROM hub_records WHERE subject_token = $1 AND source <> $2 LIMIT 1",
            vec![canon, who],
            format!("old token `{old}` has records from another source"),
        ),
        (
            "SELECT 1 AS one FROM hub_subject_links WHERE new_token = $1 AND source <> $2",
            vec![old, who],
            format!("old token `{old}` is linked by another source"),
        ),
        (
            "SELECT 1 AS one FROM hub_records WHERE subject_token = $1 LIMIT 1",
            vec![new],
            format!("new token `{new}` has records already"),
        ),
        (
            "SELECT 1 AS one FROM consents WHERE subject = $1 LIMIT 1",
            vec![new],
            format!("new token `{new}` has consents already"),
        ),
        (
            "SELECT 1 AS one FROM hub_pseudonyms WHERE subject_token = $1 LIMIT 1",
            vec![new],
            format!("new token `{new}` is linked to a recipient already"),
        ),
        (
            "SELECT 1 AS one FROM hub_subject_links WHERE canonical_token = $1 AND source <> $2 LIMIT 1",
            vec![new, who],
            format!("new token `{new}` is the canonical token of another source's links"),
        ),
    ];
    for (sql, binds, why) in checks {
        if exists(conn, sql, &binds).await? {
            return Ok(Some(why));
        }
    }
    Ok(None)
}

/// One pair inside the batch's transaction: linked, a duplicate, or refused.
enum Outcome {
    Linked(String),
    Duplicate,
    Refused(String),
}

async fn link_one(
    conn: &mut AnyConnection,
    who: &str,
    pair: &SubjectLink,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let canon = resolve(conn, who, &pair.old).await?;
    let existing =
        sqlx::query("SELECT canonical_token, source FROM hub_subject_links WHERE new_token = $1")
            .bind(&pair.new)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(row) = existing {
        let (to, by): (String, String) = (row.try_get("canonical_token")?, row.try_get("source")?);
        if to == canon && by == who {
            return Ok(Outcome::Duplicate);
        }
        return Ok(Outcome::Refused(format!(
            "new token `{}` is already linked to another subject",
            pair.new
        )));
    }
    if let Some(why) = refusal(conn, who, &pair.old, &canon, &pair.new).await? {
        return Ok(Outcome::Refused(why));
    }
    let inserted = sqlx::query(
        "INSERT INTO hub_subject_links (new_token, canonical_token, source, linked_at) \
         VALUES ($1,$2,$3,$4) ON CONFLICT (new_token) DO NOTHING",
    )
    .bind(&pair.new)
    .bind(&canon)
    .bind(who)
    .bind(db::micros(now))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        // A concurrent request linked it first (PostgreSQL): a transient race; the
        // retry sees that link and answers duplicate or refused.
        return Err(Error::transient(format!(
            "new token `{}` was linked concurrently",
            pair.new
        )));
    }
    super::subjects::claim(conn, who, &[canon.as_str(), pair.new.as_str()], now).await?;
    // Links this source made to the new token (a later pair uploaded first) now
    // point at the canonical token too, so every name resolves in one step.
    sqlx::query(
        "UPDATE hub_subject_links SET canonical_token = $1 \
         WHERE canonical_token = $2 AND source = $3",
    )
    .bind(&canon)
    .bind(&pair.new)
    .bind(who)
    .execute(&mut *conn)
    .await?;
    Ok(Outcome::Linked(canon))
}

/// Links a batch of pairs for the calling source, all or nothing, in one transaction
/// with one audit entry per new link. A refused pair rolls the batch back, is audited
/// as a denial, and comes back as a 409 naming it.
pub async fn link(hub: &Hub, who: &ParticipantId, pairs: &[SubjectLink]) -> Result<LinkReport> {
    check_batch(pairs, hub.limits.max_batch)?;
    let now = hub.now();
    let me = who.to_string();
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, &[ParticipantKind::Source]).await?;
    let mut report = LinkReport::default();
    for (i, pair) in pairs.iter().enumerate() {
        match link_one(&mut tx, &me, pair, now).await? {
            Outcome::Duplicate => report.duplicates += 1,
            Outcome::Linked(canon) => {
                report.linked += 1;
                audit::append(
                    &mut tx,
                    now,
                    &Entry::allow(&me, "subject.link", &pair.new).about(&canon, "", ""),
                )
                .await?;
            }
            Outcome::Refused(why) => {
                tx.rollback().await?;
                let reason = format!("links[{i}]: {why}");
                audit::append_now(
                    &hub.db,
                    now,
                    &Entry::deny(&me, "subject.link", &pair.new, &reason).about(&pair.old, "", ""),
                )
                .await?;
                return Err(Error::Conflict(reason));
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(old: char, new: char) -> SubjectLink {
        SubjectLink {
            old: format!("st1_{}", old.to_string().repeat(32)),
            new: format!("st1_{}", new.to_string().repeat(32)),
        }
    }

    fn message(e: Error) -> String {
        match e {
            e @ Error::BadRequest { .. } => e.to_string(),
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn batches_are_checked_item_by_item() {
        assert!(check_batch(&[pair('a', 'b'), pair('b', 'c')], 10).is_ok());
        let m = message(check_batch(&[], 10).unwrap_err());
        assert!(m.contains("at least one"), "{m}");
        let m = message(check_batch(&vec![pair('a', 'b'); 3], 2).unwrap_err());
        assert!(m.contains("3 pairs exceed the limit of 2"), "{m}");
        let bad = SubjectLink {
            old: pair('a', 'b').old,
            new: "st1_NOT-A-TOKEN".into(),
        };
        let m = message(check_batch(&[pair('c', 'd'), bad], 10).unwrap_err());
        assert!(m.starts_with("links[1].new `st1_NOT-A-TOKEN`"), "{m}");
        let m = message(check_batch(&[pair('a', 'a')], 10).unwrap_err());
        assert!(
            m.contains("links[0]: old and new are the same token"),
            "{m}"
        );
        let m = message(check_batch(&[pair('a', 'b'), pair('c', 'b')], 10).unwrap_err());
        assert!(m.contains("links[1]") && m.contains("links[0]"), "{m}");
    }
}
