//! The agent's configuration file (`agent.toml`): serde structs that refuse
//! unknown fields, resolved against the config file's folder into the paths
//! and limits the agent runs with. Errors name the file and the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use renkei_client::ClientConfig;
use renkei_client::transport::HubAddress;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use serde::{Deserialize, Serialize};

use crate::archive::Limits;
use crate::error::{Error, Result};
use crate::tabular::{DOSE_NUMBER, RowResource, TableMapping, VACCINE, ValueKind};

/// `agent.toml` as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// This agent's participant id, `source:<id>`.
    pub source: String,
    /// Key files, relative to the config file.
    pub keys: KeyPaths,
    /// The catalog file; the catalog built into the agent when absent.
    #[serde(default)]
    pub catalog: Option<PathBuf>,
    /// The outbox database, relative to the config file.
    #[serde(default = "default_outbox")]
    pub outbox: PathBuf,
    /// The folder the daemon imports from, relative to the config file.
    #[serde(default)]
    pub import_dir: Option<PathBuf>,
    /// Seconds between two rounds of the daemon (import, upload, poll).
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
    /// How old an app's signed revocation list may be before the agent releases nothing
    /// under that app's consent statements (the longest a hub can hide a revocation).
    #[serde(default = "default_revocation_list_max_age_secs")]
    pub revocation_list_max_age_secs: u64,
    /// Records per upload request.
    #[serde(default = "default_upload_batch")]
    pub upload_batch: usize,
    /// Archive limits.
    #[serde(default)]
    pub limits: Limits,
    /// Largest CSV file accepted, in bytes.
    #[serde(default = "default_max_table_bytes")]
    pub max_table_bytes: u64,
    /// The hub and this agent's client certificate.
    #[serde(default)]
    pub hub: Option<HubFile>,
    /// Web enrollment through PHR apps.
    #[serde(default)]
    pub enrollment: EnrollmentSettings,
    /// Column mappings of KDB exports and insurer notices.
    #[serde(default)]
    pub tables: Vec<TableMapping>,
    /// The municipality's local release list: the only recipients (and purposes) the
    /// agent ever seals a record key for, whatever the hub asks.
    #[serde(default)]
    pub release: Vec<ReleaseRule>,
}

/// One `[[release]]` rule: a participant (`participant = "phr:asmile"`) or every
/// participant of a kind (`kind = "clinic"`), for the listed purposes (`"*"`: any
/// purpose the policies allow).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRule {
    /// One participant, `kind:id`.
    #[serde(default)]
    pub participant: Option<String>,
    /// Every participant of this kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Purposes released for.
    pub purposes: Vec<String>,
}

impl ReleaseRule {
    /// Whether the rule releases to `recipient` for `purpose`.
    pub fn allows(&self, recipient: &ParticipantId, purpose: &str) -> bool {
        let who = match (&self.participant, &self.kind) {
            (Some(p), _) => *p == recipient.to_string(),
            (None, Some(k)) => k == recipient.kind().as_str(),
            (None, None) => false,
        };
        who && self.purposes.iter().any(|p| p == "*" || p == purpose)
    }
}

/// `[enrollment]`: how the agent answers web enrollments (DESIGN.md step 6). The
/// defaults are the safe ones; each field is optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrollmentSettings {
    /// Refuse a web enrollment without a valid one-time enrollment code
    /// (`lgwan-agent enrollment-code issue`). Default true.
    pub require_code: bool,
    /// Days an issued code stays valid, 1 to 3650. Default 90.
    pub code_valid_days: u32,
    /// Failed web enrollments of one resident before their web enrollment is locked
    /// (until staff issue a new code), 1 to 100. Default 5.
    pub max_failures: u32,
    /// Failed web enrollments of one app within an hour after which the agent refuses
    /// that app's requests unread until the hour has passed, 1 to 100000. Default 20.
    pub app_failures_per_hour: u32,
}

impl Default for EnrollmentSettings {
    fn default() -> Self {
        EnrollmentSettings {
            require_code: true,
            code_valid_days: 90,
            max_failures: 5,
            app_failures_per_hour: 20,
        }
    }
}

