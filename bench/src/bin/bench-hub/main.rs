//! Hub benchmarks, each next to its reference in the same run: ingest on SQLite and
//! PostgreSQL, the feed drain, consented single-record reads and full handshakes
//! against nginx, RSS with idle mTLS connections, and stale reads after revocation on
//! two instances sharing PostgreSQL. Hubs run as `internet-hub serve` child processes.

mod phases;
mod revoke;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use renkei_bench::hub::{self, HubProcess, Member};
use renkei_bench::load::{self, Target};
use renkei_bench::nginx::{self, Nginx};
use renkei_bench::parts::Part;
use renkei_bench::proc::{Pid, cpu_seconds, peak_rss_mib, rss_mib};
use renkei_bench::records::{Subject, checkup_categories, synthesize};
use renkei_crypto::envelope::SealedRecord;
use renkei_crypto::grant::RecipientSecretKey;
use renkei_crypto::keys::{KeyVersion, RecordKey, TokenKey};

#[derive(Parser, Debug)]
struct Cli {
    /// The `internet-hub` binary (release build).
    #[arg(long)]
    hub_bin: PathBuf,
    /// The nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx_bin: PathBuf,
    /// PostgreSQL server URL (a bench database is created there and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg: String,
    /// Records to ingest and drain (ten per subject).
    #[arg(long, default_value_t = 20_000)]
    records: usize,
    /// Seconds per load phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Idle connections for the memory figure.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// Measure only the memory with idle connections.
    #[arg(long)]
    idle_only: bool,
    /// Subjects whose consents the revocation run may revoke.
    #[arg(long, default_value_t = 300)]
    revoke_subjects: usize,
    /// Where the figures go.
    #[arg(long)]
    part: PathBuf,
    /// Keep the working folder (hub logs, databases) and print where it is.
    #[arg(long)]
    keep: bool,
}

struct Setup {
    cli: Cli,
    root: PathBuf,
    pki: PathBuf,
    source: Member,
    app: Member,
    record_key: RecordKey,
    app_key: Arc<RecipientSecretKey>,
    categories: Vec<String>,
    subjects: Arc<Vec<Subject>>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let mut tmp = tempfile::Builder::new().prefix("renkei-bench-").tempdir()?;
    if cli.keep {
        tmp.disable_cleanup(true);
        eprintln!("working folder: {}", tmp.path().display());
    }
    let root = tmp.path().to_path_buf();
    let now = renkei_bench::wall_clock();
    let (pki, members) = hub::pki(&root, &["source:bench-city", "phr:bench-app"], now)?;
    let [source, app] =
        <[Member; 2]>::try_from(members).map_err(|_| anyhow::anyhow!("two members"))?;
    let record_key = RecordKey::generate(KeyVersion::V1);
    let token_key = TokenKey::generate(KeyVersion::V1);
    let categories = checkup_categories()?;
    let n = cli.records.div_ceil(categories.len().max(1));
    let t0 = std::time::Instant::now();
    let subjects = Arc::new(synthesize(
        &source.id,
        &record_key,
        &token_key,
        n,
        &categories,
    )?);
    eprintln!(
        "sealed {} records for {n} subjects in {:.1} s",
        n * categories.len(),
        t0.elapsed().as_secs_f64()
    );
    let s = Setup {
        cli,
        root,
        pki,
        source,
        app,
        record_key,
        app_key: Arc::new(RecipientSecretKey::generate(KeyVersion::V1)),
        categories,
        subjects,
    };
    let mut part = Part::default();
    part.set("hub_records", n * s.categories.len());
    if s.cli.idle_only {
        let url = format!(
            "sqlite://{}",
            s.root.join("hub-idle").join("hub.db").display()
        );
        let (cfg, hub) = registered_hub(&s, "hub-idle", &url).await?;
        hub.stop().await?;
        idle_memory(&s, &cfg, &mut part).await?;
        return part.write(&s.cli.part);
    }
    sqlite_phases(&s, &mut part).await?;
    part.write(&s.cli.part)?;
    let db = format!("renkei_bench_{}", std::process::id());
    let url = hub::create_pg_database(&s.cli.pg, &db).await?;
    let outcome = pg_phases(&s, &url, &mut part).await;
    hub::drop_pg_database(&s.cli.pg, &db).await?;
    outcome?;
    part.write(&s.cli.part)
}

