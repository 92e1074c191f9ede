//! A resident's proof file: one entry of the hub's audit log, the inclusion proof of its
//! leaf and a checkpoint witnesses cosigned. The hub writes it (`internet-hub audit
//! prove`); `renkei_client::proof::verify` checks it offline against the hub's log key.

use serde::{Deserialize, Serialize};

/// The format name in every proof file.
pub const FORMAT: &str = "renkei-audit-proof v1";

/// One audit entry as the hub recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvedEntry {
    /// Position in the log, from 1.
    pub seq: i64,
    /// When, microseconds since the epoch.
    pub at: i64,
    /// Who acted.
    pub actor: String,
    /// What was decided.
    pub action: String,
    /// What it was about: for an entry about a resident, a salted commitment (`ac1_…`)
    /// to the hub's record or consent id, not the id.
    pub object: String,
    /// A salted commitment (`ac1_…`) to the subject token concerned, never the token
    /// (entries written before the commitments show the token).
    pub subject: String,
    /// The consent relied on.
    pub consent: String,
    /// The data category.
    pub category: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// The previous entry's chain hash (hex).
    pub prev_hash: String,
}

/// A proof file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryProof {
    /// [`FORMAT`].
    pub format: String,
    /// The entry.
    pub entry: ProvedEntry,
    /// The RFC 9162 inclusion proof of its leaf (base64 hashes, bottom-up).
    pub proof: Vec<String>,
    /// The checkpoint, a signed note with the hub's signature and witnesses' cosignatures.
    pub checkpoint: String,
}