impl EnrollmentSettings {
    /// The field and its range when a value is out of range.
    fn check(&self) -> std::result::Result<(), String> {
        let checks: [(&str, u32, u32, u32); 3] = [
            ("enrollment.code_valid_days", self.code_valid_days, 1, 3650),
            ("enrollment.max_failures", self.max_failures, 1, 100),
            (
                "enrollment.app_failures_per_hour",
                self.app_failures_per_hour,
                1,
                100_000,
            ),
        ];
        for (field, value, low, high) in checks {
            if !(low..=high).contains(&value) {
                return Err(format!(
                    "field `{field}`: `{value}` is not between {low} and {high}"
                ));
            }
        }
        Ok(())
    }
}

/// `[hub]` as written: the participant client settings, paths relative to the config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubFile {
    /// `https://host:port`.
    pub url: String,
    /// PEM CA the hub's server certificate chains to.
    pub ca: PathBuf,
    /// PEM client certificate chain of this agent.
    pub cert: PathBuf,
    /// PEM private key of the client certificate (mode 0600).
    pub key: PathBuf,
    /// The hub's Ed25519 audit-checkpoint key (base64), pinned; unchecked when absent.
    #[serde(default, alias = "hub_signing_key")]
    pub signing_key: Option<String>,
    /// The hub's transparency-log verifier key (C2SP vkey, from `internet-hub audit
    /// key`), pinned: the agent witnesses the log with it on every round.
    #[serde(default)]
    pub log_key: Option<String>,
}

/// The validated `[hub]` section, paths made absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubSettings {
    /// `https://host:port`.
    pub url: String,
    /// CA file.
    pub ca: PathBuf,
    /// Client certificate chain.
    pub cert: PathBuf,
    /// Client private key.
    pub key: PathBuf,
    /// The pinned checkpoint key (base64, checked to be a valid Ed25519 key).
    pub signing_key: Option<String>,
    /// The pinned transparency-log verifier key (checked to parse).
    pub log_key: Option<String>,
}

impl HubSettings {
    /// The participant client configuration (default timeout and retries).
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(
            &self.url,
            self.ca.clone(),
            self.cert.clone(),
            self.key.clone(),
        )
    }
}

/// Where the keys are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPaths {
    /// The tokenization key `K_tok`.
    pub token: PathBuf,
    /// The record master key `K_rec`.
    pub record: PathBuf,
    /// The enrollment X25519 secret key.
    pub enrollment: PathBuf,
    /// The Ed25519 key this agent cosigns the hub's log with as a witness (default:
    /// `witness.key` beside the enrollment key; made on first use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<PathBuf>,
}

fn default_outbox() -> PathBuf {
    PathBuf::from("outbox.sqlite")
}

fn default_revocation_list_max_age_secs() -> u64 {
    3600
}

fn default_poll_secs() -> u64 {
    10
}

fn default_upload_batch() -> usize {
    500
}

fn default_max_table_bytes() -> u64 {
    1024 * 1024 * 1024
}

