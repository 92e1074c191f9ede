//! The hub: its listen addresses, `hub.toml` as `internet-hub init` wrote it with ports and
//! database edited, `internet-hub serve` processes (one or several instances on one
//! database and one set of keys), and the admin commands.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::proc::{Background, Output, command, run};
use crate::scene::{CLI_TIMEOUT, Scene, edit_toml, s, set_toml};

/// Three listen addresses of one hub instance.
#[derive(Debug, Clone, Copy)]
pub struct HubAddrs {
    /// Participant API (mTLS).
    pub participant: SocketAddr,
    /// Resident portal (HTTPS).
    pub portal: SocketAddr,
    /// Admin (plain HTTP).
    pub admin: SocketAddr,
}

/// Three free TCP ports (bound together on 127.0.0.1, then released).
pub fn free_ports() -> anyhow::Result<[u16; 3]> {
    let a = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    let b = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    let c = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok([
        a.local_addr()?.port(),
        b.local_addr()?.port(),
        c.local_addr()?.port(),
    ])
}

impl Scene {
    /// `internet-hub init`, then the database, ports and limits edited in `hub.toml`.
    pub(crate) async fn make_hub(&self) -> anyhow::Result<()> {
        let mut init = command("internet-hub")?;
        init.arg("init")
            .arg("--dir")
            .arg(self.root())
            .args(["--pki", "pki"]);
        run(&mut init, CLI_TIMEOUT).await?.ok()?;
        self.write_hub_config(&self.hub_config, &self.addrs)
    }

    /// Writes a copy of `hub.toml` with other listen addresses (a second instance).
    fn write_hub_config(&self, path: &Path, addrs: &HubAddrs) -> anyhow::Result<()> {
        if path != self.hub_config {
            std::fs::copy(&self.hub_config, path).context("copying hub.toml")?;
        }
        edit_toml(path, |t| {
            set_toml(t, &["database_url"], s(self.db_url.clone()))?;
            set_toml(
                t,
                &["listen", "participant"],
                s(addrs.participant.to_string()),
            )?;
            set_toml(t, &["listen", "portal"], s(addrs.portal.to_string()))?;
            set_toml(t, &["listen", "admin"], s(addrs.admin.to_string()))?;
            // Load tests read far above a real vendor's rate; the limiter is not under test here.
            set_toml(
                t,
                &["limits", "rate_per_second"],
                toml::Value::Integer(100_000),
            )?;
            set_toml(t, &["limits", "rate_burst"], toml::Value::Integer(100_000))?;
            set_toml(t, &["audit", "checkpoint_secs"], toml::Value::Integer(2))
        })
    }

    /// `internet-hub <first> --config hub.toml` (admin commands take the config there).
    pub fn hub_admin(&self, first: &[&str]) -> anyhow::Result<Command> {
        let mut c = command("internet-hub")?;
        c.args(first).arg("--config").arg(&self.hub_config);
        Ok(c)
    }

    /// Runs `internet-hub audit --config hub.toml verify`.
    pub async fn audit_verify(&self) -> anyhow::Result<Output> {
        let mut c = self.hub_admin(&["audit"])?;
        c.arg("verify");
        run(&mut c, CLI_TIMEOUT).await
    }

    /// Starts `internet-hub serve` on `hub.toml`, waits for `/readyz`, and has every
    /// member publish its signed key statement (`renkei-client publish-keys`), as a
    /// participant does once it is registered: sources seal only to keys bound that way.
    pub async fn start_hub(&self) -> anyhow::Result<HubProcess> {
        let hub =
            HubProcess::start(&self.hub_config, self.addrs, &self.root().join("hub.log")).await?;
        for m in &self.members {
            self.client(&m.id, &["publish-keys"]).await?.ok()?;
        }
        Ok(hub)
    }

    /// Starts instance number `n` (2, 3, …) on the same database and keys, on other ports.
    pub async fn start_hub_instance(&self, n: u32) -> anyhow::Result<HubProcess> {
        if n < 2 {
            bail!("instance `{n}`: the first instance is `start_hub`");
        }
        let [p, q, r] = free_ports()?;
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let addrs = HubAddrs {
            participant: SocketAddr::new(lo, p),
            portal: SocketAddr::new(lo, q),
            admin: SocketAddr::new(lo, r),
        };
        let path = self.root().join(format!("hub-{n}.toml"));
        self.write_hub_config(&path, &addrs)?;
        HubProcess::start(&path, addrs, &self.root().join(format!("hub-{n}.log"))).await
    }
}

/// A running `internet-hub serve`.
#[derive(Debug)]
pub struct HubProcess {
    /// The process (killed on drop).
    pub process: Background,
    /// Where it listens.
    pub addrs: HubAddrs,
}

impl HubProcess {
    async fn start(config: &Path, addrs: HubAddrs, log: &Path) -> anyhow::Result<HubProcess> {
        let mut c = command("internet-hub")?;
        c.arg("serve").arg("--config").arg(config);
        let mut process = Background::spawn("internet-hub serve", &mut c, log)?;
        let admin = addrs.admin;
        let ready = crate::proc::wait_until("the hub's /readyz", Duration::from_secs(30), || {
            let alive = process.check_running();
            async move {
                alive?;
                let r = tokio::task::spawn_blocking(move || {
                    crate::http::get(admin, "/readyz", Duration::from_secs(2))
                })
                .await??;
                Ok((r.status == 200).then_some(()))
            }
        })
        .await;
        ready.with_context(|| format!("hub log:\n{}", crate::proc::tail(&process.log(), 4000)))?;
        Ok(HubProcess { process, addrs })
    }

    /// Its participant API URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addrs.participant)
    }
}
