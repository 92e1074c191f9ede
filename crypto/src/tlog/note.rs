//! Checkpoints as C2SP signed notes (c2sp.org/tlog-checkpoint, c2sp.org/signed-note),
//! verifier keys, and witness cosignatures (c2sp.org/tlog-cosignature, `cosignature/v1`),
//! on top of the crates `signed_note` and `tlog_tiles`.
//!
//! The log signs with Ed25519 (key type 0x01) under its origin as key name; a witness
//! cosigns with Ed25519 (key type 0x04): its signature covers `cosignature/v1`, the
//! time, and the checkpoint body, and carries the time before the signature bytes.

use signed_note::{Note, VerifierList};

use super::{Hash, hash_from_base64, hash_to_base64};
use crate::error::{Error, Result};
use crate::sign::{Signature, SigningKey, VerifyingKey};

const ALG_ED25519: u8 = 0x01;
const ALG_COSIGNATURE: u8 = 0x04;

fn log_error(e: impl std::fmt::Display) -> Error {
    Error::Log(e.to_string())
}

/// A checkpoint's body: the log's origin, its size and its root, and the head of the
/// hub's consent ledger when it was signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The log's origin line (also the name of its key).
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// Root hash of the tree of `size` entries.
    pub root: Hash,
    /// The consent ledger's last entry, as the extension line [`LEDGER_LINE`].
    pub ledger: Option<LedgerHead>,
}

/// The opening of the extension line naming the consent ledger's head:
/// `renkei-consent-ledger <seq> <hex SHA-256 chain hash>`.
pub const LEDGER_LINE: &str = "renkei-consent-ledger";

/// The last entry of the consent ledger (its hash chain, `renkei_consent::ledger`) as of a
/// checkpoint: witnesses cosign it with the tree, so the ledger cannot be rewritten up to
/// it without `audit verify` finding a cosigned head that no longer matches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerHead {
    /// The entry's sequence number (from 1).
    pub seq: u64,
    /// Its chain hash, 64 lowercase hex digits.
    pub hash: String,
}

impl LedgerHead {
    fn line(&self) -> Result<String> {
        let hex = self.hash.len() == 64
            && self
                .hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(Error::Log(
                "the consent ledger hash is not 64 hex digits".into(),
            ));
        }
        Ok(format!("{LEDGER_LINE} {} {}\n", self.seq, self.hash))
    }

    /// The head an extension block names, if any. A ledger line that is not in the one
    /// form [`LedgerHead::line`] writes, or a second one, is an error: one head, one spelling.
    fn from_extension(extension: &str) -> Result<Option<LedgerHead>> {
        let mut lines = extension
            .lines()
            .filter(|l| l.split(' ').next() == Some(LEDGER_LINE));
        let Some(line) = lines.next() else {
            return Ok(None);
        };
        let bad = || Error::Log(format!("malformed `{LEDGER_LINE}` line"));
        if lines.next().is_some() {
            return Err(Error::Log(format!("more than one `{LEDGER_LINE}` line")));
        }
        let mut parts = line.split(' ').skip(1);
        let (Some(seq), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let head = LedgerHead {
            seq: seq.parse().map_err(|_| bad())?,
            hash: hash.to_owned(),
        };
        if head.line()? != format!("{line}\n") {
            return Err(bad());
        }
        Ok(Some(head))
    }
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n`, then the ledger line if any.
    pub fn body(&self) -> Result<String> {
        let extension = self.ledger.as_ref().map(LedgerHead::line).transpose()?;
        let cp = tlog_tiles::Checkpoint::new(
            &self.origin,
            self.size,
            self.root,
            extension.as_deref().unwrap_or(""),
        )
        .map_err(log_error)?;
        String::from_utf8(cp.to_bytes()).map_err(log_error)
    }

    /// Parses a note text (extension lines other than the ledger line are ignored).
    pub fn parse(text: &[u8]) -> Result<Self> {
        let cp = tlog_tiles::Checkpoint::from_bytes(text).map_err(log_error)?;
        Ok(Checkpoint {
            origin: cp.origin().to_owned(),
            size: cp.size(),
            root: *cp.hash(),
            ledger: LedgerHead::from_extension(cp.extension())?,
        })
    }

    /// The root as base64, as in the note.
    pub fn root_base64(&self) -> String {
        hash_to_base64(&self.root)
    }
}

fn key_id(name: &str, alg: u8, key: &VerifyingKey) -> u32 {
    let mut encoded = vec![alg];
    encoded.extend_from_slice(&key.to_bytes());
    signed_note::key_id(name, &encoded)
}

fn vkey_text(name: &str, alg: u8, key: &VerifyingKey) -> String {
    let mut encoded = vec![alg];
    encoded.extend_from_slice(&key.to_bytes());
    format!(
        "{name}+{:08x}+{}",
        key_id(name, alg, key),
        data_encoding::BASE64.encode(&encoded)
    )
}

/// `cosignature/v1\ntime <t>\n` followed by the checkpoint body: what a witness signs.
fn cosigned_message(time: u64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time}\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// Signs notes with an Ed25519 key under a key name: the log's checkpoints, or (with a
/// time) a witness's cosignatures.
#[derive(Debug)]
pub struct NoteSigner<'a> {
    name: String,
    key: &'a SigningKey,
    cosign_time: Option<u64>,
}

impl<'a> NoteSigner<'a> {
    /// The log's signer: `name` is its origin.
    pub fn log(name: &str, key: &'a SigningKey) -> Result<Self> {
        Self::new(name, key, None)
    }

    /// A witness's cosigner, cosigning as of `time` (seconds since the epoch).
    pub fn witness(name: &str, key: &'a SigningKey, time: u64) -> Result<Self> {
        Self::new(name, key, Some(time))
    }

    fn new(name: &str, key: &'a SigningKey, cosign_time: Option<u64>) -> Result<Self> {
        if !signed_note::is_key_name_valid(name) {
            return Err(Error::Log(format!("`{name}` is not a valid key name")));
        }
        Ok(NoteSigner {
            name: name.to_owned(),
            key,
            cosign_time,
        })
    }

    fn alg(&self) -> u8 {
        if self.cosign_time.is_some() {
            ALG_COSIGNATURE
        } else {
            ALG_ED25519
        }
    }

    /// The verifier key (`name+hexid+base64(type||key)`) for this signer.
    pub fn vkey(&self) -> String {
        vkey_text(&self.name, self.alg(), &self.key.verifying_key())
    }
}

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        key_id(&self.name, self.alg(), &self.key.verifying_key())
    }

    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(match self.cosign_time {
            None => self.key.sign(msg).to_bytes().to_vec(),
            Some(t) => {
                let mut out = t.to_be_bytes().to_vec();
                out.extend_from_slice(&self.key.sign(&cosigned_message(t, msg)).to_bytes());
                out
            }
        })
    }
}

/// Verifies one key's signatures on notes, parsed from its verifier key. Ed25519
/// verification is strict ([`VerifyingKey::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
    cosignature: bool,
}

