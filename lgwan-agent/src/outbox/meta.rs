//! The outbox's small state beside the records: the last upload and last error
//! (for `status`), and the hub's latest audit checkpoint, which only moves forward.

use renkei_client::api::Checkpoint;
use sqlx::Row;

use super::{NOW, Outbox};
use crate::error::{Error, Result};

/// A timestamped note (last upload, last error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// What happened.
    pub value: String,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// The outbox in numbers, for `lgwan-agent status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxStatus {
    /// Records waiting for upload (the depth).
    pub pending: u64,
    /// Records the hub accepted.
    pub sent: u64,
    /// Records refused for good (conflict or rejected).
    pub refused: u64,
    /// Subjects exported.
    pub subjects: u64,
    /// Subjects refused as shared by two people.
    pub conflicting_subjects: u64,
    /// The last successful upload.
    pub last_upload: Option<Note>,
    /// The last error.
    pub last_error: Option<Note>,
    /// Sequence number of the latest hub checkpoint kept.
    pub checkpoint_seq: Option<i64>,
    /// Key-grant requests the agent refused to answer (release list, policies, a key
    /// not bound to its participant's certificate, a record not its own): alarms.
    pub grant_refusals: u64,
    /// The last such refusal.
    pub last_refusal: Option<Note>,
    /// Records recipients reported they cannot open (of the newest 100 reports).
    pub unreadable: u64,
    /// The newest such report.
    pub last_unreadable: Option<Note>,
}

impl Outbox {
    /// Remembers `error` as the last error (shown by `status`).
    pub async fn set_last_error(&self, error: &str) -> Result<()> {
        self.set_meta("last_error", error).await
    }

    pub(super) async fn set_meta_value(&self, key: &str, value: &str) -> Result<()> {
        self.set_meta(key, value).await
    }

    pub(super) async fn meta_value(&self, key: &str) -> Result<Option<Note>> {
        self.meta(key).await
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO meta (key, value, at) VALUES (?, ?, {NOW}) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, at = excluded.at"
        ))
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    async fn meta(&self, key: &str) -> Result<Option<Note>> {
        let row = sqlx::query("SELECT value, at FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| {
            Ok(Note {
                value: r.try_get("value").map_err(|e| self.db(e))?,
                at: r.try_get("at").map_err(|e| self.db(e))?,
            })
        })
        .transpose()
    }

    /// The last successful upload.
    pub async fn last_upload(&self) -> Result<Option<Note>> {
        self.meta("last_upload").await
    }

    /// The last error.
    pub async fn last_error(&self) -> Result<Option<Note>> {
        self.meta("last_error").await
    }

    /// Counts key-grant requests the agent refused and keeps the last reason (no
    /// secrets: participant and record ids and the check that failed).
    pub async fn note_refusals(&self, reasons: &[String]) -> Result<()> {
        let Some(last) = reasons.last() else {
            return Ok(());
        };
        let n = self.grant_refusals().await? + u64::try_from(reasons.len()).unwrap_or(u64::MAX);
        self.set_meta("grant_refusals", &n.to_string()).await?;
        self.set_meta("last_refusal", last).await
    }

    /// Keeps the number of unreadable-record reports the hub lists and the newest one;
    /// answers whether the number changed since the last call.
    pub async fn note_unreadable(&self, count: usize, newest: &str) -> Result<bool> {
        let before = self.count_meta("unreadable").await?;
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        if before == count {
            return Ok(false);
        }
        self.set_meta("unreadable", &count.to_string()).await?;
        self.set_meta("last_unreadable", newest).await?;
        Ok(true)
    }

    async fn count_meta(&self, key: &str) -> Result<u64> {
        Ok(self
            .meta(key)
            .await?
            .and_then(|n| n.value.parse().ok())
            .unwrap_or(0))
    }

    async fn grant_refusals(&self) -> Result<u64> {
        self.count_meta("grant_refusals").await
    }

    /// The latest hub audit checkpoint kept.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        match self.meta("checkpoint").await? {
            None => Ok(None),
            Some(note) => serde_json::from_str(&note.value)
                .map(Some)
                .map_err(|e| self.err(format!("stored checkpoint: {e}"))),
        }
    }

    /// Keeps `new` as the latest checkpoint, refusing a rollback or a fork of the
    /// one kept (checked and written in one transaction).
    pub async fn store_checkpoint(&self, new: &Checkpoint) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        // Take the write lock first so two agents cannot interleave check and write.
        sqlx::query("UPDATE meta SET value = value WHERE key = 'checkpoint'")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'checkpoint'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
        if let Some(text) = stored {
            let old: Checkpoint = serde_json::from_str(&text)
                .map_err(|e| self.err(format!("stored checkpoint: {e}")))?;
            check_successor(&old, new)?;
        }
        let json = serde_json::to_string(new).map_err(|e| self.err(e))?;
        sqlx::query(&format!(
            "INSERT INTO meta (key, value, at) VALUES ('checkpoint', ?, {NOW}) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, at = excluded.at"
        ))
        .bind(json)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(e))?;
        tx.commit().await.map_err(|e| self.db(e))
    }

    /// Counts and notes for `lgwan-agent status`.
    pub async fn status(&self) -> Result<OutboxStatus> {
        Ok(OutboxStatus {
            pending: self.depth().await?,
            sent: self
                .count("SELECT COUNT(*) FROM outbox WHERE state = 'sent'")
                .await?,
            refused: self
                .count("SELECT COUNT(*) FROM outbox WHERE state IN ('conflict', 'rejected')")
                .await?,
            subjects: self
                .count("SELECT COUNT(*) FROM subjects WHERE conflict = 0")
                .await?,
            conflicting_subjects: self
                .count("SELECT COUNT(*) FROM subjects WHERE conflict = 1")
                .await?,
            last_upload: self.last_upload().await?,
            last_error: self.last_error().await?,
            checkpoint_seq: self.checkpoint().await?.map(|c| c.seq),
            grant_refusals: self.grant_refusals().await?,
            last_refusal: self.meta("last_refusal").await?,
            unreadable: self.count_meta("unreadable").await?,
            last_unreadable: self.meta("last_unreadable").await?,
        })
    }
}

