//! Merges the JSON parts of a benchmark run, sets each figure beside its reference and
//! target, prints the table, and writes `target/bench-report.json`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use serde_json::{Map, Value, json};

#[derive(Parser)]
struct Cli {
    /// Folder of `*.json` parts.
    #[arg(long)]
    parts: PathBuf,
    /// The report to write.
    #[arg(long)]
    out: PathBuf,
}

/// How a figure is judged.
enum Goal {
    AtLeast(f64),
    AtMost(f64),
    Flat,
}

/// One row: figure name, what it is compared with, the goal.
struct Row {
    name: &'static str,
    reference: &'static str,
    goal: Goal,
    unit: &'static str,
}

const ROWS: &[Row] = &[
    Row {
        name: "agent_persons_per_s",
        reference: "python_persons_per_s",
        goal: Goal::AtLeast(10_000.0),
        unit: "persons/s",
    },
    Row {
        name: "agent_peak_rss_mib",
        reference: "python_peak_rss_mib",
        goal: Goal::AtMost(256.0),
        unit: "MiB",
    },
    Row {
        name: "agent_rss_flat",
        reference: "agent_10x_peak_rss_mib",
        goal: Goal::Flat,
        unit: "10x/1x",
    },
    Row {
        name: "agent_speed_flat",
        reference: "agent_10x_persons_per_s",
        goal: Goal::AtLeast(0.9),
        unit: "10x/1x",
    },
    Row {
        name: "agent_vs_python_ratio",
        reference: "python_persons_per_s",
        goal: Goal::AtLeast(10.0),
        unit: "x",
    },
    Row {
        name: "seal_vs_openssl_ratio",
        reference: "openssl_aes256gcm_8k_mb_per_s",
        goal: Goal::AtLeast(0.6),
        unit: "x",
    },
    Row {
        name: "tokens_per_s",
        reference: "tokens_with_nfkc_per_s",
        goal: Goal::AtLeast(1_000_000.0),
        unit: "/s/core",
    },
    Row {
        name: "hub_ingest_sqlite_per_s",
        reference: "sqlite_raw_insert_per_s",
        goal: Goal::AtLeast(20_000.0),
        unit: "records/s",
    },
    Row {
        name: "hub_ingest_pg_per_s",
        reference: "pg_raw_insert_per_s",
        goal: Goal::AtLeast(20_000.0),
        unit: "records/s",
    },
    Row {
        name: "feed_drain_per_s",
        reference: "key_grants_per_s",
        goal: Goal::AtLeast(20_000.0),
        unit: "records/s",
    },
    Row {
        name: "read_rps_vs_nginx_ratio_64",
        reference: "nginx_rps_64",
        goal: Goal::AtLeast(0.5),
        unit: "x",
    },
    Row {
        name: "read_rps_vs_nginx_ratio_256",
        reference: "nginx_rps_256",
        goal: Goal::AtLeast(0.5),
        unit: "x",
    },
    Row {
        name: "read_p99_ms_256",
        reference: "nginx_p99_ms_256",
        goal: Goal::AtMost(20.0),
        unit: "ms",
    },
    Row {
        name: "handshake_vs_nginx_ratio",
        reference: "nginx_handshakes_per_s",
        goal: Goal::AtLeast(0.5),
        unit: "x",
    },
    Row {
        name: "hub_idle_rss_mib",
        reference: "hub_rss_no_connections_mib",
        // With 10,000 idle connections (issue 21).
        goal: Goal::AtMost(100.0),
        unit: "MiB",
    },
    Row {
        name: "stale_reads_after_revoke",
        reference: "revokes_during_reads",
        goal: Goal::AtMost(0.0),
        unit: "reads",
    },
];

/// RSS counts as flat when the 10x input needs at most a quarter more memory.
const FLAT_GROWTH: f64 = 1.25;

fn num(all: &Map<String, Value>, name: &str) -> Option<f64> {
    all.get(name).and_then(Value::as_f64)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut all = renkei_bench::parts::merge(&cli.parts)?;
    // Derived figures.
    if let (Some(a), Some(b)) = (
        num(&all, "agent_peak_rss_mib"),
        num(&all, "agent_10x_peak_rss_mib"),
    ) {
        all.insert("agent_rss_flat".into(), json!(b / a));
    }
    if let (Some(a), Some(b)) = (
        num(&all, "agent_persons_per_s"),
        num(&all, "agent_10x_persons_per_s"),
    ) {
        // Issue 21: persons/s at 10 × the input within 10 % of the figure at 1 ×.
        all.insert("agent_speed_flat".into(), json!(b / a));
    }
    if let (Some(a), Some(p)) = (
        num(&all, "agent_persons_per_s"),
        num(&all, "python_persons_per_s"),
    ) {
        all.insert("agent_vs_python_ratio".into(), json!(a / p));
    }
    let mut targets = Map::new();
    println!(
        "{:<28} {:>14} {:<10} {:>16}  {:<30} target",
        "figure", "value", "unit", "reference", "(reference name)"
    );
    for row in ROWS {
        let value = num(&all, row.name);
        let reference = num(&all, row.reference);
        let (goal, met) = match row.goal {
            Goal::AtLeast(t) => (format!(">= {t}"), value.map(|v| v >= t)),
            Goal::AtMost(t) => (format!("<= {t}"), value.map(|v| v <= t)),
            Goal::Flat => (format!("<= {FLAT_GROWTH}"), value.map(|v| v <= FLAT_GROWTH)),
        };
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let show = |v: Option<f64>| {
            v.map_or("-".to_owned(), |v| {
                if v.abs() >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            })
        };
        println!(
            "{:<28} {:>14} {:<10} {:>16}  {:<30} {goal} {verdict}",
            row.name,
            show(value),
            row.unit,
            show(reference),
            row.reference
        );
        targets.insert(row.name.to_owned(), json!({ "target": goal, "met": met }));
    }
    all.insert("targets".into(), Value::Object(targets));
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        all.insert("loadavg_at_end".into(), json!(load.trim()));
    }
    if let Some(dir) = cli.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &cli.out,
        serde_json::to_string_pretty(&Value::Object(all))? + "\n",
    )?;
    eprintln!("wrote {}", cli.out.display());
    Ok(())
}
