//! The agent's keys and catalog: `init` creates them, [`Agent::load`] reads
//! them back, and [`Agent::tokenize`] turns a person's identifiers into the
//! subject token (the only name of a resident that leaves the agent).
//!
//! Keys come in versions ([`keyring`]). New records are sealed with the newest
//! record key and carry its version in their header; record ids keep using the
//! first version so that a re-import after a rotation is still idempotent; a key
//! grant derives the DEK with the version its record was sealed with.
//!
//! While it holds more than one token key version (a rotation under way, or done but
//! the old key kept), every identity [`Agent::tokenize_identity`] sees also yields the
//! pairs (token under one version, token under the next): they are collected until
//! [`Agent::take_links`] and spooled for the hub, which links the new tokens to the
//! resident's history (docs/operations.md). Only tokens are kept, never an identity.

#[cfg(test)]
mod answer_tests;
pub mod keyring;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use renkei_client::HubClient;
use renkei_client::api::{GrantRequest, GrantUpload};
use renkei_client::consent::check_request;
use renkei_client::source::{
    Sealers, ServeReport, grant_for, requested_header, verified_recipient_key,
};
use renkei_crypto::consent_statement::RevocationList;
use renkei_crypto::envelope::EnvelopeHeader;
use renkei_crypto::grant::RecipientSecretKey;
use renkei_crypto::identity::{CanonicalIdentity, Identity};
use renkei_crypto::keys::{KeyVersion, RecordKey, TokenKey};
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::token::{SubjectToken, subject_token};
use renkei_policies::{Catalog, Policies, ReadRequest};

use self::keyring::KeyRing;

use crate::config::{Config, initial_config};
use crate::domain::{PersonIdentity, Sex};
use crate::error::{Error, Result};
use crate::outbox::Outbox;

/// What `init` created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initialized {
    /// The config file.
    pub config: PathBuf,
    /// The enrollment public key (base64), to register with the hub.
    pub enrollment_public_key: String,
}

/// Creates the keys (mode 0600, version 1) and `agent.toml` in `dir`; refuses
/// to overwrite any of them.
pub fn init(dir: &Path, source: &ParticipantId) -> Result<Initialized> {
    if source.kind() != ParticipantKind::Source {
        return Err(Error::Invalid {
            field: "--source",
            value: source.to_string(),
            reason: "is not a `source:<id>` participant (an agent speaks for a municipality \
                     or an insurer)"
                .into(),
        });
    }
    let config = dir.join("agent.toml");
    if config.exists() {
        return Err(Error::Invalid {
            field: "directory",
            value: dir.display().to_string(),
            reason: "already holds an agent.toml".into(),
        });
    }
    let keys = dir.join("keys");
    fs::create_dir_all(&keys).map_err(|e| Error::io(&keys, e))?;
    TokenKey::generate(KeyVersion::V1).save(&keys.join("token.key"))?;
    RecordKey::generate(KeyVersion::V1).save(&keys.join("record.key"))?;
    let enrollment = RecipientSecretKey::generate(KeyVersion::V1);
    enrollment.save(&keys.join("enrollment.key"))?;
    let public = enrollment.public_key().to_base64();
    let public_path = keys.join("enrollment.pub");
    fs::write(&public_path, format!("{public}\n")).map_err(|e| Error::io(&public_path, e))?;
    fs::write(&config, initial_config(source)).map_err(|e| Error::io(&config, e))?;
    Ok(Initialized {
        config,
        enrollment_public_key: public,
    })
}

/// A loaded agent: config, keys and catalog. Cheap to clone: clones share the keys.
#[derive(Debug, Clone)]
pub struct Agent {
    /// The validated configuration.
    pub config: Config,
    token_keys: Arc<KeyRing<TokenKey>>,
    active_token: KeyVersion,
    record_keys: Arc<KeyRing<RecordKey>>,
    enrollment_key: Arc<RecipientSecretKey>,
    catalog: Arc<Catalog>,
    /// The same Cedar policies the hub evaluates (the agent's own copy, bundled).
    policies: Arc<Policies>,
    links: Arc<Mutex<BTreeSet<TokenPair>>>,
}

