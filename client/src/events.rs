//! Revocation and expiry events (DESIGN.md step 10): delete the local copies `pull`
//! wrote under the consent, then acknowledge with `deleted = true`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::api::{EVENT_EXPIRED, EVENT_REVOKED, Event};
use crate::error::{Error, Result};
use crate::state::{StateDir, Written};
use crate::transport::HubClient;

/// Deletes the files last written under `consent_id` and drops them from the index.
/// A file rewritten later under another consent is kept (it is held under that one).
/// Returns how many files were removed; files already gone count as removed.
pub fn delete_for_consent(state: &StateDir, consent_id: &str) -> Result<usize> {
    let index = state.written()?;
    let mut latest: HashMap<&PathBuf, &str> = HashMap::new();
    for w in &index {
        latest.insert(&w.path, &w.consent_id);
    }
    let doomed: HashSet<PathBuf> = latest
        .into_iter()
        .filter(|(_, c)| *c == consent_id)
        .map(|(p, _)| p.clone())
        .collect();
    for path in &doomed {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path)(e)),
        }
        if let Some(parent) = path.parent() {
            // Tidy an emptied pseudonym folder; a folder with other files stays.
            let _ = std::fs::remove_dir(parent);
        }
    }
    let kept: Vec<Written> = index
        .into_iter()
        .filter(|w| w.consent_id != consent_id && !doomed.contains(&w.path))
        .collect();
    state.replace_written(&kept)?;
    Ok(doomed.len())
}

/// What was done about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The event.
    pub event: Event,
    /// Local files deleted for it.
    pub deleted_files: usize,
    /// Whether it was acknowledged (unknown kinds are left for a newer client).
    pub acknowledged: bool,
}

/// Reads events until none are left: for a revoked or expired consent, deletes the
/// local files written under it and acknowledges with `deleted = true`. A deletion
/// failure stops before the acknowledgement, so the hub redelivers the event.
pub async fn handle_events(client: &HubClient, state: &StateDir) -> Result<Vec<Handled>> {
    handle_pages(
        || client.events(EVENT_PAGE),
        async |id| client.ack_event(id, true).await.map(|_| ()),
        state,
    )
    .await
}

/// Events asked for a page.
const EVENT_PAGE: u32 = 100;
/// Pages of events handled in one call at most: a hub sending fresh ids for ever cannot
/// keep the client deleting and acknowledging (the next call goes on).
const EVENT_PAGES: usize = 50;

