//! The daemon with the hub down: files dropped in the import folder are still
//! imported and filed away, the failure is the last error, and the loop stops
//! cleanly on shutdown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lgwan_agent::agent::Agent;
use lgwan_agent::daemon::{DONE, QUARANTINE, quarantined_files};
use lgwan_agent::outbox::Outbox;

use crate::fixture;

pub(crate) fn pki(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/pki")
        .join(name)
}

/// An agent whose `[hub]` points at a closed port, polling every second.
fn agent_with_dead_hub(dir: &Path) -> Agent {
    let done = lgwan_agent::agent::init(dir, &"source:city-a".parse().unwrap()).unwrap();
    let key = dir.join("agent.key");
    std::fs::copy(pki("source-city-a.key"), &key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = std::fs::read_to_string(&done.config)
        .unwrap()
        .replace("poll_secs = 10", "poll_secs = 1");
    let hub = format!(
        "\n[hub]\nurl = \"https://127.0.0.1:{port}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"agent.key\"\n",
        pki("ca.pem").display(),
        pki("source-city-a.pem").display()
    );
    std::fs::write(&done.config, text + &hub).unwrap();
    Agent::load(&done.config).unwrap()
}

#[tokio::test]
async fn imports_go_on_while_the_hub_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent_with_dead_hub(dir.path());
    let inbox = agent.config.import_dir.clone().unwrap();
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::copy(fixture(crate::MAIN), inbox.join("main.zip")).unwrap();
    std::fs::copy(fixture("bad_inputs.zip"), inbox.join("bad.zip")).unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut lines = Vec::new();
    let daemon = async {
        let mut log = |l: String| lines.push(l);
        lgwan_agent::sync::run(&agent, async { stopped.await.unwrap_or(()) }, &mut log).await
    };
    let watcher = async {
        // Wait until both files were filed away (at most 30 s), then stop.
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if std::fs::read_dir(&inbox)
                .unwrap()
                .flatten()
                .all(|e| e.path().is_dir())
            {
                break;
            }
        }
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(daemon, watcher);
    result.unwrap();

    assert!(inbox.join(DONE).join("main.zip").exists(), "{lines:?}");
    assert!(inbox.join(QUARANTINE).join("bad.zip").exists(), "{lines:?}");
    assert_eq!(quarantined_files(&inbox).len(), 1);
    let outbox = Outbox::open(&agent.config.outbox).await.unwrap();
    let status = outbox.status().await.unwrap();
    assert!(status.pending > 5, "{status:?}");
    assert_eq!(status.sent, 0);
    let error = status.last_error.unwrap().value;
    assert!(
        error.contains("127.0.0.1"),
        "the hub failure is recorded: {error}"
    );
    assert!(
        lines.iter().any(|l| l.contains("round failed")),
        "{lines:?}"
    );
}

#[test]
fn the_deployed_example_config_is_valid() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/agent.toml.example");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = lgwan_agent::config::Config::from_toml(&path, &text).unwrap();
    assert!(config.hub().is_ok());
    assert!(config.import_dir.is_some());
}
