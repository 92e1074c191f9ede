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
    std::fs::write(&config, &edited).unwrap();
    // A database that cannot be opened is named in the error.
    let unopenable = scene.root().join("no-such-folder").join("hub.db");
    let bad = edited.replace(
        &typo.display().to_string(),
        &unopenable.display().to_string(),
    );
    let bad_config = scene.root().join("hub-unopenable.toml");
    std::fs::write(&bad_config, bad).unwrap();
    let mut c = command("internet-hub").unwrap();
    c.args(["participants", "--config"])
        .arg(&bad_config)
        .arg("list");
    let out = run(&mut c, CLI_TIMEOUT).await.unwrap();
    assert!(!out.status.success(), "{out}");
    assert!(
        out.stderr
            .contains(&format!("database `sqlite://{}", unopenable.display())),
        "{out}"
    );
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

/// `internet-hub participants --config C <args>`.
async fn participants(scene: &Scene, args: &[&str]) -> renkei_e2e::proc::Output {
    let mut c = scene.hub_admin(&["participants"]).unwrap();
    c.args(args);
    run(&mut c, CLI_TIMEOUT).await.unwrap()
}

/// Registering a key later, as docs/operations.md says, keeps the name residents see;
/// a key that is not one is refused by name, and nothing is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_key_later_keeps_the_name_and_a_bad_key_is_refused() {
    let opts = SceneOptions::new(Backend::Sqlite, &[APP]);
    let scene = Scene::new(&opts, None).await.unwrap().unwrap();
    participants(&scene, &["add", "phr:newapp", "--name", "アスマイル2"])
        .await
        .ok()
        .unwrap();
    let key =
        renkei_crypto::grant::RecipientSecretKey::generate(renkei_crypto::keys::KeyVersion::V1)
            .public_key()
            .to_base64();
    participants(&scene, &["add", "phr:newapp", "--grant-key", &key])
        .await
        .ok()
        .unwrap();
    let list = participants(&scene, &["list"]).await.ok().unwrap();
    let line = list
        .stdout
        .lines()
        .find(|l| l.contains("phr:newapp"))
        .unwrap_or_else(|| panic!("not listed: {list}"));
    assert!(line.contains("アスマイル2"), "{line}");
    for (flag, participant) in [
        ("--grant-key", "phr:other"),
        ("--enrollment-key", "source:city-z"),
    ] {
        let out = participants(&scene, &["add", participant, flag, "notbase64!"]).await;
        assert!(!out.status.success(), "{out}");
        assert!(
            out.stderr.contains("not a base64 X25519 public key"),
            "{out}"
        );
        let list = participants(&scene, &["list"]).await.ok().unwrap();
        assert!(!list.stdout.contains(participant), "{list}");
    }
}

/// `revoke-consent` names what is wrong with the id it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_consent_names_a_bad_or_unknown_id() {
    let opts = SceneOptions::new(Backend::Sqlite, &[APP]);
    let scene = Scene::new(&opts, None).await.unwrap().unwrap();
    for (id, why) in [
        ("garbage", "expected a lower-case hyphenated UUID"),
        ("00000000-0000-4000-8000-000000000000", "does not exist"),
    ] {
        let mut c = scene.hub_admin(&["revoke-consent"]).unwrap();
        c.args(["--id", id, "--reason", "asked"]);
        let out = run(&mut c, CLI_TIMEOUT).await.unwrap();
        assert!(!out.status.success(), "{out}");
        assert!(out.stderr.contains(why) && out.stderr.contains(id), "{out}");
    }
}

/// A `client.toml` whose `participant` is not its certificate's is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_configured_as_another_participant_is_refused() {
    let opts = SceneOptions::new(Backend::Sqlite, &[APP]);
    let scene = Scene::new(&opts, None).await.unwrap().unwrap();
    let config = scene.member(APP).unwrap().config();
    let text = std::fs::read_to_string(&config).unwrap();
    let other = config.with_file_name("client-other.toml");
    std::fs::write(&other, text.replace(APP, "phr:kenko")).unwrap();
    let mut c = command("renkei-client").unwrap();
    c.arg("--config").arg(&other).arg("events");
    let out = run(&mut c, CLI_TIMEOUT).await.unwrap();
    assert!(!out.status.success(), "{out}");
    assert!(
        out.stderr
            .contains("is `phr:kenko`, but the client certificate is `phr:asmile`'s"),
        "{out}"
    );
}
