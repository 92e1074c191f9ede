//! The append-only consent ledger: entries, the hash chain, and its verification.
//!
//! Entry `n` stores `hash = hex(SHA-256(prev_hash || entry_json))` where `prev_hash` is
//! entry `n-1`'s hash (64 zeros for `seq = 1`) and `entry_json` is the canonical JSON of
//! the [`LedgerEntry`]. Sequence numbers start at 1 and have no gaps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Consent;

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerAction {
    /// A consent's first version (possibly replacing another: see `supersedes`).
    Grant,
    /// A version that revokes the consent.
    Revoke,
    /// A version that marks the consent superseded by a newer one.
    Supersede,
}

impl LedgerAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerAction::Grant => "grant",
            LedgerAction::Revoke => "revoke",
            LedgerAction::Supersede => "supersede",
        }
    }
}

/// One ledger entry: one consent version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Position in the ledger, from 1.
    pub seq: i64,
    /// What happened.
    pub action: LedgerAction,
    /// When it was appended.
    pub at: DateTime<Utc>,
    /// The consent version this entry records.
    pub consent: Consent,
}

impl LedgerEntry {
    /// The canonical bytes that are hashed (serde_json with the struct's field order).
    pub fn canonical_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

/// The chain's newest entry: keep it elsewhere to detect truncation later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Its sequence number.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// The outcome of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Number of entries checked.
    pub entries: u64,
    /// The newest entry, `None` for an empty ledger.
    pub head: Option<ChainHead>,
}

/// Why a chain fails, and the first entry that is bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("first bad entry is seq {first_bad_seq}: {reason}")]
pub struct ChainError {
    /// The first sequence number that is missing, altered or unlinked.
    pub first_bad_seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// One stored ledger row, as read from the database.
#[derive(Debug, Clone)]
pub struct LedgerRow {
    /// `seq` column.
    pub seq: i64,
    /// `consent_id` column.
    pub consent_id: String,
    /// `version` column.
    pub version: i64,
    /// `entry_json` column.
    pub entry_json: String,
    /// `prev_hash` column.
    pub prev_hash: String,
    /// `hash` column.
    pub hash: String,
}

/// The chained hash of an entry.
pub fn chain_hash(prev_hash: &str, entry_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(entry_json.as_bytes());
    hex::encode(h.finalize())
}

/// Verifies rows fed in `seq` order; stops at the first bad one.
#[derive(Debug)]
pub struct ChainVerifier {
    last_seq: i64,
    last_hash: String,
    entries: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            last_seq: 0,
            last_hash: GENESIS_HASH.to_owned(),
            entries: 0,
        }
    }
}

impl ChainVerifier {
    /// Checks the next row: no gap, linked to the previous hash, hash recomputes, and
    /// the JSON agrees with the indexed columns.
    pub fn push(&mut self, row: &LedgerRow) -> Result<(), ChainError> {
        let expected_seq = self.last_seq + 1;
        let bad = |seq: i64, reason: &str| ChainError {
            first_bad_seq: seq,
            reason: reason.to_owned(),
        };
        if row.seq != expected_seq {
            return Err(bad(expected_seq, "entry missing (gap in sequence)"));
        }
        if row.prev_hash != self.last_hash {
            return Err(bad(
                row.seq,
                "prev_hash does not match the previous entry's hash",
            ));
        }
        if chain_hash(&row.prev_hash, &row.entry_json) != row.hash {
            return Err(bad(row.seq, "hash does not match the entry's content"));
        }
        let entry: LedgerEntry = serde_json::from_str(&row.entry_json)
            .map_err(|_| bad(row.seq, "entry_json is not a ledger entry"))?;
        if entry.seq != row.seq
            || entry.consent.id != row.consent_id
            || i64::from(entry.consent.version) != row.version
        {
            return Err(bad(
                row.seq,
                "entry_json disagrees with the seq, consent_id or version columns",
            ));
        }
        self.last_seq = row.seq;
        self.last_hash.clone_from(&row.hash);
        self.entries += 1;
        Ok(())
    }

    /// Ends verification. With `expected`, a head recorded earlier, the ledger must reach
    /// that seq with that hash (detects truncation and rewritten history).
    pub fn finish(self, expected: Option<&ChainHead>) -> Result<ChainReport, ChainError> {
        if let Some(exp) = expected {
            if self.last_seq < exp.seq {
                return Err(ChainError {
                    first_bad_seq: self.last_seq + 1,
                    reason: format!(
                        "ledger truncated: ends at seq {} but head seq {} was recorded",
                        self.last_seq, exp.seq
                    ),
                });
            }
        }
        let head = (self.last_seq > 0).then_some(ChainHead {
            seq: self.last_seq,
            hash: self.last_hash,
        });
        Ok(ChainReport {
            entries: self.entries,
            head,
        })
    }

