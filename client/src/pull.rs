//! Pulling records (DESIGN.md step 9): follow the feed from the saved cursor, open each
//! key grant with the participant's X25519 key, open the envelope, check its header
//! against the feed item, and write the FHIR JSON out, indexed by consent.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use renkei_crypto::envelope::{EnvelopeHeader, SealedRecord, open};
use renkei_crypto::grant::{GrantOpener, KeyGrant, RecipientSecretKey};
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::token::{RecipientPseudonym, RecordId};
use zeroize::Zeroizing;

use crate::api::FeedItem;
use crate::error::{Error, Result};
use crate::state::{Rejected, StateDir, Written, create_private_dir, write_atomic};
use crate::transport::HubClient;

/// A record opened and checked.
#[derive(Debug)]
pub struct OpenedRecord {
    /// Feed position.
    pub seq: i64,
    /// The subject as this recipient knows it.
    pub pseudonym: RecipientPseudonym,
    /// The consent it was released under.
    pub consent_id: String,
    /// The envelope header (verified as AAD).
    pub header: EnvelopeHeader,
    /// The FHIR JSON payload, exactly as the source sealed it; zeroized on drop.
    pub payload: Zeroizing<Vec<u8>>,
}

/// Opens a feed item with the recipient's `grants` opener: the key grant (bound to the
/// record id and the recipient's id), then the envelope (AES-GCM checks the header as
/// AAD); the header must name the same record id, category and effective date as the
/// feed item, and the payload must be JSON.
pub fn open_item(item: &FeedItem, grants: &GrantOpener<'_>) -> Result<OpenedRecord> {
    let what = |part: &str| {
        format!(
            "record `{}`: {part}",
            crate::error::shorten(&item.record_id)
        )
    };
    let record_id = RecordId::parse(&item.record_id).map_err(Error::crypto(what("record id")))?;
    let pseudonym =
        RecipientPseudonym::parse(&item.pseudonym).map_err(Error::crypto(what("pseudonym")))?;
    let sealed = data_encoding::BASE64
        .decode(item.sealed.as_bytes())
        .map_err(|e| Error::invalid(what("sealed"), format!("not base64: {e}")))?;
    let sealed = SealedRecord::from_bytes(&sealed).map_err(Error::crypto(what("sealed")))?;
    let grant = KeyGrant::from_base64(&item.grant).map_err(Error::crypto(what("key grant")))?;
    let dek = grants
        .open(&record_id, &grant)
        .map_err(Error::crypto(what("key grant")))?;
    let plain = Zeroizing::new(open(&dek, &sealed).map_err(Error::crypto(what("envelope")))?);
    let header = sealed.header();
    // The JSON, as the header's schema holds it (`renkei_crypto::payload`).
    let payload = Zeroizing::new(
        renkei_crypto::payload::unpack(header.schema_version, &plain)
            .map_err(Error::crypto(what("payload")))?,
    );
    let date: NaiveDate = item.effective_date.parse().map_err(|e| {
        Error::invalid(
            what("effective date"),
            format!("`{}`: {e}", item.effective_date),
        )
    })?;
    let mismatch = if header.record_id != record_id {
        Some(("record id", header.record_id.to_string()))
    } else if header.category != item.category {
        Some(("category", header.category.clone()))
    } else if header.effective_date != date {
        Some(("effective date", header.effective_date.to_string()))
    } else {
        None
    };
    if let Some((field, sealed_value)) = mismatch {
        return Err(Error::invalid(
            what("header"),
            format!("the sealed {field} `{sealed_value}` differs from the feed's"),
        ));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(&payload)
        .map_err(|e| Error::invalid(what("payload"), format!("not JSON: {e}")))?;
    Ok(OpenedRecord {
        seq: item.seq,
        pseudonym,
        consent_id: item.consent_id.clone(),
        header: header.clone(),
        payload,
    })
}

/// Where pulled records go.
#[derive(Debug)]
pub enum Sink<'a, W: Write> {
    /// `<dir>/<pseudonym>/<record_id>.json`, indexed for deletion on revocation.
    Dir(&'a Path),
    /// One JSON object a line (metadata and `resource`), nothing kept locally.
    Lines(&'a mut W),
}

/// The file a record is written to under `dir`.
pub fn record_path(dir: &Path, record: &OpenedRecord) -> PathBuf {
    dir.join(record.pseudonym.as_str())
        .join(format!("{}.json", record.header.record_id))
}

impl<W: Write> Sink<'_, W> {
    /// Writes one record; returns the index entry for a file.
    pub fn write(&mut self, record: &OpenedRecord) -> Result<Option<Written>> {
        match self {
            Sink::Dir(dir) => {
                let path = record_path(dir, record);
                if let Some(parent) = path.parent() {
                    create_private_dir(parent)?;
                }
                write_atomic(&path, &record.payload)?;
                Ok(Some(Written {
                    consent_id: record.consent_id.clone(),
                    record_id: record.header.record_id.to_string(),
                    path,
                }))
            }
            Sink::Lines(out) => {
                let resource: serde_json::Value = serde_json::from_slice(&record.payload)
                    .map_err(|e| Error::invalid("payload", e.to_string()))?;
                let line = serde_json::json!({
                    "record_id": record.header.record_id,
                    "pseudonym": record.pseudonym,
                    "category": record.header.category,
                    "effective_date": record.header.effective_date,
                    "source": record.header.source,
                    "consent_id": record.consent_id,
                    "resource": resource,
                });
                writeln!(out, "{line}")
                    .and_then(|()| out.flush())
                    .map_err(Error::io("<stdout>"))?;
                Ok(None)
            }
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Feed pages read.
    pub pages: usize,
    /// Records opened and written.
    pub written: usize,
    /// Items refused (also logged in the state folder).
    pub rejected: Vec<Rejected>,
    /// The cursor saved at the end.
    pub cursor: i64,
}

/// Follows the feed from the saved cursor until it has nothing new (or `max_pages`).
/// Each page's files and index entries are synced before the cursor moves past it, so a
/// crash repeats at most one page. Items that do not open or do not match are refused
/// and logged, not retried; a local write failure stops the pull without moving the cursor.
pub async fn pull<W: Write>(
    client: &HubClient,
    me: &ParticipantId,
    key: &RecipientSecretKey,
    state: &StateDir,
    sink: &mut Sink<'_, W>,
    page_size: u32,
    max_pages: Option<usize>,
) -> Result<PullReport> {
    let feed = |cursor| client.feed(cursor, page_size);
    let unreadable = async |item: &FeedItem, why: String| {
        // The source is told once (the hub ignores repeats); a failed report is logged,
        // the item stays refused locally either way.
        if let Err(e) = client.report_unreadable(&item.record_id, &why).await {
            tracing::warn!(record = %item.record_id, error = %e, "could not report an unreadable record");
        }
    };
    let grants = GrantOpener::new(key, &me.to_string());
    pull_pages(feed, unreadable, &grants, state, sink, page_size, max_pages).await
}

/// Pages in a row bringing no record not written before in a pull that end it.
const IDLE_PAGES: usize = 3;

/// [`pull`] over `feed` (a page from a cursor). What the hub says does not keep it going:
/// a page holding more than `page_size` items is refused, and the walk stops after
/// [`IDLE_PAGES`] pages in a row that bring no record not written before in this pull
/// (replays under new cursors or consent ids, items that do not open), or at a page whose
/// cursor does not move. The next pull goes on from the saved cursor.
async fn pull_pages<W: Write, F, Fut>(
    mut feed: F,
    unreadable: impl AsyncFn(&FeedItem, String),
    grants: &GrantOpener<'_>,
    state: &StateDir,
    sink: &mut Sink<'_, W>,
    page_size: u32,
    max_pages: Option<usize>,
) -> Result<PullReport>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<renkei_protocol::types::FeedPage>>,
{
    let mut report = PullReport {
        cursor: state.cursor()?,
        ..PullReport::default()
    };
    // Record ids written in this pull (the consent id is only the hub's word), and the
    // pages in a row that brought none new.
    let mut seen = std::collections::HashSet::new();
    let mut idle = 0;
    while max_pages.is_none_or(|max| report.pages < max) {
        let page = feed(report.cursor).await?;
        if page.items.len() > page_size as usize {
            return Err(Error::invalid(
                "the hub's feed page",
                format!(
                    "{} items, more than the {page_size} asked for",
                    page.items.len()
                ),
            ));
        }
        report.pages += 1;
        let mut written = Vec::new();
        let mut rejected = Vec::new();
        let mut new = false;
        for item in &page.items {
            match open_item(item, grants) {
                Ok(record) => {
                    new |= seen.insert(item.record_id.clone());
                    written.extend(sink.write(&record)?);
                    report.written += 1;
                }
                Err(e) => {
                    unreadable(item, e.to_string()).await;
                    rejected.push(Rejected {
                        seq: item.seq,
                        record_id: item.record_id.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        state.record_written(&written)?;
        state.record_rejected(&rejected)?;
        report.rejected.extend(rejected);
        if page.next_cursor <= report.cursor {
            break;
        }
        state.save_cursor(page.next_cursor)?;
        report.cursor = page.next_cursor;
        idle = if new { 0 } else { idle + 1 };
        if idle == IDLE_PAGES {
            break;
        }
    }
    Ok(report)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use renkei_crypto::envelope::{derive_dek, seal};
    use renkei_crypto::grant::seal_grant;
    use renkei_crypto::keys::{KeyVersion, RecordKey};
    use renkei_crypto::token::{record_id, subject_binding};
    use renkei_protocol::types::FeedPage;

    pub(crate) const PAYLOAD: &str = r#"{"resourceType":"Bundle","type":"collection","entry":[]}"#;

    /// A feed item sealed by a source and granted to `recipient`.
    pub(crate) fn item(
        key: &RecordKey,
        recipient: &RecipientSecretKey,
        recipient_id: &str,
        doc: &str,
        consent: &str,
    ) -> FeedItem {
        let rid = record_id(key, doc, "checkup.lipids");
        let header = EnvelopeHeader {
            record_id: rid.clone(),
            subject_binding: subject_binding(key, &rid, "st1_abcdefghijklmnopqrstuvwxyz234567"),
            category: "checkup.lipids".into(),
            source: "source:city-a".into(),
            effective_date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
            schema_version: 1,
            key_version: KeyVersion::V1,
        };
        let sealed = seal(key, header, PAYLOAD.as_bytes()).unwrap();
        let dek = derive_dek(key, &rid);
        let grant = seal_grant(&recipient.public_key(), &rid, recipient_id, &dek).unwrap();
        FeedItem {
            seq: 7,
            record_id: rid.to_string(),
            pseudonym: "rp1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            category: "checkup.lipids".into(),
            effective_date: "2024-06-01".into(),
            consent_id: consent.into(),
            sealed: data_encoding::BASE64.encode(&sealed.to_bytes()),
            grant: grant.to_base64(),
        }
    }

    fn keys() -> (RecordKey, RecipientSecretKey) {
        (
            RecordKey::from_bytes([3; 32], KeyVersion::V1),
            RecipientSecretKey::generate(KeyVersion::V1),
        )
    }

    #[test]
    fn seal_grant_open_round_trip() {
        let (rk, sk) = keys();
        let it = item(&rk, &sk, "phr:asmile", "doc-1", "c1");
        let opened = open_item(&it, &GrantOpener::new(&sk, "phr:asmile")).unwrap();
        assert_eq!(opened.payload.as_slice(), PAYLOAD.as_bytes());
        assert_eq!(opened.header.record_id.as_str(), it.record_id);
        assert_eq!(opened.consent_id, "c1");
    }

    #[test]
    fn a_grant_for_someone_else_does_not_open() {
        let (rk, sk) = keys();
        let it = item(&rk, &sk, "phr:other", "doc-1", "c1");
        let e = open_item(&it, &GrantOpener::new(&sk, "phr:asmile")).unwrap_err();
        assert!(e.to_string().contains("key grant"), "{e}");
        let it = item(&rk, &sk, "phr:asmile", "doc-1", "c1");
        let stranger = RecipientSecretKey::generate(KeyVersion::V1);
        assert!(open_item(&it, &GrantOpener::new(&stranger, "phr:asmile")).is_err());
    }

    #[test]
    fn feed_fields_must_match_the_sealed_header() {
        let (rk, sk) = keys();
        let good = item(&rk, &sk, "phr:asmile", "doc-1", "c1");
        let mut it = good.clone();
        it.category = "checkup.glucose".into();
        let e = open_item(&it, &GrantOpener::new(&sk, "phr:asmile")).unwrap_err();
        assert!(e.to_string().contains("category"), "{e}");
        let mut it = good.clone();
        it.effective_date = "2024-06-02".into();
        assert!(
            open_item(&it, &GrantOpener::new(&sk, "phr:asmile"))
                .unwrap_err()
                .to_string()
                .contains("effective date")
        );
        // The envelope of another record under this item's id and grant: the DEK is
        // bound to the record id, so the AEAD refuses it.
        let other = item(&rk, &sk, "phr:asmile", "doc-2", "c1");
        let mut it = good.clone();
        it.sealed = other.sealed.clone();
        let e = open_item(&it, &GrantOpener::new(&sk, "phr:asmile")).unwrap_err();
        assert!(e.to_string().contains("envelope"), "{e}");
        // And that record's grant moved onto this item does not open for this id.
        let mut it = good.clone();
        it.grant = other.grant.clone();
        let e = open_item(&it, &GrantOpener::new(&sk, "phr:asmile")).unwrap_err();
        assert!(e.to_string().contains("key grant"), "{e}");
        let mut it = good;
        it.pseudonym = "../../etc".into();
        assert!(open_item(&it, &GrantOpener::new(&sk, "phr:asmile")).is_err());
    }

    /// Runs [`pull_pages`] over pages the test's hub makes (a page number → page),
    /// failing if it asks for more than 20 pages; returns the report or the error.
    async fn pull_from(
        hub: impl Fn(usize) -> FeedPage,
        sk: &RecipientSecretKey,
    ) -> (std::result::Result<PullReport, String>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        let out = dir.path().join("out");
        let mut sink: Sink<'_, Vec<u8>> = Sink::Dir(&out);
        let calls = std::cell::Cell::new(0);
        let feed = |_cursor| {
            let n = calls.get();
            calls.set(n + 1);
            assert!(n < 20, "the pull did not end");
            std::future::ready(Ok(hub(n)))
        };
        let grants = GrantOpener::new(sk, "phr:asmile");
        let report = pull_pages(feed, async |_, _| {}, &grants, &state, &mut sink, 10, None)
            .await
            .map_err(|e| e.to_string());
        (report, calls.get())
    }

    #[tokio::test]
    async fn a_hub_cannot_keep_a_pull_going() {
        let (rk, sk) = keys();
        let good = |n: usize| item(&rk, &sk, "phr:asmile", &format!("doc-{n}"), "c1");
        // Honest: two pages, then an empty one.
        let (report, calls) = pull_from(
            |n| FeedPage {
                items: if n < 2 { vec![good(n)] } else { Vec::new() },
                next_cursor: n.min(1) as i64 + 1,
            },
            &sk,
        )
        .await;
        assert_eq!((report.unwrap().written, calls), (2, 3));
        // The same record replayed under a cursor that keeps moving.
        let (report, calls) = pull_from(
            |n| FeedPage {
                items: vec![good(0)],
                next_cursor: n as i64 + 1,
            },
            &sk,
        )
        .await;
        assert_eq!(
            (report.unwrap().written, calls),
            (1 + IDLE_PAGES, 1 + IDLE_PAGES)
        );
        // The same record under a new consent id each page.
        let (report, calls) = pull_from(
            |n| FeedPage {
                items: vec![item(&rk, &sk, "phr:asmile", "doc-0", &format!("c{n}"))],
                next_cursor: n as i64 + 1,
            },
            &sk,
        )
        .await;
        assert_eq!(
            (report.unwrap().written, calls),
            (1 + IDLE_PAGES, 1 + IDLE_PAGES)
        );
        // Empty pages, or items that do not open, under a cursor that keeps moving.
        for junk in [false, true] {
            let (report, calls) = pull_from(
                |n| FeedPage {
                    items: if junk {
                        vec![item(&rk, &sk, "phr:other", &format!("doc-{n}"), "c1")]
                    } else {
                        Vec::new()
                    },
                    next_cursor: n as i64 + 1,
                },
                &sk,
            )
            .await;
            assert_eq!(calls, IDLE_PAGES, "junk: {junk}");
            assert_eq!(report.unwrap().written, 0);
        }
        // A page larger than asked for.
        let (report, _) = pull_from(
            |_| FeedPage {
                items: (0..11).map(good).collect(),
                next_cursor: 100,
            },
            &sk,
        )
        .await;
        assert!(report.unwrap_err().contains("more than the 10 asked for"));
    }

    #[test]
    fn sinks_write_files_or_lines() {
        let (rk, sk) = keys();
        let it = item(&rk, &sk, "phr:asmile", "doc-1", "c1");
        let opened = open_item(&it, &GrantOpener::new(&sk, "phr:asmile")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut sink: Sink<'_, Vec<u8>> = Sink::Dir(dir.path());
        let w = sink.write(&opened).unwrap().unwrap();
        assert_eq!(
            w.path,
            dir.path()
                .join(&it.pseudonym)
                .join(format!("{}.json", it.record_id))
        );
        assert_eq!(std::fs::read(&w.path).unwrap(), PAYLOAD.as_bytes());
        let mut out = Vec::new();
        Sink::Lines(&mut out).write(&opened).unwrap();
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["resource"]["resourceType"], "Bundle");
        assert_eq!(line["consent_id"], "c1");
        assert!(line.get("subject_token").is_none());
    }
}