async fn registered_hub(s: &Setup, dir: &str, url: &str) -> Result<(PathBuf, HubProcess)> {
    let cfg = hub::hub_dir(&s.root.join(dir), &s.pki, url)?;
    let members = [
        (&s.source.id, None),
        (&s.app.id, Some(s.app_key.public_key().to_base64())),
    ];
    hub::register(url, &members, renkei_bench::wall_clock()).await?;
    let process = HubProcess::start(&s.cli.hub_bin, &cfg).await?;
    // Sources seal only to a grant key the recipient signed (`renkei-client publish-keys`).
    s.app
        .client(process.addr)?
        .publish_signed_keys(Some(&s.app_key.public_key().to_base64()), None)
        .await?;
    Ok((cfg, process))
}

async fn sqlite_phases(s: &Setup, part: &mut Part) -> Result<()> {
    let url = format!(
        "sqlite://{}",
        s.root.join("hub-sqlite").join("hub.db").display()
    );
    let (cfg, hub) = registered_hub(s, "hub-sqlite", &url).await?;
    // One uploading connection: SQLite has one writer, and concurrent 1000-record batches
    // wait on its lock past the 10 s busy timeout (503).
    let (records, secs) = phases::ingest(&s.source, hub.addr, s.subjects.clone(), 1).await?;
    eprintln!("sqlite ingest: {records} records in {secs:.1} s");
    part.set("hub_ingest_sqlite_per_s", records as f64 / secs);
    let raw_url = format!("sqlite://{}?mode=rwc", s.root.join("raw.db").display());
    let (raw, raw_secs) = phases::raw_insert(&raw_url, &s.subjects).await?;
    part.set("sqlite_raw_insert_per_s", raw as f64 / raw_secs);

    let (consents, secs) = phases::grant_consents(
        &s.source,
        hub.addr,
        &s.subjects,
        &s.app.id.to_string(),
        &s.categories,
        4,
    )
    .await?;
    part.set("consent_grants_per_s", consents.len() as f64 / secs);
    let (grants, secs) = phases::answer_grants(&s.source, hub.addr, &s.record_key).await?;
    ensure!(
        grants == records,
        "{grants} key grants stored for {records} records"
    );
    part.set("key_grants_per_s", grants as f64 / secs);
    let (ids, secs) = phases::drain(&s.app, hub.addr, s.app_key.clone()).await?;
    ensure!(
        ids.len() == records,
        "the drain opened {} of {records} records",
        ids.len()
    );
    eprintln!("feed drain: {} records in {secs:.1} s", ids.len());
    part.set("feed_drain_per_s", ids.len() as f64 / secs);

    let paths: Arc<Vec<String>> =
        Arc::new(ids.iter().map(|id| format!("/v1/records/{id}")).collect());
    let target = Target::new(hub.addr, &s.app.ca(), &s.app.cert(), &s.app.key())?;
    reads_vs_nginx(s, &target, hub.pid, paths.clone(), part).await?;
    hub.stop().await?;

    idle_memory(s, &cfg, part).await
}

/// RSS of a fresh hub process (so earlier load does not count) with `--idle` mTLS
/// connections, each used once and then left open.
async fn idle_memory(s: &Setup, cfg: &std::path::Path, part: &mut Part) -> Result<()> {
    let hub = HubProcess::start(&s.cli.hub_bin, cfg).await?;
    let target = Target::new(hub.addr, &s.app.ca(), &s.app.cert(), &s.app.key())?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_mib(Pid::Of(hub.pid))?;
    let conns = load::hold_idle(&target, s.cli.idle, "/bench/idle").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mib(Pid::Of(hub.pid))?;
    let peak = peak_rss_mib(Pid::Of(hub.pid))?;
    let closed = conns.iter().filter(|c| c.is_closed()).count();
    ensure!(
        closed == 0,
        "{closed} of {} idle connections were closed before the measurement",
        conns.len()
    );
    eprintln!(
        "idle: {idle:.1} MiB with {} connections ({before:.1} MiB with none, peak {peak:.1})",
        s.cli.idle
    );
    drop(conns);
    hub.stop().await?;
    part.set("hub_rss_no_connections_mib", before)
        .set("hub_idle_connections", s.cli.idle)
        .set("hub_idle_rss_mib", idle)
        .set("hub_idle_peak_rss_mib", peak);
    Ok(())
}

