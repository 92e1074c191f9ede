//! `client.toml`: the file a participant configures the client with, parsed strictly
//! (unknown fields refused) and validated into [`Settings`]; errors name the file and field.
//!
//! ```toml
//! hub_url = "https://hub.example.jp:8443"
//! participant = "phr:asmile"
//! ca = "pki/ca.pem"
//! cert = "phr-asmile.pem"
//! key = "phr-asmile.key"
//! grant_key = "grant.key"      # X25519 secret key (renkei-client init-keys)
//! record_key = "record.key"    # optional: a PHR app publishing its own records
//! state_dir = "state"
//! ```
//!
//! Relative paths are relative to the folder of the config file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use renkei_crypto::participant::ParticipantId;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::transport::{ClientConfig, HubAddress};

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    hub_url: String,
    participant: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    grant_key: PathBuf,
    #[serde(default)]
    record_key: Option<PathBuf>,
    state_dir: PathBuf,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    log_key: Option<String>,
    #[serde(default)]
    witness_key: Option<PathBuf>,
}

/// A validated client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The file it came from.
    pub file: PathBuf,
    /// `https://host:port` of the hub.
    pub hub_url: String,
    /// This participant.
    pub participant: ParticipantId,
    /// PEM CA of the hub's server certificate.
    pub ca: PathBuf,
    /// PEM client certificate chain.
    pub cert: PathBuf,
    /// PEM client key.
    pub key: PathBuf,
    /// X25519 secret key file for opening key grants.
    pub grant_key: PathBuf,
    /// Record key file of a PHR app publishing its own records.
    pub record_key: Option<PathBuf>,
    /// Where the cursor and the index of written files live.
    pub state_dir: PathBuf,
    /// Time allowed for one request attempt.
    pub timeout: Duration,
    /// Attempts per request.
    pub max_attempts: u32,
    /// The hub's transparency-log verifier key (C2SP vkey from `internet-hub audit key`),
    /// pinned: every contact witnesses the log with it.
    pub log_key: Option<String>,
    /// This client's Ed25519 witness key (default `witness.key` in the state folder,
    /// made on first use).
    pub witness_key: PathBuf,
}

impl Settings {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        Self::parse(&text, path)
    }

    /// Parses config text; `file` names it in errors and anchors relative paths.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error::Config {
            file: file.to_owned(),
            field: toml_field(&e),
            reason: e.message().to_owned(),
        })?;
        let bad = |field: &str, reason: String| Error::Config {
            file: file.to_owned(),
            field: field.to_owned(),
            reason,
        };
        HubAddress::parse(&raw.hub_url).map_err(|e| bad("hub_url", e.to_string()))?;
        let participant: ParticipantId = raw
            .participant
            .parse()
            .map_err(|e: renkei_crypto::participant::IdError| bad("participant", e.to_string()))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let path = |field: &str, p: &Path| -> Result<PathBuf> {
            if p.as_os_str().is_empty() {
                return Err(bad(field, "must not be empty".to_owned()));
            }
            Ok(base.join(p))
        };
        let timeout = raw.timeout_secs.unwrap_or(30);
        if !(1..=3600).contains(&timeout) {
            return Err(bad("timeout_secs", format!("`{timeout}` is not 1 to 3600")));
        }
        let max_attempts = raw
            .max_attempts
            .unwrap_or(RetryPolicy::default().max_attempts);
        if !(1..=20).contains(&max_attempts) {
            return Err(bad(
                "max_attempts",
                format!("`{max_attempts}` is not 1 to 20"),
            ));
        }
        if let Some(k) = &raw.log_key {
            renkei_crypto::tlog::note::NoteVerifier::parse(k)
                .map_err(|e| bad("log_key", e.to_string()))?;
        }
        let state_dir = path("state_dir", &raw.state_dir)?;
        let witness_key = match &raw.witness_key {
            Some(p) => path("witness_key", p)?,
            None => state_dir.join("witness.key"),
        };
        Ok(Settings {
            log_key: raw.log_key.clone(),
            witness_key,
            file: file.to_owned(),
            hub_url: raw.hub_url,
            participant,
            ca: path("ca", &raw.ca)?,
            cert: path("cert", &raw.cert)?,
            key: path("key", &raw.key)?,
            grant_key: path("grant_key", &raw.grant_key)?,
            record_key: raw
                .record_key
                .as_deref()
                .map(|p| path("record_key", p))
                .transpose()?,
            state_dir,
            timeout: Duration::from_secs(timeout),
            max_attempts,
        })
    }

    /// The transport configuration.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(
            &self.hub_url,
            self.ca.clone(),
            self.cert.clone(),
            self.key.clone(),
        );
        config.timeout = self.timeout;
        config.retry.max_attempts = self.max_attempts;
        config
    }

    /// The record key file, or an error naming the missing field.
    pub fn record_key_path(&self) -> Result<&Path> {
        self.record_key.as_deref().ok_or_else(|| Error::Config {
            file: self.file.clone(),
            field: "record_key".to_owned(),
            reason: "is required to publish records and answer key grants".to_owned(),
        })
    }
}

