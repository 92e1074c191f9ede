//! A clone builds, runs and tests on its own: no file of the repository names a path
//! outside it (the workplace's `../shared` folder, or one machine's absolute paths).

use std::path::{Path, PathBuf};

/// Patterns that reach outside the repository. Built from pieces so that this file
/// does not match itself.
fn outside_paths() -> Vec<String> {
    let up = "../";
    vec![
        format!("{up}shared/"),
        format!("{up}{up}shared"),
        format!("/work{}", "/shared"),
        format!("/work{}", "/main"),
    ]
}

/// Folders that are not the project's own text: build output, VCS, caches, and the
/// copied specification (which keeps its publisher's words).
const SKIP: &[&str] = &["target", ".git", "spec", "node_modules", ".schemathesis"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if SKIP.iter().any(|s| name == *s) {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => files(&path, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

#[test]
fn no_file_names_a_path_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut all = Vec::new();
    files(&root, &mut all);
    assert!(
        all.len() > 100,
        "walked only {} files of {root:?}",
        all.len()
    );
    let patterns = outside_paths();
    let mut found = Vec::new();
    for path in &all {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            // Naming the design and style documents beside the repository is prose, not a
            // path that the build, the demo or a test reads.
            if line.contains("DESIGN.md") || line.contains("STYLE.md") {
                continue;
            }
            for p in &patterns {
                if line.contains(p.as_str()) {
                    found.push(format!("{}:{}: `{p}`", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "files name paths outside the repository:\n{}",
        found.join("\n")
    );
}
