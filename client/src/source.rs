//! A PHR app as a source of its residents' own records (`phr.vitals`, `phr.medication`):
//! seal them with the app's record key and upload (`publish`), and answer the key-grant
//! requests the hub queues for them (`serve-grants`), as the LGWAN agent does for its own.

use std::collections::HashMap;

use chrono::NaiveDate;
use renkei_crypto::envelope::{EnvelopeHeader, SealedRecord, derive_dek, seal};
use renkei_crypto::grant::{GrantSealer, RecipientPublicKey};
use renkei_crypto::keys::{KeyVersion, RecordKey};
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::token::{RecipientPseudonym, RecordId, record_id, subject_binding};

use crate::api::{GrantReport, GrantRequest, GrantUpload, IngestReport, Upload};
use crate::error::{Error, Result};
use crate::state::StateDir;
use crate::transport::HubClient;

/// Categories a PHR app may publish: the resident's own records, and what a
/// consultation service saw (`consult.*`).
pub const APP_CATEGORIES: &[&str] = &["phr.vitals", "phr.medication", "consult.child-health"];

/// Categories a clinic may publish: the vaccinations it gave, for a patient an app
/// introduced ([`renkei_protocol::introduction`]).
pub const CLINIC_CATEGORIES: &[&str] = &["immunization.record"];

/// What a participant of `me`'s kind publishes.
pub fn publishable(me: &ParticipantId) -> &'static [&'static str] {
    match me.kind() {
        ParticipantKind::Phr => APP_CATEGORIES,
        ParticipantKind::Clinic => CLINIC_CATEGORIES,
        _ => &[],
    }
}

/// Version of the payload schema the client seals (FHIR R4 JSON, compressed:
/// `renkei_crypto::payload`).
pub const SCHEMA_VERSION: u16 = renkei_crypto::payload::JSON_LZ4;

/// One of the app's own records, before sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// The resident, by the app's pseudonym (`rp1_…`).
    pub subject: String,
    /// One of [`APP_CATEGORIES`].
    pub category: String,
    /// The date the data refers to.
    pub effective_date: NaiveDate,
    /// The app's own stable id of the document; the record id derives from it, so
    /// publishing the same document again is idempotent.
    pub document_id: String,
    /// FHIR R4 JSON.
    pub payload: Vec<u8>,
}

