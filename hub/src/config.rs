//! `hub.toml`: serde structs with `deny_unknown_fields` ([`HubFile`]) → a validated
//! runtime config with typed values ([`HubConfig`]).
//! Relative paths are resolved against the config file's folder; every error names
//! the file and the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubFile {
    /// `sqlite://hub.db` (default) or `postgres://…`.
    #[serde(default = "default_db")]
    pub database_url: String,
    /// Folder with catalog.toml, schema and *.cedar (default: the bundled policies).
    #[serde(default)]
    pub policies_dir: Option<PathBuf>,
    /// Listen addresses.
    #[serde(default)]
    pub listen: Listen,
    /// Server certificate and participant CA.
    pub tls: Tls,
    /// Hub secret keys.
    pub keys: Keys,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Audit checkpoints.
    #[serde(default)]
    pub audit: Audit,
    /// `text` (default) or `json` logs.
    #[serde(default = "default_log")]
    pub log_format: String,
}

/// Listen addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Participant API (mTLS).
    pub participant: String,
    /// Resident portal (HTTPS).
    pub portal: String,
    /// Admin endpoints (plain HTTP; keep it on loopback).
    pub admin: String,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            participant: "0.0.0.0:8443".into(),
            portal: "0.0.0.0:8444".into(),
            admin: "127.0.0.1:9090".into(),
        }
    }
}

/// TLS files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM, mode 0600).
    pub key: PathBuf,
    /// Participant CA (PEM).
    pub client_ca: PathBuf,
    /// CRLs of the participant CA (PEM).
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// The resident portal's certificate chain (PEM), publicly trusted (for example from
    /// an ACME CA); `cert` when absent. Reloaded on SIGHUP like the others.
    #[serde(default)]
    pub portal_cert: Option<PathBuf>,
    /// The portal certificate's private key (PEM, mode 0600); `key` when absent.
    #[serde(default)]
    pub portal_key: Option<PathBuf>,
}

impl Tls {
    /// The portal's certificate chain and key: its own pair, else the participant API's.
    pub fn portal_pair(&self) -> (PathBuf, PathBuf) {
        (
            self.portal_cert
                .clone()
                .unwrap_or_else(|| self.cert.clone()),
            self.portal_key.clone().unwrap_or_else(|| self.key.clone()),
        )
    }
}

/// Secret key files (mode 0600).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// K_hub_pseudonym.
    pub pseudonym: PathBuf,
    /// Ed25519 audit/receipt signing key.
    pub signing: PathBuf,
    /// Pepper for receipt-code hashes.
    pub receipt_pepper: PathBuf,
}

/// Limits.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most records or grants per batch.
    pub max_batch: usize,
    /// Most items per feed page.
    pub max_page: i64,
    /// Most open connections per listener.
    pub max_connections: usize,
    /// Most open connections per listener from one client address (an IPv6 /64 counts
    /// as one address).
    pub max_connections_per_address: usize,
    /// TLS handshake timeout (s).
    pub handshake_timeout_secs: u64,
    /// Request header timeout (s); slow clients are dropped.
    pub header_timeout_secs: u64,
    /// Whole-request timeout including the body (s).
    pub request_timeout_secs: u64,
    /// Sustained requests per second per participant.
    pub rate_per_second: u32,
    /// Burst per participant.
    pub rate_burst: u32,
    /// How long an enrollment waits for its source (s).
    pub enrollment_ttl_secs: u64,
    /// Database connections.
    pub db_connections: u32,
    /// Wrong receipt codes from one client before it is locked out.
    pub portal_max_failures: u32,
    /// Lockout duration (s).
    pub portal_lockout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch: 1000,
            max_page: 1000,
            max_connections: 4096,
            max_connections_per_address: 256,
            handshake_timeout_secs: 10,
            header_timeout_secs: 10,
            request_timeout_secs: 60,
            rate_per_second: 2000,
            rate_burst: 4000,
            enrollment_ttl_secs: 86_400,
            db_connections: 16,
            portal_max_failures: 5,
            portal_lockout_secs: 900,
        }
    }
}

