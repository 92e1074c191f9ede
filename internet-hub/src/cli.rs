//! The `internet-hub` command line over the `renkei_hub` library.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use renkei_crypto::participant::ParticipantId;
use renkei_hub::broker::Clock;
use renkei_hub::config::{HubConfig, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "internet-hub",
    version,
    about = "Renkei internet hub: the consent-managed blind broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole flow on this machine: PKI, hub, agent, PHR app, clinic, analyst, portal.
    Demo {
        /// Keep everything in this (new or empty) folder to explore afterwards.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Run the hub: participant API (mTLS), resident portal (HTTPS), admin endpoints.
    Serve {
        /// The hub configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a configuration file, its keys, certificates and policies, then exit.
    CheckConfig {
        /// The hub configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Create the hub's secret keys and a `hub.toml` in DIR (refuses to overwrite).
    Init {
        /// Target folder.
        #[arg(long)]
        dir: PathBuf,
        /// Folder made by `pki init` (relative paths are written into hub.toml).
        #[arg(long, default_value = "pki")]
        pki: PathBuf,
    },
    /// The participant PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// The participant registry (takes effect at once on running hubs).
    Participants {
        /// The hub configuration file.
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        command: ParticipantCommand,
    },
    /// How the exchange is used: enrollments, consents granted and revoked, and reads,
    /// counted by recipient, purpose and month from the audit log; counts below the
    /// threshold are suppressed (docs/evaluation.md).
    Report {
        /// The hub configuration file.
        #[arg(long)]
        config: PathBuf,
        /// What to count by: any of `recipient`, `purpose`, `month`, comma-separated.
        #[arg(long, default_value = "recipient,purpose,month")]
        by: String,
        /// `csv` or `json`.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Counts of fewer are suppressed.
        #[arg(long, default_value_t = 10)]
        threshold: u64,
    },
    /// Research studies an ethics committee approved: a `research` consent names one as
    /// its evidence (`study:<id>`) and must fall within its period.
    Studies {
        /// The hub configuration file.
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        command: StudyCommand,
    },
    /// The audit log.
    Audit {
        /// The hub configuration file.
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The hub's own keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Back up the hub database: SQLite online into a new FILE; PostgreSQL prints the
    /// pg_dump command to use instead and exits 2.
    Backup {
        /// The hub configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The backup file to create (refuses an existing one).
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a consent as the hub administrator.
    RevokeConsent {
        /// The hub configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Consent id.
        #[arg(long)]
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum StudyCommand {
    /// Register a study (once: a study has one recipient and one period).
    Add {
        /// The study id, as consents name it (`--evidence study:<id>`).
        id: String,
        /// The research institution's analyst participant, the study's one recipient.
        #[arg(long)]
        recipient: ParticipantId,
        /// The ethics committee that approved the study.
        #[arg(long)]
        committee: String,
        /// The committee's approval id.
        #[arg(long)]
        approval: String,
        /// First day of the study (YYYY-MM-DD, Japan time).
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day of the study (YYYY-MM-DD, Japan time).
        #[arg(long)]
        until: chrono::NaiveDate,
    },
    /// List the registered studies.
    List,
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create the participant CA and the hub's server certificate.
    Init {
        /// PKI folder.
        #[arg(long)]
        dir: PathBuf,
        /// DNS names of the hub (repeat).
        #[arg(long = "dns", default_value = "localhost")]
        dns: Vec<String>,
        /// IP addresses of the hub (repeat).
        #[arg(long = "ip", default_value = "127.0.0.1")]
        ip: Vec<std::net::IpAddr>,
        /// Validity of the CA in days.
        #[arg(long, default_value_t = renkei_hub::pki::CA_VALIDITY_DAYS)]
        days: u32,
    },
    /// Renew the participant CA certificate: same key and subject, new validity
    /// (issued certificates stay valid; then copy ca.pem and SIGHUP the hub).
    RenewCa {
        /// PKI folder.
        #[arg(long)]
        dir: PathBuf,
        /// Validity of the renewed CA in days, from now.
        #[arg(long, default_value_t = renkei_hub::pki::CA_VALIDITY_DAYS)]
        days: u32,
    },
    /// Issue a participant's key and certificate.
    Issue {
        /// PKI folder.
        #[arg(long)]
        dir: PathBuf,
        /// `kind:id`, e.g. `phr:asmile`.
        #[arg(long)]
        participant: ParticipantId,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 397)]
        days: u32,
    },
    /// Revoke a certificate by serial and regenerate the CRL.
    Revoke {
        /// PKI folder.
        #[arg(long)]
        dir: PathBuf,
        /// Serial number (hex, as printed by `issue`).
        #[arg(long)]
        serial: String,
    },
    /// Renew the hub's server certificate in place (then SIGHUP the hub).
    RenewServer {
        /// PKI folder.
        #[arg(long)]
        dir: PathBuf,
        /// DNS names of the hub (repeat; default: those of the current server.pem, as
        /// are the IP addresses when neither is given).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// IP addresses of the hub (repeat).
        #[arg(long = "ip")]
        ip: Vec<std::net::IpAddr>,
    },
    /// Regenerate the CRL.
    Crl {
        /// PKI folder.
        #[arg(long)]
        dir: PathBuf,
    },
    /// List certificates (CA, server, participants) not revoked that expire within DAYS.
    Expiring {
        /// PKI folder.
        #[arg(long)]
        dir: PathBuf,
        /// Warning window in days.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

#[derive(Debug, Subcommand)]
enum ParticipantCommand {
    /// Register a participant (or update its name and keys).
    Add {
        /// `kind:id`.
        participant: ParticipantId,
        /// Display name in Japanese, shown to residents (`--name` is the same).
        #[arg(long = "name-ja", alias = "name")]
        name: Option<String>,
        /// Display name in English, shown on the portal in English.
        #[arg(long = "name-en")]
        name_en: Option<String>,
        /// X25519 key-grant public key (base64).
        #[arg(long)]
        grant_key: Option<String>,
        /// X25519 enrollment public key (base64; sources).
        #[arg(long)]
        enrollment_key: Option<String>,
    },
    /// Suspend: the participant gets nothing from its next request on.
    Suspend {
        /// `kind:id`.
        participant: ParticipantId,
    },
    /// Resume a suspended participant.
    Resume {
        /// `kind:id`.
        participant: ParticipantId,
    },
    /// List participants; with `--pki`, also their certificates, flagging those that
    /// expire soon.
    List {
        /// PKI folder (its index.json) to show certificate serials and expiry.
        #[arg(long)]
        pki: Option<PathBuf>,
        /// Flag certificates that expire within this many days.
        #[arg(long, default_value_t = 30)]
        expiring_within: u32,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// New audit signing key version (keys/signing-vN.key); the old public key stays
    /// trusted (keys/signing-trusted.txt) and endorses the new one in the audit log.
    RotateSigning {
        /// The hub configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the chain and checkpoint signatures; names the first bad entry.
    Verify {
        /// A checkpoint JSON kept by a witness (e.g. an agent), to detect truncation.
        #[arg(long)]
        witness: Option<PathBuf>,
        /// Witness cosignature keys to count (C2SP vkeys, repeatable); without any, the
        /// keys witnesses first cosigned with, as stored by the hub, count.
        #[arg(long = "witness-key")]
        witness_keys: Vec<String>,
        /// Checkpoints need cosignatures (on them or a later checkpoint) of this many
        /// witnesses; those without are listed.
        #[arg(long, default_value_t = 1)]
        min_witnesses: usize,
        /// Fail when a checkpoint lacks enough cosignatures.
        #[arg(long)]
        strict: bool,
    },
    /// Sign a checkpoint now.
    Checkpoint,
    /// Print the log's verifier key (C2SP signed-note vkey) for witnesses to pin.
    Key,
}

/// Runs the command line (`main.rs` only calls this).
pub(crate) fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // The demo narrates on stdout; only warnings go to the log.
        Command::Demo { .. } => renkei_hub::logging::init_with(LogFormat::Text, "warn"),
        _ => renkei_hub::logging::init(LogFormat::Text),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("internet-hub: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Each cause once: a hub configuration error's message already ends
            // with its cause, which `{e:#}` would print a second time.
            eprintln!("internet-hub: {}", renkei_hub::error::report(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Demo { keep } => crate::demo::run(keep).await?,
        Command::Serve { config } => {
            let cfg = HubConfig::load(&config)?;
            renkei_hub::logging::init(cfg.log_format);
            let running = renkei_hub::app::start(&cfg, Clock::System).await?;
            eprintln!(
                "internet-hub: participant API https://{} · portal https://{} · admin http://{}",
                running.participant_addr, running.portal_addr, running.admin_addr
            );
            wait_for_shutdown(&running, &config).await;
            eprintln!("internet-hub: shutting down, finishing in-flight requests");
            running.shutdown().await;
        }
        Command::CheckConfig { config } => {
            let cfg = HubConfig::load(&config)?;
            let hub = renkei_hub::app::build_hub(&cfg, Clock::System).await?;
            // The three TLS configurations exactly as `serve` builds them.
            renkei_hub::app::tls_configs(&cfg)?;
            println!(
                "config `{}` is valid; database reachable: {}",
                config.display(),
                hub.db.ping().await
            );
        }
        Command::Init { dir, pki } => renkei_hub::init::init(&dir, &pki)?,
        Command::Pki { command } => pki(command)?,
        Command::Participants { config, command } => {
            let cfg = HubConfig::load(&config)?;
            let hub = renkei_hub::app::build_hub(&cfg, Clock::System).await?;
            let now = hub.now();
            match command {
                ParticipantCommand::Add {
                    participant,
                    name,
                    name_en,
                    grant_key,
                    enrollment_key,
                } => {
                    // Without --name, a participant keeps the name residents see.
                    let name = match name {
                        Some(name) => name,
                        None => {
                            let mut tx = hub.db.begin_read().await?;
                            let kept = renkei_hub::registry::get(&mut tx, &participant).await?;
                            tx.commit().await?;
                            kept.map_or_else(|| participant.to_string(), |p| p.display_name)
                        }
                    };
                    renkei_hub::registry::add(
                        &hub.db,
                        &participant,
                        &name,
                        grant_key.as_deref(),
                        enrollment_key.as_deref(),
                        now,
                    )
                    .await?;
                    if let Some(en) = name_en {
                        renkei_hub::registry::set_english_name(&hub.db, &participant, &en).await?;
                    }
                    println!("registered {participant}");
                }
                ParticipantCommand::Suspend { participant } => {
                    renkei_hub::registry::set_status(&hub.db, &participant, true, now).await?;
                    println!("suspended {participant}");
                }
                ParticipantCommand::Resume { participant } => {
                    renkei_hub::registry::set_status(&hub.db, &participant, false, now).await?;
                    println!("resumed {participant}");
                }
                ParticipantCommand::List {
                    pki,
                    expiring_within,
                } => {
                    let certs = match &pki {
                        Some(dir) => Some(renkei_hub::registry::certificate_status(
                            &renkei_hub::pki::Index::load(dir)?,
                            now,
                            chrono::Duration::days(i64::from(expiring_within)),
                        )),
                        None => None,
                    };
                    let participants = renkei_hub::registry::list(&hub.db).await?;
                    for p in &participants {
                        println!(
                            "{:<32} {:<10} grant_key={} enrollment_key={}  {}",
                            p.id,
                            p.status,
                            if p.grant_pk.is_some() { "yes" } else { "no" },
                            if p.enrollment_pk.is_some() {
                                "yes"
                            } else {
                                "no"
                            },
                            p.display_name
                        );
                        if let Some(certs) = &certs {
                            let mine: Vec<_> = certs
                                .iter()
                                .filter(|c| {
                                    c.participant.as_ref().map(ToString::to_string)
                                        == Some(p.id.clone())
                                })
                                .collect();
                            if mine.is_empty() {
                                println!("    no live certificate in the PKI index");
                            }
                            for c in mine {
                                println!("    {}", renkei_hub::registry::cert_line(c));
                            }
                        }
                    }
                    if let Some(certs) = &certs {
                        // Counted as listed above: certificates of registered participants.
                        let registered = |c: &&renkei_hub::registry::CertStatus| {
                            c.participant.as_ref().is_some_and(|id| {
                                participants.iter().any(|p| p.id == id.to_string())
                            })
                        };
                        let due: Vec<_> =
                            certs.iter().filter(|c| c.state.needs_renewal()).collect();
                        let n = due.iter().copied().filter(registered).count();
                        // The CA and the server name no participant: `pki expiring` lists them.
                        let others = due.iter().filter(|c| c.participant.is_some()).count() - n;
                        println!(
                            "{n} certificate(s) expire within {expiring_within} days without a \
                             renewal{} (`internet-hub pki expiring` lists the CA and server too)",
                            match others {
                                0 => String::new(),
                                k => format!("; {k} more of participants not registered here"),
                            }
                        );
                    }
                }
            }
        }
        Command::Report {
            config,
            by,
            format,
            threshold,
        } => {
            let by = by
                .split(',')
                .filter(|d| !d.trim().is_empty())
                .map(str::parse)
                .collect::<Result<Vec<renkei_hub::report::Dimension>, _>>()?;
            if !matches!(format.as_str(), "csv" | "json") {
                bail!("--format: `{format}` is not `csv` or `json`");
            }
            let cfg = HubConfig::load(&config)?;
            let hub = renkei_hub::app::build_hub(&cfg, Clock::System).await?;
            let rows = renkei_hub::report::usage(&hub.db, &by, threshold).await?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&rows)?),
                _ => print!("{}", renkei_hub::report::to_csv(&rows)),
            }
        }
        Command::Studies { config, command } => {
            let cfg = HubConfig::load(&config)?;
            let hub = renkei_hub::app::build_hub(&cfg, Clock::System).await?;
            match command {
                StudyCommand::Add {
                    id,
                    recipient,
                    committee,
                    approval,
                    from,
                    until,
                } => {
                    let study = renkei_hub::studies::Study {
                        id,
                        recipient,
                        committee,
                        approval_id: approval,
                        starts_on: from,
                        ends_on: until,
                    };
                    renkei_hub::studies::add(&hub.db, &study, hub.now()).await?;
                    println!(
                        "registered study {} for {} ({} to {})",
                        study.id, study.recipient, study.starts_on, study.ends_on
                    );
                }
                StudyCommand::List => {
                    for s in renkei_hub::studies::list(&hub.db).await? {
                        println!(
                            "{:<24} {:<28} {} to {}  {} / {}",
                            s.id, s.recipient, s.starts_on, s.ends_on, s.committee, s.approval_id
                        );
                    }
                }
            }
        }
        Command::Audit { config, command } => {
            let cfg = HubConfig::load(&config)?;
            // Verifying a database that does not exist must not pass as "0 entries OK".
            let hub = if matches!(command, AuditCommand::Verify { .. }) {
                existing_hub(&cfg).await?
            } else {
                renkei_hub::app::build_hub(&cfg, Clock::System).await?
            };
            match command {
                AuditCommand::Key => {
                    println!(
                        "{}",
                        renkei_hub::audit::log::vkey(&hub.log_origin, &hub.signing_key)?
                    );
                }
                AuditCommand::Verify {
                    witness,
                    witness_keys,
                    min_witnesses,
                    strict,
                } => {
                    let witness = match witness {
                        Some(p) => Some(
                            serde_json::from_str(
                                &std::fs::read_to_string(&p)
                                    .with_context(|| format!("witness `{}`", p.display()))?,
                            )
                            .with_context(|| format!("witness `{}`", p.display()))?,
                        ),
                        None => None,
                    };
                    let trusted = renkei_hub::audit::rotation::trusted_keys(
                        &cfg.keys.signing,
                        &hub.signing_key.verifying_key(),
                    )?;
                    match renkei_hub::audit::verify(&hub.db, &trusted, witness.as_ref()).await? {
                        Ok(r) => println!(
                            "audit log OK: {} entries, {} signed checkpoints verified, head {}",
                            r.entries, r.checkpoints, r.head
                        ),
                        Err(b) => bail!("audit log BROKEN at entry {}: {}", b.seq, b.reason),
                    }
                    let pinned = witness_keys
                        .iter()
                        .map(|k| renkei_crypto::tlog::note::NoteVerifier::parse(k))
                        .collect::<Result<Vec<_>, _>>()?;
                    let r = match renkei_hub::audit::log::verify(
                        &hub.db,
                        &hub.log_origin,
                        &trusted,
                        &pinned,
                        min_witnesses,
                    )
                    .await?
                    {
                        Ok(r) => r,
                        Err(b) => bail!("audit log BROKEN at entry {}: {}", b.seq, b.reason),
                    };
                    println!(
                        "transparency log OK: {} leaves, {} signed checkpoint notes, {} cosignatures by {} witness(es)",
                        r.leaves, r.notes, r.cosignatures, r.witnesses
                    );
                    if let Some(t) = r.newest_cosignature.and_then(|t| i64::try_from(t).ok()) {
                        let at = chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
                        println!("newest cosignature: {}", at.to_rfc3339());
                    }
                    if !r.unwitnessed.is_empty() {
                        println!(
                            "checkpoints without cosignatures of {min_witnesses} witness(es): {}",
                            summarize(&r.unwitnessed)
                        );
                        if strict {
                            bail!("{} checkpoint(s) lack cosignatures", r.unwitnessed.len());
                        }
                    }
                    // The ledger's chain, up to (at least) the head the newest checkpoint
                    // names: a cosigned head that is gone or changed is a rewrite.
                    let expected = r.ledger_head.as_ref().map(|h| renkei_consent::ChainHead {
                        seq: i64::try_from(h.seq).unwrap_or(i64::MAX),
                        hash: h.hash.clone(),
                    });
                    let chain = renkei_consent::ConsentStore::verify_chain(
                        &hub.consents,
                        expected.as_ref(),
                    )
                    .await?;
                    println!(
                        "consent ledger OK: {} entries, head {}, matches the consent table and \
                         the heads in the signed checkpoints",
                        chain.entries,
                        chain
                            .head
                            .map_or_else(|| "none".to_owned(), |h| format!("{} {}", h.seq, h.hash))
                    );
                }
                AuditCommand::Checkpoint => {
                    match renkei_hub::audit::checkpoint_as(
                        &hub.db,
                        &hub.signing_key,
                        &hub.log_origin,
                        hub.now(),
                    )
                    .await?
                    {
                        Some(cp) => println!("{}", serde_json::to_string_pretty(&cp)?),
                        None => println!("no new entries since the last checkpoint"),
                    }
                }
            }
        }
        Command::Keys {
            command: KeysCommand::RotateSigning { config },
        } => {
            let cfg = HubConfig::load(&config)?;
            let hub = renkei_hub::app::build_hub(&cfg, Clock::System).await?;
            let r = renkei_hub::audit::rotation::rotate(
                &hub.db,
                &hub.signing_key,
                &cfg.keys.signing,
                hub.now(),
            )
            .await?;
            println!(
                "new signing key {} in `{}`\npublic key {} ({})\n\
                 the current key {} signed checkpoint {} endorsing it and stays trusted in `{}`\n\
                 next: set `keys.signing` in `{}` to the new file, restart or roll every hub, \
                 update `[hub] signing_key` on agents that pin it, then delete the old key file",
                r.version,
                r.path.display(),
                r.public_key.to_base64(),
                renkei_hub::audit::rotation::fingerprint(&r.public_key),
                hub.signing_key.version(),
                r.endorsement.seq,
                renkei_hub::audit::rotation::trusted_path(&cfg.keys.signing).display(),
                config.display()
            );
        }
        Command::Backup { config, out } => return backup(&config, &out).await,
        Command::RevokeConsent { config, id, reason } => {
            let cfg = HubConfig::load(&config)?;
            let hub = existing_hub(&cfg).await?;
            let c = renkei_hub::broker::consents::revoke_as_admin(&hub, &id, &reason).await?;
            println!("revoked consent {} (version {})", c.id, c.version);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The hub of `cfg` for a command that must find what a hub kept (`audit verify`, `backup`,
/// `revoke-consent`): a SQLite database that does not exist is an error (a mistyped
/// `database_url` would otherwise be created empty, and `audit verify` would call its 0
/// entries OK).
async fn existing_hub(cfg: &HubConfig) -> anyhow::Result<std::sync::Arc<renkei_hub::broker::Hub>> {
    if let Some(file) = renkei_hub::db::sqlite_file(&cfg.database_url)
        && !file.exists()
    {
        bail!(
            "database `{}` (`database_url`) does not exist: check the path (`serve` and \
             `participants add` create a new database)",
            file.display()
        );
    }
    Ok(renkei_hub::app::build_hub(cfg, Clock::System).await?)
}

/// `backup`: SQLite through the hub's pool; PostgreSQL is pg_dump's job (exit 2).
async fn backup(
    config: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<std::process::ExitCode> {
    let cfg = HubConfig::load(config)?;
    let url = &cfg.database_url;
    if !url.starts_with("sqlite:") {
        let cmd = renkei_hub::backup::pg_dump_command(url, out)?;
        eprintln!(
            "the database is PostgreSQL: back it up with pg_dump (password from PGPASSWORD or \
             ~/.pgpass), restore with pg_restore --clean --if-exists --no-owner"
        );
        println!("{cmd}");
        return Ok(std::process::ExitCode::from(2));
    }
    let hub = existing_hub(&cfg).await?;
    let written = renkei_hub::backup::sqlite_backup(&hub.db, out).await?;
    println!(
        "backed up `{}` to `{}` ({} bytes); restore: stop the hub, copy it back, delete \
         the -wal and -shm files, run `audit verify`",
        renkei_hub::db::redact_url(url),
        out.display(),
        written.bytes
    );
    Ok(std::process::ExitCode::SUCCESS)
}

fn pki(command: PkiCommand) -> anyhow::Result<()> {
    use renkei_hub::pki;
    let now = Clock::System.now();
    match command {
        PkiCommand::Init { dir, dns, ip, days } => {
            pki::init(&dir, &dns, &ip, days, now)?;
            println!(
                "participant CA and hub server certificate written to {}",
                dir.display()
            );
        }
        PkiCommand::RenewCa { dir, days } => {
            let r = pki::renew_ca(&dir, days, now)?;
            println!(
                "renewed the participant CA in {}: serial {} valid until {} (same key and subject; \
                 the previous certificate, serial {}, is kept as {}); copy ca.pem to the hub and to \
                 every participant and send the hub SIGHUP; nothing needs re-issuing",
                dir.display(),
                r.new_serial,
                r.not_after,
                r.old_serial,
                r.archived.display()
            );
        }
        PkiCommand::Issue {
            dir,
            participant,
            out,
            days,
        } => {
            let serial = pki::issue(&dir, &participant, &out, days, now)?;
            println!(
                "issued {participant}: serial {serial}, files in {}",
                out.display()
            );
        }
        PkiCommand::Revoke { dir, serial } => {
            pki::revoke(&dir, &serial, now)?;
            println!("revoked serial {serial}; CRL regenerated");
        }
        PkiCommand::RenewServer { dir, dns, ip } => {
            // Without names, the certificate keeps its own: renewing must not move the
            // hub to `localhost` under its participants' feet.
            let (dns, ip) = match dns.is_empty() && ip.is_empty() {
                true => pki::server_names(&dir)?,
                false => (dns, ip),
            };
            pki::renew_server(&dir, &dns, &ip, now)?;
            println!(
                "renewed the hub server certificate in {}; send the hub SIGHUP to use it",
                dir.display()
            );
        }
        PkiCommand::Crl { dir } => {
            let path = pki::crl(&dir, now)?;
            println!("CRL written to {}", path.display());
        }
        PkiCommand::Expiring { dir, days } => {
            let all = renkei_hub::registry::certificate_status(
                &pki::Index::load(&dir)?,
                now,
                chrono::Duration::days(i64::from(days)),
            );
            let soon: Vec<_> = all
                .iter()
                .filter(|c| c.state != renkei_hub::registry::CertState::Valid)
                .collect();
            if soon.is_empty() {
                println!("no certificate expires within {days} days");
            }
            for c in soon {
                println!("{}", renkei_hub::registry::cert_line(c));
            }
        }
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM; on SIGHUP reloads certificates, CRLs and policies
/// (re-reading the config file for their paths) without dropping connections.
async fn wait_for_shutdown(running: &renkei_hub::app::Running, config: &std::path::Path) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                let outcome = HubConfig::load(config).and_then(|cfg| running.reload(&cfg));
                match outcome {
                    Ok(()) => eprintln!("internet-hub: reloaded certificates, CRLs and policies"),
                    Err(e) => eprintln!(
                        "internet-hub: reload refused, keeping the running set-up: {}",
                        renkei_hub::error::report(&e)
                    ),
                }
            }
        }
    }
}

/// Sizes as a short list: the first few, then how many more.
fn summarize(sizes: &[u64]) -> String {
    let shown: Vec<String> = sizes.iter().take(10).map(u64::to_string).collect();
    match sizes.len().checked_sub(10) {
        Some(more) if more > 0 => format!("{} and {more} more", shown.join(", ")),
        _ => shown.join(", "),
    }
}
