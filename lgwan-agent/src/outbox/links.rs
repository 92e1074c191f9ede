//! Subject links waiting for upload: during and after a token key rotation the agent
//! tokenizes every resident it reads under each token key version it holds and spools
//! the pairs (older token, next token) here, beside the records, until the hub has
//! them (`POST /v1/subjects/links`). Only tokens are stored, never an identity.
//!
//! A pair is written once (idempotent spooling); the next token inherits what the
//! agent knows of the older one (its 枝番 and whether two people share it), so a
//! resident refused as a shared identity stays refused under the new key and an
//! enrollment finds residents exported before the rotation.

use renkei_client::api::SubjectLink;
use renkei_crypto::token::SubjectToken;
use sqlx::Row;

use super::{NOW, Outbox};
use crate::error::Result;

/// The links table (created with the outbox; new in the token key rotation release).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subject_links (
    old_token TEXT NOT NULL,
    new_token TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'refused')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    PRIMARY KEY (old_token, new_token)
);
CREATE INDEX IF NOT EXISTS subject_links_state ON subject_links (state);
";

/// Subject links by state, for `lgwan-agent keys list`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounts {
    /// Waiting for upload.
    pub pending: u64,
    /// Accepted by the hub.
    pub sent: u64,
    /// Refused by the hub for good (see `last_error`).
    pub refused: u64,
}

/// Whether tokens `a` and `b` stand for one person: linked by token key rotations, in
/// either direction and over any number of them.
pub(super) async fn same_person(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    a: &str,
    b: &str,
) -> std::result::Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "WITH RECURSIVE chain(t) AS (SELECT ?1 \
         UNION SELECT l.new_token FROM subject_links l JOIN chain c ON l.old_token = c.t \
         UNION SELECT l.old_token FROM subject_links l JOIN chain c ON l.new_token = c.t) \
         SELECT 1 FROM chain WHERE t = ?2 LIMIT 1",
    )
    .bind(a)
    .bind(b)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

impl Outbox {
    /// Spools `pairs` (older token, next token) in one transaction; pairs already
    /// spooled are kept as they are. Returns how many are new.
    pub async fn put_links(&self, pairs: &[(SubjectToken, SubjectToken)]) -> Result<usize> {
        if pairs.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let mut inserted = 0;
        for (old, new) in pairs {
            let done = sqlx::query(&format!(
                "INSERT INTO subject_links (old_token, new_token, created_at) VALUES (?, ?, {NOW}) \
                 ON CONFLICT (old_token, new_token) DO NOTHING"
            ))
            .bind(old.as_str())
            .bind(new.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            inserted += usize::try_from(done.rows_affected()).unwrap_or(0);
            sqlx::query(
                "INSERT INTO subjects (subject_token, branch, conflict) \
                 SELECT ?, branch, conflict FROM subjects WHERE subject_token = ? \
                 ON CONFLICT (subject_token) DO UPDATE \
                 SET branch = COALESCE(subjects.branch, excluded.branch), \
                     conflict = MAX(subjects.conflict, excluded.conflict)",
            )
            .bind(new.as_str())
            .bind(old.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))?;
        Ok(inserted)
    }

    /// Up to `limit` links waiting for upload, oldest first.
    pub async fn pending_links(&self, limit: usize) -> Result<Vec<SubjectLink>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT old_token, new_token FROM subject_links WHERE state = 'pending' \
             ORDER BY rowid LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        rows.iter()
            .map(|r| {
                Ok(SubjectLink {
                    old: r.try_get("old_token").map_err(|e| self.db(e))?,
                    new: r.try_get("new_token").map_err(|e| self.db(e))?,
                })
            })
            .collect()
    }

    /// Marks `links` as accepted by the hub; returns how many changed.
    pub async fn mark_links_sent(&self, links: &[SubjectLink]) -> Result<usize> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let mut changed = 0;
        for l in links {
            let done = sqlx::query(&format!(
                "UPDATE subject_links SET state = 'sent', sent_at = {NOW}, \
                 attempts = attempts + 1, last_error = NULL \
                 WHERE old_token = ? AND new_token = ? AND state = 'pending'"
            ))
            .bind(&l.old)
            .bind(&l.new)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            changed += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        tx.commit().await.map_err(|e| self.db(e))?;
        Ok(changed)
    }