/// The validated configuration, paths made absolute.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// This agent's participant id.
    pub source: ParticipantId,
    /// Key files.
    pub keys: KeyPaths,
    /// Catalog file, if not the built-in one.
    pub catalog: Option<PathBuf>,
    /// The outbox database.
    pub outbox: PathBuf,
    /// The daemon's import folder (files move to `done/` or `quarantine/` in it).
    pub import_dir: Option<PathBuf>,
    /// Time between two daemon rounds.
    pub poll: Duration,
    /// The oldest an app's revocation list may be.
    pub revocation_list_max_age: Duration,
    /// Records per upload request.
    pub upload_batch: usize,
    /// The hub, when configured.
    pub hub: Option<HubSettings>,
    /// Archive limits.
    pub limits: Limits,
    /// Largest CSV file accepted.
    pub max_table_bytes: u64,
    /// Web enrollment settings.
    pub enrollment: EnrollmentSettings,
    /// Column mappings.
    pub tables: Vec<TableMapping>,
    /// The local release list (validated).
    pub release: Vec<ReleaseRule>,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    /// Validates config text read from `path` (used for relative paths and errors).
    pub fn from_toml(path: &Path, text: &str) -> Result<Config> {
        let bad = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let file: ConfigFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let source: ParticipantId = file
            .source
            .parse()
            .map_err(|e| bad(format!("field `source`: {e}")))?;
        if source.kind().as_str() != "source" {
            return Err(bad(format!(
                "field `source`: `{}` is not a `source:<id>` participant",
                file.source
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for table in &file.tables {
            if !names.insert(table.name.as_str()) {
                return Err(bad(format!(
                    "tables: mapping name `{}` is used twice",
                    table.name
                )));
            }
            match (&table.attendance, table.values.is_empty()) {
                (None, true) => {
                    return Err(bad(format!(
                        "tables `{}`: field `values` is empty (an attendance list sets `attendance` instead)",
                        table.name
                    )));
                }
                (Some(_), false) => {
                    return Err(bad(format!(
                        "tables `{}`: an attendance list (`attendance`) exports the fiscal year only, so it has no `values`",
                        table.name
                    )));
                }
                (Some(name), true)
                    if name.trim().is_empty() || name.chars().any(char::is_control) =>
                {
                    return Err(bad(format!(
                        "tables `{}`: field `attendance` must name the examination",
                        table.name
                    )));
                }
                _ => {}
            }
            check_identity_and_resource(table)
                .map_err(|reason| bad(format!("tables `{}`: {reason}", table.name)))?;
        }
        if file.poll_secs == 0 || file.poll_secs > 86_400 {
            return Err(bad(format!(
                "field `poll_secs`: `{}` is not between 1 and 86400",
                file.poll_secs
            )));
        }
        if !(1..=604_800).contains(&file.revocation_list_max_age_secs) {
            return Err(bad(format!(
                "field `revocation_list_max_age_secs`: `{}` is not between 1 and 604800",
                file.revocation_list_max_age_secs
            )));
        }
        if file.upload_batch == 0 || file.upload_batch > 10_000 {
            return Err(bad(format!(
                "field `upload_batch`: `{}` is not between 1 and 10000",
                file.upload_batch
            )));
        }
        for (i, rule) in file.release.iter().enumerate() {
            match (&rule.participant, &rule.kind) {
                (Some(p), None) => {
                    p.parse::<ParticipantId>()
                        .map_err(|e| bad(format!("release[{i}].participant: {e}")))?;
                }
                (None, Some(k)) => {
                    if !ParticipantKind::ALL.iter().any(|pk| pk.as_str() == k) {
                        return Err(bad(format!(
                            "release[{i}].kind: `{k}` is not a participant kind"
                        )));
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "release[{i}]: name exactly one of `participant` and `kind`"
                    )));
                }
            }
            if rule.purposes.is_empty() {
                return Err(bad(format!(
                    "release[{i}].purposes: list at least one purpose (or \"*\")"
                )));
            }
        }
        file.enrollment.check().map_err(bad)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let at = |p: &Path| base.join(p);
        let hub = match &file.hub {
            None => None,
            Some(h) => {
                HubAddress::parse(&h.url).map_err(|e| bad(format!("field `hub.url`: {e}")))?;
                if let Some(key) = &h.signing_key {
                    renkei_crypto::sign::VerifyingKey::from_base64(key)
                        .map_err(|e| bad(format!("field `hub.signing_key`: {e}")))?;
                }
                if let Some(key) = &h.log_key {
                    renkei_crypto::tlog::note::NoteVerifier::parse(key)
                        .map_err(|e| bad(format!("field `hub.log_key`: {e}")))?;
                }
                Some(HubSettings {
                    url: h.url.clone(),
                    ca: at(&h.ca),
                    cert: at(&h.cert),
                    key: at(&h.key),
                    signing_key: h.signing_key.clone(),
                    log_key: h.log_key.clone(),
                })
            }
        };
        Ok(Config {
            path: path.to_path_buf(),
            source,
            keys: KeyPaths {
                token: at(&file.keys.token),
                record: at(&file.keys.record),
                enrollment: at(&file.keys.enrollment),
                witness: Some(match &file.keys.witness {
                    Some(w) => at(w),
                    None => at(&file.keys.enrollment).with_file_name("witness.key"),
                }),
            },
            catalog: file.catalog.as_deref().map(at),
            outbox: at(&file.outbox),
            import_dir: file.import_dir.as_deref().map(at),
            poll: Duration::from_secs(file.poll_secs),
            revocation_list_max_age: Duration::from_secs(file.revocation_list_max_age_secs),
            upload_batch: file.upload_batch,
            hub,
            limits: file.limits,
            max_table_bytes: file.max_table_bytes,
            enrollment: file.enrollment,
            tables: file.tables,
            release: file.release,
        })
    }

    /// Whether the local release list lets a record go to `recipient` for `purpose`.
    pub fn releases(&self, recipient: &ParticipantId, purpose: &str) -> bool {
        self.release.iter().any(|r| r.allows(recipient, purpose))
    }

    /// The `[hub]` section, or an error naming the missing field.
    pub fn hub(&self) -> Result<&HubSettings> {
        self.hub.as_ref().ok_or_else(|| Error::Config {
            path: self.path.clone(),
            reason: "field `hub` is missing: add a `[hub]` section with url, ca, cert and key"
                .into(),
        })
    }
}

/// The config `init` writes: key paths, and mappings for the KDB and notice
/// layouts of the bundled samples, to be edited to the municipality's exports.
pub fn initial_config(source: &ParticipantId) -> String {
    format!(
        r#"# lgwan-agent configuration. Paths are relative to this file.
source = "{source}"
outbox = "outbox.sqlite"
# The daemon (`lgwan-agent run`) imports what is dropped here; processed files move to
# `done/`, files with quarantined parts to `quarantine/` beside a report.
import_dir = "inbox"
poll_secs = 10
upload_batch = 500
# A PHR app's consents are released under only while its signed revocation list (which
# it publishes through the hub on every contact) is at most this old: a hub hiding an
# app's revocation is stopped after this long.
revocation_list_max_age_secs = 3600
# catalog = "catalog.toml"   # default: the catalog built into the agent

[keys]
token = "keys/token.key"
record = "keys/record.key"
enrollment = "keys/enrollment.key"

[limits]
max_archive_bytes = 4294967296
max_entry_bytes = 8388608
max_entries = 500000

# Web enrollment through PHR apps: a resident links an app with the one-time code from
# `lgwan-agent enrollment-code issue` (printed on the result notice or at the counter).
[enrollment]
require_code = true
code_valid_days = 90
max_failures = 5
app_failures_per_hour = 20

# The hub (mTLS, outbound only). Uncomment and fill in:
# [hub]
# url = "https://hub.example.jp:8443"
# ca = "tls/hub-ca.pem"
# cert = "tls/agent.pem"
# key = "tls/agent.key"
# signing_key = "<hub audit-checkpoint public key, base64>"
# The hub's log key, as printed by `internet-hub audit --config hub.toml key` (required for
# key releases: without it the agent imports, uploads and answers enrollments but releases
# no record key): the agent witnesses the hub's audit log on every round, and a log that
# forks, shrinks or is rewritten stops all key releases until `lgwan-agent witness clear-alarm`.
# log_key = "<origin>+<key id>+<key>"

# The release list (DESIGN.md step 8): the agent seals a record key only for a recipient
# and purpose listed here, whatever the hub asks. Nothing is listed yet, so nothing is
# released. Add one block per recipient (or kind), for example:
# [[release]]
# participant = "phr:asmile"         # or: kind = "clinic"
# purposes = ["phr-display"]         # or ["*"]: any purpose the policies allow

{TABLES}"#
    )
}

/// The identity columns and the resource of a mapping agree: an insurance identity has
/// both its insurer and number columns, a file without them is keyed by 宛名番号; an
/// immunization mapping has a text `vaccine` column and at most a `dose-number` beside.
fn check_identity_and_resource(table: &TableMapping) -> std::result::Result<(), String> {
    let id = &table.identity;
    match (&id.insurer, &id.number, &id.resident) {
        (Some(_), Some(_), _) | (None, None, Some(_)) => {}
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(
                "field `identity`: `insurer` and `number` come together (or neither, with `resident`)"
                    .into(),
            );
        }
        (None, None, None) => {
            return Err(
                "field `identity`: names no identity (`insurer` and `number`, or `resident` for a file keyed by 宛名番号)"
                    .into(),
            );
        }
    }
    if table.resource != RowResource::Immunization {
        return Ok(());
    }
    if table.attendance.is_some() {
        return Err("an attendance list is not an immunization list".into());
    }
    for v in &table.values {
        match (v.code.as_str(), v.kind) {
            (VACCINE, ValueKind::Text) | (DOSE_NUMBER, ValueKind::Quantity) => {}
            (code, _) => {
                return Err(format!(
                    "value `{}` (code `{code}`): an immunization has `{VACCINE}` (kind text) and `{DOSE_NUMBER}` (kind quantity) only",
                    v.column
                ));
            }
        }
    }
    if !table.values.iter().any(|v| v.code == VACCINE) {
        return Err(format!("an immunization needs a value coded `{VACCINE}`"));
    }
    Ok(())
}

