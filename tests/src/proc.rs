//! Processes: finding the workspace's binaries, running a command to completion within a
//! bounded time, and background children that are killed when their guard drops.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Folders where `cargo` puts debug binaries, most specific first: `$CARGO_TARGET_DIR/debug`,
/// the folder of the running test executable's `deps/`, and `<workspace>/target/debug`.
fn bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(t).join("debug"));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/debug/deps/it-<hash> → target/debug
        if let Some(debug) = exe.parent().and_then(Path::parent) {
            dirs.push(debug.to_path_buf());
        }
    }
    dirs.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("debug"),
    );
    dirs
}

/// The path of a workspace binary (`internet-hub`, `lgwan-agent`, `renkei-client`).
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let dirs = bin_dirs();
    for d in &dirs {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| format!("`{}`", d.display())).collect();
    bail!(
        "the binary `{name}` is not built (looked in {}); run `cargo build --workspace --bins` \
         first (`cargo test --workspace` does it)",
        looked.join(", ")
    )
}

/// A command for a workspace binary with stdin closed.
pub fn command(name: &str) -> anyhow::Result<Command> {
    let mut c = Command::new(bin(name)?);
    c.stdin(Stdio::null());
    Ok(c)
}

/// How a command reads in messages: program and arguments.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let _ = write!(s, " {}", a.to_string_lossy());
    }
    s
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    /// The command line, for messages.
    pub what: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Itself when the command succeeded, else an error showing both streams.
    pub fn ok(self) -> anyhow::Result<Output> {
        if self.status.success() {
            Ok(self)
        } else {
            bail!("{self}")
        }
    }

    /// Standard output parsed as one JSON value.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("stdout of {self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.status,
            tail(&self.stdout, 4000),
            tail(&self.stderr, 4000)
        )
    }
}

/// The last `max` bytes of `s` (at a character boundary).
pub fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s.get(start..).unwrap_or(s)
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` to completion, killing it after `timeout`. The exit status is not checked
/// (see [`Output::ok`]).
pub async fn run(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let what = describe(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{what}`"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child
            .try_wait()
            .with_context(|| format!("waiting for `{what}`"))?
        {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            bail!(
                "`{what}` did not finish within {timeout:?}; killed\n--- stderr\n{}",
                tail(&stderr, 4000)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Ok(Output {
        what,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// A child running in the background, its output going to a log file. Dropping the
/// guard kills it and reaps it, so no test leaves a process behind.
#[derive(Debug)]
pub struct Background {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Background {
    /// Starts `cmd` with standard output and error appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Background> {
        let what = describe(cmd);
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening the log `{}`", log.display()))?;
        let err = file.try_clone().context("cloning a log handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: `{what}`"))?;
        Ok(Background {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An error unless it is still running; the error shows the end of its log.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} exited with {status}\n--- log\n{}",
                self.name,
                tail(&self.log(), 4000)
            ),
            Err(e) => bail!("{}: {e}", self.name),
        }
    }

    /// Kills it now and waits for it.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 100 ms until it yields a value, failing after `timeout` with
/// `what` and the last error `check` returned.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    let mut last = String::from("nothing yet");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
