//! A resident's proof that one entry of the hub's audit log (for example a read of
//! their data) is in the log: the entry as recorded, the inclusion proof of its leaf,
//! and a checkpoint witnesses cosigned. [`verify`] checks it offline against the hub's
//! log key (`internet-hub audit key`), so nobody has to trust the hub for it.

use renkei_crypto::tlog::{self, note};
use serde::Serialize;

use crate::error::{Error, Result};

pub use renkei_protocol::proof::{EntryProof, FORMAT, ProvedEntry};

/// What a proof file showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The entry's position.
    pub seq: i64,
    /// The size of the checkpoint it is in.
    pub size: u64,
    /// Key names of the cosignatures present (not verified: their keys are not known
    /// here; `internet-hub audit verify` checks them).
    pub cosigners: Vec<String>,
}

/// Checks a proof file against the hub's log key: the checkpoint's signature, and that
/// the entry, hashed as the hub chains it, is the leaf the inclusion proof places in
/// that checkpoint's tree.
pub fn verify(file: &[u8], log_key: &str) -> Result<Verified> {
    let bad = |why: String| Error::invalid("proof file", why);
    let p: EntryProof = serde_json::from_slice(file).map_err(|e| bad(e.to_string()))?;
    if p.format != FORMAT {
        return Err(bad(format!("format is not `{FORMAT}`")));
    }
    let log = note::NoteVerifier::parse(log_key).map_err(|e| bad(e.to_string()))?;
    let cp = note::open_checkpoint(&p.checkpoint, &log).map_err(|e| bad(e.to_string()))?;
    let e = &p.entry;
    let chain = tlog::audit_entry_hash(
        &e.prev_hash,
        e.seq,
        e.at,
        [
            &e.actor,
            &e.action,
            &e.object,
            &e.subject,
            &e.consent,
            &e.category,
            &e.decision,
            &e.reason,
        ],
    );
    let data = data_encoding::HEXLOWER
        .decode(chain.as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let index = u64::try_from(e.seq - 1).map_err(|_| bad("`seq` must be 1 or more".into()))?;
    let proof = p
        .proof
        .iter()
        .map(|h| tlog::hash_from_base64(h))
        .collect::<renkei_crypto::Result<Vec<_>>>()
        .map_err(|e| bad(e.to_string()))?;
    tlog::check_inclusion(&proof, cp.size, cp.root, index, tlog::leaf_hash(&data))
        .map_err(|e| bad(format!("the entry is not in the signed checkpoint: {e}")))?;
    let cosigners = p
        .checkpoint
        .lines()
        .filter_map(|l| l.strip_prefix("\u{2014} "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| *name != log.name())
        .map(str::to_owned)
        .collect();
    Ok(Verified {
        seq: e.seq,
        size: cp.size,
        cosigners,
    })
}
