//! Agent import benchmark: `synth` writes a synthetic 特定健診 archive; `import` runs
//! the agent's import (zip → parse → minimize → tokenize → seal → durable outbox) in
//! this process and reports persons/s and this process's peak RSS.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
use lgwan_agent::agent::Agent;
use lgwan_agent::outbox::Outbox;
use lgwan_agent::synth::{SynthOptions, write_archive};
use renkei_bench::parts::Part;
use renkei_bench::proc::{Pid, peak_rss_mib};

/// The allocator the `lgwan-agent` binary uses (lgwan-agent/src/main.rs), so that the
/// import measured here is the product's.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes an archive of `persons` invented persons (one checkup each).
    Synth {
        #[arg(long)]
        persons: usize,
        #[arg(long)]
        out: PathBuf,
        /// Which part of a larger input this archive is (1, 2, …): each part has other
        /// persons and another sender, so other document and record ids. The agent takes
        /// at most 500,000 entries an archive, so 1,000,000 persons come in parts.
        #[arg(long, default_value_t = 1)]
        part: u16,
    },
    /// Imports the archives (one import run) with a fresh agent in `dir`; writes the
    /// figures to `part`.
    Import {
        #[arg(long, required = true)]
        archive: Vec<PathBuf>,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        part: PathBuf,
        /// Prefix of the figure names (`agent` or `agent_10x`).
        #[arg(long, default_value = "agent")]
        name: String,
    },
    /// Times the import's stages one by one: the survey pass, parse + minimize +
    /// tokenize + seal with the records discarded, and spooling the sealed records.
    Stages {
        #[arg(long)]
        archive: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        part: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Synth { persons, out, part } => {
            let opts = SynthOptions {
                persons,
                seed: 2025 + u64::from(part),
                // Part 1 keeps the sender every earlier run used.
                sender: if part <= 1 {
                    SynthOptions::default().sender
                } else {
                    format!("131124{part:04}")
                },
                exam_year: 2026,
                creation_date: "20260701".into(),
                repeat_visit: false,
                twins: false,
                ..SynthOptions::default()
            };
            let t0 = Instant::now();
            let summary = write_archive(&out, &opts)?;
            let bytes = std::fs::metadata(&out)?.len();
            eprintln!(
                "synth: {} persons, {} documents, {:.1} MB zip, {:.1} s",
                summary.persons,
                summary.documents,
                bytes as f64 / 1e6,
                t0.elapsed().as_secs_f64()
            );
        }
        Command::Import {
            archive,
            dir,
            part,
            name,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(import(archive, dir, part, name))?;
        }
        Command::Stages { archive, dir, part } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(stages(archive, dir, part))?;
        }
    }
    Ok(())
}

async fn stages(archive: PathBuf, dir: PathBuf, part: PathBuf) -> Result<()> {
    std::fs::create_dir_all(&dir)?;
    let init = lgwan_agent::agent::init(&dir, &"source:bench-city".parse()?)?;
    let agent = Agent::load(&init.config)?;
    let files = [archive];
    let t0 = Instant::now();
    let book = agent.survey(&files);
    let survey = t0.elapsed().as_secs_f64();
    let rss_after_survey = renkei_bench::proc::rss_mib(Pid::Me)?;
    let t0 = Instant::now();
    let mut sealed = Vec::new();
    let mut failure = None;
    // The import's own path: records sealed from their JSON text on the worker threads
    // (`seal_raw`), never parsed back (`prepare` parses payloads, for `preview`).
    let seal = |record: lgwan_agent::pipeline::RawRecord| {
        lgwan_agent::import::seal_raw(&agent, &record, book.branch(&record.subject_token))
    };
    let run = agent.prepare_with(&files, &book, &seal, &mut |outcome| match outcome {
        lgwan_agent::pipeline::Outcome::Records(records) => sealed.extend(records),
        lgwan_agent::pipeline::Outcome::Failed(e) => failure = Some(e),
        lgwan_agent::pipeline::Outcome::Quarantined(_) => {}
    });
    let prepare = t0.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e.into());
    }
    let outbox = Outbox::open(&agent.config.outbox).await?;
    let t0 = Instant::now();
    for chunk in sealed.chunks(1000) {
        outbox.put(chunk).await?;
    }
    let spool = t0.elapsed().as_secs_f64();
    outbox.close().await;
    let persons = run.documents as f64;
    let mut p = Part::default();
    p.set("stage_persons", run.documents)
        .set("stage_survey_persons_per_s", persons / survey)
        .set("stage_prepare_seal_persons_per_s", persons / prepare)
        .set("stage_spool_records_per_s", sealed.len() as f64 / spool)
        .set("stage_survey_s", survey)
        .set("stage_rss_after_survey_mib", rss_after_survey)
        .set("stage_peak_rss_mib", peak_rss_mib(Pid::Me)?)
        .set("stage_prepare_seal_s", prepare)
        .set("stage_spool_s", spool);
    p.write(&part)
}

async fn import(archives: Vec<PathBuf>, dir: PathBuf, part: PathBuf, name: String) -> Result<()> {
    std::fs::create_dir_all(&dir)?;
    let init = lgwan_agent::agent::init(&dir, &"source:bench-city".parse()?)?;
    let agent = Agent::load(&init.config)?;
    let outbox = Outbox::open(&agent.config.outbox).await?;
    let rss_before = peak_rss_mib(Pid::Me)?;
    let t0 = Instant::now();
    let summary = lgwan_agent::import::import(&agent, &outbox, &archives, &mut |_| {})
        .await
        .with_context(|| format!("importing {archives:?}"))?;
    let secs = t0.elapsed().as_secs_f64();
    ensure!(
        summary.quarantined.is_empty() && summary.records > 0,
        "import quarantined inputs: {summary:?}"
    );
    ensure!(
        outbox.depth().await? == summary.records as u64,
        "the outbox does not hold every record"
    );
    outbox.close().await;
    let peak = peak_rss_mib(Pid::Me)?;
    let persons = summary.documents;
    let mut p = Part::default();
    p.set(&format!("{name}_persons"), persons)
        .set(&format!("{name}_records"), summary.records)
        .set(&format!("{name}_seconds"), secs)
        .set(&format!("{name}_persons_per_s"), persons as f64 / secs)
        .set(
            &format!("{name}_records_per_s"),
            summary.records as f64 / secs,
        )
        .set(&format!("{name}_peak_rss_mib"), peak)
        .set(&format!("{name}_rss_before_import_mib"), rss_before);
    p.write(&part)
}