    /// Takes one link out of the upload queue for good, keeping the hub's reason.
    pub async fn mark_link_refused(&self, link: &SubjectLink, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE subject_links SET state = 'refused', attempts = attempts + 1, last_error = ? \
             WHERE old_token = ? AND new_token = ? AND state = 'pending'",
        )
        .bind(error)
        .bind(&link.old)
        .bind(&link.new)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// The refused links with the hub's reasons, oldest first (at most `limit`).
    pub async fn refused_links(&self, limit: usize) -> Result<Vec<(SubjectLink, String)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT old_token, new_token, COALESCE(last_error, '') AS why FROM subject_links \
             WHERE state = 'refused' ORDER BY rowid LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        rows.iter()
            .map(|r| {
                let link = SubjectLink {
                    old: r.try_get("old_token").map_err(|e| self.db(e))?,
                    new: r.try_get("new_token").map_err(|e| self.db(e))?,
                };
                Ok((link, r.try_get("why").map_err(|e| self.db(e))?))
            })
            .collect()
    }

    /// Links by state.
    pub async fn link_counts(&self) -> Result<LinkCounts> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM subject_links GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        let mut counts = LinkCounts::default();
        for r in rows {
            let state: String = r.try_get("state").map_err(|e| self.db(e))?;
            let n = u64::try_from(r.try_get::<i64, _>("n").map_err(|e| self.db(e))?).unwrap_or(0);
            match state.as_str() {
                "pending" => counts.pending = n,
                "sent" => counts.sent = n,
                _ => counts.refused += n,
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::NewRecord;
    use renkei_crypto::token::RecordId;

    fn token(c: char) -> SubjectToken {
        SubjectToken::parse(&format!("st1_{}", c.to_string().repeat(32))).unwrap()
    }

    #[tokio::test]
    async fn links_spool_once_inherit_what_is_known_and_leave_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        let outbox = Outbox::open(&path).await.unwrap();
        outbox
            .put(&[NewRecord {
                record_id: RecordId::parse(&format!("rec1_{}", "a".repeat(32))).unwrap(),
                subject: token('a'),
                branch: Some("01".into()),
                category: "checkup.body".into(),
                sealed: b"x".to_vec(),
            }])
            .await
            .unwrap();
        outbox.mark_conflicts(&[token('c')]).await.unwrap();
        let pairs = [(token('a'), token('b')), (token('c'), token('d'))];
        assert_eq!(outbox.put_links(&pairs).await.unwrap(), 2);
        assert_eq!(outbox.put_links(&pairs).await.unwrap(), 0, "idempotent");
        let b = outbox.knows_subject(&token('b')).await.unwrap().unwrap();
        assert_eq!((b.branch.as_deref(), b.conflict), (Some("01"), false));
        assert!(
            outbox
                .knows_subject(&token('d'))
                .await
                .unwrap()
                .unwrap()
                .conflict
        );
        // A pair whose older token the agent never exported makes nothing known.
        outbox.put_links(&[(token('e'), token('f'))]).await.unwrap();
        assert!(outbox.knows_subject(&token('f')).await.unwrap().is_none());

        let pending = outbox.pending_links(10).await.unwrap();
        assert_eq!(pending.len(), 3);
        assert_eq!(pending[0].old, token('a').as_str(), "oldest first");
        assert_eq!(outbox.mark_links_sent(&pending[..1]).await.unwrap(), 1);
        outbox
            .mark_link_refused(&pending[1], "409 conflict")
            .await
            .unwrap();
        outbox.close().await;
        let outbox = Outbox::open(&path).await.unwrap();
        let counts = outbox.link_counts().await.unwrap();
        assert_eq!((counts.pending, counts.sent, counts.refused), (1, 1, 1));
        let refused = outbox.refused_links(10).await.unwrap();
        assert_eq!(refused, vec![(pending[1].clone(), "409 conflict".into())]);
        assert_eq!(
            outbox.pending_links(10).await.unwrap(),
            pending[2..].to_vec()
        );
    }
}
