//! Insurer changes (国保 → 後期高齢者医療 at 75, a move between insurers): the same
//! resident under two insurance identities has two subject tokens. Where a KDB file names
//! the resident's 宛名番号, the agent links the later token to the first one it saw
//! (`POST /v1/subjects/links`, the same links as a token key rotation), so that the hub
//! files both under one subject and every recipient keeps one pseudonym.
//!
//! Only keyed digests are stored (of the number, and of the birth date and sex), never
//! the number. A 宛名番号 seen with another birth date or sex is never linked: two
//! different people are never merged; the sighting is counted and reported instead.

use super::{NOW, Outbox};
use crate::error::Result;
use crate::pipeline::ResidentSeen;
use renkei_crypto::token::SubjectToken;
use sqlx::Row;

/// The table of first sightings (created with the outbox).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resident_numbers (
    resident TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    person TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS resident_numbers_token ON resident_numbers (token);
";

/// What [`Outbox::link_residents`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResidentLinks {
    /// New links spooled (a later token to the resident's first one).
    pub linked: usize,
    /// Sightings of a 宛名番号 with another birth date or sex: not linked.
    pub mismatched: usize,
}

impl Outbox {
    /// The first sighting of each of `residents` (keyed digests of 宛名番号) that an import
    /// recorded: `(digest, token, person digest)`, for rows keyed by 宛名番号 alone.
    pub async fn first_sightings(
        &self,
        residents: &[&str],
    ) -> Result<Vec<(String, SubjectToken, String)>> {
        let mut out = Vec::new();
        for chunk in residents.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT resident, token, person FROM resident_numbers WHERE resident IN ({marks})"
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query.bind(*r);
            }
            for row in query.fetch_all(&self.pool).await.map_err(|e| self.db(e))? {
                let token: String = row.try_get("token").map_err(|e| self.db(e))?;
                let Ok(token) = SubjectToken::parse(&token) else {
                    continue;
                };
                out.push((
                    row.try_get("resident").map_err(|e| self.db(e))?,
                    token,
                    row.try_get("person").map_err(|e| self.db(e))?,
                ));
            }
        }
        Ok(out)
    }

    /// Records each sighting: the first token of a 宛名番号 is kept; a later, different
    /// token of the same person is spooled as a link to it, in one transaction.
    pub async fn link_residents(&self, seen: &[ResidentSeen]) -> Result<ResidentLinks> {
        let mut out = ResidentLinks::default();
        if seen.is_empty() {
            return Ok(out);
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        for s in seen {
            let first =
                sqlx::query("SELECT token, person FROM resident_numbers WHERE resident = ?")
                    .bind(&s.resident)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.db(e))?;
            let Some(first) = first else {
                // A number new to the agent, under a token another number already has:
                // two residents behind one insurance identity. Never filed together.
                let taken = sqlx::query("SELECT 1 AS one FROM resident_numbers WHERE token = ?")
                    .bind(s.token.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.db(e))?;
                if taken.is_some() {
                    out.mismatched += 1;
                    continue;
                }
                sqlx::query(&format!(
                    "INSERT INTO resident_numbers (resident, token, person, created_at) \
                     VALUES (?, ?, ?, {NOW})"
                ))
                .bind(&s.resident)
                .bind(s.token.as_str())
                .bind(&s.person)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
                continue;
            };
            let token: String = first.try_get("token").map_err(|e| self.db(e))?;
            let person: String = first.try_get("person").map_err(|e| self.db(e))?;
            if token == s.token.as_str() {
                continue;
            }
            if person != s.person {
                out.mismatched += 1;
                continue;
            }
            let done = sqlx::query(&format!(
                "INSERT INTO subject_links (old_token, new_token, created_at) VALUES (?, ?, {NOW}) \
                 ON CONFLICT (old_token, new_token) DO NOTHING"
            ))
            .bind(&token)
            .bind(s.token.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            out.linked += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        tx.commit().await.map_err(|e| self.db(e))?;
        Ok(out)
    }
}