/// The field a TOML error is about, from its message (`missing field `x``,
/// `unknown field `x``), else the line it is on.
fn toml_field(e: &toml::de::Error) -> String {
    let message = e.message();
    if let Some(rest) = message.split('`').nth(1) {
        if message.contains("field") {
            return rest.to_owned();
        }
    }
    match e.span() {
        Some(span) => format!("at byte {}", span.start),
        None => "(file)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
hub_url = "https://127.0.0.1:8443"
participant = "phr:asmile"
ca = "pki/ca.pem"
cert = "phr.pem"
key = "phr.key"
grant_key = "grant.key"
state_dir = "state"
"#;

    #[test]
    fn parses_and_anchors_relative_paths() {
        let s = Settings::parse(GOOD, Path::new("/etc/renkei/client.toml")).unwrap();
        assert_eq!(s.participant.to_string(), "phr:asmile");
        assert_eq!(s.ca, Path::new("/etc/renkei/pki/ca.pem"));
        assert_eq!(s.state_dir, Path::new("/etc/renkei/state"));
        assert_eq!(s.record_key, None);
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert!(
            s.record_key_path()
                .unwrap_err()
                .to_string()
                .contains("record_key")
        );
        let with_abs = GOOD.replace("\"grant.key\"", "\"/keys/grant.key\"");
        let s = Settings::parse(&with_abs, Path::new("/etc/renkei/client.toml")).unwrap();
        assert_eq!(s.grant_key, Path::new("/keys/grant.key"));
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let file = Path::new("c.toml");
        let e = Settings::parse(&format!("{GOOD}colour = \"red\"\n"), file).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("c.toml") && text.contains("colour"), "{text}");
        let e = Settings::parse(&GOOD.replace("state_dir = \"state\"", ""), file).unwrap_err();
        assert!(e.to_string().contains("`state_dir`"), "{e}");
    }

    #[test]
    fn bad_values_are_named_by_field() {
        let file = Path::new("c.toml");
        let cases = [
            (GOOD.replace("phr:asmile", "vendor:asmile"), "participant"),
            (
                GOOD.replace("https://127.0.0.1:8443", "http://hub"),
                "hub_url",
            ),
            (GOOD.replace("\"phr.key\"", "\"\""), "key"),
            (format!("{GOOD}timeout_secs = 0\n"), "timeout_secs"),
            (format!("{GOOD}max_attempts = 99\n"), "max_attempts"),
        ];
        for (text, field) in cases {
            match Settings::parse(&text, file).unwrap_err() {
                Error::Config {
                    field: f, file: p, ..
                } => {
                    assert_eq!(f, field);
                    assert_eq!(p, file);
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
