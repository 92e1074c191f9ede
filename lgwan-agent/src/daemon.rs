//! `lgwan-agent run`: the daemon loop. Each round imports the files dropped in the
//! import folder, uploads the outbox, answers key-grant and enrollment requests, and
//! keeps the hub's latest audit checkpoint. While the hub is unreachable the rounds
//! back off exponentially with jitter; imports go on. Outbound only: never listens.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use renkei_client::{HubClient, RetryPolicy};
use serde_json::json;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::import::{ImportSummary, import};
use crate::outbox::{EnrollmentStatus, Note, Outbox, OutboxStatus};
use crate::sync::{
    answer_enrollments_once, answer_grants_once, keep_checkpoint, publish_counter_revocations,
    publish_keys, upload_links_once, upload_once,
};
use crate::witness::Witnessed;

/// Longest wait between two rounds while the hub is down.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Sub-folder of the import folder for files imported cleanly.
pub const DONE: &str = "done";
/// Sub-folder for files with quarantined parts, each beside its `.report.json`.
pub const QUARANTINE: &str = "quarantine";

/// The wait before the next round after `failures` failed rounds in a row:
/// `poll · 2^(failures-1)`, capped at [`MAX_BACKOFF`], with equal jitter (`unit`
/// drawn from `[0, 1)`); the plain poll interval after a good round.
pub fn backoff(poll: Duration, failures: u32, unit: f64) -> Duration {
    if failures == 0 {
        return poll;
    }
    let policy = RetryPolicy {
        max_attempts: u32::MAX,
        base_delay: poll,
        max_delay: MAX_BACKOFF.max(poll),
    };
    policy.delay_with(failures - 1, None, unit)
}

/// Files in the import folder that stayed the same size and age for one poll
/// interval (so a file still being copied in is left alone).
#[derive(Debug, Default)]
pub struct FolderWatch {
    seen: HashMap<PathBuf, (u64, Option<SystemTime>)>,
}

impl FolderWatch {
    /// The `.zip` and `.csv` files of `dir` that are ready, sorted.
    pub fn ready(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut now = HashMap::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let wanted = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("zip") || e.eq_ignore_ascii_case("csv"));
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if meta.is_file() && wanted && !hidden {
                now.insert(path, (meta.len(), meta.modified().ok()));
            }
        }
        let mut ready: Vec<PathBuf> = now
            .iter()
            .filter(|(p, stamp)| self.seen.get(*p) == Some(stamp))
            .map(|(p, _)| p.clone())
            .collect();
        ready.sort();
        self.seen = now;
        Ok(ready)
    }
}

/// A free name for `file` in `folder` (`name`, then `name.1`, `name.2`, …).
fn free_name(folder: &Path, file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut target = folder.join(&name);
    let mut n = 1;
    while target.exists() {
        target = folder.join(format!("{name}.{n}"));
        n += 1;
    }
    target
}

/// Moves an imported `file` to `done/`, or to `quarantine/` with a report when any
/// part of it was set aside; returns where it went.
pub fn file_away(dir: &Path, file: &Path, summary: &ImportSummary) -> Result<PathBuf> {
    let clean = summary.quarantined.is_empty();
    let folder = dir.join(if clean { DONE } else { QUARANTINE });
    std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
    let target = free_name(&folder, file);
    if !clean {
        let report = json!({
            "file": file.file_name().map(|n| n.to_string_lossy().into_owned()),
            "records": summary.records,
            "new_records": summary.new_records,
            "quarantined": summary.quarantined,
        });
        let mut path = target.clone().into_os_string();
        path.push(".report.json");
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Output(e.into()))?;
        std::fs::write(&path, text).map_err(|e| Error::io(PathBuf::from(&path), e))?;
    }
    std::fs::rename(file, &target).map_err(|e| Error::io(file, e))?;
    Ok(target)
}

/// The quarantine reports in the import folder, sorted.
pub fn quarantined_files(import_dir: &Path) -> Vec<PathBuf> {
    let folder = import_dir.join(QUARANTINE);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&folder)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".report.json"))
        .collect();
    out.sort();
    out
}