async fn reads_vs_nginx(
    s: &Setup,
    target: &Target,
    hub_pid: u32,
    paths: Arc<Vec<String>>,
    part: &mut Part,
) -> Result<()> {
    let first = paths.first().context("no record to read")?;
    let mut c = load::connect(target).await?;
    let (status, body) = load::get(&mut c, first, false).await?;
    ensure!(status.is_success(), "reading `{first}`: {status}");
    drop(c);
    let nginx = Nginx::start(&s.cli.nginx_bin, &s.pki, &body, &s.root.join("nginx"), 2).await?;
    let outcome = async {
        let reference = target.at(nginx.addr);
        let mut c = load::connect(&reference).await?;
        let (status, same) = load::get(&mut c, nginx::BODY_PATH, false).await?;
        ensure!(
            status.is_success() && same.len() == body.len(),
            "nginx answered {status} with {} bytes",
            same.len()
        );
        drop(c);
        part.set("read_body_bytes", body.len());
        let d = Duration::from_secs(s.cli.seconds);
        let static_path = Arc::new(vec![nginx::BODY_PATH.to_owned()]);
        for conns in [1usize, 64, 256] {
            let cpu = cpu_seconds(Pid::Of(hub_pid))?;
            let h = load::keepalive(target, conns, d, paths.clone()).await?;
            let cpu = cpu_seconds(Pid::Of(hub_pid))? - cpu;
            let n = load::keepalive(&reference, conns, d, static_path.clone()).await?;
            eprintln!("reads {conns}: hub {h:?}\n          nginx {n:?}");
            part.set(&format!("read_rps_{conns}"), h.rps)
                .set(&format!("read_p50_ms_{conns}"), h.latency.p50_ms)
                .set(&format!("read_p99_ms_{conns}"), h.latency.p99_ms)
                .set(&format!("read_errors_{conns}"), h.errors)
                .set(
                    &format!("read_hub_cpu_us_per_read_{conns}"),
                    cpu * 1e6 / (h.ok.max(1) as f64),
                )
                .set(
                    &format!("read_failures_{conns}"),
                    serde_json::to_value(&h.failures)?,
                )
                .set(&format!("nginx_rps_{conns}"), n.rps)
                .set(&format!("nginx_p50_ms_{conns}"), n.latency.p50_ms)
                .set(&format!("nginx_p99_ms_{conns}"), n.latency.p99_ms)
                .set(&format!("read_rps_vs_nginx_ratio_{conns}"), h.rps / n.rps);
        }
        let h = load::handshakes(target, 16, d, "/bench/handshake").await?;
        let n = load::handshakes(&reference, 16, d, "/bench/handshake").await?;
        eprintln!("handshakes: hub {h:?}\n            nginx {n:?}");
        part.set("handshakes_per_s", h.rps)
            .set("handshake_errors", h.errors)
            .set("nginx_handshakes_per_s", n.rps)
            .set("handshake_vs_nginx_ratio", h.rps / n.rps);
        Ok(())
    }
    .await;
    nginx.stop().await?;
    outcome
}

