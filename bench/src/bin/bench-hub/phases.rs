//! Hub phases that move data: ingest (sealed records accepted and durable), consents at
//! the counter, key grants answered by the source, and the recipient's feed drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Result, ensure};
use renkei_bench::hub::Member;
use renkei_bench::records::Subject;
use renkei_client::api::{DataPeriod, FeedItem, GrantBody, Method};
use renkei_crypto::grant::RecipientSecretKey;
use renkei_crypto::keys::RecordKey;

/// Most records per upload batch (the hub's default `max_batch`); a batch holds whole
/// subjects.
const MAX_BATCH: usize = 1000;

/// Items per feed page and grant round.
pub(crate) const PAGE: u32 = 1000;

/// Uploads every record of `subjects` over `conns` connections in batches of 1000;
/// returns (records accepted, seconds).
pub(crate) async fn ingest(
    source: &Member,
    addr: SocketAddr,
    subjects: Arc<Vec<Subject>>,
    conns: usize,
) -> Result<(usize, f64)> {
    let per_subject = subjects.first().map_or(1, |s| s.uploads.len().max(1));
    let per_batch = (MAX_BATCH / per_subject).max(1);
    let batches = subjects.len().div_ceil(per_batch);
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, subjects, next) = (source.client(addr)?, subjects.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= batches {
                    break;
                }
                let end = ((i + 1) * per_batch).min(subjects.len());
                let batch: Vec<_> = subjects
                    .get(i * per_batch..end)
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|s| s.uploads.iter().cloned())
                    .collect();
                accepted += client.upload_records(&batch).await?.accepted;
            }
            Ok::<_, anyhow::Error>(accepted)
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let total: usize = subjects.iter().map(|s| s.uploads.len()).sum();
    ensure!(
        accepted == total,
        "the hub accepted {accepted} of {total} records"
    );
    Ok((accepted, secs))
}

/// Grants `recipient` a `phr-display` consent over `categories` for each subject (as
/// counter staff through the source); returns the consent ids in subject order and the
/// seconds taken.
pub(crate) async fn grant_consents(
    source: &Member,
    addr: SocketAddr,
    subjects: &[Subject],
    recipient: &str,
    categories: &[String],
    conns: usize,
) -> Result<(Vec<String>, f64)> {
    let tokens: Arc<Vec<String>> = Arc::new(subjects.iter().map(|s| s.token.clone()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, tokens, next) = (source.client(addr)?, tokens.clone(), next.clone());
        let (recipient, categories) = (recipient.to_owned(), categories.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(token) = tokens.get(i) else { break };
                let granted = renkei_client::consent::grant_signed(
                    &client,
                    GrantBody {
                        subject: token.clone(),
                        recipient: recipient.clone(),
                        purpose: "phr-display".into(),
                        categories: categories.clone(),
                        data_period: DataPeriod::default(),
                        valid_from: None,
                        valid_until: None,
                        method: Method::Counter,
                        evidence: None,
                        granted_by: "staff-bench".into(),
                        statement: None,
                        guardian: None,
                    },
                    token.clone(),
                    Vec::new(),
                )
                .await?;
                ids.push((i, granted.consent.id));
            }
            Ok::<_, anyhow::Error>(ids)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok((
        all.into_iter().map(|(_, id)| id).collect(),
        t0.elapsed().as_secs_f64(),
    ))
}

/// Answers every pending key-grant request as the source; returns (stored, seconds).
pub(crate) async fn answer_grants(
    source: &Member,
    addr: SocketAddr,
    key: &RecordKey,
) -> Result<(usize, f64)> {
    let client = source.client(addr)?;
    let users = renkei_client::state::StateDir::open(&source.dir.join("state"))?;
    let t0 = Instant::now();
    let mut stored = 0;
    loop {
        let r = renkei_client::source::serve_grants_once(&client, key, &users, PAGE).await?;
        ensure!(
            r.refused.is_empty(),
            "grant requests refused: {:?}",
            r.refused
        );
        if r.requests == 0 {
            break;
        }
        stored += r.uploaded.stored;
    }
    Ok((stored, t0.elapsed().as_secs_f64()))
}

/// Pulls the whole feed as `member` and opens every item (key grant, envelope, header
/// check, JSON), fetching the next page while two threads open the current one.
/// Returns the opened record ids and the seconds taken.
pub(crate) async fn drain(
    member: &Member,
    addr: SocketAddr,
    key: Arc<RecipientSecretKey>,
) -> Result<(Vec<String>, f64)> {
    let client = member.client(addr)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<FeedItem>>(2);
    let t0 = Instant::now();
    let fetch = tokio::spawn(async move {
        let mut cursor = 0;
        loop {
            let page = client.feed(cursor, PAGE).await?;
            if page.next_cursor == cursor {
                break;
            }
            cursor = page.next_cursor;
            if !page.items.is_empty() && tx.send(page.items).await.is_err() {
                break;
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    let mut ids = Vec::new();
    while let Some(mut items) = rx.recv().await {
        let second = items.split_off(items.len() / 2);
        let open = |items: Vec<FeedItem>| {
            let (key, me) = (key.clone(), member.id.clone());
            tokio::task::spawn_blocking(move || {
                let grants = renkei_crypto::grant::GrantOpener::new(&key, &me.to_string());
                items
                    .iter()
                    .map(|i| {
                        renkei_client::pull::open_item(i, &grants)
                            .map(|o| o.header.record_id.to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
        };
        let (a, b) = (open(items), open(second));
        ids.extend(a.await??);
        ids.extend(b.await??);
    }
    fetch.await??;
    Ok((ids, t0.elapsed().as_secs_f64()))
}

/// The reference for ingest: the same sealed bytes written straight into a table of
/// `database_url` (one plain `INSERT` per record, batches of the hub's size, one
/// durable commit per batch; SQLite in WAL with `synchronous=FULL` as the hub runs it),
/// over one connection. Returns (records, seconds).
pub(crate) async fn raw_insert(database_url: &str, subjects: &[Subject]) -> Result<(usize, f64)> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await?;
    if database_url.starts_with("sqlite:") {
        for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL"] {
            sqlx::query(pragma).execute(&mut conn).await?;
        }
    }
    sqlx::query(
        "CREATE TABLE bench_raw (record_id TEXT PRIMARY KEY, subject TEXT NOT NULL, sealed BYTEA NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    let per_subject = subjects.first().map_or(1, |s| s.uploads.len().max(1));
    let per_batch = (MAX_BATCH / per_subject).max(1);
    let t0 = Instant::now();
    let mut n = 0usize;
    for batch in subjects.chunks(per_batch) {
        let mut tx = conn.begin().await?;
        for u in batch.iter().flat_map(|s| s.uploads.iter()) {
            sqlx::query("INSERT INTO bench_raw (record_id, subject, sealed) VALUES ($1, $2, $3)")
                .bind(format!("raw-{n}"))
                .bind(&u.subject)
                .bind(u.sealed.as_slice())
                .execute(&mut *tx)
                .await?;
            n += 1;
        }
        tx.commit().await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    conn.close().await?;
    Ok((n, secs))
}