impl NoteVerifier {
    /// Parses a verifier key of type Ed25519 (0x01, a log) or cosignature/v1 (0x04, a
    /// witness).
    pub fn parse(vkey: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Log(format!(
                "verifier key `{}`: {why}",
                crate::error::shorten(vkey)
            ))
        };
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+id+key"));
        };
        if !signed_note::is_key_name_valid(name) || id.len() != 8 {
            return Err(bad("bad name or key id"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("bad key id"))?;
        let encoded = data_encoding::BASE64
            .decode(key.as_bytes())
            .map_err(|_| bad("key is not base64"))?;
        let Some((&alg, raw)) = encoded.split_first() else {
            return Err(bad("empty key"));
        };
        let cosignature = match alg {
            ALG_ED25519 => false,
            ALG_COSIGNATURE => true,
            _ => return Err(bad("unknown key type")),
        };
        let raw = <[u8; 32]>::try_from(raw).map_err(|_| bad("key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&raw)?;
        if signed_note::key_id(name, &encoded) != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            id,
            key,
            cosignature,
        })
    }

    /// The verifier of a log `name` (its origin) with the Ed25519 public key `key`.
    pub fn log(name: &str, key: &VerifyingKey) -> Result<Self> {
        Self::parse(&vkey_text(name, ALG_ED25519, key))
    }

    /// The key name (a log's origin, a witness's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key text.
    pub fn vkey(&self) -> String {
        let alg = if self.cosignature {
            ALG_COSIGNATURE
        } else {
            ALG_ED25519
        };
        vkey_text(&self.name, alg, &self.key)
    }

    /// Whether this is a witness's cosignature key.
    pub fn is_cosignature(&self) -> bool {
        self.cosignature
    }
}

impl signed_note::Verifier for NoteVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let (message, sig) = if self.cosignature {
            let Some((time, sig)) = sig.split_first_chunk::<8>() else {
                return false;
            };
            (cosigned_message(u64::from_be_bytes(*time), msg), sig)
        } else {
            (msg.to_vec(), sig)
        };
        let Ok(sig) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        self.key
            .verify(&message, &Signature::from_bytes(sig))
            .is_ok()
    }
}

