//! Crypto stages next to `openssl speed` in the same minute: sealing 8 KiB records
//! (HKDF DEK + AES-256-GCM with the header as AAD) against OpenSSL's AES-256-GCM at
//! 8192 bytes, and subject tokens per second on one core.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use clap::Parser;
use renkei_bench::parts::Part;
use renkei_crypto::envelope::{EnvelopeHeader, seal};
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::keys::{KeyVersion, RecordKey, TokenKey};
use renkei_crypto::token::{record_id, subject_binding, subject_token};

#[derive(Parser)]
struct Cli {
    /// Seconds per measurement (each is taken twice, best kept).
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    #[arg(long)]
    part: PathBuf,
}

/// OpenSSL's AES-256-GCM rate at 8192 bytes, in MB/s (10^6 bytes).
fn openssl_gcm_8k(seconds: u64) -> Result<f64> {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-seconds",
            &seconds.to_string(),
            "-bytes",
            "8192",
            "-evp",
            "aes-256-gcm",
        ])
        .output()
        .context("running `openssl speed`")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line reads `AES-256-GCM   3800400.00k`: thousands of bytes per second.
    let value = text
        .lines()
        .rev()
        .find_map(|l| {
            l.split_whitespace()
                .last()
                .and_then(|v| v.strip_suffix('k'))
        })
        .and_then(|v| v.parse::<f64>().ok());
    match value {
        Some(k) => Ok(k * 1000.0 / 1e6),
        None => bail!("cannot read `openssl speed` output: {text}"),
    }
}

/// Runs `f` repeatedly for `d`; returns calls per second.
fn rate(d: Duration, mut f: impl FnMut()) -> f64 {
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < d {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let d = Duration::from_secs(cli.seconds);
    let key = RecordKey::generate(KeyVersion::V1);
    let token_key = TokenKey::generate(KeyVersion::V1);
    let identities: Vec<Identity> = (0..1024)
        .map(|n| Identity {
            insurer_number: "０１３８００１６".into(),
            symbol: format!("{}", 100 + n),
            number: format!("{}", 40_000 + n * 7),
            birth_date: format!("19{:02}-{:02}-{:02}", 40 + n % 60, 1 + n % 12, 1 + n % 28),
            sex: if n % 2 == 0 { Sex::Female } else { Sex::Male },
            branch: None,
        })
        .collect();
    let canonical = identities
        .iter()
        .map(Identity::canonical)
        .collect::<Result<Vec<_>, _>>()?;
    let id = record_id(&key, "kenshin-2026-000123", "checkup.lipids");
    let first = canonical.first().context("no identity")?;
    let header = EnvelopeHeader {
        subject_binding: subject_binding(&key, &id, subject_token(&token_key, first).as_str()),
        record_id: id,
        category: "checkup.lipids".into(),
        source: "source:bench-city".into(),
        effective_date: NaiveDate::from_ymd_opt(2026, 6, 1).context("date")?,
        schema_version: 1,
        key_version: KeyVersion::V1,
    };
    let payload = vec![0x5a_u8; 8192];

    let mut openssl = 0.0f64;
    let mut sealed = 0.0f64;
    for _ in 0..2 {
        openssl = openssl.max(openssl_gcm_8k(cli.seconds)?);
        let per_s = rate(d, || {
            black_box(seal(&key, header.clone(), black_box(&payload)).ok());
        });
        sealed = sealed.max(per_s * 8192.0 / 1e6);
    }
    let mut i = 0usize;
    let tokens = rate(d, || {
        i = (i + 1) % canonical.len();
        if let Some(c) = canonical.get(i) {
            black_box(subject_token(&token_key, black_box(c)));
        }
    });
    let mut j = 0usize;
    let tokens_nfkc = rate(d, || {
        j = (j + 1) % identities.len();
        if let Some(t) = identities.get(j) {
            if let Ok(c) = black_box(t).canonical() {
                black_box(subject_token(&token_key, &c));
            }
        }
    });
    let mut p = Part::default();
    p.set("seal_8k_mb_per_s", sealed)
        .set("openssl_aes256gcm_8k_mb_per_s", openssl)
        .set("seal_vs_openssl_ratio", sealed / openssl)
        .set("tokens_per_s", tokens)
        .set("tokens_with_nfkc_per_s", tokens_nfkc);
    p.write(&cli.part)
}
