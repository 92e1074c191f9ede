//! A network namespace for the LGWAN agent (the three-layer separation): a veth pair
//! whose two ends hold the only two addresses of a private /30, the agent's end inside
//! the namespace, no default route. Made and removed by the test itself; needs root.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// A namespace with a veth link to the host side. Dropping it deletes both.
#[derive(Debug)]
pub struct Netns {
    /// The namespace's name.
    pub name: String,
    /// The host-side veth interface.
    pub host_if: String,
    /// The host side's address (where the hub listens).
    pub host_addr: Ipv4Addr,
    /// The namespace side's address (the agent's).
    pub ns_addr: Ipv4Addr,
}

fn ip(args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `ip {}`", args.join(" ")))
}

fn ip_ok(args: &[&str]) -> anyhow::Result<()> {
    let out = ip(args)?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Makes the namespace and its link, or `Ok(Err(reason))` when this
    /// machine does not let the test make namespaces (no `ip`, not root, no capability).
    pub fn create() -> anyhow::Result<Result<Netns, String>> {
        let pid = std::process::id();
        let name = format!("renkei-e2e-{pid}");
        match ip(&["netns", "add", &name]) {
            Err(e) => return Ok(Err(format!("`ip` is not usable: {e:#}"))),
            Ok(out) if !out.status.success() => {
                return Ok(Err(format!(
                    "`ip netns add` is not permitted here: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(_) => {}
        }
        // From here the capability exists: failures are errors. Two addresses of a /30 that
        // exist only on this link; the third octet varies with the pid so that two runs on
        // one machine do not collide.
        let octet = u8::try_from(pid % 200).unwrap_or(0).saturating_add(20);
        let ns = Netns {
            host_if: format!("rke{}h", pid % 1_000_000),
            host_addr: Ipv4Addr::new(10, 213, octet, 1),
            ns_addr: Ipv4Addr::new(10, 213, octet, 2),
            name,
        };
        ns.link()
            .with_context(|| format!("setting up the namespace `{}`", ns.name))?;
        Ok(Ok(ns))
    }

    fn link(&self) -> anyhow::Result<()> {
        let inner = format!("rke{}a", std::process::id() % 1_000_000);
        ip_ok(&[
            "link",
            "add",
            &self.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &inner,
        ])?;
        ip_ok(&["link", "set", &inner, "netns", &self.name])?;
        ip_ok(&[
            "addr",
            "add",
            &format!("{}/30", self.host_addr),
            "dev",
            &self.host_if,
        ])?;
        ip_ok(&["link", "set", &self.host_if, "up"])?;
        let n = self.name.as_str();
        ip_ok(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{}/30", self.ns_addr),
            "dev",
            &inner,
        ])?;
        ip_ok(&["-n", n, "link", "set", &inner, "up"])?;
        ip_ok(&["-n", n, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// A command running `program` inside the namespace (`ip netns exec`, which execs it:
    /// the child's pid is the program's).
    pub fn exec(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs a shell command inside the namespace; returns (success, stdout + stderr).
    pub fn sh(&self, script: &str) -> anyhow::Result<(bool, String)> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "bash", "-c", script])
            .stdin(Stdio::null())
            .output()
            .context("running a shell in the namespace")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success(), text))
    }

    /// The namespace's routing table (`ip -4 route`).
    pub fn routes(&self) -> anyhow::Result<String> {
        let out = ip(&["-n", &self.name, "-4", "route", "show"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every listening TCP and UDP socket in the namespace (`ss -ltnuH`), one a line.
    pub fn listeners(&self) -> anyhow::Result<Vec<String>> {
        let (ok, text) = self.sh("ss -ltnupH")?;
        if !ok {
            bail!("`ss` failed in the namespace: {text}");
        }
        Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end and with it the host end.
        let _ = ip(&["netns", "delete", &self.name]);
        let _ = ip(&["link", "delete", &self.host_if]);
    }
}