/// [`handle_events`] over `events` (the next page) and `ack`.
async fn handle_pages<F, Fut>(
    mut events: F,
    ack: impl AsyncFn(i64) -> Result<()>,
    state: &StateDir,
) -> Result<Vec<Handled>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Event>>>,
{
    let mut done = Vec::new();
    let mut seen: HashSet<i64> = HashSet::new();
    for _ in 0..EVENT_PAGES {
        let page = events().await?;
        if page.len() > EVENT_PAGE as usize {
            return Err(Error::invalid(
                "the hub's page of events",
                format!(
                    "{} events, more than the {EVENT_PAGE} asked for",
                    page.len()
                ),
            ));
        }
        let fresh: Vec<Event> = page.into_iter().filter(|e| seen.insert(e.id)).collect();
        if fresh.is_empty() {
            return Ok(done);
        }
        for event in fresh {
            if event.kind != EVENT_REVOKED && event.kind != EVENT_EXPIRED {
                done.push(Handled {
                    event,
                    deleted_files: 0,
                    acknowledged: false,
                });
                continue;
            }
            let deleted_files = delete_for_consent(state, &event.consent_id)?;
            ack(event.id).await?;
            done.push(Handled {
                event,
                deleted_files,
                acknowledged: true,
            });
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, kind: &str) -> Event {
        Event {
            id,
            kind: kind.into(),
            consent_id: format!("c-{id}"),
            created_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        }
    }

    /// Handles what the test's hub serves (page number → events); the number of pages
    /// asked for and of acknowledgements sent, or the error.
    async fn handle_from(
        hub: impl Fn(usize) -> Vec<Event>,
    ) -> (Result<Vec<Handled>>, usize, usize) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("s")).unwrap();
        let (pages, acks) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        let result = handle_pages(
            || {
                let n = pages.get();
                pages.set(n + 1);
                assert!(n < 1000, "the walk did not end");
                std::future::ready(Ok(hub(n)))
            },
            async |_| {
                acks.set(acks.get() + 1);
                Ok(())
            },
            &state,
        )
        .await;
        (result, pages.get(), acks.get())
    }

    #[tokio::test]
    async fn a_hub_cannot_keep_the_client_handling_events() {
        // Honest: one page, then the same unacknowledged event of an unknown kind.
        let (done, pages, acks) =
            handle_from(|n| vec![event(1, EVENT_REVOKED), event(2, "x.new")][n.min(1)..].to_vec())
                .await;
        assert_eq!((done.unwrap().len(), pages, acks), (2, 2, 1));
        // Fresh ids for ever, of a known kind and of an unknown one.
        for kind in [EVENT_REVOKED, "x.new"] {
            let (done, pages, _) = handle_from(|n| vec![event(n as i64, kind)]).await;
            assert_eq!(pages, EVENT_PAGES, "{kind}");
            assert_eq!(done.unwrap().len(), EVENT_PAGES);
        }
        // A page larger than asked for.
        let (done, _, acks) = handle_from(|_| {
            (0..=i64::from(EVENT_PAGE))
                .map(|i| event(i, EVENT_REVOKED))
                .collect()
        })
        .await;
        assert!(
            done.unwrap_err()
                .to_string()
                .contains("more than the 100 asked for")
        );
        assert_eq!(acks, 0);
    }

    fn write(
        state: &StateDir,
        out: &std::path::Path,
        consent: &str,
        pseudonym: &str,
        record: &str,
    ) -> PathBuf {
        let dir = out.join(pseudonym);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{record}.json"));
        std::fs::write(&path, b"{}").unwrap();
        state
            .record_written(&[Written {
                consent_id: consent.into(),
                record_id: record.into(),
                path: path.clone(),
            }])
            .unwrap();
        path
    }

    #[test]
    fn revocation_deletes_only_that_consents_files() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(&tmp.path().join("state")).unwrap();
        let out = tmp.path().join("out");
        let a1 = write(&state, &out, "A", "rp1_x", "r1");
        let a2 = write(&state, &out, "A", "rp1_y", "r2");
        let b1 = write(&state, &out, "B", "rp1_x", "r3");
        assert_eq!(delete_for_consent(&state, "A").unwrap(), 2);
        assert!(!a1.exists() && !a2.exists());
        assert!(b1.exists());
        assert!(!out.join("rp1_y").exists(), "emptied folder removed");
        assert!(out.join("rp1_x").exists(), "folder with other files kept");
        let index = state.written().unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(index[0].consent_id, "B");
        // Redelivery of the same event: nothing left, nothing fails.
        assert_eq!(delete_for_consent(&state, "A").unwrap(), 0);
        assert!(b1.exists());
    }

    #[test]
    fn a_file_rewritten_under_another_consent_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(&tmp.path().join("state")).unwrap();
        let out = tmp.path().join("out");
        let p = write(&state, &out, "A", "rp1_x", "r1");
        write(&state, &out, "B", "rp1_x", "r1");
        assert_eq!(delete_for_consent(&state, "A").unwrap(), 0);
        assert!(p.exists());
        assert_eq!(delete_for_consent(&state, "B").unwrap(), 1);
        assert!(!p.exists());
        assert!(state.written().unwrap().is_empty());
    }

    #[test]
    fn a_file_deleted_by_hand_still_counts_as_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(&tmp.path().join("state")).unwrap();
        let p = write(&state, &tmp.path().join("out"), "A", "rp1_x", "r1");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(delete_for_consent(&state, "A").unwrap(), 1);
        assert!(state.written().unwrap().is_empty());
    }
}
