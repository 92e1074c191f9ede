//! A witness of the hub's audit transparency log, run by agents and participant clients
//! on each contact: fetch the latest checkpoint, check its signature against the log key
//! pinned in the witness's own configuration, check that it extends the last checkpoint
//! this witness saw (a consistency proof computed from the log's tiles, each tile
//! authenticated against the new root), and cosign it (C2SP tlog-cosignature/v1).
//!
//! A checkpoint that is not signed by the pinned key, shrinks the log, has another root
//! at the same size, or does not extend the last one seen (a fork or a rewrite) is an
//! [`Outcome::Alarm`]: the caller keeps it until an operator clears it. Failing to reach
//! the hub is an ordinary error.

use chrono::{DateTime, Utc};
use renkei_crypto::sign::SigningKey;
use renkei_crypto::tlog::note::{self, NoteSigner, NoteVerifier};
use renkei_crypto::tlog::{self, Step, Tiles};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::transport::HubClient;

/// A checkpoint a witness accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Tree size.
    pub size: u64,
    /// Root hash, base64.
    pub root: String,
    /// The signed note as fetched.
    pub note: String,
    /// When the witness accepted it.
    pub at: DateTime<Utc>,
}

/// What one contact found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The checkpoint is consistent with the last one seen (or the first one seen):
    /// keep it; `cosignature` is the line returned to the hub.
    Accepted {
        /// The checkpoint.
        seen: Seen,
        /// This witness's cosignature line, or why it could not be delivered.
        cosigned: std::result::Result<String, String>,
    },
    /// The log is not what it was: release nothing until an operator clears it.
    Alarm(String),
}

/// Where a witness reads the log and returns cosignatures: the hub, or a fake in tests.
#[allow(
    async_fn_in_trait,
    reason = "used in this workspace only, with concrete types"
)]
pub trait LogSource {
    /// The latest signed checkpoint (`GET /v1/log/checkpoint`).
    async fn checkpoint(&self) -> Result<String>;
    /// A tile by its C2SP path, `tile/…` (`GET /v1/log/tile/…`).
    async fn tile(&self, path: &str) -> Result<Vec<u8>>;
    /// Returns a cosignature (`POST /v1/log/cosignature`).
    async fn cosign(&self, size: u64, vkey: &str, line: &str) -> Result<()>;
}

#[derive(Serialize)]
struct CosignatureBody<'a> {
    size: u64,
    vkey: &'a str,
    cosignature: &'a str,
}

impl LogSource for HubClient {
    async fn checkpoint(&self) -> Result<String> {
        let bytes = self.get_bytes("/v1/log/checkpoint").await?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::invalid("log checkpoint", e.to_string()))
    }

    async fn tile(&self, path: &str) -> Result<Vec<u8>> {
        Ok(self.get_bytes(&format!("/v1/log/{path}")).await?.to_vec())
    }

    async fn cosign(&self, size: u64, vkey: &str, line: &str) -> Result<()> {
        let body = CosignatureBody {
            size,
            vkey,
            cosignature: line,
        };
        self.post_json::<_, serde_json::Value>("/v1/log/cosignature", &body)
            .await
            .map(|_| ())
    }
}

/// A witness: the pinned log key, and this witness's own name and cosigning key.
#[derive(Debug)]
pub struct Witness<'a> {
    /// The hub's log, from the witness's configuration (never from the hub).
    pub log: &'a NoteVerifier,
    /// The witness's key name, e.g. `renkei-witness/source:city-a`.
    pub name: &'a str,
    /// The witness's Ed25519 cosigning key.
    pub key: &'a SigningKey,
}

