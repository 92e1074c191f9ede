//! The agent as a witness of the hub's audit transparency log, once a round: the
//! checkpoint must be signed by the log key pinned in `[hub] log_key`, extend the last
//! one this agent accepted, and is then cosigned with the agent's witness key and kept.
//! Anything else raises the alarm, which stops key releases ([`crate::agent::Agent::serve_grants_once`])
//! until `lgwan-agent witness clear-alarm`.

use std::path::Path;

use chrono::{DateTime, Utc};
use renkei_client::HubClient;
use renkei_client::witness::{LogSource, Outcome, Witness};
use renkei_crypto::keys::KeyVersion;
use renkei_crypto::sign::SigningKey;
use renkei_crypto::tlog::note::NoteVerifier;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::outbox::Outbox;

/// What one witness contact did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Witnessed {
    /// No `[hub] log_key`: the log is not witnessed (and `status` says so).
    NotPinned,
    /// The checkpoint of this size was accepted (and cosigned unless `cosign_error`).
    Accepted {
        /// Tree size.
        size: u64,
        /// Why the cosignature did not reach the hub, if it did not.
        cosign_error: Option<String>,
    },
    /// The alarm is raised (now or before): no key is released.
    Alarm(String),
}

/// The witness key at `path`, made (mode 0600) if there is none yet.
pub fn witness_key(path: &Path) -> Result<SigningKey> {
    if !path.exists() {
        SigningKey::generate(KeyVersion::V1).save(path)?;
    }
    Ok(SigningKey::load(path)?)
}

/// The key name this agent cosigns as.
pub fn witness_name(config: &Config) -> String {
    format!("renkei-witness/{}", config.source)
}

/// One contact with the hub's log as a witness.
pub async fn witness_once(
    config: &Config,
    outbox: &Outbox,
    source: &impl LogSource,
    now: DateTime<Utc>,
) -> Result<Witnessed> {
    if let Some(alarm) = outbox.log_alarm().await? {
        return Ok(Witnessed::Alarm(alarm.value));
    }
    let Some(vkey) = config.hub.as_ref().and_then(|h| h.log_key.as_deref()) else {
        return Ok(Witnessed::NotPinned);
    };
    let log = NoteVerifier::parse(vkey).map_err(|e| Error::Checkpoint(e.to_string()))?;
    let key_path = config
        .keys
        .witness
        .clone()
        .unwrap_or_else(|| config.keys.enrollment.with_file_name("witness.key"));
    let key = witness_key(&key_path)?;
    let name = witness_name(config);
    let witness = Witness {
        log: &log,
        name: &name,
        key: &key,
    };
    let last = outbox.last_witnessed().await?;
    match witness.contact(source, last.as_ref(), now).await? {
        Outcome::Accepted { seen, cosigned } => {
            outbox.record_witnessed(&seen, cosigned.is_ok()).await?;
            Ok(Witnessed::Accepted {
                size: seen.size,
                cosign_error: cosigned.err(),
            })
        }
        Outcome::Alarm(reason) => {
            outbox.raise_log_alarm(&reason).await?;
            Ok(Witnessed::Alarm(reason))
        }
    }
}

