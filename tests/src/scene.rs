//! A deployment in a temporary folder, set up the way an operator would with the real
//! binaries: the PKI (`internet-hub pki`), the hub's keys and `hub.toml` (`init`, then
//! ports and database edited), the agent (`lgwan-agent init` plus its `[hub]` section),
//! one folder per participant (`renkei-client init-keys`, `client.toml`), and the registry
//! (`internet-hub participants add`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::db::{Backend, fresh_db};
use crate::hub::{HubAddrs, free_ports};
use crate::netns::Netns;
use crate::proc::{Background, Output, command, run};

/// Time allowed for one CLI command.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The source (municipality agent) of every scene.
pub const SOURCE: &str = "source:city-a";

/// One participant's folder: `tls/` (certificate, key, CA), `keys/`, `client.toml`, `state/`.
#[derive(Debug, Clone)]
pub struct Member {
    /// `kind:id`.
    pub id: String,
    /// Its folder.
    pub dir: PathBuf,
}

impl Member {
    fn new(root: &Path, id: &str) -> Member {
        Member {
            id: id.to_owned(),
            dir: root.join(id.replace(':', "-")),
        }
    }

    /// Its client certificate.
    pub fn cert(&self) -> PathBuf {
        self.dir
            .join("tls")
            .join(format!("{}.pem", self.id.replace(':', "-")))
    }

    /// Its TLS key.
    pub fn key(&self) -> PathBuf {
        self.dir
            .join("tls")
            .join(format!("{}.key", self.id.replace(':', "-")))
    }

    /// The CA handed out with its certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls").join("ca.pem")
    }

    /// Its `client.toml` (recipients) or `agent.toml` (the source).
    pub fn config(&self) -> PathBuf {
        if self.id.starts_with("source:") {
            self.dir.join("agent.toml")
        } else {
            self.dir.join("client.toml")
        }
    }
}

/// What a scene holds.
#[derive(Debug, Clone)]
pub struct SceneOptions {
    /// The hub's database.
    pub backend: Backend,
    /// Recipient participants (`kind:id`); a `phr:` one also gets a record key.
    pub members: Vec<String>,
}

impl SceneOptions {
    /// A scene with these recipients.
    pub fn new(backend: Backend, members: &[&str]) -> SceneOptions {
        SceneOptions {
            backend,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        }
    }
}

/// A deployment in a temporary folder.
#[derive(Debug)]
pub struct Scene {
    /// The folder (deleted on drop).
    pub dir: tempfile::TempDir,
    /// The hub's database URL.
    pub db_url: String,
    /// `hub.toml`.
    pub hub_config: PathBuf,
    /// The listen addresses in `hub.toml`.
    pub addrs: HubAddrs,
    /// The agent's folder (`agent.toml`, keys, outbox, tls).
    pub source: Member,
    /// The recipients, in the order given.
    pub members: Vec<Member>,
    /// The namespace the agent runs in, if any.
    pub agent_netns: Option<Netns>,
}

/// Sets `value` at a dotted `path` of a TOML table, making tables on the way.
pub(crate) fn set_toml(
    table: &mut toml::Table,
    path: &[&str],
    value: toml::Value,
) -> anyhow::Result<()> {
    let (last, parents) = path.split_last().context("empty toml path")?;
    let mut t = table;
    for p in parents {
        t = t
            .entry((*p).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("`{p}` is not a table"))?;
    }
    t.insert((*last).to_owned(), value);
    Ok(())
}

/// Reads a TOML file, lets `edit` change it, writes it back.
pub fn edit_toml(
    path: &Path,
    edit: impl FnOnce(&mut toml::Table) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing `{}`", path.display()))?;
    edit(&mut table)?;
    std::fs::write(path, toml::to_string(&table)?)
        .with_context(|| format!("writing `{}`", path.display()))
}

/// A TOML string.
pub(crate) fn s(v: impl Into<String>) -> toml::Value {
    toml::Value::String(v.into())
}

