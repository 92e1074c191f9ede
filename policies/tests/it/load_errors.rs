//! Loading from a directory, and the errors a bad file gives: file name and line.

use std::path::Path;

use renkei_policies::{Error, Policies};

/// A copy of the shipped policy directory (catalog, schema, policies; no sources).
fn copy_of_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(renkei_policies::default_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".cedar") || name == "catalog.toml" || name == "schema.cedarschema" {
            std::fs::copy(&path, dir.path().join(name)).unwrap();
        }
    }
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn policy_error(err: Error) -> (String, usize, String) {
    match err {
        Error::Policy {
            file,
            line,
            message,
        } => (file, line, message),
        other => panic!("not a policy error: {other}"),
    }
}

#[test]
fn the_shipped_directory_loads_like_the_embedded_copy() {
    let loaded = Policies::load(renkei_policies::default_dir()).unwrap();
    let embedded = Policies::embedded().unwrap();
    assert_eq!(loaded.policy_count(), 14);
    assert_eq!(embedded.policy_count(), loaded.policy_count());
    assert_eq!(
        loaded.catalog().items().count(),
        embedded.catalog().items().count()
    );
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let dir = copy_of_policies();
    write(
        dir.path(),
        "broken.cedar",
        "// a comment\n\n@id(\"x\")\npermit (principal, action, resource)\nwhen { principal.kind == };\n",
    );
    let err = Policies::load(dir.path()).unwrap_err();
    let text = err.to_string();
    let (file, line, _) = policy_error(err);
    assert!(file.ends_with("broken.cedar"), "{file}");
    assert_eq!(line, 5, "{text}");
    assert!(
        text.contains("broken.cedar`") && text.contains("line 5"),
        "{text}"
    );
}

#[test]
fn a_type_error_against_the_schema_names_the_file_and_line() {
    let dir = copy_of_policies();
    write(
        dir.path(),
        "typo.cedar",
        "@id(\"typo\")\npermit (principal, action, resource)\nwhen {\n  principal.colour == \"red\"\n};\n",
    );
    let (file, line, message) = policy_error(Policies::load(dir.path()).unwrap_err());
    assert!(file.ends_with("typo.cedar"));
    assert_eq!(line, 4, "{message}");
    assert!(message.contains("colour"), "{message}");
}

#[test]
fn an_unknown_category_in_a_policy_names_the_line() {
    let dir = copy_of_policies();
    write(
        dir.path(),
        "dna.cedar",
        "@id(\"dna\")\npermit (principal, action, resource)\nwhen {\n  resource == Category::\"checkup.dna\"\n};\n",
    );
    let (file, line, message) = policy_error(Policies::load(dir.path()).unwrap_err());
    assert!(file.ends_with("dna.cedar"));
    assert_eq!(line, 4);
    assert!(message.contains("checkup.dna"), "{message}");
}

#[test]
fn a_policy_without_an_id_is_refused() {
    let dir = copy_of_policies();
    write(
        dir.path(),
        "anonymous.cedar",
        "// first\n\npermit (principal, action, resource)\nwhen { principal.kind == \"phr\" };\n",
    );
    let (_, line, message) = policy_error(Policies::load(dir.path()).unwrap_err());
    assert_eq!(line, 3);
    assert!(message.contains("@id"), "{message}");
}

#[test]
fn a_duplicate_id_in_one_file_is_refused() {
    let dir = copy_of_policies();
    let twice = "@id(\"a\")\nforbid (principal, action, resource);\n@id(\"a\")\nforbid (principal, action, resource);\n";
    write(dir.path(), "twice.cedar", twice);
    let (_, _, message) = policy_error(Policies::load(dir.path()).unwrap_err());
    assert!(message.contains("twice/a"), "{message}");
}

#[test]
fn a_broken_schema_names_the_line() {
    let dir = copy_of_policies();
    write(
        dir.path(),
        "schema.cedarschema",
        "entity Participant = { kind: String };\n\nentity Category in [CategoryGroup\n",
    );
    match Policies::load(dir.path()).unwrap_err() {
        Error::Schema { file, line, .. } => {
            assert!(file.ends_with("schema.cedarschema"));
            assert!(line >= 3, "line {line}");
        }
        other => panic!("not a schema error: {other}"),
    }
}

#[test]
fn a_catalog_with_an_unknown_category_names_the_line() {
    let dir = copy_of_policies();
    let path = dir.path().join("catalog.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let bad = text.replacen(
        "\"9N001000000000001\" = { category = \"checkup.body\"",
        "\"9N001000000000001\" = { category = \"checkup.height\"",
        1,
    );
    assert_ne!(bad, text);
    std::fs::write(&path, &bad).unwrap();
    let expected_line = bad
        .lines()
        .position(|line| line.contains("checkup.height"))
        .unwrap()
        + 1;
    match Policies::load(dir.path()).unwrap_err() {
        Error::Catalog {
            file,
            line,
            message,
        } => {
            assert!(file.ends_with("catalog.toml"));
            assert_eq!(line, expected_line);
            assert!(message.contains("`checkup.height`"), "{message}");
        }
        other => panic!("not a catalog error: {other}"),
    }
}

#[test]
fn a_directory_without_policies_is_an_error() {
    let dir = copy_of_policies();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "cedar") {
            std::fs::remove_file(path).unwrap();
        }
    }
    assert!(matches!(
        Policies::load(dir.path()),
        Err(Error::NoPolicies { .. })
    ));
    assert!(matches!(
        Policies::load(dir.path().join("missing")),
        Err(Error::Read { .. })
    ));
}