    /// The hash at `seq` as seen so far, to compare with an expected head mid-stream.
    pub fn check_head(&self, expected: &ChainHead) -> Result<(), ChainError> {
        if self.last_seq == expected.seq && self.last_hash != expected.hash {
            return Err(ChainError {
                first_bad_seq: expected.seq,
                reason: "hash differs from the recorded head (history rewritten)".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Consent, ConsentTerms, DataPeriod, Method};
    use chrono::TimeZone;

    /// Ledgers written before the terms had a type of their own still verify: an entry's
    /// JSON, which its hash covers, is byte for byte what it was.
    #[test]
    fn entry_json_keeps_its_field_order() {
        let rows = rows(1);
        let json = &rows.first().unwrap().entry_json;
        assert_eq!(
            json,
            r#"{"seq":1,"action":"grant","at":"2025-04-01T00:00:00Z","consent":{"id":"c1","version":1,"subject":"st1_abcdefghijklmnopqrstuvwxyz234567","recipient":"phr:asmile","purpose":"phr-display","categories":["checkup.body"],"data_period":{"from":null,"until":null},"valid_from":"2025-04-01T00:00:00Z","valid_until":null,"method":"web","evidence":null,"granted_by":"resident","granted_at":"2025-04-01T00:00:00Z","status":"active","revocation":null,"supersedes":null}}"#
        );
        let back: LedgerEntry = serde_json::from_str(json).unwrap();
        assert_eq!(back.canonical_json().unwrap(), *json);
    }

    fn rows(n: i64) -> Vec<LedgerRow> {
        let at = Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0).single().unwrap();
        let terms = ConsentTerms {
            subject: "st1_abcdefghijklmnopqrstuvwxyz234567".into(),
            recipient: "phr:asmile".into(),
            purpose: "phr-display".into(),
            categories: vec!["checkup.body".into()],
            data_period: DataPeriod::default(),
            valid_from: at,
            valid_until: None,
            method: Method::Web,
            evidence: None,
            granted_by: "resident".into(),
            guardian: None,
        };
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let consent =
                    Consent::first_version(format!("c{seq}"), terms.clone(), None, at).unwrap();
                let entry = LedgerEntry {
                    seq,
                    action: LedgerAction::Grant,
                    at,
                    consent,
                };
                let entry_json = entry.canonical_json().unwrap();
                let hash = chain_hash(&prev, &entry_json);
                let row = LedgerRow {
                    seq,
                    consent_id: format!("c{seq}"),
                    version: 1,
                    entry_json,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                row
            })
            .collect()
    }

    fn verify(rows: &[LedgerRow], expected: Option<&ChainHead>) -> Result<ChainReport, ChainError> {
        let mut v = ChainVerifier::default();
        for r in rows {
            v.push(r)?;
            if let Some(e) = expected {
                v.check_head(e)?;
            }
        }
        v.finish(expected)
    }

    #[test]
    fn intact_chain_reports_its_head() {
        let r = rows(4);
        let report = verify(&r, None).unwrap();
        assert_eq!(report.entries, 4);
        assert_eq!(
            report.head,
            Some(ChainHead {
                seq: 4,
                hash: r[3].hash.clone()
            })
        );
        assert_eq!(verify(&[], None).unwrap().head, None);
    }

    #[test]
    fn rehashed_edit_is_caught_at_the_next_link() {
        let mut r = rows(4);
        r[1].entry_json = r[1].entry_json.replace("phr-display", "health-points");
        r[1].hash = chain_hash(&r[1].prev_hash, &r[1].entry_json);
        let err = verify(&r, None).unwrap_err();
        assert_eq!(err.first_bad_seq, 3);
        assert!(err.reason.contains("prev_hash"));
    }

    #[test]
    fn full_rewrite_is_caught_by_the_recorded_head() {
        let r = rows(3);
        let head = ChainHead {
            seq: 3,
            hash: r[2].hash.clone(),
        };
        let mut forged = rows(3);
        forged[0].entry_json = forged[0].entry_json.replace("web", "app");
        let mut prev = GENESIS_HASH.to_owned();
        for row in &mut forged {
            row.prev_hash = prev.clone();
            row.hash = chain_hash(&prev, &row.entry_json);
            prev = row.hash.clone();
        }
        assert!(verify(&forged, None).is_ok());
        assert_eq!(verify(&forged, Some(&head)).unwrap_err().first_bad_seq, 3);
    }

    #[test]
    fn first_row_must_be_seq_one() {
        let r = rows(3);
        assert_eq!(verify(&r[1..], None).unwrap_err().first_bad_seq, 1);
    }
}
