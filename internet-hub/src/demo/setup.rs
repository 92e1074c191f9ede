//! Demo set-up: a throw-away PKI, the hub's keys and config on free loopback ports,
//! and one folder per participant with its certificate, keys and `client.toml`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use renkei_crypto::participant::ParticipantId;

use renkei_hub::config::Listen;
use renkei_hub::pki;

/// One participant's demo folder.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// Who it is.
    pub(super) id: ParticipantId,
    /// Its folder (`DIR/<kind>-<id>`).
    pub(super) dir: PathBuf,
}

impl Member {
    /// The PEM certificate issued to it.
    pub(super) fn cert(&self) -> PathBuf {
        self.dir
            .join("tls")
            .join(format!("{}-{}.pem", self.id.kind(), self.id.id()))
    }

    /// Its TLS private key.
    pub(super) fn key(&self) -> PathBuf {
        self.dir
            .join("tls")
            .join(format!("{}-{}.key", self.id.kind(), self.id.id()))
    }

    /// The participant CA (copied next to its certificate).
    pub(super) fn ca(&self) -> PathBuf {
        self.dir.join("tls").join("ca.pem")
    }
}

/// Makes the participant CA, the hub certificate, and one certificate per member.
pub(super) fn pki(dir: &Path, members: &[Member], now: DateTime<Utc>) -> anyhow::Result<()> {
    let pki_dir = dir.join("pki");
    pki::init(
        &pki_dir,
        &["localhost".to_owned()],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        397,
        now,
    )?;
    for m in members {
        pki::issue(&pki_dir, &m.id, &m.dir.join("tls"), 30, now)?;
    }
    Ok(())
}

/// Three free loopback ports for the hub's listeners.
pub(super) fn free_listen() -> anyhow::Result<Listen> {
    let mut addrs = Vec::new();
    let mut held = Vec::new();
    for _ in 0..3 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        addrs.push(l.local_addr()?);
        held.push(l);
    }
    drop(held);
    let s = |a: &SocketAddr| a.to_string();
    match addrs.as_slice() {
        [a, b, c] => Ok(Listen {
            participant: s(a),
            portal: s(b),
            admin: s(c),
        }),
        _ => anyhow::bail!("could not find three free ports"),
    }
}

/// Writes `client.toml` for a participant.
pub(super) fn client_toml(
    m: &Member,
    hub_url: &str,
    with_record_key: bool,
) -> anyhow::Result<PathBuf> {
    let record = if with_record_key {
        "record_key = \"keys/record.key\"\n"
    } else {
        ""
    };
    let text = format!(
        "# renkei-client configuration for {id}. Paths are relative to this file.\n\
         hub_url = \"{hub_url}\"\nparticipant = \"{id}\"\nca = \"tls/ca.pem\"\n\
         cert = \"tls/{k}-{i}.pem\"\nkey = \"tls/{k}-{i}.key\"\ngrant_key = \"keys/grant.key\"\n{record}\
         state_dir = \"state\"\n",
        id = m.id,
        k = m.id.kind(),
        i = m.id.id(),
    );
    let path = m.dir.join("client.toml");
    std::fs::write(&path, text).with_context(|| format!("writing `{}`", path.display()))?;
    Ok(path)
}

/// `DIR/README.txt` for `--keep`.
pub(super) fn readme(dir: &Path, hub_url: &str, portal_url: &str) -> anyhow::Result<()> {
    let text = format!(
        "Renkei demo: everything here is synthetic and throw-away.\n\n\
         hub.toml                 the hub's config: internet-hub serve --config hub.toml\n\
         hub.db                   the hub's SQLite database (ciphertext, tokens, consents, audit log)\n\
         keys/                    the hub's secret keys (0600)\n\
         pki/                     the participant CA, the hub certificate, index.json and crl.pem\n\
         agent/agent.toml         the LGWAN agent: lgwan-agent status --config agent/agent.toml\n\
         agent/outbox.sqlite      the agent's durable outbox\n\
         input/                   the synthetic checkup archive and KDB CSV the agent imported\n\
         agent/keys/, agent/tls/  the agent's keys (token, record, enrollment, witness) and certificate\n\
         phr-asmile/client.toml   the PHR vendor: renkei-client --config phr-asmile/client.toml pull --out -\n\
         phr-asmile/data/         where the app wrote the records it pulled; empty now: the resident's\n\
                                  revocation on the portal made the app delete them (step 16)\n\
         phr-asmile/state/        the app's cursor, its enrolled users, the consents it signed and\n\
                                  written.jsonl (the files it wrote, and deleted)\n\
         clinic-mysos/client.toml the clinic; the demo decrypted its records in memory and wrote none,\n\
                                  and its cursor (state/cursor.json) is past them: with the hub\n\
                                  running, delete that file, then\n\
                                  renkei-client --config clinic-mysos/client.toml pull --out clinic-mysos/data\n\
                                  writes them (one folder per resident pseudonym; the consent lasts 24 h)\n\
         analyst-hachioji/        the analyst, likewise\n\
         phr-kenko-points/        the health-point programme (checkup attendance only), likewise\n\
         municipality-city-a/     the city's child-health team, likewise\n\n\
         Participant API: {hub_url}\nResident portal: {portal_url}\n\
         Audit: internet-hub audit --config hub.toml verify\n"
    );
    std::fs::write(dir.join("README.txt"), text).context("writing README.txt")
}

/// Points the agent at the hub: appends its `[hub]` section (participant TLS files, and
/// the hub's log key pinned, as `internet-hub audit key` prints it).
pub(super) fn attach_hub(
    agent_toml: &Path,
    hub_url: &str,
    m: &Member,
    log_key: &str,
) -> anyhow::Result<()> {
    let rel = |p: PathBuf| p.strip_prefix(&m.dir).map(Path::to_path_buf).unwrap_or(p);
    let text = format!(
        "\n[hub]\nurl = \"{hub_url}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nlog_key = \"{log_key}\"\n",
        rel(m.ca()).display(),
        rel(m.cert()).display(),
        rel(m.key()).display()
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(agent_toml)
        .with_context(|| format!("opening `{}`", agent_toml.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .with_context(|| format!("writing `{}`", agent_toml.display()))
}

/// Appends the city's release list to `agent.toml`: one `[[release]]` block per
/// (recipient, purpose).
pub(super) fn release_to(agent_toml: &Path, rules: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut text = String::new();
    for (who, purpose) in rules {
        text.push_str(&format!(
            "\n[[release]]\nparticipant = \"{who}\"\npurposes = [\"{purpose}\"]\n"
        ));
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(agent_toml)
        .with_context(|| format!("opening `{}`", agent_toml.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .with_context(|| format!("writing `{}`", agent_toml.display()))
}
