//! What the agent knows for itself about consents (issue 14), so that it releases a
//! record key only under a consent it can verify without the hub's word:
//!
//! - `app_users`: which resident each app's user is, from the enrollments this agent
//!   answered itself (the app's user digest was sealed into its claim): an app's consent
//!   statement names its user by that digest;
//! - `counter_statements`: the consent statements this agent signed at its counter (their
//!   ids as it computed them, kept before the hub saw them), the consent id the hub gave
//!   each and, once revoked here, when: a revocation the hub hides still stops the release;
//! - `revocation_lists` and `app_revocations`: the newest signed revocation list seen of
//!   each app (an older one the hub shows later is refused) and every statement id any
//!   of them named (an id once seen revoked stays revoked here).

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
CREATE TABLE IF NOT EXISTS counter_statements (
    statement_id TEXT PRIMARY KEY,
    consent_id TEXT,
    signed_at TEXT NOT NULL,
    revoked_at TEXT,
    valid_until INTEGER
);
CREATE INDEX IF NOT EXISTS counter_statements_consent ON counter_statements (consent_id);
CREATE TABLE IF NOT EXISTS revocation_lists (
    signer TEXT PRIMARY KEY,
    issued_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS app_revocations (
    signer TEXT NOT NULL,
    statement_id TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (signer, statement_id)
);
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

/// How long after its consent ended a revoked counter statement stays in the agent's
/// list: an app whose clock runs behind must still find it (an hour, as long as a list
/// stays fresh).
const ENDED_KEPT_SECS: i64 = 3600;

impl Outbox {
    /// The subject token of an exported record, if this outbox holds it.
    pub async fn record_subject(&self, record_id: &str) -> Result<Option<SubjectToken>> {
        let sql = format!(
            "SELECT subject FROM outbox WHERE rowid IN {}",
            super::keys::ROW_OF
        );
        let row = sqlx::query(&sql)
            .bind(super::keys::key_of(record_id))
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

    /// `subject` and the tokens linked to it directly (a key rotation's old and new
    /// token): the tokens [`Outbox::same_person`] takes for `subject`'s person.
    pub async fn tokens_of_person(&self, subject: &SubjectToken) -> Result<Vec<String>> {
        let mut tokens: Vec<String> = sqlx::query_scalar(
            "SELECT new_token FROM subject_links WHERE old_token = ?1 \
             UNION SELECT old_token FROM subject_links WHERE new_token = ?1",
        )
        .bind(subject.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        tokens.push(subject.as_str().to_owned());
        Ok(tokens)
    }

    /// Links `app`'s user `resident` to `subject` as an answered enrollment does, for
    /// tests that start past the enrollment.
    #[cfg(test)]
    pub(crate) async fn link_app_user_for_test(&self, app: &str, resident: &str, subject: &str) {
        let mut conn = self.pool.acquire().await.unwrap();
        link_app_user(&mut conn, app, resident, subject, 0)
            .await
            .unwrap();
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

    /// Keeps a statement this agent signed at its counter (before the hub sees it), with
    /// the end of its consent's validity (seconds since the epoch; none: until revoked).
    pub async fn put_counter_statement(
        &self,
        statement_id: &str,
        valid_until: Option<i64>,
    ) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO counter_statements (statement_id, signed_at, valid_until) \
             VALUES (?, {NOW}, ?) ON CONFLICT (statement_id) DO NOTHING"
        ))
        .bind(statement_id)
        .bind(valid_until)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Notes the consent id the hub gave a counter statement.
    pub async fn set_counter_consent(&self, statement_id: &str, consent_id: &str) -> Result<()> {
        sqlx::query("UPDATE counter_statements SET consent_id = ? WHERE statement_id = ?")
            .bind(consent_id)
            .bind(statement_id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Marks every statement of counter consent `consent_id` revoked here (before the hub
    /// is told); returns how many this agent knew.
    pub async fn revoke_counter_consent(&self, consent_id: &str) -> Result<u64> {
        let done = sqlx::query(&format!(
            "UPDATE counter_statements SET revoked_at = COALESCE(revoked_at, {NOW}) \
             WHERE consent_id = ?"
        ))
        .bind(consent_id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(done.rows_affected())
    }

    /// What the agent's signed revocation list names (apps releasing their own records
    /// under a counter consent check it), sorted: every counter statement revoked here,
    /// and every one the hub never confirmed within `grace` seconds of its signing (a
    /// grant cut off mid-way, which staff did again), while its consent has not ended
    /// (`now`, seconds since the epoch): an ended consent covers nothing any more.
    pub async fn revoked_counter_statements(&self, now: i64, grace: i64) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT statement_id FROM counter_statements \
             WHERE (revoked_at IS NOT NULL \
                    OR (consent_id IS NULL AND unixepoch(signed_at) < ? - ?)) \
               AND (valid_until IS NULL OR valid_until > ? - ?) \
             ORDER BY statement_id",
        )
        .bind(now)
        .bind(grace)
        .bind(now)
        .bind(ENDED_KEPT_SECS)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))
    }

    /// Whether a counter statement is void here: revoked at this counter, or never
    /// confirmed (the hub gave it no consent id: the grant failed or its answer was lost,
    /// and staff were told it did not go through). A hub that stored it anyway cannot
    /// release under it; a statement this agent does not keep is not void.
    pub async fn statement_void(&self, statement_id: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM counter_statements WHERE statement_id = ? \
             AND (revoked_at IS NOT NULL OR consent_id IS NULL)",
        )
        .bind(statement_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(row.is_some())
    }

    /// Revokes one counter statement here: the grant it was signed for failed.
    pub async fn revoke_counter_statement(&self, statement_id: &str) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE counter_statements SET revoked_at = COALESCE(revoked_at, {NOW}) \
             WHERE statement_id = ?"
        ))
        .bind(statement_id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Keeps a revocation list of `signer` that was verified: refused if this agent saw a
    /// newer one of that signer (the hub showing an older list to hide a revocation);
    /// else its time becomes the newest seen and its ids are kept revoked for good.
    pub async fn note_revocation_list(
        &self,
        signer: &str,
        issued_at: &str,
        revoked: &[String],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let seen: Option<String> =
            sqlx::query_scalar("SELECT issued_at FROM revocation_lists WHERE signer = ?")
                .bind(signer)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
        if seen.as_deref() == Some(issued_at) {
            return Ok(());
        }
        if let Some(seen) = seen.filter(|seen| seen.as_str() > issued_at) {
            return Err(crate::error::Error::Refused(format!(
                "the hub shows a revocation list of `{signer}` of {issued_at}, older than \
                 the one of {seen} this agent saw"
            )));
        }
        sqlx::query(
            "INSERT INTO revocation_lists (signer, issued_at) VALUES (?, ?) \
             ON CONFLICT (signer) DO UPDATE SET issued_at = excluded.issued_at",
        )
        .bind(signer)
        .bind(issued_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(e))?;
        for id in revoked {
            sqlx::query(&format!(
                "INSERT INTO app_revocations (statement_id, signer, seen_at) VALUES (?, ?, {NOW}) \
                 ON CONFLICT (signer, statement_id) DO NOTHING"
            ))
            .bind(id)
            .bind(signer)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Whether `signer` revoked the statement `statement_id` in a list this agent saw.
    pub async fn app_revoked(&self, signer: &str, statement_id: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT 1 FROM app_revocations WHERE statement_id = ? AND signer = ?")
                .bind(statement_id)
                .bind(signer)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Outbox;

    /// An outbox whose counter statements were kept before their validity was opens,
    /// keeps them, and lists the revoked ones.
    #[tokio::test]
    async fn counter_statements_of_an_older_outbox_gain_their_validity_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        {
            use sqlx::ConnectOptions;
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .connect()
                .await
                .unwrap();
            sqlx::raw_sql(
                "CREATE TABLE counter_statements (statement_id TEXT PRIMARY KEY, \
                 consent_id TEXT, signed_at TEXT NOT NULL, revoked_at TEXT); \
                 INSERT INTO counter_statements VALUES \
                 ('s-1', 'c-1', '2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z');",
            )
            .execute(&mut conn)
            .await
            .unwrap();
        }
        let outbox = Outbox::open(&path).await.unwrap();
        assert_eq!(
            outbox
                .revoked_counter_statements(1_800_000_000, 600)
                .await
                .unwrap(),
            ["s-1"]
        );
        outbox.put_counter_statement("s-2", Some(1)).await.unwrap();
        outbox.close().await;
    }
}