/// The text `lgwan-agent status` prints.
pub fn status_text(outbox: &Path, status: &OutboxStatus, quarantined: &[PathBuf]) -> String {
    // Notes may hold the hub's words: control characters are escaped, so that nothing
    // can hide the lines after them (the ALARM line).
    let note = |n: &Option<Note>, none: &str| match n {
        Some(n) => format!("{} ({})", n.at, renkei_client::error::printable(&n.value)),
        None => none.to_owned(),
    };
    let mut out = format!(
        "outbox:            {}\n\
         depth:             {} records waiting for upload\n\
         sent:              {}\n\
         refused by hub:    {}\n\
         subjects:          {} exported, {} refused as shared identities\n\
         last upload:       {}\n\
         last error:        {}\n\
         hub checkpoint:    {}\n\
         grant refusals:    {} (last: {})\n\
         unreadable:        {} reported by recipients (newest: {})\n\
         quarantined files: {}\n",
        outbox.display(),
        status.pending,
        status.sent,
        status.refused,
        status.subjects,
        status.conflicting_subjects,
        note(&status.last_upload, "never"),
        note(&status.last_error, "none"),
        status
            .checkpoint_seq
            .map_or_else(|| "none".to_owned(), |s| format!("entry {s}")),
        status.grant_refusals,
        note(&status.last_refusal, "none"),
        status.unreadable,
        note(&status.last_unreadable, "none"),
        quarantined.len(),
    );
    for q in quarantined {
        out.push_str(&format!("  {}\n", q.display()));
    }
    out
}

/// The witness lines of `lgwan-agent status`: an alarm first, else the last checkpoint
/// of the hub's transparency log this agent accepted.
pub fn witness_text(
    pinned: bool,
    alarm: Option<&Note>,
    latest: Option<&renkei_client::witness::Seen>,
    count: u64,
) -> String {
    if let Some(a) = alarm {
        return format!(
            "transparency log:  ALARM since {}: {}\n                   no key is released; check the hub, then `lgwan-agent witness clear-alarm`\n",
            a.at,
            renkei_client::error::printable(&a.value)
        );
    }
    if !pinned {
        return "transparency log:  not witnessed (set `[hub] log_key` from `internet-hub audit key`)\n"
            .to_owned();
    }
    match latest {
        Some(s) => format!(
            "transparency log:  consistent; latest checkpoint {} entries at {} ({count} seen)\n",
            s.size,
            s.at.to_rfc3339()
        ),
        None => "transparency log:  no checkpoint witnessed yet\n".to_owned(),
    }
}

/// The web-enrollment lines of `lgwan-agent status`: codes, answers of the last 30
/// days by reason, locked residents and throttled apps (tokens and app ids only).
pub fn enrollment_text(status: &EnrollmentStatus, require_code: bool) -> String {
    let refused: u64 = status.refused.iter().map(|(_, n)| n).sum();
    let mut out = format!(
        "web enrollment:    {}; {} codes active, {} used; last 30 days: {} linked, {} refused\n",
        if require_code {
            "code required"
        } else {
            "code NOT required"
        },
        status.codes_active,
        status.codes_used,
        status.linked,
        refused
    );
    if !status.refused.is_empty() {
        let reasons: Vec<String> = status
            .refused
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        out.push_str(&format!("  refused:         {}\n", reasons.join(", ")));
    }
    out.push_str(&format!(
        "  locked:          {} residents\n",
        status.locked.len()
    ));
    for l in &status.locked {
        let since = chrono::DateTime::from_timestamp(l.since, 0)
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        out.push_str(&format!(
            "    {} ({} failures, since {since}, last from `{}`)\n",
            l.subject, l.failures, l.last_app
        ));
    }
    if !status.throttled_apps.is_empty() {
        out.push_str(&format!(
            "  throttled apps:  {}\n",
            status.throttled_apps.join(", ")
        ));
    }
    out
}

/// Imports the ready files of the import folder, one at a time.
async fn import_folder(
    agent: &Agent,
    outbox: &Outbox,
    dir: &Path,
    watch: &mut FolderWatch,
    log: &mut (dyn FnMut(String) + Send),
) -> Result<()> {
    for file in watch.ready(dir)? {
        let summary = import(agent, outbox, std::slice::from_ref(&file), &mut |_| {}).await?;
        let target = file_away(dir, &file, &summary)?;
        log(format!(
            "imported `{}`: {} records ({} new), {} quarantined → `{}`",
            file.display(),
            summary.records,
            summary.new_records,
            summary.quarantined.len(),
            target.display()
        ));
    }
    Ok(())
}