/// [`witness_once`] against the hub.
pub async fn witness_hub(
    config: &Config,
    outbox: &Outbox,
    client: &HubClient,
    now: DateTime<Utc>,
) -> Result<Witnessed> {
    witness_once(config, outbox, client, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use renkei_crypto::participant::ParticipantId;
    use renkei_crypto::tlog::note::{self, NoteSigner};
    use renkei_crypto::tlog::{self, Hashes, Step};
    use std::sync::Mutex;

    /// A log served from memory, as a hub would (signed notes, tiles), that can be
    /// rewritten at will.
    struct FakeLog {
        key: SigningKey,
        leaves: Mutex<Vec<Vec<u8>>>,
        cosigned: Mutex<Vec<(String, String)>>,
        ledger: Mutex<Option<note::LedgerHead>>,
    }

    impl FakeLog {
        fn hashes(&self) -> Hashes {
            let mut h = Hashes::new();
            for (n, d) in self.leaves.lock().unwrap().iter().enumerate() {
                let n = n as u64;
                let Step::Done(new) = h.append(n, tlog::leaf_hash(d)).unwrap() else {
                    panic!()
                };
                for (i, x) in new.into_iter().enumerate() {
                    h.insert(tlog::stored_index(0, n) + i as u64, x);
                }
            }
            h
        }
    }

    impl LogSource for FakeLog {
        async fn checkpoint(&self) -> renkei_client::Result<String> {
            let size = self.leaves.lock().unwrap().len() as u64;
            let Step::Done(root) = self.hashes().root(size).unwrap() else {
                panic!()
            };
            let cp = note::Checkpoint {
                origin: "hub.test/audit".into(),
                size,
                root,
                ledger: self.ledger.lock().unwrap().clone(),
            };
            Ok(
                note::sign_checkpoint(&cp, &NoteSigner::log("hub.test/audit", &self.key).unwrap())
                    .unwrap(),
            )
        }

        async fn tile(&self, path: &str) -> renkei_client::Result<Vec<u8>> {
            let t = tlog::tile_from_path(path).unwrap();
            let Step::Done(data) = self.hashes().tile(&t).unwrap() else {
                panic!()
            };
            Ok(data)
        }

        async fn cosign(&self, _size: u64, vkey: &str, line: &str) -> renkei_client::Result<()> {
            self.cosigned
                .lock()
                .unwrap()
                .push((vkey.to_owned(), line.to_owned()));
            Ok(())
        }
    }

    /// An agent in `dir` (config `path`) pinning `log`'s key, and its outbox.
    async fn witnessing_agent(
        dir: &Path,
        path: &Path,
        log: &FakeLog,
    ) -> (crate::agent::Agent, Outbox) {
        let vkey = NoteSigner::log("hub.test/audit", &log.key).unwrap().vkey();
        let pki = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pki");
        let tls_key = dir.join("agent.key");
        std::fs::copy(pki.join("source-city-a.key"), &tls_key).unwrap();
        std::fs::set_permissions(
            &tls_key,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let mut text = std::fs::read_to_string(path).unwrap();
        text.push_str(&format!(
            "\n[hub]\nurl = \"https://127.0.0.1:9\"\nca = \"{p}/ca.pem\"\ncert = \"{p}/source-city-a.pem\"\nkey = \"{k}\"\nlog_key = \"{vkey}\"\n",
            p = pki.display(),
            k = tls_key.display()
        ));
        std::fs::write(path, text).unwrap();
        let agent = crate::agent::Agent::load(path).unwrap();
        let outbox = Outbox::open(&agent.config.outbox).await.unwrap();

        (agent, outbox)
    }

    #[tokio::test]
    async fn no_key_is_released_without_a_pinned_log_key() {
        let dir = tempfile::tempdir().unwrap();
        let source: ParticipantId = "source:city-a".parse().unwrap();
        let path = crate::agent::init(dir.path(), &source).unwrap().config;
        let log = FakeLog {
            key: SigningKey::generate(KeyVersion::V1),
            leaves: Mutex::new(vec![b"a".to_vec()]),
            cosigned: Mutex::default(),
            ledger: Mutex::default(),
        };
        let (agent, outbox) = witnessing_agent(dir.path(), &path, &log).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let unpinned: String = text
            .lines()
            .filter(|l| !l.starts_with("log_key"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, unpinned).unwrap();
        let agent_unpinned = crate::agent::Agent::load(&path).unwrap();
        let now = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        assert_eq!(
            witness_once(&agent_unpinned.config, &outbox, &log, now)
                .await
                .unwrap(),
            Witnessed::NotPinned
        );
        let client = crate::sync::connect(&agent_unpinned.config).unwrap();
        let refused = agent_unpinned
            .serve_grants_once(&client, 10)
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("log_key"), "{refused}");
        drop(agent);
        outbox.close().await;
    }

    #[tokio::test]
    async fn a_rewritten_or_shrunk_consent_ledger_raises_the_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let source: ParticipantId = "source:city-a".parse().unwrap();
        let path = crate::agent::init(dir.path(), &source).unwrap().config;
        let head = |seq, h: &str| {
            Some(note::LedgerHead {
                seq,
                hash: h.repeat(64),
            })
        };
        let log = FakeLog {
            key: SigningKey::generate(KeyVersion::V1),
            leaves: Mutex::new((0..10u32).map(|i| i.to_be_bytes().to_vec()).collect()),
            cosigned: Mutex::default(),
            ledger: Mutex::new(head(5, "a")),
        };
        let (agent, outbox) = witnessing_agent(dir.path(), &path, &log).await;
        let now = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let grow = |ledger| {
            log.leaves.lock().unwrap().push(b"next".to_vec());
            *log.ledger.lock().unwrap() = ledger;
        };
        let contact = async || {
            witness_once(&agent.config, &outbox, &log, now)
                .await
                .unwrap()
        };
        assert!(matches!(
            contact().await,
            Witnessed::Accepted { size: 10, .. }
        ));
        grow(head(5, "a"));
        assert!(matches!(
            contact().await,
            Witnessed::Accepted { size: 11, .. }
        ));
        grow(head(7, "b"));
        assert!(matches!(
            contact().await,
            Witnessed::Accepted { size: 12, .. }
        ));
        for (ledger, why) in [
            (head(7, "c"), "rewritten"),
            (head(6, "b"), "shrank"),
            (None, "names no consent ledger head"),
        ] {
            grow(ledger);
            let Witnessed::Alarm(alarm) = contact().await else {
                panic!("no alarm for {why}")
            };
            assert!(alarm.contains(why), "{alarm}");
            assert!(outbox.clear_log_alarm().await.unwrap().is_some());
            // Cleared, the next contact starts afresh from what the hub shows now.
            grow(head(9, "d"));
            assert!(matches!(contact().await, Witnessed::Accepted { .. }));
        }
        outbox.close().await;
    }

    #[tokio::test]
    async fn an_inconsistent_log_raises_the_alarm_and_stops_key_releases_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let source: ParticipantId = "source:city-a".parse().unwrap();
        let path = crate::agent::init(dir.path(), &source).unwrap().config;
        let log = FakeLog {
            key: SigningKey::generate(KeyVersion::V1),
            leaves: Mutex::new((0..300u32).map(|i| i.to_be_bytes().to_vec()).collect()),
            cosigned: Mutex::default(),
            ledger: Mutex::default(),
        };
        let (agent, outbox) = witnessing_agent(dir.path(), &path, &log).await;
        let now = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();

        let first = witness_once(&agent.config, &outbox, &log, now)
            .await
            .unwrap();
        assert_eq!(
            first,
            Witnessed::Accepted {
                size: 300,
                cosign_error: None
            }
        );
        log.leaves
            .lock()
            .unwrap()
            .extend((300..700u32).map(|i| i.to_be_bytes().to_vec()));
        let grown = witness_once(&agent.config, &outbox, &log, now)
            .await
            .unwrap();
        assert_eq!(
            grown,
            Witnessed::Accepted {
                size: 700,
                cosign_error: None
            }
        );
        // Each contact was cosigned with the agent's witness key.
        let cosigned = log.cosigned.lock().unwrap().clone();
        assert_eq!(cosigned.len(), 2);
        let (wkey, line) = &cosigned[1];
        let seen = outbox.latest_witnessed().await.unwrap().unwrap();
        let witness = NoteVerifier::parse(wkey).unwrap();
        assert_eq!(witness.name(), "renkei-witness/source:city-a");
        assert_eq!(
            note::check_cosignature(&seen.note, line, &witness).unwrap(),
            1_780_000_000
        );

        // The same checkpoint again: accepted, and the history does not grow.
        let same = witness_once(&agent.config, &outbox, &log, now)
            .await
            .unwrap();
        assert!(matches!(same, Witnessed::Accepted { size: 700, .. }));
        assert_eq!(outbox.witnessed_count().await.unwrap(), 2);

        // An entry the agent saw is rewritten and the log grows: a fork.
        log.leaves.lock().unwrap()[10] = b"rewritten".to_vec();
        log.leaves.lock().unwrap().push(b"more".to_vec());
        let Witnessed::Alarm(why) = witness_once(&agent.config, &outbox, &log, now)
            .await
            .unwrap()
        else {
            panic!("no alarm")
        };
        assert!(why.contains("does not extend"), "{why}");
        // It stays raised (even if the hub shows the old log again) and no key is released.
        log.leaves.lock().unwrap()[10] = 10u32.to_be_bytes().to_vec();
        assert!(matches!(
            witness_once(&agent.config, &outbox, &log, now)
                .await
                .unwrap(),
            Witnessed::Alarm(_)
        ));
        let client = crate::sync::connect(&agent.config).unwrap();
        let refused = agent.serve_grants_once(&client, 10).await.unwrap_err();
        assert!(refused.to_string().contains("alarm"), "{refused}");
        let status =
            crate::daemon::witness_text(true, outbox.log_alarm().await.unwrap().as_ref(), None, 2);
        assert!(
            status.contains("ALARM") && status.contains("does not extend"),
            "{status}"
        );

        // The operator clears it: the next contact starts afresh, the history is kept.
        assert!(outbox.clear_log_alarm().await.unwrap().is_some());
        let again = witness_once(&agent.config, &outbox, &log, now)
            .await
            .unwrap();
        assert_eq!(
            again,
            Witnessed::Accepted {
                size: 701,
                cosign_error: None
            }
        );
        assert_eq!(outbox.witnessed_count().await.unwrap(), 3);
        assert!(outbox.log_alarm().await.unwrap().is_none());

        // A checkpoint signed by another key than the pinned one: alarm.
        let impostor = FakeLog {
            key: SigningKey::generate(KeyVersion::V1),
            leaves: Mutex::new(log.leaves.lock().unwrap().clone()),
            cosigned: Mutex::default(),
            ledger: Mutex::default(),
        };
        let Witnessed::Alarm(why) = witness_once(&agent.config, &outbox, &impostor, now)
            .await
            .unwrap()
        else {
            panic!("no alarm")
        };
        assert!(why.contains("pinned"), "{why}");
        outbox.close().await;
    }
}
