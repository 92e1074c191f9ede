//! The recipient feed and single reads. Every read re-checks the caller, consent and
//! policy in one statement, and answers only once its audit entry is committed
//! (group-committed by [`crate::audit::Writer`], so reads do not serialize).

use std::collections::HashMap;

use chrono::NaiveDate;
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::token::{SubjectToken, recipient_pseudonym};

use super::coverage::{self, Cover};
use super::{Hub, RECIPIENTS, grants};
use crate::audit::{self, Entry};
use crate::db::{self, Columns, Param, required};
use crate::error::{Error, Result};
pub use renkei_protocol::{FeedItem, FeedPage};

/// The records `who` may read now, after `cursor`. Consent and policy are checked in
/// one statement; items whose consent lapsed since the grant are skipped and their
/// grant dropped. Nothing is answered before the page's audit entries are committed.
pub async fn feed(hub: &Hub, who: &ParticipantId, cursor: i64, limit: i64) -> Result<FeedPage> {
    let limit = limit.clamp(1, hub.limits.max_page);
    let now = hub.now();
    let me = who.to_string();
    let rows = grants_with_covers(
        hub,
        "recipient = $1 AND seq > $3 ORDER BY seq LIMIT $4",
        &[
            Param::Text(&me),
            Param::Int(db::micros(now)),
            Param::Int(cursor),
            Param::Int(limit),
        ],
    )
    .await?;
    let grants = caller_grants(who, rows)?;
    let mut policy = PolicyMemo::new(hub);
    let mut items = Vec::with_capacity(grants.len());
    let mut entries = Vec::with_capacity(grants.len());
    let mut denied = Vec::new();
    let mut next_cursor = cursor;
    for (row, covers) in grants {
        next_cursor = row.seq;
        let outcome = release(hub, &mut policy, who, &row, &covers)?;
        entries.push(row.entry(&me, &outcome));
        match outcome {
            Ok(item) => items.push(item),
            Err(_) => denied.push(row.record_id),
        }
    }
    if denied.is_empty() {
        hub.audit.record(now, entries).await?;
    } else {
        let mut tx = hub.db.begin().await?;
        let entries: Vec<_> = entries.into_iter().map(|e| (now, e)).collect();
        audit::append_batch(&mut tx, &entries).await?;
        for record_id in &denied {
            grants::drop_grant(&mut tx, record_id, &me).await?;
        }
        tx.commit().await?;
    }
    Ok(FeedPage { items, next_cursor })
}

/// A single record by the id its recipient knows it by (its copy's id), under a consent
/// in force now.
pub async fn read(hub: &Hub, who: &ParticipantId, record_id: &str) -> Result<FeedItem> {
    let now = hub.now();
    let me = who.to_string();
    let rows = grants_with_covers(
        hub,
        "recipient = $1 AND alias = $3",
        &[
            Param::Text(&me),
            Param::Int(db::micros(now)),
            Param::Text(record_id),
        ],
    )
    .await?;
    let Some((row, covers)) = caller_grants(who, rows)?.pop() else {
        let entry = Entry::deny(&me, "read", record_id, "no key grant for this recipient");
        hub.audit.record(now, vec![entry]).await?;
        return Err(Error::NotFound(format!(
            "record `{record_id}` is not available to `{me}`"
        )));
    };
    let outcome = release(hub, &mut PolicyMemo::new(hub), who, &row, &covers)?;
    let entry = row.entry(&me, &outcome);
    match outcome {
        Ok(item) => {
            hub.audit.record(now, vec![entry]).await?;
            Ok(item)
        }
        Err(reason) => {
            // The audit row is locked first, as in `consents::after_revoke`.
            let mut tx = hub.db.begin().await?;
            audit::append(&mut tx, now, &entry).await?;
            grants::drop_grant(&mut tx, &row.record_id, &me).await?;
            tx.commit().await?;
            Err(Error::Forbidden(format!("record `{record_id}`: {reason}")))
        }
    }
}

