//! The `lgwan-agent` command line over the `lgwan_agent` library.
//!
//! Outbound connections only; this binary never listens on a port.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use lgwan_agent::agent::{Agent, init};
use lgwan_agent::counter::{CounterTerms, receipt_text};
use lgwan_agent::daemon::{enrollment_text, quarantined_files, status_text};
use lgwan_agent::domain::{PersonIdentity, Sex, parse_date};
use lgwan_agent::import::{ProgressPrinter, import};
use lgwan_agent::outbox::Outbox;
use lgwan_agent::preview::preview;
use lgwan_agent::sync::connect;
use renkei_crypto::identity::Identity;
use renkei_crypto::participant::ParticipantId;

#[derive(Debug, Parser)]
#[command(
    name = "lgwan-agent",
    version,
    about = "Renkei LGWAN agent: parse, minimize, tokenize, seal, spool, upload (outbound only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the keys (0600, versioned) and an agent.toml to edit.
    Init {
        /// Folder to create them in.
        #[arg(long)]
        dir: PathBuf,
        /// This agent's participant id, `source:<id>`.
        #[arg(long)]
        source: ParticipantId,
    },
    /// Child-health follow-up: find the resident behind a pseudonym the city's own
    /// municipality received records under (a consent for `child-health-followup` must
    /// be in force). The hub gives the agent its own token of the resident, audited at
    /// the hub; the agent finds the person in FILES (the city's KDB exports, checkup
    /// archives) and prints them here, inside LGWAN. Every lookup, found or refused, is
    /// noted (staff, pseudonym, consent; never the identity) in `resolutions.jsonl`
    /// beside the outbox.
    Resolve {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
        /// The municipality that received the records (default: `municipality:<this
        /// agent's id>`).
        #[arg(long)]
        recipient: Option<ParticipantId>,
        /// Who asks (staff id), for the local note.
        #[arg(long)]
        staff: String,
        /// The pseudonym (`rp1_…`).
        pseudonym: String,
        /// Archives (.zip), CSV files, or folders of them to find the resident in.
        #[arg(long = "in", required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Print the subject token of a person (for counter staff and for checking).
    Token {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
        /// 保険者番号 (6 or 8 digits).
        #[arg(long)]
        insurer: String,
        /// 記号 (may be empty).
        #[arg(long, default_value = "")]
        symbol: String,
        /// 番号.
        #[arg(long)]
        number: String,
        /// Birth date, YYYY-MM-DD.
        #[arg(long)]
        birth: String,
        /// male or female.
        #[arg(long)]
        sex: String,
        /// Print the token under every token key version (`vN TOKEN`, the active one marked).
        #[arg(long)]
        all: bool,
    },
    /// Key versions: rotate the record or token key, list what the agent holds.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// A programme's outcome statistics (participants against the others, by sex and age
    /// band, per fiscal year), computed here with disclosure control: no person leaves.
    Evaluate {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
        /// The programme file (docs/evaluation.md).
        #[arg(long)]
        program: PathBuf,
        /// Where to write the report (JSON).
        #[arg(long)]
        out: PathBuf,
        /// Also deliver it through the hub, sealed to the programme's evaluator (who
        /// must be on the release list for `program-evaluation`).
        #[arg(long)]
        deliver: bool,
        /// Archives (.zip), CSV files, or folders of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Print, as JSON Lines, exactly what would leave the building.
    Preview {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
        /// Archives (.zip), CSV files, or folders of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Parse, minimize, tokenize, seal and spool into the outbox.
    Import {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
        /// Archives (.zip), CSV files, or folders of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// The daemon: import folder, uploads, key grants, enrollments, checkpoints.
    Run {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Outbox depth, last upload, last error, quarantined files, the log witness.
    Status {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// The agent as a witness of the hub's transparency log.
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// Consents taken at the counter (対面).
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// One-time codes a resident needs to link a PHR app (web enrollment).
    EnrollmentCode {
        #[command(subcommand)]
        command: EnrollmentCodeCommand,
    },
}

#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Clear the transparency-log alarm after checking the hub (a fork, rewrite or
    /// shrink of its log stopped key releases). The next round accepts the hub's
    /// checkpoint as a new start; the history of checkpoints seen is kept.
    ClearAlarm {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum EnrollmentCodeCommand {
    /// Issue a code for the resident whose card staff checked, and print it once for the
    /// result notice or the counter. Only its keyed hash is kept; it links one app once,
    /// within `[enrollment] code_valid_days`. It replaces the resident's earlier unused
    /// codes and unlocks their web enrollment.
    Issue {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        person: IdentityArgs,
    },
}

/// A resident's identifiers as staff type them from the card.
#[derive(Debug, Args)]
struct IdentityArgs {
    /// 保険者番号 (6 or 8 digits).
    #[arg(long)]
    insurer: String,
    /// 記号 (may be empty).
    #[arg(long, default_value = "")]
    symbol: String,
    /// 番号.
    #[arg(long)]
    number: String,
    /// 枝番, when the card has one.
    #[arg(long)]
    branch: Option<String>,
    /// Birth date, YYYY-MM-DD.
    #[arg(long)]
    birth: String,
    /// male or female.
    #[arg(long)]
    sex: String,
}

impl IdentityArgs {
    fn identity(self) -> anyhow::Result<Identity> {
        Ok(Identity {
            insurer_number: self.insurer,
            symbol: self.symbol,
            number: self.number,
            birth_date: self.birth,
            sex: self.sex.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
            branch: self.branch,
        })
    }
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// New record master key version (keys/record-vN.key): new records are sealed with
    /// it; older versions stay to answer key grants for the records they sealed.
    RotateRecord {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// New token key version (keys/token-vN.key), not used until `--activate`. From
    /// then on every resident the agent reads is tokenized under both versions and the
    /// pairs go to the hub (`run`), which links them. With `--activate`: switch
    /// tokenizing to the newest version (no new key).
    RotateToken {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
        /// Tokenize with the newest version from now on.
        #[arg(long)]
        activate: bool,
    },
    /// The key versions the agent holds and which are in use, and the subject links
    /// of a token key rotation (pending, sent, refused).
    List {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Token key rotation: spool the token pairs of everyone in FILES (read as `import`
    /// reads them; nothing is imported) so the hub can link residents who have no new
    /// records yet. `run` uploads them, or `--upload` now.
    Link {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
        /// Upload the pending links to the hub now.
        #[arg(long)]
        upload: bool,
        /// Archives (.zip), CSV files, or folders of them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConsentCommand {
    /// Grant a consent for the resident whose card staff checked; prints the receipt.
    Grant(GrantArgs),
    /// Revoke a consent the resident asks to end.
    Revoke {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
        /// The consent id (on the receipt).
        #[arg(long)]
        id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "revoked at the counter")]
        reason: String,
    },
}

#[derive(Debug, Args)]
struct GrantArgs {
    /// The agent's config file.
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    person: IdentityArgs,
    /// Recipient participant, `kind:id`.
    #[arg(long)]
    recipient: String,
    /// Purpose code, e.g. `online-consultation`.
    #[arg(long)]
    purpose: String,
    /// Categories, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    categories: Vec<String>,
    /// Validity in hours from now (none: until revoked, where policy allows).
    #[arg(long)]
    hours: Option<u32>,
    /// The staff member's id.
    #[arg(long)]
    staff: String,
}

/// An error and its causes, each cause only once (an I/O error's text is often already
/// in the message that wraps it).
fn report(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// Runs the command line (`main.rs` only calls this).
#[tokio::main]
pub(crate) async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lgwan-agent: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init { dir, source } => {
            let done = init(&dir, &source)?;
            println!("wrote {}", done.config.display());
            println!("enrollment public key: {}", done.enrollment_public_key);
        }
        Command::Resolve {
            config,
            recipient,
            staff,
            pseudonym,
            inputs,
        } => {
            let agent = Agent::load(&config)?;
            // The lookup is audited at the hub: a wrong --in is found before it is made.
            lgwan_agent::pipeline::check_inputs(&inputs)?;
            let recipient = match recipient {
                Some(r) => r,
                None => format!("municipality:{}", agent.config.source.id()).parse()?,
            };
            let client = connect(&agent.config)?;
            let answer = client
                .resolve_pseudonym(&recipient.to_string(), &pseudonym)
                .await;
            #[expect(
                clippy::disallowed_methods,
                reason = "the binary's edge reads the wall clock once"
            )]
            let now = chrono::Utc::now();
            let note = serde_json::json!({
                "at": now,
                "staff": staff,
                "recipient": recipient.to_string(),
                "pseudonym": pseudonym,
                "consent_id": answer.as_ref().ok().map(|f| f.consent_id.clone()),
                "outcome": if answer.is_ok() { "found" } else { "refused" },
            });
            let log = agent
                .config
                .outbox
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("resolutions.jsonl");
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .with_context(|| format!("opening `{}`", log.display()))?;
            std::io::Write::write_all(&mut file, format!("{note}\n").as_bytes())
                .with_context(|| format!("writing `{}`", log.display()))?;
            let found = answer?;
            let token = renkei_crypto::token::SubjectToken::parse(&found.subject_token)
                .map_err(|e| anyhow::anyhow!("the hub answered a malformed token: {e}"))?;
            let files = lgwan_agent::pipeline::expand_inputs(&inputs);
            let (worker, token2) = (agent.clone(), token.clone());
            let person =
                tokio::task::spawn_blocking(move || worker.find_subject(&files, &token2)).await?;
            let Some((person, resident)) = person else {
                anyhow::bail!(
                    "the hub names a resident of this agent under consent `{}`, but no input \
                     holds them: give the exports that do with --in",
                    found.consent_id
                );
            };
            println!(
                "consent / 同意:        {} ({})",
                found.consent_id, found.purpose
            );
            println!("保険者番号 / insurer:  {}", person.insurer);
            println!("記号・番号 / card:     {} {}", person.symbol, person.number);
            if let Some(branch) = &person.branch {
                println!("枝番 / branch:        {branch}");
            }
            println!("生年月日 / birth:      {}", person.birth);
            println!("性別 / sex:           {:?}", person.sex);
            if let Some(r) = resident {
                println!("宛名番号:             {r}");
            }
        }
        Command::Token {
            config,
            insurer,
            symbol,
            number,
            birth,
            sex,
            all,
        } => {
            let agent = Agent::load(&config)?;
            let person = PersonIdentity {
                insurer,
                symbol,
                number,
                branch: None,
                birth: parse_date(&birth).with_context(|| {
                    format!("invalid birth date `{birth}`: expected YYYY-MM-DD")
                })?,
                sex: Sex::parse(&sex)
                    .with_context(|| format!("invalid sex `{sex}`: expected male or female"))?,
            };
            if all {
                let identity = person_identity(&person);
                for (version, token) in agent.tokenize_all(&identity)? {
                    let active = if version == agent.active_token_version() {
                        "  (active)"
                    } else {
                        ""
                    };
                    println!("{version} {}{active}", token.as_str());
                }
            } else {
                let (token, _) = agent.tokenize(&person)?;
                println!("{}", token.as_str());
            }
        }
        Command::Keys { command } => keys(command).await?,
        Command::Evaluate {
            config,
            program,
            out,
            deliver,
            inputs,
        } => {
            let agent = Agent::load(&config)?;
            lgwan_agent::pipeline::check_inputs(&inputs)?;
            let program = lgwan_agent::evaluate::Program::load(&program)?;
            // Signed with the agent's own certificate key, as its key statements are.
            let Some(hub) = agent.config.hub.as_ref() else {
                anyhow::bail!(
                    "config `{}`: the report is signed with this agent's certificate, and \
                     the [hub] section (cert, key) names none",
                    config.display()
                );
            };
            let (report, summary) = lgwan_agent::evaluate::evaluate(&agent, &program, &inputs)?;
            #[expect(
                clippy::disallowed_methods,
                reason = "the binary's edge reads the wall clock once"
            )]
            let now = chrono::Utc::now();
            let cells = report.cells.len();
            let signed =
                lgwan_agent::evaluate::SignedReport::sign(report, &hub.cert, &hub.key, now)?;
            let json = serde_json::to_vec_pretty(&signed)?;
            std::fs::write(&out, json)
                .map_err(|e| anyhow::anyhow!("writing `{}`: {e}", out.display()))?;
            if deliver {
                // The release list decides, as for every key the agent seals.
                let evaluator: ParticipantId = program.evaluator.parse()?;
                let purpose = lgwan_agent::evaluate::PURPOSE;
                if !agent
                    .config
                    .release
                    .iter()
                    .any(|r| r.allows(&evaluator, purpose))
                {
                    anyhow::bail!(
                        "the release list of `{}` does not name `{evaluator}` for `{purpose}`: \
                         the report was written, not delivered",
                        config.display()
                    );
                }
                let client = lgwan_agent::sync::connect(&agent.config)?;
                let delivered = renkei_client::evaluation::deliver(&client, &signed).await?;
                eprintln!(
                    "delivered to {evaluator} through the hub as {}",
                    delivered.id
                );
            }
            eprintln!(
                "{}: {} persons ({} on the roster, {} roster entries not in the population); \
                 {} cells, {} suppressed; written to `{}`",
                program.name,
                summary.population,
                summary.participants,
                summary.roster_unmatched,
                cells,
                summary.suppressed,
                out.display()
            );
        }
        Command::Preview { config, inputs } => {
            let agent = Agent::load(&config)?;
            lgwan_agent::pipeline::check_inputs(&inputs)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut quarantined = 0usize;
            let summary = preview(&agent, &inputs, &mut out, &mut |q| {
                quarantined += 1;
                eprintln!("quarantined: {q}");
            })?;
            out.flush()?;
            eprintln!(
                "{} records from {} documents and {} rows; {} quarantined; {} items not exported",
                summary.records,
                summary.documents,
                summary.rows,
                summary.quarantined,
                summary.dropped_items
            );
            if quarantined > 0 {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Import { config, inputs } => {
            let agent = Agent::load(&config)?;
            lgwan_agent::pipeline::check_inputs(&inputs)?;
            let outbox = Outbox::open(&agent.config.outbox).await?;
            let mut printer = ProgressPrinter::stderr();
            let summary = import(&agent, &outbox, &inputs, &mut |p| printer.report(&p)).await;
            printer.finish();
            let summary = summary?;
            for q in &summary.quarantined {
                eprintln!("quarantined: {q}");
            }
            let depth = outbox.depth().await?;
            outbox.close().await;
            eprintln!(
                "{} records ({} new) from {} documents and {} rows; {} quarantined; \
                 {} subjects refused as shared identities; outbox depth {depth}",
                summary.records,
                summary.new_records,
                summary.documents,
                summary.rows,
                summary.quarantined.len(),
                summary.conflicts
            );
            if summary.resident_links > 0 || summary.resident_mismatches > 0 {
                eprintln!(
                    "{} insurer change(s) linked by 宛名番号; {} 宛名番号 seen with another birth \
                     date or sex, not linked (check the KDB export)",
                    summary.resident_links, summary.resident_mismatches
                );
            }
            if !summary.quarantined.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Run { config } => {
            let agent = Agent::load(&config)?;
            eprintln!(
                "lgwan-agent: running as `{}` (outbound only; stop with Ctrl-C or SIGTERM)",
                agent.config.source
            );
            // Lines may hold the hub's words: control characters are escaped.
            let mut log = |line: String| {
                eprintln!("lgwan-agent: {}", renkei_client::error::printable(&line));
            };
            lgwan_agent::sync::run(&agent, shutdown_signal(), &mut log).await?;
            eprintln!("lgwan-agent: stopped");
        }
        Command::Status { config } => {
            let agent = Agent::load(&config)?;
            let outbox = Outbox::open(&agent.config.outbox).await?;
            let status = outbox.status().await?;
            #[expect(
                clippy::disallowed_methods,
                reason = "the binary's edge reads the wall clock once"
            )]
            let now = chrono::Utc::now();
            let settings = agent.config.enrollment;
            let enrollment = outbox
                .enrollment_status(now.timestamp(), settings.app_failures_per_hour)
                .await?;
            let alarm = outbox.log_alarm().await?;
            let latest = outbox.latest_witnessed().await?;
            let witnessed = outbox.witnessed_count().await?;
            outbox.close().await;
            let pinned = agent
                .config
                .hub
                .as_ref()
                .is_some_and(|h| h.log_key.is_some());
            let files = agent
                .config
                .import_dir
                .as_deref()
                .map(quarantined_files)
                .unwrap_or_default();
            print!("{}", status_text(&agent.config.outbox, &status, &files));
            print!(
                "{}",
                lgwan_agent::daemon::witness_text(
                    pinned,
                    alarm.as_ref(),
                    latest.as_ref(),
                    witnessed
                )
            );
            print!("{}", enrollment_text(&enrollment, settings.require_code));
        }
        Command::Witness {
            command: WitnessCommand::ClearAlarm { config },
        } => {
            let agent = Agent::load(&config)?;
            let outbox = Outbox::open(&agent.config.outbox).await?;
            let cleared = outbox.clear_log_alarm().await;
            outbox.close().await;
            match cleared? {
                Some(a) => println!(
                    "cleared the transparency-log alarm raised {}: {}\nthe next round accepts the hub's checkpoint as a new start",
                    a.at, a.value
                ),
                None => println!("no transparency-log alarm is raised"),
            }
        }
        Command::Consent { command } => consent(command).await?,
        Command::EnrollmentCode {
            command: EnrollmentCodeCommand::Issue { config, person },
        } => {
            let agent = Agent::load(&config)?;
            let identity = person.identity()?;
            let outbox = Outbox::open(&agent.config.outbox).await?;
            #[expect(
                clippy::disallowed_methods,
                reason = "the binary's edge reads the wall clock once"
            )]
            let now = chrono::Utc::now();
            let issued = lgwan_agent::enroll::code::issue(&agent, &outbox, &identity, now).await;
            outbox.close().await;
            print!("{}", lgwan_agent::enroll::code::issued_text(&issued?));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The identifiers of a person as the crypto crate takes them.
fn person_identity(p: &PersonIdentity) -> Identity {
    Identity {
        insurer_number: p.insurer.clone(),
        symbol: p.symbol.clone(),
        number: p.number.clone(),
        birth_date: p.birth.format("%Y-%m-%d").to_string(),
        sex: match p.sex {
            Sex::Male => renkei_crypto::identity::Sex::Male,
            Sex::Female => renkei_crypto::identity::Sex::Female,
        },
        branch: p.branch.clone(),
    }
}

/// The outbox's subject-link counts and the first refusals (the hub's reasons), when
/// the outbox exists (never creates it).
async fn link_counts(
    agent: &Agent,
) -> anyhow::Result<Option<(lgwan_agent::outbox::LinkCounts, Vec<String>)>> {
    if !agent.config.outbox.exists() {
        return Ok(None);
    }
    let outbox = Outbox::open(&agent.config.outbox).await?;
    let counts = outbox.link_counts().await?;
    let refused = outbox.refused_links(20).await?;
    outbox.close().await;
    Ok(Some((
        counts,
        refused.into_iter().map(|(_, why)| why).collect(),
    )))
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    use lgwan_agent::agent::keyring::{self, KeyRing};
    use renkei_crypto::keys::{RecordKey, TokenKey};
    match command {
        KeysCommand::RotateRecord { config } => {
            let agent = Agent::load(&config)?;
            let (version, path) = keyring::rotate::<RecordKey>(&agent.config.keys.record)?;
            println!(
                "new record key {version} in `{}` (mode 0600); new records are sealed with it from \
                 the next import; keep every older record-*.key: key grants for older records \
                 need them",
                path.display()
            );
        }
        KeysCommand::RotateToken {
            config,
            activate: false,
        } => {
            let agent = Agent::load(&config)?;
            let (version, path) = keyring::rotate::<TokenKey>(&agent.config.keys.token)?;
            println!(
                "new token key {version} in `{}` (mode 0600), NOT active: tokens are still made \
                 with {}. Restart the agent: from now on every resident it reads is also \
                 tokenized under {version} and `run` uploads the pairs for the hub to link \
                 (`keys link` for residents with no new files). Activate with `keys \
                 rotate-token --activate` once `keys list` shows no pending links \
                 (docs/operations.md)",
                path.display(),
                agent.active_token_version()
            );
        }
        KeysCommand::RotateToken {
            config,
            activate: true,
        } => {
            let agent = Agent::load(&config)?;
            let token = &agent.config.keys.token;
            let ring = KeyRing::<TokenKey>::load(token)?;
            let newest = ring.newest().version();
            if newest == agent.active_token_version() {
                anyhow::bail!(
                    "token key {newest} is already active; run `keys rotate-token` first to make a new one"
                );
            }
            if let Some((c, _)) = link_counts(&agent).await? {
                if c.pending > 0 {
                    eprintln!(
                        "warning: {} subject links are not uploaded yet; run the agent so the hub \
                         has them before records under the new tokens arrive",
                        c.pending
                    );
                }
            }
            keyring::activate_token(token, &ring, newest)?;
            println!(
                "token key {newest} is active (`{}`); restart the agent: records imported from \
                 now on carry the new tokens, and the hub files them under each resident's \
                 linked history. Keep the older token-*.key: residents are linked as they are \
                 read",
                keyring::token_active_path(token).display()
            );
        }
        KeysCommand::List { config } => {
            let agent = Agent::load(&config)?;
            let records = agent.record_key_versions();
            for v in &records {
                let mut uses = Vec::new();
                if *v == agent.record_id_key().version() {
                    uses.push("record ids");
                }
                if *v == agent.record_key().version() {
                    uses.push("sealing");
                }
                if uses.is_empty() {
                    uses.push("key grants of older records");
                }
                println!("record {v}  {}", uses.join(", "));
            }
            for v in agent.token_key_versions() {
                let state = if v == agent.active_token_version() {
                    "active"
                } else {
                    "inactive"
                };
                println!("token  {v}  {state}");
            }
            if let Some((c, refused)) = link_counts(&agent).await? {
                if agent.is_linking() || c.pending + c.sent + c.refused > 0 {
                    println!(
                        "links  {} pending, {} sent, {} refused",
                        c.pending, c.sent, c.refused
                    );
                }
                for why in refused {
                    println!("  {why}");
                }
            }
        }
        KeysCommand::Link {
            config,
            upload,
            inputs,
        } => {
            let agent = Agent::load(&config)?;
            if !agent.is_linking() {
                anyhow::bail!(
                    "the agent holds one token key version: there is nothing to link; \
                     `keys rotate-token` makes the next one"
                );
            }
            let files = lgwan_agent::pipeline::expand_inputs(&inputs);
            let worker = agent.clone();
            let book = tokio::task::spawn_blocking(move || worker.survey(&files)).await?;
            let pairs = agent.take_links();
            let outbox = Outbox::open(&agent.config.outbox).await?;
            let new = outbox.put_links(&pairs).await?;
            println!(
                "{} inputs read: {} token pairs ({new} new) spooled for the hub",
                book.inputs(),
                pairs.len()
            );
            if upload {
                let client = connect(&agent.config)?;
                let sent = lgwan_agent::sync::upload_links_once(
                    &outbox,
                    &client,
                    agent.config.upload_batch,
                )
                .await;
                let counts = outbox.link_counts().await?;
                let refused = outbox.refused_links(20).await?;
                outbox.close().await;
                let sent = sent?;
                println!(
                    "uploaded {sent} links; {} pending, {} sent, {} refused",
                    counts.pending, counts.sent, counts.refused
                );
                for (_, why) in refused {
                    println!("  {why}");
                }
            } else {
                outbox.close().await;
            }
        }
    }
    Ok(())
}

async fn consent(command: ConsentCommand) -> anyhow::Result<()> {
    match command {
        ConsentCommand::Grant(a) => {
            let agent = Agent::load(&a.config)?;
            let client = connect(&agent.config)?;
            let identity = a.person.identity()?;
            #[expect(
                clippy::disallowed_methods,
                reason = "the binary's edge reads the wall clock once"
            )]
            let now = chrono::Utc::now();
            let valid_until = a.hours.map(|h| now + chrono::Duration::hours(i64::from(h)));
            let terms = CounterTerms {
                recipient: &a.recipient,
                purpose: &a.purpose,
                categories: &a.categories,
                valid_until,
                staff: &a.staff,
            };
            let receipt = lgwan_agent::counter::grant(&agent, &client, &identity, &terms).await?;
            print!("{}", receipt_text(&receipt));
        }
        ConsentCommand::Revoke { config, id, reason } => {
            let agent = Agent::load(&config)?;
            let client = connect(&agent.config)?;
            let consent = lgwan_agent::counter::revoke(&agent, &client, &id, &reason).await?;
            println!("consent `{}` is {}", consent.id, consent.status);
        }
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminate = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
