//! Who may act for a resident (`docs/authorization.md`): the source that owns the
//! subject token, and the apps the resident linked by enrollment. Being the recipient
//! of a consent never counts, and no participant but the owner sees the token.

use chrono::{DateTime, Utc};
use renkei_consent::Consent;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::token::{SubjectToken, recipient_pseudonym};
use sqlx::{AnyConnection, Row};

use super::Hub;
use crate::audit::{self, Entry};
use crate::db;
use crate::error::{Error, Result};

/// Refusal code: the subject token belongs to another source.
pub const NOT_OWNED: &str = "subject_not_owned";
/// Refusal code: the caller is neither the owning source nor an app the resident linked.
pub const NOT_ACTING: &str = "not_acting_for_resident";

fn not_owned() -> Error {
    Error::Refused(
        NOT_OWNED,
        "the subject was introduced by another source; only that source acts for this resident"
            .into(),
    )
}

/// Makes `source` the owner of each token nobody owns yet, and refuses if another
/// source owns any of them (a concurrent claim by another source loses: the owners are
/// read back after the insert). Three statements per chunk of 256 tokens.
pub async fn claim(
    conn: &mut AnyConnection,
    source: &str,
    tokens: &[&str],
    now: DateTime<Utc>,
) -> Result<()> {
    for chunk in tokens.chunks(256) {
        let known = owners(conn, chunk).await?;
        if known.iter().any(|(_, owner)| owner != source) {
            return Err(not_owned());
        }
        let fresh: Vec<&str> = chunk
            .iter()
            .copied()
            .filter(|t| !known.iter().any(|(k, _)| k == t))
            .collect();
        if fresh.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO hub_subjects (subject_token, owner, created_at) VALUES {} \
             ON CONFLICT (subject_token) DO NOTHING",
            db::values_rows(conn, fresh.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for t in &fresh {
            q = q.bind(*t).bind(source).bind(db::micros(now));
        }
        q.execute(&mut *conn).await?;
        if owners(conn, &fresh)
            .await?
            .iter()
            .any(|(_, owner)| owner != source)
        {
            return Err(not_owned());
        }
    }
    Ok(())
}

/// The recorded owners of `tokens` (at most a few hundred), as (token, owner).
async fn owners(conn: &mut AnyConnection, tokens: &[&str]) -> Result<Vec<(String, String)>> {
    let sql = format!(
        "SELECT subject_token, owner FROM hub_subjects WHERE subject_token IN ({})",
        db::placeholders(1, tokens.len())
    );
    let mut q = sqlx::query(&sql);
    for t in tokens {
        q = q.bind(*t);
    }
    q.fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("subject_token")?, r.try_get("owner")?)))
        .collect()
}

/// The source that owns `token`, if any.
pub async fn owner(conn: &mut AnyConnection, token: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT owner FROM hub_subjects WHERE subject_token = $1")
        .bind(token)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.try_get("owner")).transpose()?)
}