impl Witness<'_> {
    /// This witness's cosignature verifier key (C2SP, type 0x04).
    pub fn vkey(&self) -> Result<String> {
        Ok(NoteSigner::witness(self.name, self.key, 0)
            .map_err(|e| Error::invalid("witness name", e.to_string()))?
            .vkey())
    }

    /// One contact: checks the latest checkpoint against `last` (the last one this
    /// witness accepted) and cosigns it.
    pub async fn contact(
        &self,
        source: &impl LogSource,
        last: Option<&Seen>,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let signed = source.checkpoint().await?;
        let cp = match note::open_checkpoint(&signed, self.log) {
            Ok(cp) => cp,
            Err(e) => {
                return Ok(Outcome::Alarm(format!(
                    "the hub's checkpoint is not signed by the pinned log key: {e}"
                )));
            }
        };
        if let Some(last) = last {
            if let Some(alarm) = check_extends(source, last, &cp).await? {
                return Ok(Outcome::Alarm(alarm));
            }
            if let Some(alarm) = check_ledger(last, &cp) {
                return Ok(Outcome::Alarm(alarm));
            }
        }
        let seen = Seen {
            size: cp.size,
            root: cp.root_base64(),
            // Only the log's signature is kept: the hub can append lines of any length.
            note: note::log_signed_only(&signed, self.log)
                .map_err(|e| Error::invalid("the hub's checkpoint", e.to_string()))?,
            at: now,
        };
        let time = u64::try_from(now.timestamp()).unwrap_or(0);
        let cosigned = match NoteSigner::witness(self.name, self.key, time)
            .and_then(|w| Ok((note::cosign(&signed, &w)?, w.vkey())))
        {
            Ok((line, vkey)) => match source.cosign(cp.size, &vkey, &line).await {
                Ok(()) => Ok(line),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        Ok(Outcome::Accepted { seen, cosigned })
    }
}

/// `None` when the consent ledger head `new` names can follow the one `last` named (the
/// ledger only grows: a later head never has a smaller position, the same position never
/// another hash, and once named it is never dropped); else what is wrong.
fn check_ledger(last: &Seen, new: &note::Checkpoint) -> Option<String> {
    let old = last
        .note
        .split_once("\n\n")
        .and_then(|(body, _)| note::Checkpoint::parse(format!("{body}\n").as_bytes()).ok())
        .and_then(|cp| cp.ledger)?;
    match &new.ledger {
        None => Some(format!(
            "the checkpoint of size {} names no consent ledger head, after one naming entry {}",
            new.size, old.seq
        )),
        Some(h) if h.seq < old.seq => Some(format!(
            "the consent ledger shrank: entry {} after entry {}",
            h.seq, old.seq
        )),
        Some(h) if h.seq == old.seq && h.hash != old.hash => Some(format!(
            "the consent ledger was rewritten: entry {} has another hash than before",
            h.seq
        )),
        Some(_) => None,
    }
}

/// `None` when `new` extends `last`; else what is wrong. Transport errors are errors.
async fn check_extends(
    source: &impl LogSource,
    last: &Seen,
    new: &note::Checkpoint,
) -> Result<Option<String>> {
    let old_root = tlog::hash_from_base64(&last.root)
        .map_err(|e| Error::invalid("stored checkpoint", e.to_string()))?;
    if new.size < last.size {
        return Ok(Some(format!(
            "the log shrank: {} entries now, {} seen at {}",
            new.size,
            last.size,
            last.at.to_rfc3339()
        )));
    }
    if new.size == last.size {
        return Ok((new.root != old_root).then(|| {
            format!(
                "the log was rewritten: another root for the same {} entries than seen at {}",
                new.size,
                last.at.to_rfc3339()
            )
        }));
    }
    if last.size == 0 {
        return Ok(None);
    }
    let mut tiles = Tiles::new();
    for _ in 0..tlog::MAX_ROUNDS {
        let step = match tiles.consistency(new.size, new.root, last.size) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Some(format!(
                    "the log's tiles do not match its checkpoint of {} entries: {e}",
                    new.size
                )));
            }
        };
        match step {
            Step::Done(proof) => {
                return Ok(tlog::check_consistency(&proof, new.size, new.root, last.size, old_root)
                    .err()
                    .map(|e| {
                        format!(
                            "the log of {} entries does not extend the {} seen at {} (a fork or a rewrite): {e}",
                            new.size,
                            last.size,
                            last.at.to_rfc3339()
                        )
                    }));
            }
            Step::Need(_) => {
                for t in tiles.take_missing() {
                    let data = source.tile(&tlog::tile_path(&t)).await?;
                    tiles.insert(&t, data);
                }
            }
        }
    }
    Err(Error::invalid(
        "log tiles",
        "a consistency proof needed too many tiles".to_owned(),
    ))
}

/// The witness history file in a client's state folder (one accepted checkpoint a line).
pub const HISTORY: &str = "witness.jsonl";
/// The alarm file in a client's state folder: while it exists the client refuses to pull.
pub const ALARM: &str = "witness-alarm.txt";

/// One witness contact by a participant client, its history and alarm kept in `state`:
/// `Ok(None)` when no log key is pinned. A raised alarm (now or before) is an
/// [`Outcome::Alarm`]; the operator deletes the alarm file after checking the hub.
pub async fn contact_from_state(
    client: &impl LogSource,
    settings: &crate::config::Settings,
    state: &crate::state::StateDir,
    now: DateTime<Utc>,
) -> Result<Option<Outcome>> {
    let Some(vkey) = settings.log_key.as_deref() else {
        return Ok(None);
    };
    let alarm_path = state.path().join(ALARM);
    if let Ok(text) = std::fs::read_to_string(&alarm_path) {
        return Ok(Some(Outcome::Alarm(text.trim().to_owned())));
    }
    let log = NoteVerifier::parse(vkey).map_err(|e| Error::invalid("log_key", e.to_string()))?;
    if !settings.witness_key.exists() {
        SigningKey::generate(renkei_crypto::keys::KeyVersion::V1)
            .save(&settings.witness_key)
            .map_err(|e| Error::invalid("witness key", e.to_string()))?;
    }
    let key = SigningKey::load(&settings.witness_key)
        .map_err(|e| Error::invalid("witness key", e.to_string()))?;
    let history_path = state.path().join(HISTORY);
    let last: Option<Seen> = std::fs::read_to_string(&history_path)
        .ok()
        .and_then(|t| t.lines().last().map(str::to_owned))
        .map(|l| serde_json::from_str(&l))
        .transpose()
        .map_err(|e| Error::invalid("witness history", e.to_string()))?;
    let name = format!("renkei-witness/{}", settings.participant);
    let witness = Witness {
        log: &log,
        name: &name,
        key: &key,
    };
    let outcome = witness.contact(client, last.as_ref(), now).await?;
    match &outcome {
        // The history grows with the log, not with each contact.
        Outcome::Accepted { seen, .. } if last.as_ref().is_some_and(|l| l.note == seen.note) => {}
        Outcome::Accepted { seen, .. } => {
            let mut line = serde_json::to_string(seen)
                .map_err(|e| Error::invalid("witness history", e.to_string()))?;
            line.push('\n');
            append(&history_path, line.as_bytes())?;
        }
        Outcome::Alarm(reason) => {
            crate::state::write_atomic(
                &alarm_path,
                format!("{}: {reason}\n", now.to_rfc3339()).as_bytes(),
            )?;
        }
    }
    Ok(Some(outcome))
}

fn append(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(path))?;
    f.write_all(bytes).map_err(Error::io(path))?;
    f.sync_all().map_err(Error::io(path))
}
