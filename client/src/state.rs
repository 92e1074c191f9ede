//! The client's local state: the feed cursor (replaced atomically), the index of the
//! files `pull` wrote and the consent each came under (so that revocation deletes
//! them), and the log of feed items refused as undecryptable or inconsistent.
//!
//! Files: `cursor.json` (`{"cursor": n}`), `written.jsonl` and `rejected.jsonl`
//! (one JSON object a line, appended and fsynced); `users.jsonl`,
//! `signed-consents.jsonl` and `revoked-consents.jsonl` (an app's users and consents);
//! `revocation-lists.jsonl` (per other signer, the newest revocation list seen and every
//! id it ever named, replaced atomically). Folders are made 0700, files 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const CURSOR: &str = "cursor.json";
const WRITTEN: &str = "written.jsonl";
const REJECTED: &str = "rejected.jsonl";
const USERS: &str = "users.jsonl";
const SIGNED: &str = "signed-consents.jsonl";
const REVOKED: &str = "revoked-consents.jsonl";
const LISTS: &str = "revocation-lists.jsonl";

/// A revocation list of another signer, as this participant saw it (checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SeenList {
    signer: String,
    issued_at: chrono::DateTime<chrono::Utc>,
    revoked: Vec<String>,
}

/// A consent statement this participant signed, with the consent id the hub gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedConsent {
    /// The hub's consent id (empty until the hub answered the grant).
    pub consent_id: String,
    /// The statement's id ([`renkei_crypto::consent_statement::ConsentStatement::id`]).
    pub statement_id: String,
    /// When the consent's validity ends, if it does.
    pub valid_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The resident the statement names (a `user:` digest or a subject token).
    #[serde(default)]
    pub resident: String,
    /// Its recipient.
    #[serde(default)]
    pub recipient: String,
    /// Its purpose.
    #[serde(default)]
    pub purpose: String,
}

/// An app's enrolled user: its pseudonym for the resident and how its consent
/// statements name them ([`renkei_crypto::consent_statement::user_resident`]; the user
/// reference itself is not kept). A clinic keeps the patients apps introduced to it the
/// same way: its own pseudonym, the app's user digest, and the app as `source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledUser {
    /// The app's pseudonym (`rp1_…`).
    pub pseudonym: String,
    /// The user digest (`user:…`).
    pub resident: String,
    /// The source that linked the user (its counter consents may name them as an alias);
    /// for a clinic, the app that introduced the patient.
    pub source: String,
}

/// One file written by `pull`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// The consent the record was released under.
    pub consent_id: String,
    /// The record.
    pub record_id: String,
    /// The file.
    pub path: PathBuf,
}

/// A feed item that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Feed position.
    pub seq: i64,
    /// The record.
    pub record_id: String,
    /// Why it was refused.
    pub reason: String,
}

/// The state folder of one participant client.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct CursorFile {
    cursor: i64,
}