impl Scene {
    /// Sets up a scene, or `None` when its database is not available (see [`fresh_db`]).
    /// With `agent_netns`, the hub's participant API listens on the namespace's host-side
    /// address (also in the server certificate) and the agent is configured to reach it there.
    pub async fn new(
        opts: &SceneOptions,
        agent_netns: Option<Netns>,
    ) -> anyhow::Result<Option<Scene>> {
        let dir = tempfile::Builder::new()
            .prefix("renkei-e2e-")
            .tempdir()
            .context("making a test folder")?;
        let root = dir.path().to_path_buf();
        let Some(db_url) = fresh_db(opts.backend, &root).await? else {
            return Ok(None);
        };
        let hub_ip = agent_netns
            .as_ref()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |n| IpAddr::V4(n.host_addr));
        let [p, q, r] = free_ports()?;
        let addrs = HubAddrs {
            participant: SocketAddr::new(hub_ip, p),
            portal: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), q),
            admin: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), r),
        };
        let source = Member::new(&root, SOURCE);
        let members: Vec<Member> = opts.members.iter().map(|m| Member::new(&root, m)).collect();
        let scene = Scene {
            hub_config: root.join("hub.toml"),
            dir,
            db_url,
            addrs,
            source,
            members,
            agent_netns,
        };
        scene.make_pki(hub_ip).await?;
        scene.make_hub().await?;
        scene.make_agent().await?;
        for m in &scene.members {
            scene.make_member(m).await?;
        }
        Ok(Some(scene))
    }

    /// The scene's folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The participant API URL clients use.
    pub fn hub_url(&self) -> String {
        format!("https://{}", self.addrs.participant)
    }

    /// A recipient by `kind:id`.
    pub fn member(&self, id: &str) -> anyhow::Result<&Member> {
        self.members
            .iter()
            .find(|m| m.id == id)
            .with_context(|| format!("no member `{id}` in this scene"))
    }

    async fn make_pki(&self, hub_ip: IpAddr) -> anyhow::Result<()> {
        let pki = self.root().join("pki");
        let mut init = command("internet-hub")?;
        init.arg("pki").arg("init").arg("--dir").arg(&pki).args([
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ]);
        if !hub_ip.is_loopback() {
            init.arg("--ip").arg(hub_ip.to_string());
        }
        run(&mut init, CLI_TIMEOUT).await?.ok()?;
        for m in std::iter::once(&self.source).chain(&self.members) {
            let mut issue = command("internet-hub")?;
            issue
                .arg("pki")
                .arg("issue")
                .arg("--dir")
                .arg(&pki)
                .arg("--participant")
                .arg(&m.id);
            issue
                .arg("--out")
                .arg(m.dir.join("tls"))
                .args(["--days", "30"]);
            run(&mut issue, CLI_TIMEOUT).await?.ok()?;
        }
        Ok(())
    }

    async fn make_agent(&self) -> anyhow::Result<()> {
        let mut init = command("lgwan-agent")?;
        init.arg("init")
            .arg("--dir")
            .arg(&self.source.dir)
            .args(["--source", SOURCE]);
        run(&mut init, CLI_TIMEOUT).await?.ok()?;
        // The operator pins the hub's log key from `internet-hub audit key`: the agent
        // releases no key without witnessing the log.
        let mut key = self.hub_admin(&["audit"])?;
        key.arg("key");
        let log_key = run(&mut key, CLI_TIMEOUT)
            .await?
            .ok()?
            .stdout
            .trim()
            .to_owned();
        edit_toml(&self.source.config(), |t| {
            set_toml(t, &["poll_secs"], toml::Value::Integer(1))?;
            set_toml(t, &["hub", "log_key"], s(log_key.clone()))?;
            t.remove("import_dir");
            set_toml(t, &["hub", "url"], s(self.hub_url()))?;
            set_toml(t, &["hub", "ca"], s("tls/ca.pem"))?;
            set_toml(
                t,
                &["hub", "cert"],
                s(format!("tls/{}.pem", SOURCE.replace(':', "-"))),
            )?;
            set_toml(
                t,
                &["hub", "key"],
                s(format!("tls/{}.key", SOURCE.replace(':', "-"))),
            )?;
            // The city's release list: every member of the scene, any purpose the
            // policies allow (tests of the list itself narrow it).
            let rules: Vec<toml::Value> = self
                .members
                .iter()
                .map(|m| {
                    let mut rule = toml::Table::new();
                    rule.insert("participant".into(), s(m.id.clone()));
                    rule.insert("purposes".into(), toml::Value::Array(vec![s("*")]));
                    toml::Value::Table(rule)
                })
                .collect();
            t.insert("release".into(), toml::Value::Array(rules));
            Ok(())
        })?;
        let public = std::fs::read_to_string(self.source.dir.join("keys").join("enrollment.pub"))
            .context("reading the agent's enrollment.pub")?;
        let mut add = self.hub_admin(&["participants"])?;
        add.args([
            "add",
            SOURCE,
            "--name",
            "City A (LGWAN agent)",
            "--enrollment-key",
            public.trim(),
        ]);
        run(&mut add, CLI_TIMEOUT).await?.ok()?;
        Ok(())
    }

    async fn make_member(&self, m: &Member) -> anyhow::Result<()> {
        // Apps and clinics publish records of their own, sealed with a record key.
        let app = m.id.starts_with("phr:") || m.id.starts_with("clinic:");
        let mut keys = command("renkei-client")?;
        keys.arg("init-keys").arg("--dir").arg(m.dir.join("keys"));
        if app {
            keys.arg("--record-key");
        }
        let public = run(&mut keys, CLI_TIMEOUT)
            .await?
            .ok()?
            .stdout
            .trim()
            .to_owned();
        let (kind, id) = m.id.split_once(':').context("member id without a kind")?;
        let record = if app {
            "record_key = \"keys/record.key\"\n"
        } else {
            ""
        };
        let text = format!(
            "hub_url = \"{url}\"\nparticipant = \"{who}\"\nca = \"tls/ca.pem\"\ncert = \"tls/{kind}-{id}.pem\"\n\
             key = \"tls/{kind}-{id}.key\"\ngrant_key = \"keys/grant.key\"\n{record}state_dir = \"state\"\n\
             timeout_secs = 20\nmax_attempts = 3\n",
            url = self.hub_url(),
            who = m.id,
        );
        std::fs::write(m.config(), text).context("writing client.toml")?;
        let mut add = self.hub_admin(&["participants"])?;
        add.args(["add", &m.id, "--name", &m.id, "--grant-key", &public]);
        run(&mut add, CLI_TIMEOUT).await?.ok()?;
        Ok(())
    }

    /// `lgwan-agent <sub> --config agent.toml`, inside the agent's namespace if it has one.
    pub fn agent_cmd(&self, sub: &[&str]) -> anyhow::Result<Command> {
        let bin = crate::proc::bin("lgwan-agent")?;
        let mut c = match &self.agent_netns {
            Some(ns) => ns.exec(&bin),
            None => Command::new(bin),
        };
        c.stdin(std::process::Stdio::null());
        c.args(sub).arg("--config").arg(self.source.config());
        Ok(c)
    }

    /// Runs an agent command to completion.
    pub async fn agent(&self, sub: &[&str], extra: &[&str]) -> anyhow::Result<Output> {
        let mut c = self.agent_cmd(sub)?;
        c.args(extra);
        run(&mut c, CLI_TIMEOUT).await
    }

    /// Starts `lgwan-agent run` in the background.
    pub fn start_agent(&self) -> anyhow::Result<Background> {
        let mut c = self.agent_cmd(&["run"])?;
        Background::spawn("lgwan-agent run", &mut c, &self.root().join("agent.log"))
    }

    /// Waits (bounded) until the agent published its signed key statement (on the first
    /// round of `lgwan-agent run`): apps enroll only against a signed enrollment key.
    pub async fn wait_source_keys(&self) -> anyhow::Result<()> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let url = self.db_url.clone();
        crate::proc::wait_until(
            "the agent's signed key statement",
            Duration::from_secs(30),
            || {
                let url = url.clone();
                async move {
                    let mut conn = sqlx::AnyConnection::connect(&url).await?;
                    let row = sqlx::query(
                        "SELECT 1 AS one FROM hub_participants WHERE participant = $1 \
                         AND key_statement IS NOT NULL",
                    )
                    .bind(SOURCE)
                    .fetch_optional(&mut conn)
                    .await?;
                    Ok(row.map(|_| ()))
                }
            },
        )
        .await
    }

    /// Runs `renkei-client --config <member>/client.toml <args>`.
    pub async fn client(&self, member: &str, args: &[&str]) -> anyhow::Result<Output> {
        let m = self.member(member)?;
        let mut c = command("renkei-client")?;
        c.arg("--config").arg(m.config()).args(args);
        run(&mut c, CLI_TIMEOUT).await
    }

    /// The library client of a member, talking to `hub_url` (an instance's participant URL),
    /// making at most `attempts` attempts per request (retries only on 429, 503, transport).
    pub fn hub_client(
        &self,
        member: &str,
        hub_url: &str,
        attempts: u32,
    ) -> anyhow::Result<renkei_client::transport::HubClient> {
        let m = if member == SOURCE {
            &self.source
        } else {
            self.member(member)?
        };
        let mut cfg =
            renkei_client::transport::ClientConfig::new(hub_url, m.ca(), m.cert(), m.key());
        cfg.timeout = Duration::from_secs(10);
        cfg.retry.max_attempts = attempts.max(1);
        Ok(renkei_client::transport::HubClient::new(cfg)?)
    }
}

impl Drop for Scene {
    /// When the test failed, keeps the folder and prints the end of every log in it.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        self.dir.disable_cleanup(true);
        eprintln!("test folder kept: {}", self.root().display());
        let Ok(entries) = std::fs::read_dir(self.root()) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                eprintln!("--- {}\n{}", path.display(), crate::proc::tail(&text, 3000));
            }
        }
    }
}