/// A resident's token under one token key version and under the next.
pub type TokenPair = (SubjectToken, SubjectToken);

/// The apps' revocation lists checked in one round of answering: by app, nothing or
/// why its consents are refused this round.
type Lists = std::collections::HashMap<String, std::result::Result<RevocationList, String>>;

impl Agent {
    /// Loads the config at `path`, its keys and its catalog, and checks that
    /// every table mapping names a catalog category.
    pub fn load(path: &Path) -> Result<Agent> {
        let config = Config::load(path)?;
        let token_keys = KeyRing::<TokenKey>::load(&config.keys.token)?;
        let active_token = keyring::read_active_token(&config.keys.token)?
            .unwrap_or_else(|| token_keys.configured().version());
        if token_keys.get(active_token).is_none() {
            return Err(Error::Invalid {
                field: "active token version",
                value: active_token.to_string(),
                reason: format!(
                    "`{}` names a version with no key file",
                    keyring::token_active_path(&config.keys.token).display()
                ),
            });
        }
        let record_keys = KeyRing::<RecordKey>::load(&config.keys.record)?;
        let enrollment_key = RecipientSecretKey::load(&config.keys.enrollment)?;
        let catalog = match &config.catalog {
            Some(file) => Catalog::load(file)?,
            None => Catalog::embedded()?,
        };
        // A purpose the catalog does not know would refuse every request in silence.
        for (i, rule) in config.release.iter().enumerate() {
            if let Some(p) = rule
                .purposes
                .iter()
                .find(|p| *p != "*" && catalog.purpose(p).is_none())
            {
                return Err(Error::Config {
                    path: config.path.clone(),
                    reason: format!(
                        "release[{i}].purposes: `{p}` is not a purpose of the catalog ({})",
                        catalog
                            .purposes()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        for table in &config.tables {
            if !catalog.is_category(&table.category) {
                return Err(Error::Config {
                    path: config.path.clone(),
                    reason: format!(
                        "tables `{}`: category `{}` is not in the catalog",
                        table.name, table.category
                    ),
                });
            }
            if table.attendance.is_some()
                && catalog.attendance_category() != Some(table.category.as_str())
            {
                return Err(Error::Config {
                    path: config.path.clone(),
                    reason: format!(
                        "tables `{}`: an attendance list has the catalog's attendance category ({}), not `{}`",
                        table.name,
                        catalog
                            .attendance_category()
                            .unwrap_or("none in this catalog"),
                        table.category
                    ),
                });
            }
        }
        Ok(Agent {
            config,
            token_keys: Arc::new(token_keys),
            active_token,
            record_keys: Arc::new(record_keys),
            enrollment_key: Arc::new(enrollment_key),
            catalog: Arc::new(catalog),
            policies: Arc::new(Policies::embedded()?),
            links: Arc::default(),
        })
    }

    /// The catalog in use.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The record master key new records are sealed with: the newest version.
    pub fn record_key(&self) -> &RecordKey {
        self.record_keys.newest()
    }

    /// The record key that makes record ids: the first (configured) version, so a
    /// document imported again after a rotation gets the same id.
    pub fn record_id_key(&self) -> &RecordKey {
        self.record_keys.configured()
    }

    /// The record key of `version`, if the agent holds it.
    pub fn record_key_version(&self, version: KeyVersion) -> Option<&RecordKey> {
        self.record_keys.get(version)
    }

    /// The record key versions held, lowest first.
    pub fn record_key_versions(&self) -> Vec<KeyVersion> {
        self.record_keys.versions()
    }

    /// The token key versions held, lowest first.
    pub fn token_key_versions(&self) -> Vec<KeyVersion> {
        self.token_keys.versions()
    }

    /// The token key version that tokenizes.
    pub fn active_token_version(&self) -> KeyVersion {
        self.active_token
    }

    /// The enrollment secret key (opens identifiers sealed by PHR apps).
    pub fn enrollment_key(&self) -> &RecipientSecretKey {
        &self.enrollment_key
    }

    /// The subject token and normalized 枝番 of a person.
    pub fn tokenize(&self, person: &PersonIdentity) -> Result<(SubjectToken, Option<String>)> {
        self.tokenize_identity(&Identity {
            insurer_number: person.insurer.clone(),
            symbol: person.symbol.clone(),
            number: person.number.clone(),
            birth_date: person.birth.format("%Y-%m-%d").to_string(),
            sex: match person.sex {
                Sex::Male => renkei_crypto::identity::Sex::Male,
                Sex::Female => renkei_crypto::identity::Sex::Female,
            },
            branch: person.branch.clone(),
        })
    }

    /// The subject token and normalized 枝番 of identifiers typed by staff or
    /// opened from an enrollment request.
    pub fn tokenize_identity(&self, identity: &Identity) -> Result<(SubjectToken, Option<String>)> {
        let canonical = identity.canonical()?;
        let branch = identity.branch()?;
        let key = self
            .token_keys
            .get(self.active_token)
            .unwrap_or_else(|| self.token_keys.configured());
        if self.is_linking() {
            let pairs = self.pairs_of(&canonical);
            self.links
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(pairs);
        }
        Ok((subject_token(key, &canonical), branch))
    }

    /// True while the agent holds more than one token key version: identities it
    /// reads then yield token pairs for the hub.
    pub fn is_linking(&self) -> bool {
        self.token_keys.versions().len() > 1
    }

    /// The pairs (token under one version, token under the next) of a canonical
    /// identity, lowest versions first; none with a single version.
    fn pairs_of(&self, canonical: &CanonicalIdentity) -> Vec<TokenPair> {
        let tokens: Vec<SubjectToken> = self
            .token_keys
            .iter()
            .map(|k| subject_token(k, canonical))
            .collect();
        tokens
            .windows(2)
            .filter_map(|w| match w {
                [old, new] => Some((old.clone(), new.clone())),
                _ => None,
            })
            .collect()
    }

    /// The token pairs of `identity` (see [`Agent::is_linking`]).
    pub fn link_pairs(&self, identity: &Identity) -> Result<Vec<TokenPair>> {
        Ok(self.pairs_of(&identity.canonical()?))
    }

    /// The token pairs collected from the identities tokenized since the last call.
    pub fn take_links(&self) -> Vec<TokenPair> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *links).into_iter().collect()
    }

    /// The subject token of `identity` under every token key version, lowest first
    /// (for linking old and new tokens during a token key transition).
    pub fn tokenize_all(&self, identity: &Identity) -> Result<Vec<(KeyVersion, SubjectToken)>> {
        let canonical = identity.canonical()?;
        Ok(self
            .token_keys
            .iter()
            .map(|k| (k.version(), subject_token(k, &canonical)))
            .collect())
    }

    /// Answers key-grant requests. The agent decides for itself (DESIGN.md step 8,
    /// `docs/threat-model.md`): the recipient and purpose are on the municipality's
    /// release list, the agent's own copy of the policies allows the read, a consent it
    /// can verify without the hub covers the record ([`Agent::consent_covers`]), the
    /// recipient's key is bound to its certificate by a statement that checks against the
    /// CA this agent pinned, and the record the hub sent is this source's own and opens
    /// with its key. Only then is the recipient's copy sealed and its DEK sealed to that
    /// key. Refusals come back as reasons.
    pub async fn grant_answers(
        &self,
        client: &HubClient,
        outbox: &Outbox,
        requests: &[GrantRequest],
        now: DateTime<Utc>,
    ) -> Result<(Vec<GrantUpload>, Vec<String>)> {
        let (mut uploads, mut refused) = (Vec::new(), Vec::new());
        // Each app's revocation list is fetched and checked once per round, and each
        // recipient's grants of the round share one HPKE setup.
        let mut lists = Lists::new();
        let mut sealers = Sealers::default();
        for r in requests {
            match self
                .answer(client, outbox, r, &mut lists, &mut sealers, now)
                .await
            {
                Ok(g) => uploads.push(g),
                // The outbox failing is the agent's problem, not a refusal to report.
                Err(e @ Error::Outbox { .. }) => return Err(e),
                Err(e) => refused.push(format!(
                    "`{}` → `{}`: {e}",
                    renkei_client::error::shorten(&r.record_id),
                    renkei_client::error::shorten(&r.recipient)
                )),
            }
        }
        Ok((uploads, refused))
    }

    async fn answer(
        &self,
        client: &HubClient,
        outbox: &Outbox,
        r: &GrantRequest,
        lists: &mut Lists,
        sealers: &mut Sealers,
        now: DateTime<Utc>,
    ) -> Result<GrantUpload> {
        let recipient: ParticipantId = r.recipient.parse()?;
        if !self.config.releases(&recipient, &r.purpose) {
            return Err(Error::Refused(format!(
                "`{recipient}` for `{}` is not on the release list of {}",
                renkei_client::error::shorten(&r.purpose),
                self.config.path.display()
            )));
        }
        let header = requested_header(r)?;
        let decision = self.policies.authorize_read(&ReadRequest {
            participant: &r.recipient,
            kind: recipient.kind().as_str(),
            suspended: false,
            purpose: &r.purpose,
            category: &header.category,
        });
        if !decision.allowed {
            return Err(Error::Refused(format!(
                "the policies deny it: {}",
                decision.reasons.join("; ")
            )));
        }
        self.consent_covers(client, outbox, r, &header, lists, now)
            .await?;
        let key = verified_recipient_key(client, r)?;
        let me = self.config.source.to_string();
        Ok(grant_for(
            |v| self.record_keys.get(v),
            &me,
            r,
            &key,
            sealers,
        )?)
    }

    /// Whether the consent statement sent with `r` lets this agent release the record
    /// whose header is `header`: it verifies against the pinned CA and covers the
    /// recipient, purpose, category, date and time ([`check_request`]); it names the
    /// record's resident, either as this agent's own counter consent (by a commitment
    /// to the subject token)
    /// or as an app's consent for a user this agent itself linked to that resident by
    /// enrollment; this agent has not revoked it; and, for an app's consent, the app's
    /// own revocation list ([`Agent::app_revocations`]) is fresh and does not name it.
    async fn consent_covers(
        &self,
        client: &HubClient,
        outbox: &Outbox,
        r: &GrantRequest,
        header: &EnvelopeHeader,
        lists: &mut Lists,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let checked = check_request(
            client.pinned_ca(),
            r,
            &header.category,
            header.effective_date,
            now,
        )?;
        let Some(subject) = outbox.record_subject(&r.record_id).await? else {
            return Err(Error::Refused(
                "the record is not in this agent's outbox".into(),
            ));
        };
        let resident = &checked.terms.resident;
        let names_the_resident = if checked.signer == self.config.source {
            // The record's token, or one linked to it by a key rotation (a commitment
            // or, in statements from before commitments, the token itself).
            outbox
                .tokens_of_person(&subject)
                .await?
                .iter()
                .any(|t| checked.terms.names_token(t))
        } else if checked.signer.kind() == ParticipantKind::Phr {
            let mut found = false;
            for linked in outbox
                .app_user_subjects(&checked.signer.to_string(), resident)
                .await?
            {
                found = found || outbox.same_person(&linked, &subject).await?;
            }
            found
        } else {
            return Err(Error::Refused(format!(
                "the consent is signed by `{}`, which takes no consents for this source",
                checked.signer
            )));
        };
        if !names_the_resident {
            return Err(Error::Refused(format!(
                "the consent signed by `{}` is for another resident",
                checked.signer
            )));
        }
        if outbox.statement_void(&checked.id).await? {
            return Err(Error::Refused(
                "the consent was revoked at this agent's counter, or the hub never confirmed it"
                    .into(),
            ));
        }
        if checked.signer.kind() == ParticipantKind::Phr {
            let signer = checked.signer.to_string();
            if !lists.contains_key(&signer) {
                let checked_list = self
                    .app_revocations(client, outbox, &checked.signer, now)
                    .await;
                if let Err(e @ Error::Outbox { .. }) = checked_list {
                    return Err(e);
                }
                lists.insert(signer.clone(), checked_list.map_err(|e| e.to_string()));
            }
            let named_now = match lists.get(&signer) {
                Some(Err(why)) => return Err(Error::Refused(why.clone())),
                Some(Ok(list)) => list.names(&checked.id),
                None => false,
            };
            if named_now || outbox.app_revoked(&signer, &checked.id).await? {
                return Err(Error::Refused(format!(
                    "the consent was revoked by `{signer}` (its signed revocation list)"
                )));
            }
        }
        Ok(())
    }

    /// Fetches `app`'s revocation list through the hub and checks it: signed by `app` with
    /// a certificate of the CA this agent pinned, no older than
    /// `revocation_list_max_age_secs`, and not older than the newest this agent saw. Its
    /// ids are kept in the outbox for good. Whatever fails is a refusal: no release under
    /// the app's consents without a list the agent could check.
    async fn app_revocations(
        &self,
        client: &HubClient,
        outbox: &Outbox,
        app: &ParticipantId,
        now: DateTime<Utc>,
    ) -> Result<RevocationList> {
        let list = client
            .revocation_list(app)
            .await
            .map_err(|e| Error::Refused(format!("no revocation list of `{app}` to check: {e}")))?;
        check_revocation_list(
            &list,
            app,
            client.pinned_ca(),
            now,
            self.config.revocation_list_max_age,
        )?;
        let issued = list
            .issued_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        outbox
            .note_revocation_list(&app.to_string(), &issued, &list.revoked)
            .await?;
        Ok(list)
    }

    /// Answers up to `limit` pending key-grant requests once.
    /// Refused outright while the transparency-log alarm is raised (a fork, rewrite or
    /// shrink of the hub's log seen by this agent as a witness).
    /// Refused too without a pinned log key (`[hub] log_key`): an agent that cannot witness
    /// the log cannot tell a rewritten one.
    pub async fn serve_grants_once(&self, client: &HubClient, limit: u32) -> Result<ServeReport> {
        if self
            .config
            .hub
            .as_ref()
            .and_then(|h| h.log_key.as_ref())
            .is_none()
        {
            return Err(Error::Checkpoint(
                "no key is released without the hub's log key pinned as `[hub] log_key` \
                 (print it with `internet-hub audit --config hub.toml key`)"
                    .into(),
            ));
        }
        let outbox = crate::outbox::Outbox::open(&self.config.outbox).await?;
        let alarm = outbox.log_alarm().await;
        outbox.close().await;
        if let Some(alarm) = alarm? {
            return Err(Error::Checkpoint(format!(
                "no key is released while the transparency-log alarm is raised ({}: {}); \
                 check the hub, then `lgwan-agent witness clear-alarm`",
                alarm.at, alarm.value
            )));
        }
        let requests = client.key_grant_requests(limit).await?;
        if requests.len() > limit as usize {
            return Err(Error::Refused(format!(
                "the hub's page of key-grant requests holds {}, more than the {limit} asked for",
                requests.len()
            )));
        }
        let outbox = crate::outbox::Outbox::open(&self.config.outbox).await?;
        let answered = self
            .grant_answers(client, &outbox, &requests, client.now())
            .await;
        let noted = match &answered {
            // An alarm for the municipality: counted and kept for `lgwan-agent status`.
            Ok((_, refused)) if !refused.is_empty() => outbox.note_refusals(refused).await,
            _ => Ok(()),
        };
        outbox.close().await;
        let (uploads, refused) = answered?;
        noted?;
        for why in &refused {
            eprintln!(
                "lgwan-agent: key grant refused: {}",
                renkei_client::error::printable(why)
            );
        }
        let mut report = ServeReport {
            requests: requests.len(),
            refused,
            ..ServeReport::default()
        };
        if !uploads.is_empty() {
            report.uploaded = client.upload_key_grants(&uploads).await?;
        }
        Ok(report)
    }
}

/// Checks an app's revocation list as the hub showed it: signed by `app` with a
/// certificate of the CA in `ca` valid at `now`, and issued at most `max_age` before
/// `now`. (Whether it is older than one already seen is the outbox's check.)
pub fn check_revocation_list(
    list: &RevocationList,
    app: &ParticipantId,
    ca: &Path,
    now: DateTime<Utc>,
    max_age: std::time::Duration,
) -> Result<()> {
    renkei_client::consent::check_revocation_list(list, app, ca, now, max_age)
        .map_err(|e| Error::Refused(format!("{e} (`revocation_list_max_age_secs`)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_purpose_the_catalog_does_not_know_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source: ParticipantId = "source:city-a".parse().unwrap();
        let config = init(dir.path(), &source).unwrap().config;
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(
            "\n[[release]]\nparticipant = \"phr:asmile\"\npurposes = [\"phr-dsiplay\"]\n",
        );
        std::fs::write(&config, text).unwrap();
        let e = Agent::load(&config).unwrap_err().to_string();
        assert!(
            e.contains("`phr-dsiplay` is not a purpose of the catalog"),
            "{e}"
        );
    }

    #[test]
    fn init_refuses_a_participant_that_is_not_a_source() {
        let dir = tempfile::tempdir().unwrap();
        let app: ParticipantId = "phr:x".parse().unwrap();
        let e = init(dir.path(), &app).unwrap_err().to_string();
        assert!(e.contains("is not a `source:<id>` participant"), "{e}");
        assert!(!dir.path().join("agent.toml").exists() && !dir.path().join("keys").exists());
    }
    use crate::import::seal_record;
    use crate::outbox::Outbox;
    use crate::pipeline::PreparedRecord;
    use renkei_crypto::envelope::{SealedRecord, open};
    use renkei_crypto::grant::{KeyGrant, open_grant};
    use renkei_crypto::token::record_id;

    fn prepared(agent: &Agent, doc: &str, payload: &str) -> PreparedRecord {
        PreparedRecord {
            record_id: record_id(agent.record_id_key(), doc, "checkup.lipids"),
            subject_token: SubjectToken::parse("st1_abcdefghijklmnopqrstuvwxyz234567").unwrap(),
            category: "checkup.lipids".into(),
            effective_date: chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
            source_document: doc.into(),
            payload: serde_json::json!({ "v": payload }),
        }
    }

    #[tokio::test]
    async fn grants_derive_the_dek_of_the_version_each_record_was_sealed_with() {
        let dir = tempfile::tempdir().unwrap();
        let source: ParticipantId = "source:city-a".parse().unwrap();
        let cfg = init(dir.path(), &source).unwrap().config;
        let outbox = Outbox::open(&dir.path().join("outbox.sqlite"))
            .await
            .unwrap();

        let v1 = Agent::load(&cfg).unwrap();
        let first = seal_record(&v1, &prepared(&v1, "doc-1", "old"), None).unwrap();
        outbox.put(std::slice::from_ref(&first)).await.unwrap();

        let (version, _) = keyring::rotate::<RecordKey>(&v1.config.keys.record).unwrap();
        assert_eq!(version, KeyVersion::new(2));
        let v2 = Agent::load(&cfg).unwrap();
        assert_eq!(v2.record_key_versions(), vec![KeyVersion::V1, version]);
        assert_eq!(
            prepared(&v2, "doc-1", "old").record_id,
            first.record_id,
            "record ids survive the rotation"
        );
        let second = seal_record(&v2, &prepared(&v2, "doc-2", "new"), None).unwrap();
        outbox.put(std::slice::from_ref(&second)).await.unwrap();
        let header = |r: &crate::outbox::NewRecord| {
            SealedRecord::from_bytes(&r.sealed)
                .unwrap()
                .header()
                .key_version
        };
        assert_eq!((header(&first), header(&second)), (KeyVersion::V1, version));

        let clinic = RecipientSecretKey::generate(KeyVersion::V1);
        let request = |r: &crate::outbox::NewRecord| GrantRequest {
            record_id: r.record_id.to_string(),
            recipient: "clinic:mysos".into(),
            recipient_key: clinic.public_key().to_base64(),
            sealed: data_encoding::BASE64.encode(&r.sealed),
            purpose: "online-consultation".into(),
            recipient_statement: None,
            consent_statement: None,
            subject: String::new(),
        };
        let requests = [request(&first), request(&second)];
        // The record-key part of answering (release list, policies, consent and key
        // statements are checked before it, in `answer`: see `answer_tests`).
        let ck = clinic.public_key().to_base64();
        let answers = |agent: &Agent, reqs: &[GrantRequest]| {
            let (mut ok, mut refused) = (Vec::new(), Vec::new());
            for r in reqs {
                let sealers = &mut Sealers::default();
                match grant_for(
                    |v| agent.record_keys.get(v),
                    "source:city-a",
                    r,
                    &ck,
                    sealers,
                ) {
                    Ok(g) => ok.push(g),
                    Err(e) => refused.push(e.to_string()),
                }
            }
            (ok, refused)
        };
        let opened = |u: &GrantUpload| -> serde_json::Value {
            let copy = SealedRecord::from_bytes(
                &data_encoding::BASE64.decode(u.sealed.as_bytes()).unwrap(),
            )
            .unwrap();
            let grant = KeyGrant::from_base64(&u.grant).unwrap();
            let dek =
                open_grant(&clinic, &copy.header().record_id, "clinic:mysos", &grant).unwrap();
            let plain = open(&dek, &copy).unwrap();
            let json = renkei_crypto::payload::unpack(copy.header().schema_version, &plain);
            serde_json::from_slice(&json.unwrap()).unwrap()
        };
        let (uploads, refused) = answers(&v2, &requests);
        assert!(refused.is_empty(), "{refused:?}");
        for (upload, want) in uploads.iter().zip(["old", "new"]) {
            assert_eq!(opened(upload)["v"], want);
        }
        // Before the rotation (one key version) the old record is answered the same way.
        let (before, _) = answers(&v1, &requests[..1]);
        assert_eq!(opened(&before[0]), opened(&uploads[0]));
        // Without the key of the new record's version, that request is refused.
        let (_, refused) = answers(&v1, &requests[1..]);
        assert!(refused[0].contains("missing"), "{refused:?}");

        // A record that is not ours (another source's bytes under our id) is refused.
        let mut stray = request(&first);
        stray.record_id = "rec1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into();
        let (uploads, refused) = answers(&v2, std::slice::from_ref(&stray));
        assert!(uploads.is_empty());
        assert!(refused[0].contains("not this source's"), "{refused:?}");
        outbox.close().await;
    }

    #[test]
    fn token_versions_tokenize_until_activated() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = init(dir.path(), &"source:city-a".parse().unwrap())
            .unwrap()
            .config;
        let person = Identity {
            insurer_number: "138016".into(),
            symbol: "1".into(),
            number: "2".into(),
            birth_date: "1970-01-01".into(),
            sex: renkei_crypto::identity::Sex::Female,
            branch: None,
        };
        let before = Agent::load(&cfg)
            .unwrap()
            .tokenize_identity(&person)
            .unwrap()
            .0;
        let (v2, _) = keyring::rotate::<TokenKey>(&dir.path().join("keys/token.key")).unwrap();
        let agent = Agent::load(&cfg).unwrap();
        assert_eq!(agent.active_token_version(), KeyVersion::V1);
        assert_eq!(
            agent.tokenize_identity(&person).unwrap().0,
            before,
            "not active yet"
        );
        let all = agent.tokenize_all(&person).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], (KeyVersion::V1, before.clone()));
        assert_ne!(all[1].1, before);

        let ring = KeyRing::<TokenKey>::load(&agent.config.keys.token).unwrap();
        keyring::activate_token(&agent.config.keys.token, &ring, v2).unwrap();
        let agent = Agent::load(&cfg).unwrap();
        assert_eq!(agent.active_token_version(), v2);
        assert_eq!(agent.tokenize_identity(&person).unwrap().0, all[1].1);
    }
}
