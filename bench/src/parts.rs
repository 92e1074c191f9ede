//! The JSON parts each benchmark binary writes and the report merges: one flat object
//! of named figures per part file.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

/// Figures of one benchmark, in insertion order.
#[derive(Debug, Default, Clone)]
pub struct Part(pub Map<String, Value>);

impl Part {
    /// Sets a figure.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.0.insert(name.to_owned(), value.into());
        self
    }

    /// Writes the part as pretty JSON, and prints it to stderr for the log.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&Value::Object(self.0.clone()))?;
        eprintln!("{}: {text}", path.display());
        std::fs::write(path, text + "\n").with_context(|| format!("writing `{}`", path.display()))
    }
}

/// Reads every `*.json` part in `dir` into one object (later files win on a clash).
pub fn merge(dir: &Path) -> Result<Map<String, Value>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading `{}`", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    let mut all = Map::new();
    for path in names {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not JSON", path.display()))?;
        if let Value::Object(map) = value {
            all.extend(map);
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_merge_by_name() {
        let dir = tempfile::tempdir().unwrap();
        Part::default()
            .set("a", 1.5)
            .set("b", "x")
            .write(&dir.path().join("1.json"))
            .unwrap();
        Part::default()
            .set("b", 2)
            .write(&dir.path().join("2.json"))
            .unwrap();
        std::fs::write(dir.path().join("note.txt"), "ignored").unwrap();
        let all = merge(dir.path()).unwrap();
        assert_eq!(all["a"], 1.5);
        assert_eq!(all["b"], 2);
        assert_eq!(all.len(), 2);
    }
}