/// One round with the hub.
async fn hub_round(
    agent: &Agent,
    outbox: &Outbox,
    client: &HubClient,
    keys_published: &mut bool,
    log: &mut (dyn FnMut(String) + Send),
) -> Result<()> {
    if !*keys_published {
        publish_keys(agent, client).await?;
        *keys_published = true;
        log("published the enrollment key".into());
    }
    // Links first: records under a new token must find it linked at the hub.
    let linked = upload_links_once(outbox, client, agent.config.upload_batch).await?;
    if linked > 0 {
        log(format!(
            "uploaded {linked} subject links (token key rotation)"
        ));
    }
    let sent = upload_once(outbox, client, agent.config.upload_batch).await?;
    // A list the hub refuses (409 when a counter grant published at the same moment)
    // must not stop the round: apps stay safe, refusing once the last list is too old.
    if let Err(e) = publish_counter_revocations(outbox, client).await {
        log(format!(
            "the agent's revocation list was not published: {e}"
        ));
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "the daemon reads the wall clock once per round and passes it down"
    )]
    let now = chrono::Utc::now();
    // The hub's log is witnessed before any key is released.
    let released = match crate::witness::witness_hub(&agent.config, outbox, client, now).await? {
        Witnessed::Alarm(reason) => {
            log(format!(
                "ALARM: the hub's transparency log is inconsistent ({reason}); no key is released until `lgwan-agent witness clear-alarm`"
            ));
            false
        }
        Witnessed::Accepted {
            cosign_error: Some(e),
            ..
        } => {
            log(format!("transparency log: cosignature not delivered: {e}"));
            true
        }
        Witnessed::NotPinned => {
            log(
                "no key is released: pin the hub's log key as `[hub] log_key` (from \
                 `internet-hub audit --config hub.toml key`) so that this agent witnesses the log"
                    .to_owned(),
            );
            false
        }
        Witnessed::Accepted { .. } => true,
    };
    let grants = if released {
        answer_grants_once(agent, client).await?
    } else {
        0
    };
    let round = answer_enrollments_once(agent, outbox, client, now).await?;
    for token in &round.locked {
        log(format!(
            "enrollment: web enrollment of resident `{token}` is locked after {} failed attempts; staff: check with the resident, then `lgwan-agent enrollment-code issue` gives them a new code and unlocks it",
            agent.config.enrollment.max_failures
        ));
    }
    for app in &round.throttled {
        log(format!(
            "enrollment: `{app}` reached {} failed enrollments within the hour; its requests are refused unread until the hour has passed",
            agent.config.enrollment.app_failures_per_hour
        ));
    }
    let enrolled = round.answered;
    let pinned = agent
        .config
        .hub
        .as_ref()
        .and_then(|h| h.signing_key.as_deref());
    keep_checkpoint(outbox, client, pinned).await?;
    // Records a recipient reported it cannot open: the municipality is told.
    let reports = client.unreadable_reports(100).await?;
    if let Some(newest) = reports.first() {
        let note = format!(
            "`{}` → `{}`: {}",
            renkei_client::error::shorten(&newest.record_id),
            renkei_client::error::shorten(&newest.recipient),
            renkei_client::error::shorten(&newest.reason)
        );
        if outbox.note_unreadable(reports.len(), &note).await? {
            log(format!(
                "{} record(s) reported unreadable by recipients; newest {note}",
                reports.len()
            ));
        }
    }
    if sent + grants + enrolled > 0 {
        log(format!(
            "uploaded {sent} records, answered {grants} key grants and {enrolled} enrollments"
        ));
    }
    Ok(())
}

