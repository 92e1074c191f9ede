//! Rotation of the hub's audit signing key: new key versions (`signing-vN.key`), the
//! list of old public keys `audit verify` still trusts (`signing-trusted.txt`), and the
//! audit entries that chain checkpoints across keys.
//!
//! At rotation the old key endorses the new one: an `audit.key_rotate` entry naming the
//! new key's fingerprint is appended and signed by a checkpoint under the old key. Later,
//! the first checkpoint under the new key covers an `audit.key_change` entry naming the
//! previous key's fingerprint ([`super::checkpoint`] appends it), and [`super::verify`]
//! rejects a key change without one.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use renkei_crypto::keys::KeyVersion;
use renkei_crypto::sign::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::{Checkpoint, Entry};
use crate::db::Db;
use crate::error::{Error, Result};

/// The file, beside the signing key, listing old public keys that stay trusted.
pub const TRUSTED_FILE: &str = "signing-trusted.txt";

/// `ed25519:` and the SHA-256 of the raw public key, in hex.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!("ed25519:{}", hex::encode(Sha256::digest(key.to_bytes())))
}

/// The fingerprint of a base64 public key as stored in a checkpoint.
fn fingerprint_b64(key: &str) -> String {
    VerifyingKey::from_base64(key)
        .map(|k| fingerprint(&k))
        .unwrap_or_else(|_| "invalid-key".to_owned())
}

const KEY_CHANGE: &str = "audit.key_change";

/// The entry the first checkpoint under `new` covers: it names the previous key.
pub(crate) fn key_change_entry(new: &str, previous: &str) -> Entry {
    Entry {
        reason: format!("previous key {}", fingerprint_b64(previous)),
        ..Entry::allow("hub", KEY_CHANGE, &fingerprint_b64(new))
    }
}

/// A stored checkpoint signed by another key than the checkpoint before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyChange {
    /// The checkpoint's entry.
    pub(crate) seq: i64,
    new: String,
    previous: String,
}

impl KeyChange {
    /// Whether `entry` (the one at [`KeyChange::seq`]) names this change; else why not.
    pub(crate) fn check(&self, entry: &Entry) -> std::result::Result<(), String> {
        let expected = key_change_entry(&self.new, &self.previous);
        if *entry == expected {
            Ok(())
        } else {
            Err(format!(
                "checkpoint at entry {} changes the signing key to {} without an `{KEY_CHANGE}` \
                 entry naming the previous key {}",
                self.seq,
                fingerprint_b64(&self.new),
                fingerprint_b64(&self.previous)
            ))
        }
    }
}

