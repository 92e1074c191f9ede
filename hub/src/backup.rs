//! Backups of the hub database (`internet-hub backup`): an online, consistent copy of
//! a SQLite database taken with `VACUUM INTO` through the hub's own pool, and for
//! PostgreSQL the `pg_dump` command to run instead (the hub does not dump a server).
//!
//! Restoring is not a command: stop the hub, put the file back (SQLite) or
//! `pg_restore` the dump (PostgreSQL), then `internet-hub audit verify`
//! (docs/operations.md, "Backup and restore").

use std::path::Path;

use crate::db::{Backend, Db};
use crate::error::{Error, Result};

/// What a SQLite backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Size of the copy in bytes.
    pub bytes: u64,
}

/// Copies the SQLite database behind `db` to the new file `out` (mode 0600), online:
/// `VACUUM INTO` reads one consistent snapshot while the hub keeps serving.
/// Refuses an existing `out` and a PostgreSQL database (see [`pg_dump_command`]).
pub async fn sqlite_backup(db: &Db, out: &Path) -> Result<Written> {
    if db.backend() != Backend::Sqlite {
        return Err(Error::config(
            "backup: the database is PostgreSQL; use pg_dump",
        ));
    }
    let name = out.to_str().ok_or_else(|| {
        Error::bad_request(format!(
            "backup file `{}` is not valid UTF-8",
            out.display()
        ))
    })?;
    // Create the empty file first, owner-only: the copy holds tokens and consents, and
    // `create_new` refuses an existing file without a window for a race.
    create_private_file(out)?;
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(name)
        .execute(db.pool())
        .await;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(out);
        return Err(Error::unavailable_from(
            format!("backup to `{}` failed", out.display()),
            e,
        ));
    }
    let bytes = std::fs::metadata(out)
        .map_err(|e| Error::internal_from(format!("backup `{}`", out.display()), e))?
        .len();
    Ok(Written { bytes })
}

fn create_private_file(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::Conflict(format!(
            "backup file `{}` exists; refusing to overwrite it",
            path.display()
        )),
        _ => Error::config_from(format!("backup file `{}`", path.display()), e),
    })
}

/// The `pg_dump` command that backs up the PostgreSQL database at `url` into `out`
/// (custom format, for `pg_restore`). The password is never part of it: pg_dump takes
/// it from `PGPASSWORD` or `~/.pgpass`, as the hub does.
pub fn pg_dump_command(url: &str, out: &Path) -> Result<String> {
    let parts = PgUrl::parse(url)?;
    let mut cmd = vec!["pg_dump".to_owned(), "--format=custom".to_owned()];
    if let Some(host) = &parts.host {
        cmd.push(format!("--host={}", shell_quote(host)));
    }
    if let Some(port) = &parts.port {
        cmd.push(format!("--port={}", shell_quote(port)));
    }
    if let Some(user) = &parts.user {
        cmd.push(format!("--username={}", shell_quote(user)));
    }
    cmd.push(format!("--dbname={}", shell_quote(&parts.dbname)));
    cmd.push(format!(
        "--file={}",
        shell_quote(&out.display().to_string())
    ));
    Ok(cmd.join(" "))
}

/// The parts of a `postgres://user:password@host:port/dbname?host=…` URL that pg_dump
/// needs; the password is dropped.
#[derive(Debug, PartialEq, Eq)]
struct PgUrl {
    user: Option<String>,
    host: Option<String>,
    port: Option<String>,
    dbname: String,
}

impl PgUrl {
    fn parse(url: &str) -> Result<PgUrl> {
        let bad = |why: &str| {
            Error::config(format!(
                "database_url `{}`: {why}",
                crate::db::redact_url(url)
            ))
        };
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| bad("not a `postgres://` URL"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (creds, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let user = creds
            .map(|c| c.split(':').next().unwrap_or_default())
            .filter(|u| !u.is_empty())
            .map(percent_decode);
        let (mut host, mut port) = split_host_port(hostport);
        let mut dbname = (!path.is_empty()).then(|| percent_decode(path));
        let mut user = user;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "host" => host = Some(v),
                "port" => port = Some(v),
                "user" => user = Some(v),
                "dbname" => dbname = Some(v),
                _ => {}
            }
        }
        let dbname = dbname.ok_or_else(|| bad("names no database"))?;
        Ok(PgUrl {
            user,
            host,
            port,
            dbname,
        })
    }
}

fn split_host_port(hostport: &str) -> (Option<String>, Option<String>) {
    if hostport.is_empty() {
        return (None, None);
    }
    // `[v6]:port`, `host:port` or `host`.
    if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').unwrap_or((v6, ""));
        let port = after.strip_prefix(':').map(str::to_owned);
        return (Some(addr.to_owned()), port);
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => (Some(h.to_owned()), Some(p.to_owned())),
        None => (Some(hostport.to_owned()), None),
    }
}

/// Decodes `%XX` escapes; anything malformed is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Quotes a word for a POSIX shell when it holds anything but safe characters.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_command_has_no_password() {
        let cmd = pg_dump_command(
            "postgres://renkei:s3cr%40t@db.example.jp:5433/renkei?sslmode=disable",
            Path::new("/var/backups/hub 1.dump"),
        )
        .unwrap();
        assert_eq!(
            cmd,
            "pg_dump --format=custom --host=db.example.jp --port=5433 --username=renkei \
             --dbname=renkei --file='/var/backups/hub 1.dump'"
        );
        assert!(!cmd.contains("s3cr"), "{cmd}");
    }

    #[test]
    fn pg_urls_in_other_shapes() {
        let p = PgUrl::parse("postgresql:///renkei?host=/run/postgresql&user=hub").unwrap();
        assert_eq!(
            p,
            PgUrl {
                user: Some("hub".into()),
                host: Some("/run/postgresql".into()),
                port: None,
                dbname: "renkei".into(),
            }
        );
        let p = PgUrl::parse("postgres://[::1]:5432/x").unwrap();
        assert_eq!(
            (p.host.as_deref(), p.port.as_deref()),
            (Some("::1"), Some("5432"))
        );
        let e = PgUrl::parse("postgres://u:pw@h/").unwrap_err().to_string();
        assert!(e.contains("names no database") && !e.contains("pw"), "{e}");
        assert!(PgUrl::parse("sqlite://hub.db").is_err());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("a-b_c.d"), "a-b_c.d");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