/// Audit checkpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// The transparency log's origin: the first line of its checkpoints and the name of
    /// its key (C2SP tlog-checkpoint), e.g. `hub.example.jp/renkei/audit`. Witnesses pin
    /// it with the key (`internet-hub audit key`).
    pub origin: String,
    /// Sign a checkpoint at least every this many seconds when the log grew.
    pub checkpoint_secs: u64,
    /// Sign a checkpoint as soon as this many entries were appended since the last one.
    pub checkpoint_every: i64,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            origin: crate::audit::log::DEFAULT_ORIGIN.to_owned(),
            checkpoint_secs: 60,
            checkpoint_every: 1000,
        }
    }
}

fn default_db() -> String {
    "sqlite://hub.db".into()
}

fn default_log() -> String {
    "text".into()
}

/// `log_format`: how the hub writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// `[limits]`, validated, with the timeouts as durations.
#[derive(Debug, Clone, Copy)]
pub struct LimitsConfig {
    /// Largest request body in bytes (413 above); at least 1024.
    pub max_body_bytes: usize,
    /// Most records or grants per batch; at least 1.
    pub max_batch: usize,
    /// Most items per feed page; at least 1.
    pub max_page: i64,
    /// Most open connections per listener; at least 1.
    pub max_connections: usize,
    /// Most open connections per listener from one client address; at least 1.
    pub max_connections_per_address: usize,
    /// TLS handshake timeout.
    pub handshake_timeout: Duration,
    /// Request header timeout; at least a second.
    pub header_timeout: Duration,
    /// Whole-request timeout including the body; at least a second.
    pub request_timeout: Duration,
    /// Sustained requests per second per participant.
    pub rate_per_second: u32,
    /// Burst per participant.
    pub rate_burst: u32,
    /// How long an enrollment waits for its source.
    pub enrollment_ttl: Duration,
    /// Database connections; at least 1.
    pub db_connections: u32,
    /// Wrong receipt codes from one client before it is locked out.
    pub portal_max_failures: u32,
    /// Lockout duration.
    pub portal_lockout: Duration,
}

/// `[audit]`, validated.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The transparency log's origin (non-empty, no spaces or `+`).
    pub origin: String,
    /// Sign a checkpoint at least this often when the log grew (at least a second).
    pub checkpoint_interval: Duration,
    /// Sign a checkpoint as soon as this many entries were appended (at least 1).
    pub checkpoint_every: i64,
}

/// The validated configuration, staged from [`HubFile`]: paths absolute, listen
/// addresses checked, values in range, timeouts as [`Duration`]s.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// The database URL; a relative SQLite path resolved against the file's folder.
    pub database_url: String,
    /// Policy folder, resolved; `None` for the bundled policies.
    pub policies_dir: Option<PathBuf>,
    /// Listen addresses, each a checked `host:port`.
    pub listen: Listen,
    /// TLS files, resolved; the portal pair is both or neither.
    pub tls: Tls,
    /// Secret key files, resolved.
    pub keys: Keys,
    /// Limits.
    pub limits: LimitsConfig,
    /// Audit checkpoints.
    pub audit: AuditConfig,
    /// Log format.
    pub log_format: LogFormat,
}

