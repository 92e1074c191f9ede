//! `lgwan-agent`: the command line over the `lgwan_agent` library.
//!
//! Outbound connections only; this binary never listens on a port.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lgwan_agent::agent::{Agent, init};
use lgwan_agent::domain::{PersonIdentity, Sex, parse_date};
use lgwan_agent::preview::preview;
use renkei_crypto::participant::ParticipantId;

#[derive(Debug, Parser)]
#[command(
    name = "lgwan-agent",
    version,
    about = "Renkei LGWAN agent: parse, minimize, tokenize, seal, spool"
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
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lgwan-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init { dir, source } => {
            let done = init(&dir, &source)?;
            println!("wrote {}", done.config.display());
            println!("enrollment public key: {}", done.enrollment_public_key);
        }
        Command::Token {
            config,
            insurer,
            symbol,
            number,
            birth,
            sex,
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
            let (token, _) = agent.tokenize(&person)?;
            println!("{}", token.as_str());
        }
        Command::Preview { config, inputs } => {
            let agent = Agent::load(&config)?;
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
    }
    Ok(ExitCode::SUCCESS)
}