const TABLES: &str = r#"# CSV column mappings: a file uses the mapping whose columns all appear in its header.
[[tables]]
name = "kdb-medical-cost"
category = "kdb.medical-cost"
date_column = "診療年月"
date_format = "%Y%m"
identity = { insurer = "保険者番号", symbol = "被保険者証記号", number = "被保険者証番号", branch = "枝番", birth = "生年月日", sex = "性別", resident = "宛名番号" }
values = [
  { column = "入院医療費", code = "inpatient-cost", kind = "money" },
  { column = "入院外医療費", code = "outpatient-cost", kind = "money" },
  { column = "歯科医療費", code = "dental-cost", kind = "money" },
  { column = "調剤医療費", code = "pharmacy-cost", kind = "money" },
  { column = "医療費総額", code = "total-cost", kind = "money" },
]

[[tables]]
name = "kdb-care"
category = "kdb.care"
date_column = "認定日"
date_format = "%Y%m%d"
identity = { insurer = "保険者番号", symbol = "被保険者証記号", number = "被保険者証番号", branch = "枝番", birth = "生年月日", sex = "性別", resident = "宛名番号" }
values = [
  { column = "要介護度", code = "care-level", kind = "text" },
  { column = "介護給付費", code = "care-benefit-cost", kind = "money" },
]

