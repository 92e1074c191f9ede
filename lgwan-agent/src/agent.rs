//! The agent's keys and catalog: `init` creates them, [`Agent::load`] reads
//! them back, and [`Agent::tokenize`] turns a person's identifiers into the
//! subject token (the only name of a resident that leaves the agent).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use renkei_crypto::grant::RecipientSecretKey;
use renkei_crypto::identity::Identity;
use renkei_crypto::keys::{KeyVersion, RecordKey, TokenKey};
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::token::{SubjectToken, subject_token};
use renkei_policies::Catalog;

use crate::config::{Config, initial_config};
use crate::domain::{PersonIdentity, Sex};
use crate::error::{Error, Result};

/// What `init` created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initialized {
    /// The config file.
    pub config: PathBuf,
    /// The enrollment public key (base64), to register with the hub.
    pub enrollment_public_key: String,
}

/// Creates the keys (mode 0600, version 1) and `agent.toml` in `dir`; refuses
/// to overwrite any of them.
pub fn init(dir: &Path, source: &ParticipantId) -> Result<Initialized> {
    let config = dir.join("agent.toml");
    if config.exists() {
        return Err(Error::Invalid {
            field: "directory",
            value: dir.display().to_string(),
            reason: "already holds an agent.toml".into(),
        });
    }
    let keys = dir.join("keys");
    fs::create_dir_all(&keys).map_err(|e| Error::io(&keys, e))?;
    TokenKey::generate(KeyVersion::V1).save(&keys.join("token.key"))?;
    RecordKey::generate(KeyVersion::V1).save(&keys.join("record.key"))?;
    let enrollment = RecipientSecretKey::generate(KeyVersion::V1);
    enrollment.save(&keys.join("enrollment.key"))?;
    let public = enrollment.public_key().to_base64();
    let public_path = keys.join("enrollment.pub");
    fs::write(&public_path, format!("{public}\n")).map_err(|e| Error::io(&public_path, e))?;
    fs::write(&config, initial_config(source)).map_err(|e| Error::io(&config, e))?;
    Ok(Initialized {
        config,
        enrollment_public_key: public,
    })
}

/// A loaded agent: config, keys and catalog. Cheap to clone: clones share the keys.
#[derive(Debug, Clone)]
pub struct Agent {
    /// The validated configuration.
    pub config: Config,
    token_key: Arc<TokenKey>,
    record_key: Arc<RecordKey>,
    enrollment_key: Arc<RecipientSecretKey>,
    catalog: Arc<Catalog>,
}

impl Agent {
    /// Loads the config at `path`, its keys and its catalog, and checks that
    /// every table mapping names a catalog category.
    pub fn load(path: &Path) -> Result<Agent> {
        let config = Config::load(path)?;
        let token_key = TokenKey::load(&config.keys.token)?;
        let record_key = RecordKey::load(&config.keys.record)?;
        let enrollment_key = RecipientSecretKey::load(&config.keys.enrollment)?;
        let catalog = match &config.catalog {
            Some(file) => Catalog::load(file)?,
            None => Catalog::embedded()?,
        };
        for table in &config.tables {
            if !catalog.is_category(&table.category) {
                return Err(Error::Config {
                    path: config.path.clone(),
                    reason: format!(
                        "tables `{}`: category `{}` is not in the catalog",
                        table.name, table.category
                    ),
                });
            }
        }
        Ok(Agent {
            config,
            token_key: Arc::new(token_key),
            record_key: Arc::new(record_key),
            enrollment_key: Arc::new(enrollment_key),
            catalog: Arc::new(catalog),
        })
    }

    /// The catalog in use.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The record master key.
    pub fn record_key(&self) -> &RecordKey {
        &self.record_key
    }

    /// The enrollment secret key (opens identifiers sealed by PHR apps).
    pub fn enrollment_key(&self) -> &RecipientSecretKey {
        &self.enrollment_key
    }

    /// The subject token and normalized 枝番 of a person.
    pub fn tokenize(&self, person: &PersonIdentity) -> Result<(SubjectToken, Option<String>)> {
        self.tokenize_identity(&Identity {
            insurer_number: person.insurer.clone(),
            symbol: person.symbol.clone(),
            number: person.number.clone(),
            birth_date: person.birth.format("%Y-%m-%d").to_string(),
            sex: match person.sex {
                Sex::Male => renkei_crypto::identity::Sex::Male,
                Sex::Female => renkei_crypto::identity::Sex::Female,
            },
            branch: person.branch.clone(),
        })
    }

    /// The subject token and normalized 枝番 of identifiers typed by staff or
    /// opened from an enrollment request.
    pub fn tokenize_identity(&self, identity: &Identity) -> Result<(SubjectToken, Option<String>)> {
        let canonical = identity.canonical()?;
        let branch = identity.branch()?;
        Ok((subject_token(&self.token_key, &canonical), branch))
    }
}
