//! Memory of a process from `/proc/<pid>/status` (resident set, VmRSS, and its peak, VmHWM)
//! and its CPU time from `/proc/<pid>/stat`.

use anyhow::{Context, Result, bail};

/// Which process: this one or a child by pid.
#[derive(Debug, Clone, Copy)]
pub enum Pid {
    /// The calling process.
    Me,
    /// Another process.
    Of(u32),
}

/// `/proc/<pid>/<name>` of the process.
fn proc_file(pid: Pid, name: &str) -> String {
    match pid {
        Pid::Me => format!("/proc/self/{name}"),
        Pid::Of(p) => format!("/proc/{p}/{name}"),
    }
}

/// A `kB` field of `/proc/<pid>/status`, in MiB.
pub fn status_mib(pid: Pid, field: &str) -> Result<f64> {
    let path = proc_file(pid, "status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading `{path}`"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kib: f64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("`{path}` field `{field}`: `{rest}`"))?;
            return Ok(kib / 1024.0);
        }
    }
    bail!("`{path}` has no field `{field}`")
}

/// Current resident set size in MiB.
pub fn rss_mib(pid: Pid) -> Result<f64> {
    status_mib(pid, "VmRSS")
}

/// Peak resident set size (high-water mark) in MiB.
pub fn peak_rss_mib(pid: Pid) -> Result<f64> {
    status_mib(pid, "VmHWM")
}

/// CPU time (user + system, all threads) the process has used so far, in seconds.
pub fn cpu_seconds(pid: Pid) -> Result<f64> {
    let path = proc_file(pid, "stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading `{path}`"))?;
    // After the command name in parentheses (which may hold spaces) come the fields from
    // the third on: utime and stime are the 14th and 15th, in USER_HZ ticks (100 a second).
    let after_name = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("`{path}`: no command name"))?;
    let ticks = |n: usize| -> Result<f64> {
        let field = after_name
            .split_whitespace()
            .nth(n)
            .with_context(|| format!("`{path}`: too few fields"))?;
        field
            .parse::<f64>()
            .with_context(|| format!("`{path}`: field `{field}`"))
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Whether the effective user is root (nginx then needs `user root;` to read a 0700 folder).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_is_read() {
        let rss = rss_mib(Pid::Me).unwrap();
        let peak = peak_rss_mib(Pid::Me).unwrap();
        assert!(rss > 0.5 && peak >= rss, "rss {rss} peak {peak}");
        assert!(status_mib(Pid::Me, "NoSuchField").is_err());
    }
}
