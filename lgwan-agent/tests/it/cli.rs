//! The `lgwan-agent` binary: init, token, preview.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_lgwan-agent");

fn token(config: &std::path::Path, symbol: &str, number: &str, birth: &str) -> String {
    let out = Command::new(BIN)
        .args(["token", "--config"])
        .arg(config)
        .args([
            "--insurer",
            "138016",
            "--symbol",
            symbol,
            "--number",
            number,
        ])
        .args(["--birth", birth, "--sex", "female"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn init_token_preview() {
    let dir = tempfile::tempdir().unwrap();
    let agent_dir = dir.path().join("agent");
    let out = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(&agent_dir)
        .args(["--source", "source:city-mihon"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    for key in ["token.key", "record.key", "enrollment.key"] {
        let mode = std::fs::metadata(agent_dir.join("keys").join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // init refuses to overwrite.
    let again = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(&agent_dir)
        .args(["--source", "source:city-mihon"])
        .output()
        .unwrap();
    assert!(!again.status.success());

    let config = agent_dir.join("agent.toml");
    let half = token(&config, "見本12-3", "4567", "1970-01-02");
    let full = token(&config, "見本１２－３", "４５６７", "19700102");
    assert!(half.starts_with("st1_") && half.len() == 36, "{half}");
    assert_eq!(half, full);
    assert_ne!(half, token(&config, "見本12-3", "4568", "1970-01-02"));

    let preview = Command::new(BIN)
        .args(["preview", "--config"])
        .arg(&config)
        .arg(crate::fixture("bad_inputs.zip"))
        .output()
        .unwrap();
    assert_eq!(
        preview.status.code(),
        Some(2),
        "quarantines give exit code 2"
    );
    let stdout = String::from_utf8(preview.stdout).unwrap();
    assert!(stdout.lines().count() > 2);
    assert!(
        stdout
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
    let stderr = String::from_utf8(preview.stderr).unwrap();
    assert!(
        stderr.contains("quarantined:") && stderr.contains("evil.xml"),
        "{stderr}"
    );
}

#[test]
fn import_then_status() {
    let dir = tempfile::tempdir().unwrap();
    let agent_dir = dir.path().join("agent");
    let out = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(&agent_dir)
        .args(["--source", "source:city-mihon"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let config = agent_dir.join("agent.toml");
    let import = || {
        Command::new(BIN)
            .args(["import", "--config"])
            .arg(&config)
            .arg(crate::fixture(crate::MAIN))
            .output()
            .unwrap()
    };
    let first = import();
    let stderr = String::from_utf8(first.stderr).unwrap();
    assert!(first.status.success(), "{stderr}");
    let records: u64 = stderr
        .lines()
        .last()
        .and_then(|l| l.split_once(" records ("))
        .map(|(n, _)| n.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(records > 5, "{stderr}");
    assert!(stderr.contains(&format!("({records} new)")), "{stderr}");
    assert!(
        stderr.contains("import: ") || stderr.contains("records/s"),
        "progress is logged when stderr is not a terminal: {stderr}"
    );
    let second = String::from_utf8(import().stderr).unwrap();
    assert!(second.contains("(0 new)"), "{second}");

    // A report left by the daemon in the import folder's quarantine.
    let quarantine = agent_dir.join("inbox/quarantine");
    std::fs::create_dir_all(&quarantine).unwrap();
    std::fs::write(quarantine.join("bad.zip.report.json"), "{}").unwrap();

    let status = Command::new(BIN)
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(status.status.success());
    let text = String::from_utf8(status.stdout).unwrap();
    assert!(
        text.contains(&format!("depth:             {records} records waiting")),
        "{text}"
    );
    assert!(text.contains("last upload:       never"), "{text}");
    assert!(text.contains("last error:        none"), "{text}");
    assert!(text.contains("quarantined files: 1"), "{text}");
    assert!(text.contains("bad.zip.report.json"), "{text}");
}

#[test]
fn enrollment_code_issue_prints_a_code_once_and_keeps_only_its_hash() {
    use lgwan_agent::archive::{ArchiveItem, Limits, scan_archive};
    let dir = tempfile::tempdir().unwrap();
    let agent_dir = dir.path().join("agent");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(agent_dir.join("agent.toml"))
            .output()
            .unwrap()
    };
    let out = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(&agent_dir)
        .args(["--source", "source:city-mihon"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(BIN)
        .args(["import", "--config"])
        .arg(agent_dir.join("agent.toml"))
        .arg(crate::fixture(crate::MAIN))
        .arg(crate::fixture(crate::TWINS))
        .output()
        .unwrap();
    assert!(out.status.code() != Some(1), "{out:?}");
    let mut people = Vec::new();
    for archive in [crate::MAIN, crate::TWINS] {
        scan_archive(&crate::fixture(archive), &Limits::default(), &mut |item| {
            if let ArchiveItem::Checkup { document, .. } = item {
                people.push(document.identity.clone());
            }
        });
    }
    let args = |p: &lgwan_agent::domain::PersonIdentity| {
        let mut a = vec![
            "--insurer".to_owned(),
            p.insurer.clone(),
            "--symbol".into(),
            p.symbol.clone(),
            "--number".into(),
            p.number.clone(),
            "--birth".into(),
            p.birth.format("%Y-%m-%d").to_string(),
            "--sex".into(),
            match p.sex {
                lgwan_agent::domain::Sex::Male => "male".into(),
                lgwan_agent::domain::Sex::Female => "female".into(),
            },
        ];
        if let Some(b) = &p.branch {
            a.extend(["--branch".into(), b.clone()]);
        }
        a
    };
    let issue = |p: &lgwan_agent::domain::PersonIdentity| {
        let mut all = vec!["enrollment-code".to_owned(), "issue".into()];
        all.extend(args(p));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run(&all)
    };
    let code_of = |out: &std::process::Output| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let code = text
            .lines()
            .find_map(|l| l.strip_prefix("enrollment code: "))
            .unwrap_or_else(|| panic!("{text}"))
            .to_owned();
        (code, text)
    };
    let person = &people[0];
    let (first, text) = code_of(&issue(person));
    assert_eq!(first.len(), 14, "{text}");
    assert!(text.contains("valid until:"), "{text}");
    let (second, text) = code_of(&issue(person));
    assert_ne!(first, second);
    assert!(text.contains("1 earlier unused code"), "{text}");

    // Twins (one canonical identity, two 枝番): no code, a message for staff.
    let agent = lgwan_agent::agent::Agent::load(&agent_dir.join("agent.toml")).unwrap();
    let token = |p: &lgwan_agent::domain::PersonIdentity| agent.tokenize(p).unwrap().0;
    let twin = people
        .iter()
        .find(|p| {
            people
                .iter()
                .any(|q| token(q) == token(p) && q.branch != p.branch)
        })
        .unwrap();
    let out = issue(twin);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("counter"), "{stderr}");

    // Only the keyed hash is stored; status counts the active code.
    let status = run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("code required; 1 codes active, 0 used"),
        "{text}"
    );
    let mut stored = std::fs::read(agent_dir.join("outbox.sqlite")).unwrap();
    if let Ok(wal) = std::fs::read(agent_dir.join("outbox.sqlite-wal")) {
        stored.extend(wal);
    }
    let stored = String::from_utf8_lossy(&stored);
    for code in [&first, &second] {
        assert!(!stored.contains(code.as_str()));
        assert!(!stored.contains(&code.replace('-', "")));
    }
    assert!(stored.contains("ec1_"));
}

#[test]
fn a_missing_input_is_an_error_of_the_command_and_os_errors_show_once() {
    let dir = tempfile::tempdir().unwrap();
    let agent_dir = dir.path().join("agent");
    let out = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(&agent_dir)
        .args(["--source", "source:city-mihon"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let missing = dir.path().join("nowhere.zip");
    for cmd in ["preview", "import"] {
        let out = Command::new(BIN)
            .args([cmd, "--config"])
            .arg(agent_dir.join("agent.toml"))
            .arg(&missing)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{cmd}: {stdout}{stderr}");
        assert!(stderr.contains("nowhere.zip"), "{cmd}: {stderr}");
        assert!(
            !format!("{stdout}{stderr}").contains("quarantined"),
            "{cmd}: {stdout}{stderr}"
        );
    }
    let out = Command::new(BIN)
        .args(["preview", "--config"])
        .arg(dir.path().join("none.toml"))
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
}