impl HubConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<HubConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config_from(format!("config `{}`", path.display()), e))?;
        Self::parse(path, &text)
    }

    /// Parses and validates config text that came from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<HubConfig> {
        let name = path.display();
        // The message is toml's own, on one line with the line number; toml's
        // Display would add a multi-line source excerpt.
        let file: HubFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or("").lines().count().max(1));
            let at = line.map(|l| format!(" line {l}")).unwrap_or_default();
            Error::config(format!("config `{name}`{at}: {}", e.message()))
        })?;
        Self::validate(path, file)
    }

    /// Stages `file` (read from `path`) into the runtime configuration.
    fn validate(path: &Path, file: HubFile) -> Result<HubConfig> {
        let name = path.display();
        let bad = |what: String| Error::config(format!("config `{name}`: {what}"));
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let HubFile {
            mut database_url,
            policies_dir,
            listen,
            tls,
            keys,
            limits: l,
            audit,
            log_format,
        } = file;
        if tls.portal_cert.is_some() != tls.portal_key.is_some() {
            return Err(bad(
                "`tls.portal_cert` and `tls.portal_key` go together: set both or neither"
                    .to_owned(),
            ));
        }
        let tls = Tls {
            cert: resolve(tls.cert),
            key: resolve(tls.key),
            client_ca: resolve(tls.client_ca),
            crls: tls.crls.into_iter().map(resolve).collect(),
            portal_cert: tls.portal_cert.map(resolve),
            portal_key: tls.portal_key.map(resolve),
        };
        let keys = Keys {
            pseudonym: resolve(keys.pseudonym),
            signing: resolve(keys.signing),
            receipt_pepper: resolve(keys.receipt_pepper),
        };
        let policies_dir = policies_dir.map(resolve);
        if let Some(rest) = database_url.strip_prefix("sqlite://") {
            let db_path = Path::new(rest.split('?').next().unwrap_or(rest));
            if db_path.is_relative() && !rest.starts_with(":memory:") {
                database_url = format!("sqlite://{}", base.join(rest).display());
            }
        }
        for (field, ok) in [
            ("limits.max_body_bytes", l.max_body_bytes >= 1024),
            ("limits.max_batch", l.max_batch >= 1),
            ("limits.max_page", l.max_page >= 1),
            ("limits.max_connections", l.max_connections >= 1),
            (
                "limits.max_connections_per_address",
                l.max_connections_per_address >= 1,
            ),
            ("limits.header_timeout_secs", l.header_timeout_secs >= 1),
            ("limits.request_timeout_secs", l.request_timeout_secs >= 1),
            ("limits.db_connections", l.db_connections >= 1),
        ] {
            if !ok {
                return Err(bad(format!("`{field}` is out of range")));
            }
        }
        for (field, addr) in [
            ("listen.participant", &listen.participant),
            ("listen.portal", &listen.portal),
            ("listen.admin", &listen.admin),
        ] {
            if !is_listen_address(addr) {
                return Err(bad(format!(
                    "`{field}` = `{addr}` is not `host:port` \
                     (an IP address or host name, and a port from 0 to 65535)"
                )));
            }
        }
        let origin = &audit.origin;
        if origin.is_empty()
            || origin.len() > 200
            || origin
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '+')
        {
            return Err(bad(
                "`audit.origin` must be non-empty, without spaces or `+`".to_owned(),
            ));
        }
        let log_format = match log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(format!(
                    "`log_format` must be `text` or `json`, not `{other}`"
                )));
            }
        };
        let secs = Duration::from_secs;
        Ok(HubConfig {
            path: path.to_path_buf(),
            database_url,
            policies_dir,
            listen,
            tls,
            keys,
            limits: LimitsConfig {
                max_body_bytes: l.max_body_bytes,
                max_batch: l.max_batch,
                max_page: l.max_page,
                max_connections: l.max_connections,
                max_connections_per_address: l.max_connections_per_address,
                handshake_timeout: secs(l.handshake_timeout_secs),
                header_timeout: secs(l.header_timeout_secs),
                request_timeout: secs(l.request_timeout_secs),
                rate_per_second: l.rate_per_second,
                rate_burst: l.rate_burst,
                enrollment_ttl: secs(l.enrollment_ttl_secs),
                db_connections: l.db_connections,
                portal_max_failures: l.portal_max_failures,
                portal_lockout: secs(l.portal_lockout_secs),
            },
            audit: AuditConfig {
                origin: audit.origin,
                checkpoint_interval: secs(audit.checkpoint_secs.max(1)),
                checkpoint_every: audit.checkpoint_every.max(1),
            },
            log_format,
        })
    }
}

