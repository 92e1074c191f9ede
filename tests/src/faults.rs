//! Fault injection: a seeded random source for kill instants, read-only views of the hub's
//! database and the agent's outbox (record ids, digests, key grants, audit entries), KDB
//! exports of numbered synthetic persons, and the peak memory of a child process.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// A small deterministic random source (splitmix64): the same seed gives the same kill
/// instants, so a failing run can be replayed with `RENKEI_FAULT_SEED`.
#[derive(Debug, Clone)]
pub struct Seeded {
    state: u64,
}

impl Seeded {
    /// A source starting from `seed`.
    pub fn new(seed: u64) -> Seeded {
        Seeded { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A duration in `lo..hi` at millisecond resolution.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo).max(1)))
    }
}

/// The number in the environment variable `name`, or `default` when it is unset.
pub fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("`{name}` is not a number: `{v}`")),
        Err(_) => Ok(default),
    }
}

/// The lowercase hex SHA-256 of `bytes` (how the hub keeps a record's digest).
pub fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

/// Rows of two text columns from the hub's database, opened read-only (SQLite) or
/// over one connection (PostgreSQL). `bind` fills `$1` when given.
async fn pairs(
    db_url: &str,
    sql: &str,
    bind: Option<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
    let what = || format!("`{sql}` on the hub database");
    if db_url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(db_url)?.read_only(true);
        let mut c = SqliteConnection::connect_with(&opts)
            .await
            .with_context(what)?;
        let mut q = sqlx::query_as::<_, (String, String)>(sql);
        if let Some(b) = bind {
            q = q.bind(b.to_owned());
        }
        let rows = q.fetch_all(&mut c).await.with_context(what)?;
        let _ = c.close().await;
        Ok(rows)
    } else {
        let mut c = sqlx::PgConnection::connect(db_url)
            .await
            .with_context(what)?;
        let mut q = sqlx::query_as::<_, (String, String)>(sql);
        if let Some(b) = bind {
            q = q.bind(b.to_owned());
        }
        let rows = q.fetch_all(&mut c).await.with_context(what)?;
        let _ = c.close().await;
        Ok(rows)
    }
}

/// Every enrollment the hub holds as (id, stored `user_ref`).
pub async fn hub_enrollment_user_refs(db_url: &str) -> anyhow::Result<Vec<(String, String)>> {
    pairs(db_url, "SELECT id, user_ref FROM hub_enrollments", None).await
}

/// Every record the hub holds: record id → digest (hex SHA-256 of the sealed bytes).
pub async fn hub_records(db_url: &str) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(
        pairs(db_url, "SELECT record_id, digest FROM hub_records", None)
            .await?
            .into_iter()
            .collect(),
    )
}

/// Every stored key grant as (record id, recipient), duplicates kept.
pub async fn hub_key_grants(db_url: &str) -> anyhow::Result<Vec<(String, String)>> {
    pairs(
        db_url,
        "SELECT record_id, recipient FROM hub_key_grants",
        None,
    )
    .await
}

/// Every pending key-grant request as (record id, recipient).
pub async fn hub_grant_requests(db_url: &str) -> anyhow::Result<Vec<(String, String)>> {
    pairs(
        db_url,
        "SELECT record_id, recipient FROM hub_grant_requests",
        None,
    )
    .await
}

