//! Key set-up of a participant: `init-keys` makes the X25519 key-grant pair (and, for a
//! PHR app publishing its own records, a record key); loaders name the config field.

use std::path::{Path, PathBuf};

use renkei_crypto::grant::{RecipientPublicKey, RecipientSecretKey};
use renkei_crypto::keys::{KeyVersion, RecordKey};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::state::{create_private_dir, write_atomic};

/// What `init-keys` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeys {
    /// The X25519 secret key file (mode 0600).
    pub grant_key: PathBuf,
    /// The public key, base64, for `internet-hub participants add --grant-key`.
    pub grant_public: RecipientPublicKey,
    /// The record key file, when asked for.
    pub record_key: Option<PathBuf>,
}

/// Makes `grant.key` (and `grant.pub`, the public key in base64), and `record.key` when
/// `with_record_key`, in `dir`; refuses to overwrite an existing key.
pub fn init_keys(dir: &Path, with_record_key: bool) -> Result<NewKeys> {
    create_private_dir(dir)?;
    let grant_key = dir.join("grant.key");
    let secret = RecipientSecretKey::generate(KeyVersion::V1);
    secret
        .save(&grant_key)
        .map_err(Error::crypto(format!("saving `{}`", grant_key.display())))?;
    let grant_public = secret.public_key();
    write_atomic(
        &dir.join("grant.pub"),
        format!("{grant_public}\n").as_bytes(),
    )?;
    let record_key = if with_record_key {
        let path = dir.join("record.key");
        RecordKey::generate(KeyVersion::V1)
            .save(&path)
            .map_err(Error::crypto(format!("saving `{}`", path.display())))?;
        Some(path)
    } else {
        None
    };
    Ok(NewKeys {
        grant_key,
        grant_public,
        record_key,
    })
}

/// Loads the key-grant secret key named by `grant_key`.
pub fn load_grant_key(settings: &Settings) -> Result<RecipientSecretKey> {
    RecipientSecretKey::load(&settings.grant_key).map_err(|e| Error::Config {
        file: settings.file.clone(),
        field: "grant_key".into(),
        reason: e.to_string(),
    })
}

/// Loads the record key named by `record_key`.
pub fn load_record_key(settings: &Settings) -> Result<RecordKey> {
    RecordKey::load(settings.record_key_path()?).map_err(|e| Error::Config {
        file: settings.file.clone(),
        field: "record_key".into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_keys_writes_a_private_pair_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let made = init_keys(&dir, true).unwrap();
        let mode = std::fs::metadata(&made.grant_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = RecipientSecretKey::load(&made.grant_key).unwrap();
        assert_eq!(loaded.public_key(), made.grant_public);
        let public = std::fs::read_to_string(dir.join("grant.pub")).unwrap();
        assert_eq!(public.trim(), made.grant_public.to_base64());
        assert!(RecordKey::load(made.record_key.as_deref().unwrap()).is_ok());
        assert!(
            init_keys(&dir, false).is_err(),
            "an existing key is never overwritten"
        );
        assert_eq!(
            RecipientSecretKey::load(&made.grant_key)
                .unwrap()
                .public_key(),
            made.grant_public
        );
    }
}