async fn pg_phases(s: &Setup, url: &str, part: &mut Part) -> Result<()> {
    let (cfg, hub) = registered_hub(s, "hub-pg", url).await?;
    let (records, secs) = phases::ingest(&s.source, hub.addr, s.subjects.clone(), 4).await?;
    eprintln!("postgres ingest: {records} records in {secs:.1} s");
    part.set("hub_ingest_pg_per_s", records as f64 / secs);
    let (raw, raw_secs) = phases::raw_insert(url, &s.subjects).await?;
    part.set("pg_raw_insert_per_s", raw as f64 / raw_secs);

    let k = s.cli.revoke_subjects.min(s.subjects.len());
    let subset = s.subjects.get(..k).unwrap_or_default();
    let (consents, _) = phases::grant_consents(
        &s.source,
        hub.addr,
        subset,
        &s.app.id.to_string(),
        &s.categories,
        4,
    )
    .await?;
    phases::answer_grants(&s.source, hub.addr, &s.record_key).await?;
    let mut ids = Vec::new();
    let mut owner = Vec::new();
    // The app reads its own copy of each record, under the id its source gave that copy.
    let app = s.app.id.to_string();
    for (i, subject) in subset.iter().enumerate() {
        for u in &subject.uploads {
            let original = SealedRecord::from_bytes(&u.sealed)?
                .header()
                .record_id
                .clone();
            ids.push(
                renkei_crypto::token::recipient_record_id(&s.record_key, &original, &app)
                    .to_string(),
            );
            owner.push(i);
        }
    }
    let target = Target::new(hub.addr, &s.app.ca(), &s.app.cert(), &s.app.key())?;
    let paths: Arc<Vec<String>> =
        Arc::new(ids.iter().map(|id| format!("/v1/records/{id}")).collect());
    for conns in [1usize, 64, 256] {
        let cpu = cpu_seconds(Pid::Of(hub.pid))?;
        let h = load::keepalive(
            &target,
            conns,
            Duration::from_secs(s.cli.seconds),
            paths.clone(),
        )
        .await?;
        let cpu = cpu_seconds(Pid::Of(hub.pid))? - cpu;
        eprintln!("postgres reads {conns}: {h:?}");
        part.set(&format!("read_rps_pg_{conns}"), h.rps)
            .set(&format!("read_p99_ms_pg_{conns}"), h.latency.p99_ms)
            .set(
                &format!("read_hub_cpu_us_per_read_pg_{conns}"),
                cpu * 1e6 / (h.ok.max(1) as f64),
            )
            .set(
                &format!("read_failures_pg_{conns}"),
                serde_json::to_value(&h.failures)?,
            );
    }
    // Scale-out: 64 reading connections spread evenly over 1, 2 and 4 instances of the hub
    // on this one database (all on this machine's cores, with PostgreSQL and the load).
    let mut others = Vec::new();
    for name in ["hub-b.toml", "hub-c.toml", "hub-d.toml"] {
        others.push(HubProcess::start(&s.cli.hub_bin, &hub::second_instance(&cfg, name)?).await?);
    }
    let addrs: Vec<_> = std::iter::once(hub.addr)
        .chain(others.iter().map(|o| o.addr))
        .collect();
    for n in [1usize, 2, 4] {
        let runs: Vec<_> = addrs
            .iter()
            .take(n)
            .map(|addr| {
                let (t, p, secs) = (target.at(*addr), paths.clone(), s.cli.seconds);
                tokio::spawn(async move {
                    load::keepalive(&t, 64 / n, Duration::from_secs(secs), p).await
                })
            })
            .collect();
        let (mut rps, mut p99) = (0.0, 0.0f64);
        for run in runs {
            let h = run.await??;
            rps += h.rps;
            p99 = p99.max(h.latency.p99_ms);
        }
        eprintln!(
            "postgres reads, 64 connections over {n} instances: {rps:.0} req/s, p99 {p99} ms"
        );
        part.set(&format!("read_rps_pg_instances_{n}"), rps)
            .set(&format!("read_p99_ms_pg_instances_{n}"), p99);
    }
    let mut others = others.into_iter();
    let second = others
        .next()
        .context("the second instance for the revocation run")?;
    for other in others {
        other.stop().await?;
    }
    let targets = [target.clone(), target.at(second.addr)];
    let report = revoke::run(
        &targets,
        &s.source,
        revoke::Workload {
            readers: 32,
            duration: Duration::from_secs(s.cli.seconds.max(5) * 2),
            records: Arc::new(ids),
            owner: Arc::new(owner),
            consents,
            revokes: k / 2,
        },
    )
    .await?;
    eprintln!("revocation: {report:?}");
    part.set("stale_reads_after_revoke", report.stale)
        .set("revokes_during_reads", report.revoked)
        .set("revoke_errors", report.revoke_errors)
        .set("revoke_error_sample", report.revoke_error_sample.clone())
        .set("reads_ok_during_revokes", report.reads_ok)
        .set("reads_refused_after_revoke", report.refused_after_revoke)
        .set("read_rps_pg_two_instances", report.rps);
    second.stop().await?;
    hub.stop().await?;
    Ok(())
}
