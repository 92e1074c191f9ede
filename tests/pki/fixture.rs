//! Test helper: a private copy of the checked-in test PKI (`tests/pki`) in a
//! temporary folder, with every `.key` file created mode 0600.
//!
//! Git does not keep file modes other than the executable bit, so on a fresh
//! clone the checked-in keys are group/world-readable and the TLS key loader
//! (rightly) refuses them. Tests use this copy instead. Include it with
//!
//! ```ignore
//! #[path = "../../../tests/pki/fixture.rs"]
//! mod fixture;
//! ```
//!
//! (the path is relative to the including file), and add `tempfile` to the
//! crate's dev-dependencies.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A temporary copy of `tests/pki`, deleted when dropped.
#[derive(Debug)]
pub(crate) struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Copies every `.pem` and `.key` of `tests/pki` into a fresh temporary folder.
    pub(crate) fn new() -> TestPki {
        let source = source_dir();
        let dir = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path.file_name() else {
                continue;
            };
            let target = dir.path().join(name);
            match path.extension().and_then(|e| e.to_str()) {
                Some("key") => write_private(&target, &fs::read(&path).unwrap()),
                Some("pem") => {
                    fs::copy(&path, &target).unwrap();
                }
                _ => {}
            }
        }
        TestPki { dir }
    }

    /// The folder holding the copy.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `NAME.pem` in the copy (for example `ca`, `server`, `crl`, `phr-asmile`).
    pub(crate) fn pem(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pem"))
    }

    /// `NAME.key` in the copy, mode 0600.
    pub(crate) fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.key"))
    }
}

/// The checked-in `tests/pki`, found by walking up from the crate being tested.
pub(crate) fn source_dir() -> PathBuf {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .map(|dir| dir.join("tests").join("pki"))
        .find(|dir| dir.join("ca.pem").is_file())
        .unwrap()
}

/// Creates `path` readable and writable by its owner only, then writes `bytes`.
fn write_private(path: &Path, bytes: &[u8]) {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).unwrap().write_all(bytes).unwrap();
}