/// One statement (one snapshot) with everything a release decision needs: the caller's
/// registry status, the caller's key grants matching `grant_filter` (over `$1` the
/// caller, `$3`… its own parameters) with their records, and the consents in force at
/// `$2` that cover each record for the caller; one row per (grant, cover), cover columns
/// NULL where none covers, grant columns NULL where the caller has no matching grant.
///
/// On a SQLite file it runs on this thread ([`db::Db::read_rows`]), else on the pool.
async fn grants_with_covers(
    hub: &Hub,
    grant_filter: &str,
    params: &[Param<'_>],
) -> Result<Vec<Joined>> {
    let in_force = coverage::in_force("c", "$2");
    let sql = format!(
        "SELECT p.status AS caller_status, g.seq, g.record_id, g.alias, g.consent_id, g.grant_bytes, \
         COALESCE(g.sealed, r.sealed) AS sealed, r.subject_token, r.category, r.effective_date, \
         c.consent_id AS cover_id, k.purpose AS cover_purpose, c.data_from_day, c.data_until_day \
         FROM hub_participants p \
         LEFT JOIN (SELECT seq, record_id, alias, consent_id, grant_bytes, sealed, recipient \
           FROM hub_key_grants WHERE {grant_filter}) g ON g.recipient = p.participant \
         LEFT JOIN hub_records r ON r.record_id = g.record_id \
         LEFT JOIN consent_categories c ON c.subject = r.subject_token \
           AND c.category = r.category AND c.recipient = p.participant AND {in_force} \
         LEFT JOIN consents k ON k.id = c.consent_id \
         WHERE p.participant = $1 ORDER BY g.seq, c.consent_id"
    );
    hub.db.read_rows(&sql, params, Joined::from_columns).await
}

/// One row of [`grants_with_covers`], from either driver.
struct Joined {
    caller_status: String,
    /// `None` where the caller has no matching grant.
    grant: Option<GrantRow>,
    /// `None` where no consent covers the grant's record.
    cover: Option<JoinedCover>,
}

struct JoinedCover {
    consent_id: String,
    purpose: String,
    data_from_day: Option<i64>,
    data_until_day: Option<i64>,
}

impl Joined {
    fn from_columns(r: &dyn Columns) -> Result<Self> {
        let caller_status = r.text("caller_status")?.unwrap_or_default();
        let grant = match r.int("seq")? {
            Some(seq) => Some(GrantRow::from_columns(seq, r)?),
            None => None,
        };
        let cover = match r.text("cover_id")? {
            Some(consent_id) => Some(JoinedCover {
                consent_id,
                purpose: r.text("cover_purpose")?.unwrap_or_default(),
                data_from_day: r.int("data_from_day")?,
                data_until_day: r.int("data_until_day")?,
            }),
            None => None,
        };
        Ok(Joined {
            caller_status,
            grant,
            cover,
        })
    }
}

/// Checks the caller as [`super::authorize_caller`] does (registered, active, a recipient kind)
/// from the rows of [`grants_with_covers`], and groups them into grants with the
/// consents that cover each grant's record (data period included).
fn caller_grants(who: &ParticipantId, rows: Vec<Joined>) -> Result<Vec<(GrantRow, Vec<Cover>)>> {
    let Some(first) = rows.first() else {
        return Err(Error::Forbidden(format!(
            "participant `{who}` is not registered"
        )));
    };
    if first.caller_status != "active" {
        return Err(Error::Forbidden(format!(
            "participant `{who}` is suspended"
        )));
    }
    if !RECIPIENTS.contains(&who.kind()) {
        return Err(Error::Forbidden(format!(
            "a `{}` participant may not use this endpoint",
            who.kind().as_str()
        )));
    }
    let mut grants: Vec<(GrantRow, Vec<Cover>)> = Vec::new();
    for row in rows {
        let Some(grant) = row.grant else {
            continue;
        };
        if grants.last().is_none_or(|(g, _)| g.seq != grant.seq) {
            grants.push((grant, Vec::new()));
        }
        let (Some(cover), Some((grant, covers))) = (row.cover, grants.last_mut()) else {
            continue;
        };
        if coverage::in_period(
            cover.data_from_day,
            cover.data_until_day,
            grant.effective_date,
        ) {
            covers.push(Cover {
                recipient: who.to_string(),
                purpose: cover.purpose,
                consent_id: cover.consent_id,
            });
        }
    }
    Ok(grants)
}

struct GrantRow {
    seq: i64,
    /// The record's own id (the hub's and the source's name for it).
    record_id: String,
    /// The id of this recipient's copy, the only one the recipient sees.
    alias: String,
    consent_id: String,
    grant: Vec<u8>,
    sealed: Vec<u8>,
    subject: String,
    category: String,
    effective_date: NaiveDate,
}

impl GrantRow {
    /// The audit entry for releasing (or refusing) this record to `me`.
    fn entry(&self, me: &str, outcome: &std::result::Result<FeedItem, String>) -> Entry {
        let entry = match outcome {
            Ok(_) => Entry::allow(me, "read", &self.record_id),
            Err(reason) => Entry::deny(me, "read", &self.record_id, reason),
        };
        entry.about(&self.subject, &self.consent_id, &self.category)
    }

    fn from_columns(seq: i64, r: &dyn Columns) -> Result<Self> {
        let text = |name: &str| required(name, r.text(name)?);
        let date = text("effective_date")?;
        Ok(GrantRow {
            seq,
            record_id: text("record_id")?,
            alias: text("alias")?,
            consent_id: text("consent_id")?,
            grant: required("grant_bytes", r.bytes("grant_bytes")?)?,
            sealed: required("sealed", r.bytes("sealed")?)?,
            subject: text("subject_token")?,
            category: text("category")?,
            effective_date: date
                .parse()
                .map_err(|e| Error::internal_from(format!("stored effective_date `{date}`"), e))?,
        })
    }
}

/// Decides whether the grant may be released, given the consents covering its record
/// now (as read in the same statement as the grant).
fn release(
    hub: &Hub,
    policy: &mut PolicyMemo,
    who: &ParticipantId,
    row: &GrantRow,
    covers: &[Cover],
) -> Result<std::result::Result<FeedItem, String>> {
    let me = who.to_string();
    let Some(cover) = covers
        .iter()
        .find(|c| c.consent_id == row.consent_id)
        .or(covers.first())
    else {
        return Ok(Err("no consent in force covers this record".into()));
    };
    if let Err(reason) = policy.decide(&me, who, &cover.purpose, &row.category) {
        return Ok(Err(reason));
    }
    let subject = SubjectToken::parse(&row.subject)
        .map_err(|e| Error::internal_from("stored subject token", e))?;
    let b64 = data_encoding::BASE64;
    Ok(Ok(FeedItem {
        seq: row.seq,
        record_id: row.alias.clone(),
        pseudonym: recipient_pseudonym(&hub.pseudonym_key, &me, &subject).to_string(),
        category: row.category.clone(),
        effective_date: row.effective_date.to_string(),
        consent_id: cover.consent_id.clone(),
        sealed: b64.encode(&row.sealed),
        grant: b64.encode(&row.grant),
    }))
}

/// The policy's read decisions for one caller, each (purpose, category) evaluated once
/// per request: a feed page asks the same question for most of its items.
struct PolicyMemo {
    policies: std::sync::Arc<renkei_policies::Policies>,
    decided: HashMap<(String, String), std::result::Result<(), String>>,
}

impl PolicyMemo {
    fn new(hub: &Hub) -> Self {
        PolicyMemo {
            policies: hub.policies(),
            decided: HashMap::new(),
        }
    }

    fn decide(
        &mut self,
        me: &str,
        who: &ParticipantId,
        purpose: &str,
        category: &str,
    ) -> std::result::Result<(), String> {
        let key = (purpose.to_owned(), category.to_owned());
        if let Some(known) = self.decided.get(&key) {
            return known.clone();
        }
        let decision = self.policies.authorize_read(&renkei_policies::ReadRequest {
            participant: me,
            kind: who.kind().as_str(),
            suspended: false,
            purpose,
            category,
        });
        let outcome = if decision.allowed {
            Ok(())
        } else {
            Err(format!("policy denies: {}", decision.reasons.join("; ")))
        };
        self.decided.insert(key, outcome.clone());
        outcome
    }
}