[[tables]]
name = "notice-medical-cost"
category = "insurer.cost-notice"
date_column = "診療年月"
date_format = "%Y%m"
identity = { insurer = "保険者番号", symbol = "被保険者証記号", number = "被保険者証番号", branch = "枝番", birth = "生年月日", sex = "性別" }
values = [
  { column = "医療機関名", code = "provider-name", kind = "text" },
  { column = "日数", code = "days", kind = "quantity", unit = "d" },
  { column = "医療費の額", code = "cost", kind = "money" },
  { column = "自己負担額", code = "copayment", kind = "money" },
]

[[tables]]
name = "notice-generic-drug"
category = "insurer.generic-drug-notice"
date_column = "通知年月"
date_format = "%Y%m"
identity = { insurer = "保険者番号", symbol = "被保険者証記号", number = "被保険者証番号", branch = "枝番", birth = "生年月日", sex = "性別" }
values = [
  { column = "先発医薬品名", code = "brand-drug", kind = "text" },
  { column = "後発医薬品名", code = "generic-drug", kind = "text" },
  { column = "現在の薬剤費", code = "current-cost", kind = "money" },
  { column = "切替後の薬剤費", code = "generic-cost", kind = "money" },
  { column = "差額", code = "saving", kind = "money" },
]

# Attendance lists of the municipality's health-management system (健康管理システム): only
# "attended in fiscal year N" leaves LGWAN, for health-point programmes. The date column
# names the examination, so each list finds its own mapping.
[[tables]]
name = "cancer-screening-attendance"
category = "checkup.attendance"
attendance = "がん検診受診年度 (fiscal year of a cancer screening)"
date_column = "がん検診受診日"
date_format = "%Y%m%d"
identity = { insurer = "保険者番号", symbol = "被保険者証記号", number = "被保険者証番号", branch = "枝番", birth = "生年月日", sex = "性別" }

[[tables]]
name = "dental-checkup-attendance"
category = "checkup.attendance"
attendance = "歯科健診受診年度 (fiscal year of a dental checkup)"
date_column = "歯科健診受診日"
date_format = "%Y%m%d"
identity = { insurer = "保険者番号", symbol = "被保険者証記号", number = "被保険者証番号", branch = "枝番", birth = "生年月日", sex = "性別" }