/// The key changes between consecutive checkpoints (ordered by `seq`).
pub(crate) fn key_changes(checkpoints: &[Checkpoint]) -> Vec<KeyChange> {
    checkpoints
        .windows(2)
        .filter_map(|pair| match pair {
            [a, b] if a.public_key != b.public_key => Some(KeyChange {
                seq: b.seq,
                new: b.public_key.clone(),
                previous: a.public_key.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// `signing-trusted.txt` beside the signing key file `signing`.
pub fn trusted_path(signing: &Path) -> PathBuf {
    signing.with_file_name(TRUSTED_FILE)
}

/// The keys `audit verify` trusts: `current` and every key listed in the trusted file
/// beside `signing` (absent file: none).
pub fn trusted_keys(signing: &Path, current: &VerifyingKey) -> Result<Vec<VerifyingKey>> {
    let mut keys = vec![*current];
    for (_, key) in read_trusted(&trusted_path(signing))? {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Parses a trusted-keys file: `# comments`, blank lines, and lines `vN <base64 key>`.
pub fn read_trusted(path: &Path) -> Result<Vec<(KeyVersion, VerifyingKey)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::config_from(format!("`{}`", path.display()), e)),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("`{}` line {}", path.display(), n + 1);
        let mut fields = line.split_whitespace();
        let (Some(version), Some(key), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(Error::config(format!(
                "{at}: expected `vN <base64 public key>`"
            )));
        };
        let version = version
            .parse()
            .map_err(|e| Error::config_from(format!("{at}: version `{version}`"), e))?;
        let key = VerifyingKey::from_base64(key)
            .map_err(|e| Error::config_from(format!("{at}: public key"), e))?;
        out.push((version, key));
    }
    Ok(out)
}

/// Adds `key` to the trusted file (created 0644: public keys only) unless listed.
fn add_trusted(path: &Path, version: KeyVersion, key: &VerifyingKey) -> Result<()> {
    if read_trusted(path)?.iter().any(|(_, k)| k == key) {
        return Ok(());
    }
    let fresh = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::config_from(format!("`{}`", path.display()), e))?;
    let mut text = String::new();
    if fresh {
        text.push_str(
            "# Public keys this hub signed audit checkpoints with before; `audit verify`\n\
             # trusts them and the current key. One per line: version, base64 Ed25519 key.\n",
        );
    }
    text.push_str(&format!("{version} {}\n", key.to_base64()));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::config_from(format!("`{}`", path.display()), e))
}

/// What [`rotate`] did.
#[derive(Debug)]
pub struct Rotated {
    /// The new key file (`signing-vN.key`, mode 0600).
    pub path: PathBuf,
    /// The new key's version.
    pub version: KeyVersion,
    /// The new public key (for agents that pin it).
    pub public_key: VerifyingKey,
    /// The checkpoint in which the old key endorses the new one.
    pub endorsement: Checkpoint,
}

/// Creates the next signing key version beside `signing` (the current key's file),
/// lists the current public key as trusted, and has the current key endorse the new
/// one in the audit log. The hub goes on signing with `current` until its config
/// names the new file.
pub async fn rotate(
    db: &Db,
    current: &SigningKey,
    signing: &Path,
    now: DateTime<Utc>,
) -> Result<Rotated> {
    let trusted = trusted_path(signing);
    let version = next_version(signing, current.version(), &read_trusted(&trusted)?)?;
    let path = signing.with_file_name(format!("signing-{version}.key"));
    let new = SigningKey::generate(version);
    new.save(&path)
        .map_err(|e| Error::config_from("new signing key", e))?;
    add_trusted(&trusted, current.version(), &current.verifying_key())?;
    let entry = Entry {
        reason: format!(
            "{version} replaces {} {}",
            current.version(),
            fingerprint(&current.verifying_key())
        ),
        ..Entry::allow(
            "admin",
            "audit.key_rotate",
            &fingerprint(&new.verifying_key()),
        )
    };
    super::append_now(db, now, &entry).await?;
    let endorsement = match super::checkpoint(db, current, now).await? {
        Some(cp) => cp,
        // Another instance signed in between: its checkpoint covers the entry.
        None => super::latest_checkpoint(db)
            .await?
            .ok_or_else(|| Error::internal("no checkpoint after rotation"))?,
    };
    Ok(Rotated {
        path,
        version,
        public_key: new.verifying_key(),
        endorsement,
    })
}

/// One above every version in use: the current key, the trusted list, `signing-v*.key` files.
fn next_version(
    signing: &Path,
    current: KeyVersion,
    trusted: &[(KeyVersion, VerifyingKey)],
) -> Result<KeyVersion> {
    let mut highest = trusted
        .iter()
        .map(|(v, _)| *v)
        .fold(current, KeyVersion::max);
    let dir = signing.parent().unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::config_from(format!("`{}`", dir.display()), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let version = name
            .to_str()
            .and_then(|n| n.strip_prefix("signing-"))
            .and_then(|n| n.strip_suffix(".key"))
            .and_then(|v| v.parse::<KeyVersion>().ok());
        highest = highest.max(version.unwrap_or(highest));
    }
    highest
        .get()
        .checked_add(1)
        .map(KeyVersion::new)
        .ok_or_else(|| Error::config("signing key version overflows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(seq: i64, key: &SigningKey) -> Checkpoint {
        Checkpoint {
            seq,
            head_hash: String::new(),
            at: DateTime::<Utc>::UNIX_EPOCH,
            key_version: key.version().to_string(),
            public_key: key.verifying_key().to_base64(),
            signature: String::new(),
            note: String::new(),
        }
    }

    #[test]
    fn key_changes_are_found_between_consecutive_checkpoints() {
        let (a, b) = (
            SigningKey::generate(KeyVersion::V1),
            SigningKey::generate(KeyVersion::new(2)),
        );
        let changes = key_changes(&[cp(3, &a), cp(5, &a), cp(9, &b), cp(12, &b), cp(20, &a)]);
        assert_eq!(
            changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![9, 20]
        );
        let change = &changes[0];
        let good = key_change_entry(&cp(0, &b).public_key, &cp(0, &a).public_key);
        assert!(good.reason.contains(&fingerprint(&a.verifying_key())));
        assert_eq!(change.check(&good), Ok(()));
        let swapped = key_change_entry(&cp(0, &a).public_key, &cp(0, &b).public_key);
        assert!(change.check(&swapped).unwrap_err().contains("previous key"));
        assert!(change.check(&Entry::allow("hub", "read", "x")).is_err());
    }

    #[test]
    fn trusted_file_round_trip_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let signing = dir.path().join("signing.key");
        let (a, b) = (
            SigningKey::generate(KeyVersion::V1),
            SigningKey::generate(KeyVersion::new(2)),
        );
        let path = trusted_path(&signing);
        assert!(read_trusted(&path).unwrap().is_empty());
        add_trusted(&path, KeyVersion::V1, &a.verifying_key()).unwrap();
        add_trusted(&path, KeyVersion::V1, &a.verifying_key()).unwrap();
        assert_eq!(read_trusted(&path).unwrap().len(), 1, "listed once");
        let keys = trusted_keys(&signing, &b.verifying_key()).unwrap();
        assert_eq!(keys, vec![b.verifying_key(), a.verifying_key()]);
        assert_eq!(
            next_version(&signing, KeyVersion::V1, &read_trusted(&path).unwrap()).unwrap(),
            KeyVersion::new(2)
        );
        std::fs::write(dir.path().join("signing-v7.key"), "x").unwrap();
        assert_eq!(
            next_version(&signing, KeyVersion::V1, &[]).unwrap(),
            KeyVersion::new(8)
        );

        std::fs::write(&path, "# c\n\nv1 AAAA\n").unwrap();
        let e = read_trusted(&path).unwrap_err().to_string();
        assert!(e.contains(TRUSTED_FILE) && e.contains("line 3"), "{e}");
        std::fs::write(&path, format!("1 {}\n", a.verifying_key().to_base64())).unwrap();
        let e = read_trusted(&path).unwrap_err().to_string();
        assert!(e.contains("version `1`"), "{e}");
    }
}
