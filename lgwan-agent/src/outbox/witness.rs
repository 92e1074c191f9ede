//! The agent's history as a witness of the hub's transparency log: every checkpoint it
//! accepted (size, root, the signed note, whether its cosignature reached the hub), and
//! the alarm raised when the log stopped being consistent, kept until an operator
//! clears it. While the alarm is raised the agent releases no key.

use renkei_client::witness::Seen;
use sqlx::Row;

use super::{Note, Outbox};
use crate::error::Result;

const ALARM: &str = "log_alarm";
const REBASE: &str = "log_rebase";

impl Outbox {
    /// The last checkpoint accepted, unless an operator cleared an alarm since (then
    /// the next contact starts afresh).
    pub async fn last_witnessed(&self) -> Result<Option<Seen>> {
        if self.meta_value(REBASE).await?.is_some() {
            return Ok(None);
        }
        self.latest_witnessed().await
    }

    /// The last checkpoint accepted, whatever an operator did since.
    pub async fn latest_witnessed(&self) -> Result<Option<Seen>> {
        let row =
            sqlx::query("SELECT size, root, note, at FROM witnessed ORDER BY id DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
        let Some(r) = row else { return Ok(None) };
        let size: i64 = r.try_get("size").map_err(|e| self.db(e))?;
        let at: String = r.try_get("at").map_err(|e| self.db(e))?;
        Ok(Some(Seen {
            size: size.unsigned_abs(),
            root: r.try_get("root").map_err(|e| self.db(e))?,
            note: r.try_get("note").map_err(|e| self.db(e))?,
            at: chrono::DateTime::parse_from_rfc3339(&at)
                .map_err(|e| self.err(format!("witnessed checkpoint time: {e}")))?
                .to_utc(),
        }))
    }

    /// Adds an accepted checkpoint to the history, unless it is the last one again (the
    /// history grows with what the log signs, not with each contact).
    pub async fn record_witnessed(&self, seen: &Seen, cosigned: bool) -> Result<()> {
        let size = i64::try_from(seen.size).map_err(|_| self.err("checkpoint size"))?;
        let again = self
            .latest_witnessed()
            .await?
            // The whole note (the log's signature only): a checkpoint of the same size
            // with another consent-ledger head is kept too.
            .is_some_and(|l| l.note == seen.note);
        if !again {
            self.insert_witnessed(size, seen, cosigned).await?;
        } else if cosigned {
            sqlx::query(
                "UPDATE witnessed SET cosigned = 1 WHERE id = (SELECT MAX(id) FROM witnessed)",
            )
            .execute(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        }
        sqlx::query("DELETE FROM meta WHERE key = ?")
            .bind(REBASE)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    async fn insert_witnessed(&self, size: i64, seen: &Seen, cosigned: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO witnessed (size, root, note, at, cosigned) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(size)
        .bind(&seen.root)
        .bind(&seen.note)
        .bind(seen.at.to_rfc3339())
        .bind(i64::from(cosigned))
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// How many checkpoints the history holds.
    pub async fn witnessed_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM witnessed")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        Ok(n.unsigned_abs())
    }

    /// The alarm, if one is raised.
    pub async fn log_alarm(&self) -> Result<Option<Note>> {
        self.meta_value(ALARM).await
    }

    /// Raises the alarm (the first reason is kept until cleared).
    pub async fn raise_log_alarm(&self, reason: &str) -> Result<()> {
        if self.log_alarm().await?.is_none() {
            self.set_meta_value(ALARM, reason).await?;
        }
        Ok(())
    }

    /// Clears the alarm (an operator checked the hub): the next contact accepts the
    /// hub's checkpoint as a new start; the history is kept. Returns the reason cleared.
    pub async fn clear_log_alarm(&self) -> Result<Option<Note>> {
        let alarm = self.log_alarm().await?;
        if alarm.is_some() {
            self.set_meta_value(REBASE, "after a cleared alarm").await?;
            sqlx::query("DELETE FROM meta WHERE key = ?")
                .bind(ALARM)
                .execute(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
        }
        Ok(alarm)
    }
}