/// Signs a checkpoint: the whole signed note, text and signature line.
pub fn sign_checkpoint(cp: &Checkpoint, log: &NoteSigner<'_>) -> Result<String> {
    if log.cosign_time.is_some() || log.name != cp.origin {
        return Err(Error::Log(
            "a checkpoint is signed by the log's key, named as its origin".into(),
        ));
    }
    let mut note = Note::new(cp.body()?.as_bytes(), &[]).map_err(log_error)?;
    note.add_sigs(&[log]).map_err(log_error)?;
    String::from_utf8(note.to_bytes()).map_err(log_error)
}

/// Opens a signed checkpoint: a valid signature by `log` (whose name must be the
/// origin) and a well-formed body. Other signatures (cosignatures) are ignored here.
pub fn open_checkpoint(signed: &str, log: &NoteVerifier) -> Result<Checkpoint> {
    if log.cosignature {
        return Err(Error::Log("a log key is not a cosignature key".into()));
    }
    let note = Note::from_bytes(signed.as_bytes()).map_err(log_error)?;
    let known = VerifierList::new(vec![Box::new(log.clone())]);
    note.verify(&known)
        .map_err(|e| Error::Log(format!("checkpoint not signed by `{}`: {e}", log.name)))?;
    let cp = Checkpoint::parse(note.text())?;
    if cp.origin != log.name {
        return Err(Error::Log(format!(
            "checkpoint origin `{}` is not the pinned log `{}`",
            crate::error::shorten(&cp.origin),
            log.name
        )));
    }
    Ok(cp)
}

/// `signed` with only the signature of `log` kept (a witness keeps what the log signed,
/// not whatever the hub appended to it).
pub fn log_signed_only(signed: &str, log: &NoteVerifier) -> Result<String> {
    let note = Note::from_bytes(signed.as_bytes()).map_err(log_error)?;
    let known = VerifierList::new(vec![Box::new(log.clone())]);
    let (verified, _) = note
        .verify(&known)
        .map_err(|e| Error::Log(format!("checkpoint not signed by `{}`: {e}", log.name)))?;
    let kept = Note::new(note.text(), &verified).map_err(log_error)?;
    String::from_utf8(kept.to_bytes()).map_err(log_error)
}

/// The note text of a signed note (without its signatures).
pub fn note_text(signed: &str) -> Result<String> {
    let note = Note::from_bytes(signed.as_bytes()).map_err(log_error)?;
    String::from_utf8(note.text().to_vec()).map_err(log_error)
}

/// A witness's cosignature of a signed checkpoint: one signature line (`— name sig\n`).
pub fn cosign(signed: &str, witness: &NoteSigner<'_>) -> Result<String> {
    if witness.cosign_time.is_none() {
        return Err(Error::Log("a cosignature needs a witness signer".into()));
    }
    let text = note_text(signed)?;
    let mut note = Note::new(text.as_bytes(), &[]).map_err(log_error)?;
    note.add_sigs(&[witness]).map_err(log_error)?;
    let bytes = note.to_bytes();
    let line = bytes
        .get(text.len() + 1..)
        .ok_or_else(|| Error::Log("cosignature line missing".into()))?;
    String::from_utf8(line.to_vec()).map_err(log_error)
}

/// Checks a cosignature line over a checkpoint's note by `witness`; returns the time it
/// names (seconds since the epoch).
pub fn check_cosignature(signed: &str, line: &str, witness: &NoteVerifier) -> Result<u64> {
    if !witness.cosignature {
        return Err(Error::Log("not a cosignature key".into()));
    }
    let mut text = note_text(signed)?;
    text.push('\n');
    text.push_str(line.trim_end_matches('\n'));
    text.push('\n');
    let note = Note::from_bytes(text.as_bytes()).map_err(log_error)?;
    let known = VerifierList::new(vec![Box::new(witness.clone())]);
    let (verified, _) = note
        .verify(&known)
        .map_err(|e| Error::Log(format!("cosignature by `{}`: {e}", witness.name)))?;
    let sig = verified
        .first()
        .ok_or_else(|| Error::Log("no cosignature".into()))?;
    let (time, _) = sig
        .signature()
        .split_first_chunk::<8>()
        .ok_or_else(|| Error::Log("short cosignature".into()))?;
    Ok(u64::from_be_bytes(*time))
}

/// Parses a base64 root hash (as in a checkpoint).
pub fn parse_root(text: &str) -> Result<Hash> {
    hash_from_base64(text)
}
