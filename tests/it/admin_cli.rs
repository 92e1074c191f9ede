//! The hub's admin commands as an operator runs them, with a mistake in `hub.toml`.

use renkei_e2e::proc::{command, run};
use renkei_e2e::scene::CLI_TIMEOUT;
use renkei_e2e::{APP, Backend, Scene, SceneOptions};

/// `audit verify`, `backup` and `revoke-consent` on a mistyped SQLite path say the
/// database does not exist, and create nothing: before, `audit verify` created an empty
/// database and reported "audit log OK: 0 entries".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_database_path_is_an_error_not_an_empty_log() {
    let opts = SceneOptions::new(Backend::Sqlite, &[APP]);
    let scene = Scene::new(&opts, None).await.unwrap().unwrap();
    let typo = scene.root().join("hub-typo.db");
    let text = std::fs::read_to_string(&scene.hub_config).unwrap();
    let edited: String = text
        .lines()
        .map(|l| match l.starts_with("database_url") {
            true => format!("database_url = \"sqlite://{}\"", typo.display()),
            false => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = scene.root().join("hub-typo.toml");
    std::fs::write(&config, edited).unwrap();
    let backup = scene.root().join("backup.db");
    let b = backup.display().to_string();
    for args in [
        vec!["audit", "--config", "C", "verify"],
        vec!["backup", "--config", "C", "--out", &b],
        vec![
            "revoke-consent",
            "--config",
            "C",
            "--id",
            "x",
            "--reason",
            "r",
        ],
    ] {
        let mut c = command("internet-hub").unwrap();
        for a in &args {
            match *a {
                "C" => c.arg(&config),
                a => c.arg(a),
            };
        }
        let out = run(&mut c, CLI_TIMEOUT).await.unwrap();
        assert!(!out.status.success(), "{args:?}: {out}");
        assert!(out.stderr.contains("does not exist"), "{args:?}: {out}");
        assert!(!typo.exists(), "{args:?} created the database");
    }
}