impl StateDir {
    /// Opens (creating, mode 0700) the state folder.
    pub fn open(dir: &Path) -> Result<Self> {
        create_private_dir(dir)?;
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The saved feed cursor; 0 when none was saved yet.
    pub fn cursor(&self) -> Result<i64> {
        let path = self.dir.join(CURSOR);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<CursorFile>(&bytes)
                .map(|c| c.cursor)
                .map_err(|e| {
                    Error::invalid(format!("cursor file `{}`", path.display()), e.to_string())
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(path)(e)),
        }
    }

    /// Saves the feed cursor atomically (temporary file, fsync, rename, fsync folder).
    pub fn save_cursor(&self, cursor: i64) -> Result<()> {
        let json = serde_json::to_vec(&CursorFile { cursor })
            .map_err(|e| Error::invalid("cursor", e.to_string()))?;
        write_atomic(&self.dir.join(CURSOR), &json)
    }

    /// Appends entries to the index of written files and syncs it to disk.
    pub fn record_written(&self, entries: &[Written]) -> Result<()> {
        append_lines(&self.dir.join(WRITTEN), entries)
    }

    /// Every entry of the index of written files, oldest first.
    pub fn written(&self) -> Result<Vec<Written>> {
        read_lines(&self.dir.join(WRITTEN))
    }

    /// Replaces the index of written files atomically.
    pub fn replace_written(&self, entries: &[Written]) -> Result<()> {
        let mut text = Vec::new();
        for e in entries {
            text.extend(
                serde_json::to_vec(e).map_err(|e| Error::invalid("index entry", e.to_string()))?,
            );
            text.push(b'\n');
        }
        write_atomic(&self.dir.join(WRITTEN), &text)
    }

    /// Appends refused feed items to `rejected.jsonl`.
    pub fn record_rejected(&self, entries: &[Rejected]) -> Result<()> {
        append_lines(&self.dir.join(REJECTED), entries)
    }

    /// Every refused feed item logged so far.
    pub fn rejected(&self) -> Result<Vec<Rejected>> {
        read_lines(&self.dir.join(REJECTED))
    }

    /// Remembers an enrolled user (`users.jsonl`). A pseudonym that two of the app's users
    /// were enrolled as (one person with two accounts, or a hub naming a resident the app
    /// enrolled for someone else) is kept, and [`StateDir::user_of`] then fails closed.
    pub fn record_user(&self, user: &EnrolledUser) -> Result<()> {
        let users: Vec<EnrolledUser> = read_lines(&self.dir.join(USERS))?;
        if users.contains(user) {
            return Ok(());
        }
        append_lines(&self.dir.join(USERS), std::slice::from_ref(user))
    }

    /// Remembers a consent statement this participant signed (`signed-consents.jsonl`),
    /// so that a revocation names the statement it signed, not one the hub names.
    pub fn record_signed(&self, consent: &SignedConsent) -> Result<()> {
        append_lines(&self.dir.join(SIGNED), std::slice::from_ref(consent))
    }

    /// Whether this participant signed any consent from this state folder.
    pub fn signs_consents(&self) -> Result<bool> {
        Ok(!read_lines::<SignedConsent>(&self.dir.join(SIGNED))?.is_empty())
    }

    /// Every statement this participant signed from this state folder, as kept (a
    /// statement appears first without a consent id, then with the one the hub gave).
    pub fn signed_consents(&self) -> Result<Vec<SignedConsent>> {
        read_lines(&self.dir.join(SIGNED))
    }

    /// Notes that this participant revoked `consent` (`revoked-consents.jsonl`), before it
    /// tells the hub: its next revocation list names it, and as a source it releases
    /// nothing under it again.
    pub fn record_revoked(&self, consent: &SignedConsent) -> Result<()> {
        if self
            .revoked()?
            .iter()
            .any(|c| c.statement_id == consent.statement_id)
        {
            return Ok(());
        }
        append_lines(&self.dir.join(REVOKED), std::slice::from_ref(consent))
    }

    /// Every consent this participant revoked, oldest first.
    pub fn revoked(&self) -> Result<Vec<SignedConsent>> {
        read_lines(&self.dir.join(REVOKED))
    }

    /// Keeps `list`, a checked revocation list of another signer whose consents this
    /// participant releases under (`revocation-lists.jsonl`), and returns every statement
    /// id that signer ever named: an id once seen revoked stays revoked, whatever a later
    /// list the hub shows says. A list older than one seen before is refused (a hub
    /// showing an old list to hide a revocation).
    pub fn note_revocation_list(
        &self,
        list: &renkei_crypto::consent_statement::RevocationList,
    ) -> Result<std::collections::BTreeSet<String>> {
        let path = self.dir.join(LISTS);
        let mut seen: Vec<SeenList> = read_lines(&path)?;
        let kept = seen
            .iter()
            .position(|s| s.signer == list.signer)
            .map(|i| seen.swap_remove(i));
        if let Some(k) = &kept {
            if k.issued_at > list.issued_at {
                return Err(Error::invalid(
                    format!(
                        "revocation list of `{}`",
                        crate::error::shorten(&list.signer)
                    ),
                    format!(
                        "issued {}, older than the one seen before (issued {}): the hub shows \
                         an old list",
                        list.issued_at, k.issued_at
                    ),
                ));
            }
            if k.issued_at == list.issued_at && list.revoked.iter().all(|id| k.revoked.contains(id))
            {
                return Ok(k.revoked.iter().cloned().collect());
            }
        }
        let mut revoked: std::collections::BTreeSet<String> = kept
            .map(|k| k.revoked)
            .unwrap_or_default()
            .into_iter()
            .collect();
        revoked.extend(list.revoked.iter().cloned());
        seen.push(SeenList {
            signer: list.signer.clone(),
            issued_at: list.issued_at,
            revoked: revoked.iter().cloned().collect(),
        });
        let mut text = String::new();
        for s in &seen {
            let line = serde_json::to_string(s)
                .map_err(|e| Error::invalid(format!("`{}`", path.display()), e.to_string()))?;
            text.push_str(&line);
            text.push('\n');
        }
        write_atomic(&path, text.as_bytes())?;
        Ok(revoked)
    }

    /// The app's user it knows as `pseudonym`; an error if more than one was kept for it
    /// (nothing is released for, or signed as, an ambiguous user).
    pub fn user_of(&self, pseudonym: &str) -> Result<Option<EnrolledUser>> {
        let users: Vec<EnrolledUser> = read_lines(&self.dir.join(USERS))?;
        let mut found = users.into_iter().filter(|u| u.pseudonym == pseudonym);
        let first = found.next();
        if found.any(|u| Some(&u) != first.as_ref()) {
            return Err(Error::invalid(
                format!("users of `{}`", crate::error::shorten(pseudonym)),
                "more than one user is kept for this pseudonym",
            ));
        }
        Ok(first)
    }
}

/// Creates a folder and its parents; new folders get mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(dir))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder (mode
/// 0600), fsync, rename over `path`, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("path `{}`", path.display()), "has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        // Best effort: the write error is the one to report.
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(Error::io(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}

fn append_lines<T: Serialize>(path: &Path, entries: &[T]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(path))?;
    // A crash may have cut the last line short: drop it (its items are fetched again,
    // since the cursor only moves after this append is synced).
    drop_partial_line(&mut file).map_err(Error::io(path))?;
    let mut text = Vec::new();
    for e in entries {
        text.extend(
            serde_json::to_vec(e).map_err(|e| Error::invalid("state entry", e.to_string()))?,
        );
        text.push(b'\n');
    }
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(Error::io(path))
}

fn drop_partial_line(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    if last == *b"\n" {
        return Ok(());
    }
    file.seek(SeekFrom::Start(0))?;
    let mut all = Vec::new();
    file.read_to_end(&mut all)?;
    let keep = all.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    file.set_len(u64::try_from(keep).unwrap_or(0))?;
    file.sync_all()
}

/// Reads a JSON-lines file; a missing file is empty, and a cut-off last line (a crash
/// during an append, before the cursor moved) is skipped. Any other bad line is an error.
fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path)(e)),
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len().saturating_sub(1);
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i == last => {}
            Err(e) => {
                return Err(Error::invalid(
                    format!("`{}` line {}", path.display(), i + 1),
                    e.to_string(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signer's list as the hub shows it (unsigned here: the state keeps checked lists).
    fn list(at: i64, revoked: &[&str]) -> renkei_crypto::consent_statement::RevocationList {
        renkei_crypto::consent_statement::RevocationList {
            signer: "source:city-a".into(),
            revoked: revoked.iter().map(|s| (*s).to_owned()).collect(),
            issued_at: chrono::DateTime::from_timestamp(at, 0).unwrap(),
            certificate: String::new(),
            scheme: 0,
            signature: String::new(),
        }
    }

    #[test]
    fn another_signers_revocations_stay_and_an_older_list_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("s")).unwrap();
        let ids = |set: std::collections::BTreeSet<String>| set.into_iter().collect::<Vec<_>>();
        assert_eq!(
            ids(state.note_revocation_list(&list(100, &["a"])).unwrap()),
            ["a"]
        );
        // A newer list that no longer names `a` (the hub dropped it): `a` stays revoked.
        assert_eq!(
            ids(state.note_revocation_list(&list(200, &["b"])).unwrap()),
            ["a", "b"]
        );
        // The same list again, after a restart.
        let again = StateDir::open(state.path()).unwrap();
        assert_eq!(
            ids(again.note_revocation_list(&list(200, &["b"])).unwrap()),
            ["a", "b"]
        );
        // An older list: the hub hiding a newer one.
        let e = again.note_revocation_list(&list(150, &[])).unwrap_err();
        assert!(
            e.to_string().contains("older than the one seen before"),
            "{e}"
        );
        // Another signer's lists are kept apart.
        let other = renkei_crypto::consent_statement::RevocationList {
            signer: "phr:asmile".into(),
            ..list(50, &[])
        };
        assert!(again.note_revocation_list(&other).unwrap().is_empty());
    }
    use std::os::unix::fs::PermissionsExt;

    fn entry(consent: &str, record: &str) -> Written {
        Written {
            consent_id: consent.into(),
            record_id: record.into(),
            path: PathBuf::from(format!("/out/{record}.json")),
        }
    }

    #[test]
    fn cursor_starts_at_zero_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("s")).unwrap();
        assert_eq!(state.cursor().unwrap(), 0);
        state.save_cursor(42).unwrap();
        assert_eq!(StateDir::open(state.path()).unwrap().cursor().unwrap(), 42);
        state.save_cursor(43).unwrap();
        assert_eq!(state.cursor().unwrap(), 43);
        let leftovers: Vec<_> = fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from(CURSOR)],
            "no temporary files"
        );
        let mode = fs::metadata(state.path().join(CURSOR))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(state.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn corrupt_cursor_is_an_error_not_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        fs::write(dir.path().join(CURSOR), b"{\"cur").unwrap();
        assert!(state.cursor().is_err());
    }

    #[test]
    fn index_appends_survive_a_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state
            .record_written(&[entry("c1", "r1"), entry("c2", "r2")])
            .unwrap();
        // Simulate a crash in the middle of the next append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(WRITTEN))
            .unwrap();
        f.write_all(b"{\"consent_id\":\"c3\",\"rec").unwrap();
        drop(f);
        assert_eq!(state.written().unwrap().len(), 2);
        state.record_written(&[entry("c3", "r3")]).unwrap();
        let all = state.written().unwrap();
        assert_eq!(
            all,
            vec![entry("c1", "r1"), entry("c2", "r2"), entry("c3", "r3")]
        );
        state.replace_written(&all[1..]).unwrap();
        assert_eq!(state.written().unwrap().len(), 2);
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        fs::write(dir.path().join(WRITTEN), b"garbage\n{}\n").unwrap();
        assert!(state.written().is_err());
    }
}