/// Seals one app record as source `me` with the app's record key.
pub fn seal_app_record(
    key: &RecordKey,
    me: &ParticipantId,
    record: &AppRecord,
) -> Result<SealedRecord> {
    let what = |part: &str| {
        format!(
            "document `{}`: {part}",
            crate::error::shorten(&record.document_id)
        )
    };
    let allowed = publishable(me);
    if !allowed.contains(&record.category.as_str()) {
        return Err(Error::invalid(
            what("category"),
            format!(
                "`{}` is not one of {} (what a `{}` publishes)",
                record.category,
                allowed.join(", "),
                me.kind().as_str()
            ),
        ));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(&record.payload)
        .map_err(|e| Error::invalid(what("payload"), format!("not JSON: {e}")))?;
    let subject =
        RecipientPseudonym::parse(&record.subject).map_err(Error::crypto(what("subject")))?;
    let rid = record_id(key, &record.document_id, &record.category);
    let header = EnvelopeHeader {
        subject_binding: subject_binding(key, &rid, subject.as_str()),
        record_id: rid,
        category: record.category.clone(),
        source: me.to_string(),
        effective_date: record.effective_date,
        schema_version: SCHEMA_VERSION,
        key_version: key.version(),
    };
    let padded = renkei_crypto::payload::pack(SCHEMA_VERSION, &record.payload)
        .map_err(Error::crypto(what("payload")))?;
    seal(key, header, &padded).map_err(Error::crypto(what("sealing")))
}

/// Seals and uploads the app's records (all or nothing at the hub).
pub async fn publish(
    client: &HubClient,
    key: &RecordKey,
    me: &ParticipantId,
    records: &[AppRecord],
) -> Result<IngestReport> {
    let uploads = records
        .iter()
        .map(|r| {
            seal_app_record(key, me, r).map(|s| Upload {
                sealed: s.to_bytes(),
                subject: r.subject.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    client.upload_records(&uploads).await
}

/// What one round of answering key-grant requests did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeReport {
    /// Requests read.
    pub requests: usize,
    /// The hub's report on the uploaded grants.
    pub uploaded: GrantReport,
    /// Requests that could not be answered (bad record id or key), with the reason.
    pub refused: Vec<String>,
}

/// The grant sealers of one round of answers, one per recipient and key: a round costs
/// one X25519 per recipient, whatever the number of records (docs/envelope.md, v2).
#[derive(Debug, Default)]
pub struct Sealers(HashMap<(String, RecipientPublicKey), GrantSealer>);

impl Sealers {
    /// The sealer to `recipient` under `key`, made on first use.
    fn for_recipient(&mut self, recipient: &str, key: RecipientPublicKey) -> Result<&GrantSealer> {
        let sealer = match self.0.entry((recipient.to_owned(), key)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                GrantSealer::new(&key, recipient)
                    .map_err(Error::crypto(format!("key of `{recipient}`")))?,
            ),
        };
        Ok(sealer)
    }
}

/// Answers one key-grant request: checks that the record the hub sent is this source's
/// own (`me`, the requested id, and it opens with our key of its version, which `key_of`
/// gives), seals the recipient's own copy ([`crate::copy::copy_for`]) and seals that
/// copy's DEK to `recipient_key` (base64), which the caller took from the recipient's
/// verified key statement ([`HubClient::verify_statement`]), never from the hub's word,
/// in that recipient's batch of this round (`sealers`).
pub fn grant_for<'k>(
    key_of: impl Fn(KeyVersion) -> Option<&'k RecordKey>,
    me: &str,
    request: &GrantRequest,
    recipient_key: &str,
    sealers: &mut Sealers,
) -> Result<GrantUpload> {
    let what = format!(
        "request for `{}` → `{}`",
        crate::error::shorten(&request.record_id),
        crate::error::shorten(&request.recipient)
    );
    let rid = RecordId::parse(&request.record_id).map_err(Error::crypto(what.clone()))?;
    request
        .recipient
        .parse::<ParticipantId>()
        .map_err(Error::crypto(what.clone()))?;
    let pk = RecipientPublicKey::from_base64(recipient_key).map_err(Error::crypto(what.clone()))?;
    let bytes = data_encoding::BASE64
        .decode(request.sealed.as_bytes())
        .map_err(|e| Error::invalid(what.clone(), format!("sealed: not base64: {e}")))?;
    let sealed = SealedRecord::from_bytes(&bytes).map_err(Error::crypto(what.clone()))?;
    let header = sealed.header();
    if header.record_id != rid || header.source != me {
        return Err(Error::invalid(
            what,
            "the hub sent a record that is not this source's requested record",
        ));
    }
    let key = key_of(header.key_version).ok_or_else(|| {
        Error::invalid(
            what.clone(),
            format!(
                "sealed with record key {}, which is missing",
                header.key_version
            ),
        )
    })?;
    let copy = crate::copy::copy_for(key, &sealed, &request.recipient)?;
    let alias = &copy.header().record_id;
    let grant = sealers
        .for_recipient(&request.recipient, pk)?
        .seal(alias, &derive_dek(key, alias))
        .map_err(Error::crypto(what))?;
    Ok(GrantUpload {
        record_id: rid.to_string(),
        recipient: request.recipient.clone(),
        grant: grant.to_base64(),
        sealed: data_encoding::BASE64.encode(&copy.to_bytes()),
    })
}

/// The recipient's grant key from its key statement, checked against the pinned CA
/// (the key the hub lists beside it is not used).
pub fn verified_recipient_key(client: &HubClient, request: &GrantRequest) -> Result<String> {
    let recipient: ParticipantId = request.recipient.parse().map_err(Error::crypto(format!(
        "recipient `{}`",
        crate::error::shorten(&request.recipient)
    )))?;
    client
        .verify_statement(&recipient, request.recipient_statement.as_ref())?
        .grant_key
        .ok_or_else(|| {
            Error::invalid(
                format!("keys of `{recipient}`"),
                "no grant key in the statement",
            )
        })
}

/// The header of the record the hub sent with `request` (not yet checked to be ours:
/// [`grant_for`] does that).
pub fn requested_header(request: &GrantRequest) -> Result<EnvelopeHeader> {
    let what = format!(
        "request for `{}`",
        crate::error::shorten(&request.record_id)
    );
    let bytes = data_encoding::BASE64
        .decode(request.sealed.as_bytes())
        .map_err(|e| Error::invalid(what.clone(), format!("sealed: not base64: {e}")))?;
    Ok(SealedRecord::from_bytes(&bytes)
        .map_err(Error::crypto(what))?
        .header()
        .clone())
}

/// Whether the consent statement sent with `request` lets this source (`me`, holding
/// `key`) release the record: it verifies and covers the request
/// ([`crate::consent::check_request`]), and it names the record's resident. The hub says
/// who that is (`request.subject`); the record's subject binding, which only `key` makes,
/// confirms it. A source's consents name the resident by a commitment to its token; an app's by its user
/// digest (`users`, kept by `enroll`), either in a statement the app signed itself or
/// among the aliases of a counter consent signed by the source that linked the user.
///
/// A statement this participant signed is checked against its own revocations here.
/// One another participant signed is returned as `Some((signer, statement id))`: the
/// caller must check it against that signer's revocation list ([`signer_revocations`])
/// before releasing, since the hub could replay a revoked statement.
pub fn consent_covers<'k>(
    key_of: impl Fn(KeyVersion) -> Option<&'k RecordKey>,
    me: &ParticipantId,
    users: &StateDir,
    request: &GrantRequest,
    ca: &std::path::Path,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<(ParticipantId, String)>> {
    let header = requested_header(request)?;
    let checked =
        crate::consent::check_request(ca, request, &header.category, header.effective_date, now)?;
    let refuse = |why: String| Error::invalid("consent", why);
    let key = key_of(header.key_version)
        .ok_or_else(|| refuse(format!("record key {} is missing", header.key_version)))?;
    if subject_binding(key, &header.record_id, &request.subject) != header.subject_binding {
        return Err(refuse(
            "the hub named another resident than the record's".into(),
        ));
    }
    let t = &checked.terms;
    let covered = if me.kind() == ParticipantKind::Clinic {
        // A clinic's patient is the user an app introduced: only that app's own
        // statements naming that user release the clinic's records.
        let user = users.user_of(&request.subject)?.ok_or_else(|| {
            refuse(format!(
                "no app introduced `{}` to this clinic (state folder `{}`)",
                crate::error::shorten(&request.subject),
                users.path().display()
            ))
        })?;
        checked.signer.to_string() == user.source && t.resident == user.resident
    } else if me.kind() == ParticipantKind::Phr {
        let user = users.user_of(&request.subject)?.ok_or_else(|| {
            refuse(format!(
                "`{}` was not enrolled from the state folder `{}`",
                crate::error::shorten(&request.subject),
                users.path().display()
            ))
        })?;
        (&checked.signer == me && t.resident == user.resident)
            || (checked.signer.to_string() == user.source && t.names_alias(&user.resident))
    } else {
        &checked.signer == me && t.names_token(&request.subject)
    };
    if !covered {
        return Err(refuse(format!(
            "the consent signed by `{}` does not name this record's resident",
            checked.signer
        )));
    }
    if &checked.signer != me {
        return Ok(Some((checked.signer, checked.id)));
    }
    if users
        .revoked()?
        .iter()
        .any(|c| c.statement_id == checked.id)
    {
        return Err(refuse("this participant revoked the consent".into()));
    }
    Ok(None)
}

/// Every statement id `signer` revoked, as far as this participant knows: its revocation
/// list fetched through the hub and checked ([`crate::consent::check_revocation_list`]:
/// signed by `signer` under the pinned CA, at most
/// [`REVOCATION_LIST_MAX_AGE`](crate::consent::REVOCATION_LIST_MAX_AGE) old), not older
/// than one seen before, with every id an earlier list named. Whatever fails is an
/// error: nothing is released under `signer`'s consents without a list to check.
pub async fn signer_revocations(
    client: &HubClient,
    users: &StateDir,
    signer: &ParticipantId,
) -> Result<std::collections::BTreeSet<String>> {
    let list = client.revocation_list(signer).await.map_err(|e| {
        Error::invalid(
            format!("revocation list of `{signer}`"),
            format!("none to check ({e}): nothing is released under its consents"),
        )
    })?;
    crate::consent::check_revocation_list(
        &list,
        signer,
        client.pinned_ca(),
        client.now(),
        crate::consent::REVOCATION_LIST_MAX_AGE,
    )?;
    users.note_revocation_list(&list)
}

/// Answers up to `limit` pending key-grant requests once.
pub async fn serve_grants_once(
    client: &HubClient,
    key: &RecordKey,
    users: &StateDir,
    limit: u32,
) -> Result<ServeReport> {
    let requests = client.key_grant_requests(limit).await?;
    let mut report = ServeReport {
        requests: requests.len(),
        ..ServeReport::default()
    };
    let mut uploads = Vec::with_capacity(requests.len());
    let me_id = client.participant()?.clone();
    let me = me_id.to_string();
    let mut sealers = Sealers::default();
    // Other signers' revocation lists, fetched once a round.
    let mut lists = std::collections::HashMap::new();
    for r in &requests {
        let key_of = |v: KeyVersion| (v == key.version()).then_some(key);
        let covered = consent_covers(key_of, &me_id, users, r, client.pinned_ca(), client.now());
        let covered = match covered {
            Ok(Some((signer, statement))) => {
                if !lists.contains_key(&signer) {
                    let got = signer_revocations(client, users, &signer).await;
                    lists.insert(signer.clone(), got.map_err(|e| e.to_string()));
                }
                match lists.get(&signer) {
                    Some(Ok(revoked)) if !revoked.contains(&statement) => Ok(()),
                    Some(Ok(_)) => Err(Error::invalid(
                        "consent",
                        format!("revoked by `{signer}` (its signed revocation list)"),
                    )),
                    Some(Err(why)) => Err(Error::invalid("consent", why.clone())),
                    None => Err(Error::invalid("consent", "no revocation list was checked")),
                }
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        let answer = covered
            .and_then(|()| verified_recipient_key(client, r))
            .and_then(|recipient_key| {
                grant_for(
                    |v| (v == key.version()).then_some(key),
                    &me,
                    r,
                    &recipient_key,
                    &mut sealers,
                )
            });
        match answer {
            Ok(g) => uploads.push(g),
            Err(e) => report.refused.push(e.to_string()),
        }
    }
    if !uploads.is_empty() {
        report.uploaded = client.upload_key_grants(&uploads).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FeedItem;
    use renkei_crypto::grant::RecipientSecretKey;
    use renkei_crypto::keys::KeyVersion;

    /// One round's sealers: one batch per (recipient, key), never shared across either.
    #[test]
    fn a_round_seals_one_batch_per_recipient_and_key() {
        use renkei_crypto::grant::open_grant;
        let record_key = RecordKey::from_bytes([5; 32], KeyVersion::V1);
        let id = record_id(&record_key, "doc-1", "checkup.body");
        let dek = || derive_dek(&record_key, &id);
        let (k1, k2) = (
            RecipientSecretKey::generate(KeyVersion::V1),
            RecipientSecretKey::generate(KeyVersion::V1),
        );
        let mut sealers = Sealers::default();
        let mut seal = |who: &str, key: &RecipientSecretKey| {
            let sealer = sealers.for_recipient(who, key.public_key()).unwrap();
            sealer.seal(&id, &dek()).unwrap()
        };
        let enc = |g: &renkei_crypto::grant::KeyGrant| g.to_bytes()[..32].to_vec();
        let (a1, a1_again) = (seal("phr:a", &k1), seal("phr:a", &k1));
        let (b1, a2) = (seal("clinic:b", &k1), seal("phr:a", &k2));
        assert_eq!(enc(&a1), enc(&a1_again), "one batch per recipient and key");
        assert_ne!(enc(&a1), enc(&b1));
        assert_ne!(enc(&a1), enc(&a2));
        assert!(open_grant(&k1, &id, "phr:a", &a1).is_ok());
        assert!(open_grant(&k1, &id, "clinic:b", &a1).is_err());
        assert!(open_grant(&k1, &id, "clinic:b", &b1).is_ok());
        assert!(open_grant(&k1, &id, "phr:a", &b1).is_err());
        assert!(open_grant(&k2, &id, "phr:a", &a2).is_ok());
        assert!(open_grant(&k1, &id, "phr:a", &a2).is_err());
    }

    fn record(subject: &str, category: &str) -> AppRecord {
        AppRecord {
            subject: subject.into(),
            category: category.into(),
            effective_date: NaiveDate::from_ymd_opt(2025, 4, 1).unwrap(),
            document_id: "bp-2025-04-01".into(),
            payload: br#"{"resourceType":"Observation"}"#.to_vec(),
        }
    }

    #[test]
    fn app_records_are_checked_before_sealing() {
        let key = RecordKey::from_bytes([9; 32], KeyVersion::V1);
        let me: ParticipantId = "phr:asmile".parse().unwrap();
        let e = seal_app_record(
            &key,
            &me,
            &record("rp1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "checkup.lipids"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("category"), "{e}");
        let e = seal_app_record(
            &key,
            &me,
            &record("st1_abcdefghijklmnopqrstuvwxyz234567", "phr.vitals"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("subject"),
            "an app names residents by `rp1_`: {e}"
        );
        let mut bad = record("rp1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "phr.vitals");
        bad.payload = b"not json".to_vec();
        assert!(
            seal_app_record(&key, &me, &bad)
                .unwrap_err()
                .to_string()
                .contains("payload")
        );
    }

    #[test]
    fn answered_grant_opens_the_published_record() {
        let key = RecordKey::from_bytes([9; 32], KeyVersion::V1);
        let me: ParticipantId = "phr:asmile".parse().unwrap();
        let rec = record("rp1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "phr.vitals");
        let sealed = seal_app_record(&key, &me, &rec).unwrap();
        assert_eq!(sealed.header().source, "phr:asmile");
        let again = seal_app_record(&key, &me, &rec).unwrap();
        assert_eq!(
            sealed.header().record_id,
            again.header().record_id,
            "idempotent id"
        );

        let clinic_key = RecipientSecretKey::generate(KeyVersion::V1);
        let rid = sealed.header().record_id.to_string();
        let request = GrantRequest {
            record_id: rid.clone(),
            recipient: "clinic:mysos".into(),
            recipient_key: clinic_key.public_key().to_base64(),
            sealed: data_encoding::BASE64.encode(&sealed.to_bytes()),
            purpose: "online-consultation".into(),
            recipient_statement: None,
            consent_statement: None,
            subject: "rp1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
        };
        let ck = clinic_key.public_key().to_base64();
        let g = grant_for(
            |_| Some(&key),
            "phr:asmile",
            &request,
            &ck,
            &mut Sealers::default(),
        )
        .unwrap();
        assert_eq!(g.record_id, rid, "the answer names the requested record");
        let copy =
            SealedRecord::from_bytes(&data_encoding::BASE64.decode(g.sealed.as_bytes()).unwrap())
                .unwrap();
        assert_ne!(
            copy.header().record_id.to_string(),
            rid,
            "the clinic's copy has its own id"
        );
        let item = FeedItem {
            seq: 1,
            record_id: copy.header().record_id.to_string(),
            pseudonym: "rp1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
            category: "phr.vitals".into(),
            effective_date: "2025-04-01".into(),
            consent_id: "c".into(),
            sealed: g.sealed.clone(),
            grant: g.grant,
        };
        let opener = renkei_crypto::grant::GrantOpener::new(&clinic_key, "clinic:mysos");
        let opened = crate::pull::open_item(&item, &opener).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&opened.payload).unwrap();
        assert_eq!(
            value,
            serde_json::from_slice::<serde_json::Value>(&rec.payload).unwrap()
        );
        // The hub cannot have a source seal a record that is not its own.
        let refused = |key: &RecordKey, me: &str, r: &GrantRequest| {
            grant_for(|_| Some(key), me, r, &ck, &mut Sealers::default()).is_err()
        };
        assert!(refused(&key, "phr:other", &request));
        let other = RecordKey::from_bytes([8; 32], KeyVersion::V1);
        assert!(refused(&other, "phr:asmile", &request));
        let bad = GrantRequest {
            record_id: "rec1_bad".into(),
            ..request
        };
        assert!(refused(&key, "phr:asmile", &bad));
    }
}
