//! Versioned agent keys. Each of `K_rec` and `K_tok` is the key file named in
//! `agent.toml` (`keys/record.key`, `keys/token.key`, usually version 1) plus the
//! versions `lgwan-agent keys rotate-…` added beside it (`record-v2.key`,
//! `token-v2.key`, …). Every file is checked: its name's version must be the version
//! inside. Which token version tokenizes is kept in `token-active` beside the token
//! key (absent: the configured key), so a new token key can be made long before it is
//! switched on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use renkei_crypto::keys::{KeyVersion, RecordKey, TokenKey};

use crate::error::{Error, Result};

/// A key kind that comes in versions, in files `<stem>-v<N>.key`.
pub trait VersionedKey: Sized {
    /// The file stem of rotated versions: `record`, `token`.
    const STEM: &'static str;
    /// Loads a key file (permissions and kind checked).
    fn load_file(path: &Path) -> Result<Self>;
    /// A fresh random key of `version`.
    fn fresh(version: KeyVersion) -> Self;
    /// Saves to a new file (mode 0600, never overwriting).
    fn save_file(&self, path: &Path) -> Result<()>;
    /// The key's version.
    fn key_version(&self) -> KeyVersion;
}

macro_rules! versioned {
    ($ty:ty, $stem:literal) => {
        impl VersionedKey for $ty {
            const STEM: &'static str = $stem;
            fn load_file(path: &Path) -> Result<Self> {
                Ok(<$ty>::load(path)?)
            }
            fn fresh(version: KeyVersion) -> Self {
                <$ty>::generate(version)
            }
            fn save_file(&self, path: &Path) -> Result<()> {
                Ok(self.save(path)?)
            }
            fn key_version(&self) -> KeyVersion {
                self.version()
            }
        }
    };
}

versioned!(RecordKey, "record");
versioned!(TokenKey, "token");

/// Every version of one key kind, by version.
#[derive(Debug)]
pub struct KeyRing<K> {
    keys: BTreeMap<KeyVersion, Arc<K>>,
    configured: Arc<K>,
    newest: Arc<K>,
}

impl<K: VersionedKey> KeyRing<K> {
    /// Loads the configured key file and every `<stem>-vN.key` beside it.
    pub fn load(configured: &Path) -> Result<Self> {
        let first = Arc::new(K::load_file(configured)?);
        let mut keys = BTreeMap::from([(first.key_version(), first.clone())]);
        // The configured file may itself be a rotated version (`token-v2.key` once the
        // first key is retired): it is not its own sibling.
        let own = configured.file_name();
        for (version, path) in siblings::<K>(configured)? {
            if path.file_name() == own {
                continue;
            }
            let key = K::load_file(&path)?;
            let invalid = |reason: String| Error::Invalid {
                field: "key file",
                value: path.display().to_string(),
                reason,
            };
            if key.key_version() != version {
                return Err(invalid(format!(
                    "holds version {}, its name says {version}",
                    key.key_version()
                )));
            }
            if keys.insert(version, Arc::new(key)).is_some() {
                return Err(invalid(format!(
                    "version {version} is also the configured `{}`",
                    configured.display()
                )));
            }
        }
        let newest = keys
            .values()
            .next_back()
            .cloned()
            .unwrap_or_else(|| first.clone());
        Ok(KeyRing {
            keys,
            configured: first,
            newest,
        })
    }

    /// The key of `version`, if the agent holds it.
    pub fn get(&self, version: KeyVersion) -> Option<&K> {
        self.keys.get(&version).map(AsRef::as_ref)
    }

    /// The configured key (the first version).
    pub fn configured(&self) -> &K {
        &self.configured
    }

    /// The highest version.
    pub fn newest(&self) -> &K {
        &self.newest
    }

    /// Every version held, lowest first.
    pub fn versions(&self) -> Vec<KeyVersion> {
        self.keys.keys().copied().collect()
    }

    /// Every key, lowest version first.
    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.keys.values().map(AsRef::as_ref)
    }
}

