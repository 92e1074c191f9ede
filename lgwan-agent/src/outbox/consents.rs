//! What the agent knows for itself about consents (issue 14), so that it releases a
//! record key only under a consent it can verify without the hub's word:
//!
//! - `app_users`: which resident each app's user is, from the enrollments this agent
//!   answered itself (the app's user digest was sealed into its claim): an app's consent
//!   statement names its user by that digest;
//! - `counter_consents`: the consents staff took at this agent's counter, with their
//!   statement ids and, once revoked here, when: a revocation the hub hides still stops
//!   the release.

use renkei_crypto::token::SubjectToken;
use sqlx::{Row, SqliteConnection};

use super::{NOW, Outbox};
use crate::error::Result;

/// The consent tables (created with the outbox; new in the signed-consent release).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS app_users (
    app TEXT NOT NULL,
    resident TEXT NOT NULL,
    subject_token TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (app, resident, subject_token)
);
CREATE TABLE IF NOT EXISTS counter_consents (
    consent_id TEXT PRIMARY KEY,
    statement_id TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS counter_consents_statement ON counter_consents (statement_id);
";

/// Keeps that `app`'s user `resident` (its digest) is the resident `subject`.
pub(super) async fn link_app_user(
    conn: &mut SqliteConnection,
    app: &str,
    resident: &str,
    subject: &str,
    now: i64,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO app_users (app, resident, subject_token, linked_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (app, resident, subject_token) DO NOTHING",
    )
    .bind(app)
    .bind(resident)
    .bind(subject)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

impl Outbox {
    /// The subject token of an exported record, if this outbox holds it.
    pub async fn record_subject(&self, record_id: &str) -> Result<Option<SubjectToken>> {
        let row = sqlx::query("SELECT subject FROM outbox WHERE record_id = ?")
            .bind(record_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| {
            let text: String = r.try_get(0).map_err(|e| self.db(e))?;
            SubjectToken::parse(&text).map_err(|e| self.err(format!("stored subject: {e}")))
        })
        .transpose()
    }

    /// Whether the statement's resident `named` (a subject token) is the person behind
    /// `subject`: the same token, or two tokens of one person linked by a token key
    /// rotation (`subject_links`).
    pub async fn same_person(&self, named: &str, subject: &SubjectToken) -> Result<bool> {
        if named == subject.as_str() {
            return Ok(true);
        }
        let row = sqlx::query(
            "SELECT 1 FROM subject_links WHERE (old_token = ? AND new_token = ?) \
             OR (old_token = ? AND new_token = ?) LIMIT 1",
        )
        .bind(named)
        .bind(subject.as_str())
        .bind(subject.as_str())
        .bind(named)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(row.is_some())
    }

    /// The residents that `app`'s user `resident` (digest) was linked to by enrollments
    /// this agent answered.
    pub async fn app_user_subjects(&self, app: &str, resident: &str) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT subject_token FROM app_users WHERE app = ? AND resident = ?")
                .bind(app)
                .bind(resident)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(|e| self.db(e)))
            .collect()
    }

    /// The user digests of `subject` (or a token of the same person) at every app this
    /// agent linked them to, sorted.
    pub async fn app_users_of(&self, subject: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT resident FROM app_users WHERE subject_token = ?1 \
             OR subject_token IN (SELECT new_token FROM subject_links WHERE old_token = ?1) \
             OR subject_token IN (SELECT old_token FROM subject_links WHERE new_token = ?1) \
             ORDER BY resident",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(|e| self.db(e)))
            .collect()
    }

    /// Keeps a consent taken at this agent's counter with its statement id.
    pub async fn put_counter_consent(&self, consent_id: &str, statement_id: &str) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO counter_consents (consent_id, statement_id, granted_at) \
             VALUES (?, ?, {NOW}) ON CONFLICT (consent_id) DO NOTHING"
        ))
        .bind(consent_id)
        .bind(statement_id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Marks a counter consent revoked here (before the hub is told); returns its
    /// statement id, or `None` for a consent this agent did not take.
    pub async fn revoke_counter_consent(&self, consent_id: &str) -> Result<Option<String>> {
        let row = sqlx::query(&format!(
            "UPDATE counter_consents SET revoked_at = COALESCE(revoked_at, {NOW}) \
             WHERE consent_id = ? RETURNING statement_id"
        ))
        .bind(consent_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        row.map(|r| r.try_get(0).map_err(|e| self.db(e)))
            .transpose()
    }

    /// Whether this agent revoked the consent with statement id `statement_id`.
    pub async fn statement_revoked(&self, statement_id: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM counter_consents WHERE statement_id = ? AND revoked_at IS NOT NULL \
             LIMIT 1",
        )
        .bind(statement_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(row.is_some())
    }
}