/// Whether `addr` is what `serve` can listen on: `IP:port`, `[IPv6]:port` or
/// `host-name:port`, the port a `u16`.
fn is_listen_address(addr: &str) -> bool {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    name_ok && port.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[tls]
cert = "pki/server.pem"
key = "pki/server.key"
client_ca = "pki/ca.pem"
[keys]
pseudonym = "k/p.key"
signing = "k/s.key"
receipt_pepper = "k/r.key"
"#;

    #[test]
    fn resolves_relative_paths() {
        let c = HubConfig::parse(Path::new("/etc/renkei/hub.toml"), MIN).unwrap();
        assert_eq!(c.tls.cert, Path::new("/etc/renkei/pki/server.pem"));
        assert_eq!(c.database_url, "sqlite:///etc/renkei/hub.db");
    }

    #[test]
    fn the_portal_has_its_own_certificate_or_the_servers() {
        let c = HubConfig::parse(Path::new("/etc/renkei/hub.toml"), MIN).unwrap();
        assert_eq!(
            c.tls.portal_pair(),
            (
                PathBuf::from("/etc/renkei/pki/server.pem"),
                PathBuf::from("/etc/renkei/pki/server.key")
            )
        );
        let own = MIN.replace(
            "client_ca = \"pki/ca.pem\"",
            "client_ca = \"pki/ca.pem\"\nportal_cert = \"acme/fullchain.pem\"\nportal_key = \"acme/privkey.pem\"",
        );
        let c = HubConfig::parse(Path::new("/etc/renkei/hub.toml"), &own).unwrap();
        assert_eq!(
            c.tls.portal_pair().0,
            PathBuf::from("/etc/renkei/acme/fullchain.pem")
        );
        let half = MIN.replace(
            "client_ca = \"pki/ca.pem\"",
            "client_ca = \"pki/ca.pem\"\nportal_cert = \"acme/fullchain.pem\"",
        );
        let e = HubConfig::parse(Path::new("hub.toml"), &half)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.portal_key"), "{e}");
    }

    #[test]
    fn unknown_field_is_named_with_line() {
        let text = format!("{MIN}\n[limits]\nmax_bodyy = 3\n");
        let e = HubConfig::parse(Path::new("hub.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hub.toml") && e.contains("max_bodyy") && e.contains("line"),
            "{e}"
        );
    }

    #[test]
    fn listen_addresses_are_checked_as_serve_would_use_them() {
        for (bad, field) in [
            ("0.0.0.0:99999", "participant"),
            ("not-an-address", "admin"),
            (":443", "portal"),
            ("127.0.0.1", "admin"),
        ] {
            let mut listen = toml::map::Map::new();
            for f in ["participant", "portal", "admin"] {
                let v = if f == field { bad } else { "127.0.0.1:0" };
                listen.insert(f.into(), v.into());
            }
            let text = format!("{MIN}\n[listen]\n{}", toml::to_string(&listen).unwrap());
            let e = HubConfig::parse(Path::new("hub.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("listen.{field}")), "{bad}: {e}");
        }
        let good = "[listen]\nparticipant = \"[::]:8443\"\nportal = \"hub.example.jp:443\"\nadmin = \"127.0.0.1:0\"\n";
        assert!(HubConfig::parse(Path::new("hub.toml"), &format!("{MIN}\n{good}")).is_ok());
    }

    #[test]
    fn out_of_range_is_named() {
        let text = format!("{MIN}\n[limits]\nmax_batch = 0\n");
        let e = HubConfig::parse(Path::new("hub.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_batch"), "{e}");
    }

    #[test]
    fn the_deployed_example_loads_with_the_documented_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/hub.toml.example");
        let c = HubConfig::load(&path).unwrap();
        assert_eq!(c.database_url, "sqlite:///var/lib/renkei-hub/hub.db");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.listen.admin, "127.0.0.1:9090");
        assert!(
            c.tls.crls.iter().all(|p| p.is_absolute()),
            "{:?}",
            c.tls.crls
        );
        assert!(c.keys.signing.ends_with("keys/signing.key"));
        let d = Limits::default();
        let l = c.limits;
        assert_eq!(l.max_body_bytes, d.max_body_bytes);
        assert_eq!(l.header_timeout, Duration::from_secs(d.header_timeout_secs));
        assert_eq!(l.request_timeout, Duration::from_secs(60));
        assert_eq!(l.enrollment_ttl, Duration::from_secs(86_400));
        assert_eq!(l.portal_lockout, Duration::from_secs(900));
        assert_eq!(c.audit.checkpoint_interval, Duration::from_secs(60));
        assert_eq!(c.audit.checkpoint_every, 1000);
        assert_eq!(c.audit.origin, crate::audit::log::DEFAULT_ORIGIN);
    }

    #[test]
    fn log_format_is_typed_and_a_wrong_one_is_named() {
        let json = HubConfig::parse(
            Path::new("hub.toml"),
            &format!("log_format = \"json\"\n{MIN}"),
        )
        .unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
        let e = HubConfig::parse(
            Path::new("hub.toml"),
            &format!("log_format = \"xml\"\n{MIN}"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("hub.toml") && e.contains("log_format") && e.contains("`xml`"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_file_names_it_and_keeps_the_io_error() {
        let e = HubConfig::load(Path::new("/nonexistent/renkei/hub.toml")).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/renkei/hub.toml"),
            "{e}"
        );
        let source = std::error::Error::source(&e).unwrap();
        assert!(
            source.downcast_ref::<std::io::Error>().is_some(),
            "{source:?}"
        );
    }
}