# The vaccination register of the 健康管理システム (予防接種台帳), keyed by 宛名番号 alone: each
# row is filed under the token of the insurance identity the agent saw with the same
# 宛名番号, birth date and sex in a KDB file (a row whose 宛名番号 it has not seen is set
# aside, to import again after that KDB file).
[[tables]]
name = "immunization"
category = "immunization.record"
resource = "immunization"
date_column = "接種日"
date_format = "%Y%m%d"
identity = { resident = "宛名番号", birth = "生年月日", sex = "性別" }
values = [
  { column = "ワクチン名", code = "vaccine", kind = "text" },
  { column = "接種回数", code = "dose-number", kind = "quantity" },
]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> ParticipantId {
        "source:city-mihon".parse().unwrap()
    }

    #[test]
    fn initial_config_loads_with_paths_resolved() {
        let c = Config::from_toml(
            Path::new("/etc/agent/agent.toml"),
            &initial_config(&source()),
        )
        .unwrap();
        assert_eq!(c.keys.token, Path::new("/etc/agent/keys/token.key"));
        assert_eq!(c.outbox, Path::new("/etc/agent/outbox.sqlite"));
        assert_eq!(c.tables.len(), 7);
        assert_eq!(c.source.to_string(), "source:city-mihon");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let text =
            initial_config(&source()).replace("date_format = \"%Y%m%d\"", "date_fmt = \"x\"");
        let err = Config::from_toml(Path::new("a.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`a.toml`") && err.contains("date_fmt"),
            "{err}"
        );
        let text = initial_config(&source()).replace("source:city-mihon", "phr:app");
        let err = Config::from_toml(Path::new("a.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `source`"), "{err}");
    }

    #[test]
    fn hub_section_resolves_and_errors_name_the_field() {
        let hub = "\n[hub]\nurl = \"https://hub.example:8443\"\nca = \"tls/ca.pem\"\n\
                   cert = \"tls/agent.pem\"\nkey = \"tls/agent.key\"\n";
        let base = initial_config(&source());
        let c =
            Config::from_toml(Path::new("/etc/agent/agent.toml"), &(base.clone() + hub)).unwrap();
        let h = c.hub().unwrap();
        assert_eq!(h.cert, Path::new("/etc/agent/tls/agent.pem"));
        assert_eq!(h.client_config().hub_url, "https://hub.example:8443");
        assert_eq!(c.import_dir.as_deref(), Some(Path::new("/etc/agent/inbox")));
        assert_eq!(c.poll, Duration::from_secs(10));

        let none = Config::from_toml(Path::new("a.toml"), &base).unwrap();
        let e = none.hub().unwrap_err().to_string();
        assert!(e.contains("`a.toml`") && e.contains("field `hub`"), "{e}");

        for (bad, field) in [
            (
                hub.replace("https://hub.example:8443", "http://hub"),
                "hub.url",
            ),
            (
                hub.to_owned() + "signing_key = \"nope\"\n",
                "hub.signing_key",
            ),
            (hub.to_owned() + "port = 1\n", "port"),
        ] {
            let e = Config::from_toml(Path::new("a.toml"), &(base.clone() + &bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        let e = Config::from_toml(
            Path::new("a.toml"),
            &base.replace("poll_secs = 10", "poll_secs = 0"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field `poll_secs`"), "{e}");
    }

    #[test]
    fn enrollment_defaults_are_the_safe_ones_and_ranges_are_checked() {
        let base = initial_config(&source());
        let c = Config::from_toml(Path::new("a.toml"), &base).unwrap();
        assert_eq!(c.enrollment, EnrollmentSettings::default());
        let without = base.replace("[enrollment]\nrequire_code = true\n", "[enrollment]\n");
        assert_ne!(without, base);
        let c = Config::from_toml(Path::new("a.toml"), &without).unwrap();
        assert!(c.enrollment.require_code, "a code is required by default");
        assert_eq!(c.enrollment.code_valid_days, 90);
        let off = base.replace("require_code = true", "require_code = false");
        let c = Config::from_toml(Path::new("a.toml"), &off).unwrap();
        assert!(!c.enrollment.require_code);
        for (from, to, field) in [
            (
                "code_valid_days = 90",
                "code_valid_days = 0",
                "enrollment.code_valid_days",
            ),
            (
                "max_failures = 5",
                "max_failures = 0",
                "enrollment.max_failures",
            ),
            (
                "app_failures_per_hour = 20",
                "app_failures_per_hour = 0",
                "enrollment.app_failures_per_hour",
            ),
            ("max_failures = 5", "max_tries = 5", "max_tries"),
        ] {
            let e = Config::from_toml(Path::new("a.toml"), &base.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains("`a.toml`"), "{field}: {e}");
        }
    }
}
