//! The main job, `internet-hub demo`, run as a user runs it: every step checks itself and the
//! run fails if any step did not do what it said. `--keep` leaves a usable set-up.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_end_to_end_and_keep_leaves_a_working_setup() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let status = demo(&keep);
    assert!(
        status.success(),
        "internet-hub demo --keep failed: {status}"
    );
    for f in [
        "hub.toml",
        "README.txt",
        "pki/ca.pem",
        "agent/agent.toml",
        "phr-asmile/client.toml",
        "clinic-mysos/client.toml",
        "analyst-hachioji/client.toml",
    ] {
        assert!(keep.join(f).is_file(), "{f} is missing");
    }
    // `internet-hub serve --config DIR/hub.toml` starts the same hub again.
    let cfg = renkei_hub::config::HubConfig::load(&keep.join("hub.toml")).unwrap();
    let hub = renkei_hub::app::build_hub(&cfg, renkei_hub::broker::Clock::System)
        .await
        .unwrap();
    let report = renkei_hub::audit::verify(&hub.db, &[hub.signing_key.verifying_key()], None)
        .await
        .unwrap()
        .unwrap();
    assert!(report.entries > 100, "{report:?}");
    // The kept participant configs load with the client.
    renkei_client::config::Settings::load(&keep.join("clinic-mysos/client.toml")).unwrap();
    // A second run refuses a non-empty folder instead of mixing two set-ups.
    assert!(!demo(&keep).success());
}

/// Runs the built `internet-hub demo --keep DIR`, as a user does.
#[allow(clippy::unwrap_used)]
fn demo(keep: &std::path::Path) -> std::process::ExitStatus {
    std::process::Command::new(env!("CARGO_BIN_EXE_internet-hub"))
        .arg("demo")
        .arg("--keep")
        .arg(keep)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
}