/// The `<stem>-vN.key` files beside `configured`, with their versions.
fn siblings<K: VersionedKey>(configured: &Path) -> Result<Vec<(KeyVersion, PathBuf)>> {
    let dir = configured.parent().unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let prefix = format!("{}-", K::STEM);
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let version = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".key"))
            .and_then(|v| v.parse::<KeyVersion>().ok());
        if let Some(v) = version {
            out.push((v, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Creates the next version of the key whose configured file is `configured`, as
/// `<stem>-vN.key` beside it. Returns the version and the file.
pub fn rotate<K: VersionedKey>(configured: &Path) -> Result<(KeyVersion, PathBuf)> {
    let ring = KeyRing::<K>::load(configured)?;
    let version = ring
        .newest()
        .key_version()
        .get()
        .checked_add(1)
        .map(KeyVersion::new)
        .ok_or_else(|| Error::Invalid {
            field: "key version",
            value: ring.newest().key_version().to_string(),
            reason: "cannot go higher".into(),
        })?;
    let path = configured.with_file_name(format!("{}-{version}.key", K::STEM));
    K::fresh(version).save_file(&path)?;
    Ok((version, path))
}

/// `token-active` beside the configured token key.
pub fn token_active_path(token: &Path) -> PathBuf {
    token.with_file_name("token-active")
}

/// The token version switched on with [`activate_token`], if any.
pub fn read_active_token(token: &Path) -> Result<Option<KeyVersion>> {
    let path = token_active_path(token);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|e: renkei_crypto::Error| Error::Invalid {
                field: "active token version",
                value: path.display().to_string(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Makes `version` (which must exist) the token version that tokenizes, atomically.
pub fn activate_token(token: &Path, ring: &KeyRing<TokenKey>, version: KeyVersion) -> Result<()> {
    if ring.get(version).is_none() {
        return Err(Error::Invalid {
            field: "token key version",
            value: version.to_string(),
            reason: format!("no such key beside `{}`", token.display()),
        });
    }
    let path = token_active_path(token);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{version}\n")).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_load_rotated_versions_and_check_names() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record.key");
        RecordKey::generate(KeyVersion::V1).save(&record).unwrap();
        let ring = KeyRing::<RecordKey>::load(&record).unwrap();
        assert_eq!(ring.versions(), vec![KeyVersion::V1]);
        let (v2, p2) = rotate::<RecordKey>(&record).unwrap();
        assert_eq!(
            (v2, p2.file_name().unwrap()),
            (KeyVersion::new(2), "record-v2.key".as_ref())
        );
        let (v3, _) = rotate::<RecordKey>(&record).unwrap();
        let ring = KeyRing::<RecordKey>::load(&record).unwrap();
        assert_eq!(ring.versions(), vec![KeyVersion::V1, v2, v3]);
        assert_eq!(ring.newest().version(), v3);
        assert_eq!(ring.configured().version(), KeyVersion::V1);
        // A token key beside it is not a record key version.
        TokenKey::generate(KeyVersion::new(5))
            .save(&dir.path().join("token-v5.key"))
            .unwrap();
        assert_eq!(
            KeyRing::<RecordKey>::load(&record)
                .unwrap()
                .versions()
                .len(),
            3
        );

        // A file whose name lies about its version is refused.
        RecordKey::generate(KeyVersion::new(4))
            .save(&dir.path().join("record-v9.key"))
            .unwrap();
        let e = KeyRing::<RecordKey>::load(&record).unwrap_err().to_string();
        assert!(
            e.contains("record-v9.key") && e.contains("holds version v4"),
            "{e}"
        );
    }

    #[test]
    fn token_activation_needs_an_existing_version() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token.key");
        TokenKey::generate(KeyVersion::V1).save(&token).unwrap();
        assert_eq!(read_active_token(&token).unwrap(), None);
        rotate::<TokenKey>(&token).unwrap();
        let ring = KeyRing::<TokenKey>::load(&token).unwrap();
        let e = activate_token(&token, &ring, KeyVersion::new(3))
            .unwrap_err()
            .to_string();
        assert!(e.contains("v3"), "{e}");
        activate_token(&token, &ring, KeyVersion::new(2)).unwrap();
        assert_eq!(read_active_token(&token).unwrap(), Some(KeyVersion::new(2)));
        // Retiring the first key: the configuration names `token-v2.key`, the only one.
        std::fs::rename(&token, dir.path().join("retired.old")).unwrap();
        let v2 = dir.path().join("token-v2.key");
        let ring = KeyRing::<TokenKey>::load(&v2).unwrap();
        assert_eq!(ring.versions(), vec![KeyVersion::new(2)]);
        assert_eq!(read_active_token(&v2).unwrap(), Some(KeyVersion::new(2)));
        let (v3, p3) = rotate::<TokenKey>(&v2).unwrap();
        assert_eq!(
            (v3, p3),
            (KeyVersion::new(3), dir.path().join("token-v3.key"))
        );
        std::fs::write(token_active_path(&token), "2\n").unwrap();
        assert!(read_active_token(&token).is_err());
    }
}