/// How many `allow` audit entries of `action` name each object (a record id for `ingest`
/// and `key_grant`).
pub async fn audit_allows(db_url: &str, action: &str) -> anyhow::Result<BTreeMap<String, usize>> {
    let rows = pairs(
        db_url,
        "SELECT object, decision FROM hub_audit WHERE action = $1",
        Some(action),
    )
    .await?;
    let mut out = BTreeMap::new();
    for (object, decision) in rows {
        if decision == "allow" {
            *out.entry(object).or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// The agent's outbox, read through the agent's own code (the bytes are in segment
/// files): record id → (state, sealed bytes).
pub async fn outbox_records(outbox: &Path) -> anyhow::Result<BTreeMap<String, (String, Vec<u8>)>> {
    if !outbox.exists() {
        return Ok(BTreeMap::new());
    }
    let opened = lgwan_agent::outbox::Outbox::open(outbox)
        .await
        .with_context(|| format!("opening the outbox `{}`", outbox.display()))?;
    let rows = opened.records().await;
    opened.close().await;
    Ok(rows
        .with_context(|| format!("reading the outbox `{}`", outbox.display()))?
        .into_iter()
        .map(|r| (r.record_id, (r.state, r.sealed)))
        .collect())
}

/// How many records the outbox holds (0 before its table exists): a cheap probe.
pub async fn outbox_count(outbox: &Path) -> anyhow::Result<usize> {
    if !outbox.exists() {
        return Ok(0);
    }
    let opts = SqliteConnectOptions::new().filename(outbox).read_only(true);
    let mut c = SqliteConnection::connect_with(&opts)
        .await
        .with_context(|| format!("opening the outbox `{}`", outbox.display()))?;
    let n = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox")
        .fetch_one(&mut c)
        .await;
    let _ = c.close().await;
    match n {
        Ok(n) => Ok(usize::try_from(n).unwrap_or(0)),
        Err(e) if e.to_string().contains("no such table") => Ok(0),
        Err(e) => Err(e).context("counting the outbox"),
    }
}

/// Up to `limit` records of the outbox as the agent uploads them: (subject, sealed bytes).
pub async fn outbox_uploads(outbox: &Path, limit: usize) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let opened = lgwan_agent::outbox::Outbox::open(outbox)
        .await
        .with_context(|| format!("opening the outbox `{}`", outbox.display()))?;
    let rows = opened.records().await;
    opened.close().await;
    Ok(rows
        .context("reading the outbox")?
        .into_iter()
        .take(limit)
        .map(|r| (r.subject, r.sealed))
        .collect())
}

/// The outbox's records as record id → hex SHA-256 of the sealed bytes.
pub async fn outbox_digests(outbox: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(outbox_records(outbox)
        .await?
        .into_iter()
        .map(|(id, (_, sealed))| (id, sha256_hex(&sealed)))
        .collect())
}

/// A numbered synthetic person of the KDB exports written by [`write_kdb_costs`], as
/// counter staff would type their card (`lgwan-agent consent grant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdbPerson {
    /// 保険者番号.
    pub insurer: String,
    /// 記号.
    pub symbol: String,
    /// 番号.
    pub number: String,
    /// 枝番.
    pub branch: String,
    /// Birth date, `YYYY-MM-DD`.
    pub birth: String,
    /// `male` or `female`.
    pub sex: &'static str,
}

/// Person number `n` (distinct numbers give distinct canonical identities).
pub fn kdb_person(n: usize) -> KdbPerson {
    KdbPerson {
        insurer: "138016".into(),
        symbol: format!("故障{}", n % 97),
        number: format!("{}", 300_000 + n),
        branch: "01".into(),
        birth: format!("19{:02}-{:02}-{:02}", 40 + n % 50, 1 + n % 12, 1 + n % 28),
        sex: if n % 2 == 0 { "male" } else { "female" },
    }
}

/// Writes a KDB medical-cost export (UTF-8, the columns `lgwan-agent init` maps) with
/// `months` monthly rows, from April 2010 on, for each of persons `first..first + persons`:
/// one record per row.
pub fn write_kdb_costs(
    path: &Path,
    first: usize,
    persons: usize,
    months: usize,
) -> anyhow::Result<()> {
    let mut text = String::from(
        "保険者番号,被保険者証記号,被保険者証番号,枝番,氏名,生年月日,性別,診療年月,\
         入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額\n",
    );
    for n in first..first + persons {
        let p = kdb_person(n);
        let sex = if p.sex == "male" { "男" } else { "女" };
        let birth = p.birth.replace('-', "/");
        for m in 0..months {
            let (year, month) = (2010 + (m + 3) / 12, (m + 3) % 12 + 1);
            let cost = (n * 37 + m * 11) % 50_000;
            text.push_str(&format!(
                "{},{},{},{},故障　人{n},{birth},{sex},{year}{month:02},0,{cost},0,{},{}\n",
                p.insurer,
                p.symbol,
                p.number,
                p.branch,
                cost / 2,
                cost + cost / 2,
            ));
        }
    }
    std::fs::write(path, text).with_context(|| format!("writing `{}`", path.display()))
}

/// The peak resident memory (`VmHWM`, bytes) of a running process, if it is still there.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Seeded::new(7), Seeded::new(7));
        let xs: Vec<u64> = (0..20).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..20).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| *x < 10));
        assert!(xs.iter().any(|x| *x != xs[0]), "not random: {xs:?}");
        let d = a.between(Duration::from_millis(5), Duration::from_millis(9));
        assert!((5..9).contains(&d.as_millis()));
    }

    #[test]
    fn kdb_export_has_one_row_per_person_month() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.csv");
        write_kdb_costs(&path, 3, 2, 14).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1 + 2 * 14);
        assert!(text.contains(",201004,") && text.contains(",201105,"));
        assert_ne!(kdb_person(3), kdb_person(4));
        assert_eq!(sha256_hex(b"abc").len(), 64);
    }
}