/// Runs the daemon until `shutdown` completes. Needs `[hub]` in the config; the
/// import folder is optional. `log` receives one line per event.
pub async fn run(
    agent: &Agent,
    shutdown: impl Future<Output = ()> + Send,
    log: &mut (dyn FnMut(String) + Send),
) -> Result<()> {
    let outbox = Outbox::open(&agent.config.outbox).await?;
    // The loop backs off on its own; each call retries only briefly.
    let mut settings = agent.config.hub()?.client_config();
    settings.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(5),
    };
    let client = HubClient::new(settings)?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut watch = FolderWatch::default();
    let mut failures = 0u32;
    let mut keys_published = false;
    loop {
        let round = async {
            if let Some(dir) = &agent.config.import_dir {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                if let Err(e) = import_folder(agent, &outbox, dir, &mut watch, log).await {
                    log(format!("import: {e}"));
                    outbox.set_last_error(&format!("import: {e}")).await?;
                }
            }
            hub_round(agent, &outbox, &client, &mut keys_published, log).await
        };
        let outcome = tokio::select! {
            () = &mut shutdown => break,
            outcome = round => outcome,
        };
        match outcome {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                log(format!("round failed ({failures} in a row): {e}"));
                outbox.set_last_error(&e.to_string()).await?;
            }
        }
        let wait = backoff(agent.config.poll, failures, rand_unit());
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    outbox.close().await;
    Ok(())
}

/// A uniform draw from `[0, 1)` for jitter.
fn rand_unit() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hub's words in a note cannot drive the terminal `status` prints to (an ANSI
    /// sequence hiding the ALARM line after it).
    #[test]
    fn status_escapes_what_the_hub_said() {
        let hidden = Note {
            value: "enrollment `x`: \u{1b}[8m".into(),
            at: "2026-12-07T00:00:00Z".into(),
        };
        let status = OutboxStatus {
            last_error: Some(hidden.clone()),
            ..OutboxStatus::default()
        };
        let text =
            status_text(Path::new("o"), &status, &[]) + &witness_text(true, Some(&hidden), None, 0);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("\\u{1b}[8m"), "{text}");
    }

    #[test]
    fn backoff_grows_caps_and_resets() {
        let poll = Duration::from_secs(10);
        assert_eq!(backoff(poll, 0, 0.5), poll);
        assert_eq!(backoff(poll, 1, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(poll, 1, 0.999_999).as_secs(), 9);
        assert_eq!(backoff(poll, 3, 0.0), Duration::from_secs(20));
        assert_eq!(backoff(poll, 30, 0.0), MAX_BACKOFF / 2);
        assert!(backoff(poll, 30, 0.999) <= MAX_BACKOFF);
        let u = rand_unit();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn a_file_is_ready_once_it_stopped_changing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.csv");
        std::fs::write(&file, "x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join(".hidden.csv"), "x").unwrap();
        let mut watch = FolderWatch::default();
        assert!(watch.ready(dir.path()).unwrap().is_empty(), "first sight");
        std::fs::write(&file, "xy").unwrap();
        assert!(watch.ready(dir.path()).unwrap().is_empty(), "still growing");
        assert_eq!(watch.ready(dir.path()).unwrap(), vec![file]);
    }

    #[test]
    fn files_go_to_done_or_quarantine_with_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "x").unwrap();
        let clean = ImportSummary::default();
        let moved = file_away(dir.path(), &a, &clean).unwrap();
        assert_eq!(moved, dir.path().join(DONE).join("a.csv"));
        std::fs::write(&a, "y").unwrap();
        let again = file_away(dir.path(), &a, &clean).unwrap();
        assert_eq!(
            again,
            dir.path().join(DONE).join("a.csv.1"),
            "never overwrites"
        );

        let b = dir.path().join("b.zip");
        std::fs::write(&b, "z").unwrap();
        let bad = ImportSummary {
            quarantined: vec![crate::quarantine::Quarantine::new(
                "b.zip",
                Some("DATA/x.xml".into()),
                crate::quarantine::Reason::Doctype,
            )],
            ..ImportSummary::default()
        };
        let moved = file_away(dir.path(), &b, &bad).unwrap();
        assert!(moved.starts_with(dir.path().join(QUARANTINE)));
        let reports = quarantined_files(dir.path());
        assert_eq!(reports.len(), 1);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&reports[0]).unwrap()).unwrap();
        assert_eq!(report["quarantined"][0]["reason"]["kind"], "doctype");
        assert_eq!(report["file"], "b.zip");
    }
}