/// Records that the resident `token` linked `app` by enrollment through `source`.
pub async fn link_app(
    conn: &mut AnyConnection,
    app: &str,
    token: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO hub_enrollment_links (app, subject_token, source, created_at) \
         VALUES ($1,$2,$3,$4) ON CONFLICT (app, subject_token) DO NOTHING",
    )
    .bind(app)
    .bind(token)
    .bind(source)
    .bind(db::micros(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether the resident `token` linked `app` by enrollment.
pub async fn is_linked(conn: &mut AnyConnection, app: &str, token: &str) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM hub_enrollment_links WHERE app = $1 AND subject_token = $2",
    )
    .bind(app)
    .bind(token)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

/// The subject an app names by its own pseudonym, only for a resident who linked that
/// app by enrollment (a pseudonym the app knows as a mere recipient does not count).
pub async fn linked_subject(
    conn: &mut AnyConnection,
    app: &ParticipantId,
    pseudonym: &str,
) -> Result<String> {
    let row = sqlx::query(
        "SELECT p.subject_token FROM hub_pseudonyms p JOIN hub_enrollment_links l \
         ON l.app = p.recipient AND l.subject_token = p.subject_token \
         WHERE p.recipient = $1 AND p.pseudonym = $2",
    )
    .bind(app.to_string())
    .bind(pseudonym)
    .fetch_optional(&mut *conn)
    .await?;
    subject_or_refused(row, || {
        format!("`{app}` acts only for residents who linked it by enrollment")
    })
}

/// The subject a recipient names by its own pseudonym: one the hub gave it, because a
/// consent named it, while a consent naming it for that resident is in force (a clinic
/// publishing a vaccination it gave names its patient so; once every consent naming it
/// has ended, the resident is no longer its patient here).
pub async fn recipient_subject(
    conn: &mut AnyConnection,
    who: &ParticipantId,
    pseudonym: &str,
    now: DateTime<Utc>,
) -> Result<String> {
    let row = sqlx::query(
        "SELECT p.subject_token FROM hub_pseudonyms p WHERE p.recipient = $1 \
         AND p.pseudonym = $2 AND EXISTS (SELECT 1 FROM consents c \
         WHERE c.subject = p.subject_token AND c.recipient = $1 AND c.status = 'active' \
         AND c.valid_from_us <= $3 AND (c.valid_until_us IS NULL OR c.valid_until_us > $3))",
    )
    .bind(who.to_string())
    .bind(pseudonym)
    .bind(crate::db::micros(now))
    .fetch_optional(&mut *conn)
    .await?;
    subject_or_refused(row, || {
        format!("`{who}` knows no resident as this pseudonym")
    })
}

/// The `subject_token` of a pseudonym lookup's row, or [`NOT_ACTING`] with `why`.
fn subject_or_refused(
    row: Option<sqlx::any::AnyRow>,
    why: impl FnOnce() -> String,
) -> Result<String> {
    match row {
        Some(r) => Ok(r.try_get("subject_token")?),
        None => Err(Error::Refused(NOT_ACTING, why())),
    }
}

/// Resolves the resident a caller names and checks that it may act for them: a source
/// names the token it computed (resolved through its own token links) and must own it,
/// claiming it if no one does; a PHR app names its own pseudonym of a resident linked
/// to it by enrollment. Other kinds never act for a resident.
pub async fn acting_for(
    conn: &mut AnyConnection,
    who: &ParticipantId,
    named: &str,
    now: DateTime<Utc>,
) -> Result<String> {
    match who.kind() {
        ParticipantKind::Source => {
            SubjectToken::parse(named).map_err(|e| {
                Error::bad_request_from("subject: not a subject token (`st1_…`)", e)
            })?;
            let me = who.to_string();
            let token = super::links::resolve(conn, &me, named).await?;
            claim(conn, &me, &[token.as_str()], now).await?;
            Ok(token)
        }
        ParticipantKind::Phr => linked_subject(conn, who, named).await,
        _ => Err(Error::Refused(
            NOT_ACTING,
            format!(
                "a `{}` participant never acts for a resident",
                who.kind().as_str()
            ),
        )),
    }
}

/// How `who` may know the resident `token`: the token itself for its owning source,
/// otherwise the caller's own pseudonym (no one else ever receives a subject token).
pub fn name_for(hub: &Hub, who: &ParticipantId, owner: Option<&str>, token: &str) -> String {
    let me = who.to_string();
    if who.kind() == ParticipantKind::Source && owner == Some(me.as_str()) {
        return token.to_owned();
    }
    match SubjectToken::parse(token) {
        Ok(t) => recipient_pseudonym(&hub.pseudonym_key, &me, &t).to_string(),
        Err(_) => String::new(),
    }
}

/// A consent as `who` may see it: the subject named as [`name_for`] names it.
pub async fn consent_view(
    conn: &mut AnyConnection,
    hub: &Hub,
    who: &ParticipantId,
    mut c: Consent,
) -> Result<Consent> {
    let owner = owner(conn, &c.terms.subject).await?;
    c.terms.subject = name_for(hub, who, owner.as_deref(), &c.terms.subject);
    Ok(c)
}

/// Audits a refusal to act for a resident in a transaction of its own (the refused
/// operation's transaction has rolled back) and hands the result back unchanged.
pub async fn audited<T>(hub: &Hub, who: &ParticipantId, action: &str, r: Result<T>) -> Result<T> {
    if let Err(Error::Refused(code, message)) = &r {
        let entry = Entry::deny(&who.to_string(), action, "", &format!("{code}: {message}"));
        let mut tx = hub.db.begin().await?;
        audit::append(&mut tx, hub.now(), &entry).await?;
        tx.commit().await?;
    }
    r
}