/// Whether `new` may follow `old`: never a lower sequence number (a rollback), and
/// never another head at the same sequence number (a fork).
pub fn check_successor(old: &Checkpoint, new: &Checkpoint) -> Result<()> {
    if new.seq < old.seq {
        return Err(Error::Checkpoint(format!(
            "the hub offers entry {} but entry {} was already signed: its log was rolled back",
            new.seq, old.seq
        )));
    }
    if new.seq == old.seq && new.head_hash != old.head_hash {
        return Err(Error::Checkpoint(format!(
            "entry {} has head `{}` but `{}` was signed before: the log was rewritten",
            new.seq, new.head_hash, old.head_hash
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cp(seq: i64, head: &str) -> Checkpoint {
        Checkpoint {
            seq,
            head_hash: head.into(),
            at: chrono::Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            key_version: "v1".into(),
            public_key: "k".into(),
            signature: "s".into(),
            note: String::new(),
        }
    }

    #[test]
    fn successor_refuses_rollback_and_fork() {
        assert!(check_successor(&cp(5, "a"), &cp(6, "b")).is_ok());
        assert!(check_successor(&cp(5, "a"), &cp(5, "a")).is_ok());
        let e = check_successor(&cp(5, "a"), &cp(4, "z")).unwrap_err();
        assert!(e.to_string().contains("rolled back"), "{e}");
        let e = check_successor(&cp(5, "a"), &cp(5, "b")).unwrap_err();
        assert!(e.to_string().contains("rewritten"), "{e}");
    }

    #[tokio::test]
    async fn checkpoints_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("o.sqlite")).await.unwrap();
        assert!(outbox.checkpoint().await.unwrap().is_none());
        outbox.store_checkpoint(&cp(7, "h7")).await.unwrap();
        assert!(outbox.store_checkpoint(&cp(3, "h3")).await.is_err());
        assert!(outbox.store_checkpoint(&cp(7, "other")).await.is_err());
        outbox.store_checkpoint(&cp(9, "h9")).await.unwrap();
        assert_eq!(outbox.checkpoint().await.unwrap().unwrap().seq, 9);
    }
}
