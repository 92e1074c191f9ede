//! The agent's configuration file (`agent.toml`): serde structs that refuse
//! unknown fields, resolved against the config file's folder into the paths
//! and limits the agent runs with. Errors name the file and the field.

use std::path::{Path, PathBuf};

use renkei_crypto::participant::ParticipantId;
use serde::{Deserialize, Serialize};

use crate::archive::Limits;
use crate::error::{Error, Result};
use crate::tabular::TableMapping;

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
    /// Archive limits.
    #[serde(default)]
    pub limits: Limits,
    /// Largest CSV file accepted, in bytes.
    #[serde(default = "default_max_table_bytes")]
    pub max_table_bytes: u64,
    /// Column mappings of KDB exports and insurer notices.
    #[serde(default)]
    pub tables: Vec<TableMapping>,
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
}

fn default_outbox() -> PathBuf {
    PathBuf::from("outbox.sqlite")
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
    /// Archive limits.
    pub limits: Limits,
    /// Largest CSV file accepted.
    pub max_table_bytes: u64,
    /// Column mappings.
    pub tables: Vec<TableMapping>,
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
            if table.values.is_empty() {
                return Err(bad(format!(
                    "tables `{}`: field `values` is empty",
                    table.name
                )));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let at = |p: &Path| base.join(p);
        Ok(Config {
            path: path.to_path_buf(),
            source,
            keys: KeyPaths {
                token: at(&file.keys.token),
                record: at(&file.keys.record),
                enrollment: at(&file.keys.enrollment),
            },
            catalog: file.catalog.as_deref().map(at),
            outbox: at(&file.outbox),
            limits: file.limits,
            max_table_bytes: file.max_table_bytes,
            tables: file.tables,
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
# catalog = "catalog.toml"   # default: the catalog built into the agent

[keys]
token = "keys/token.key"
record = "keys/record.key"
enrollment = "keys/enrollment.key"

[limits]
max_archive_bytes = 4294967296
max_entry_bytes = 8388608
max_entries = 500000

{TABLES}"#
    )
}

const TABLES: &str = r#"# CSV column mappings: a file uses the mapping whose columns all appear in its header.
[[tables]]
name = "kdb-medical-cost"
category = "kdb.medical-cost"
date_column = "診療年月"
date_format = "%Y%m"
identity = { insurer = "保険者番号", symbol = "被保険者証記号", number = "被保険者証番号", branch = "枝番", birth = "生年月日", sex = "性別" }
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
identity = { insurer = "保険者番号", symbol = "被保険者証記号", number = "被保険者証番号", branch = "枝番", birth = "生年月日", sex = "性別" }
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
        assert_eq!(c.tables.len(), 4);
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
}
