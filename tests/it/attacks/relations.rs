//! Who may act for whom, and what each recipient learns (attacks 1–4): no subject token
//! to a recipient, no identifier shared by two recipients of the same records, a clinic
//! revokes only its own consents, a second source acts on none of city A's residents.

use std::collections::BTreeSet;

use renkei_client::api::{GrantBody, Method, Upload};
use renkei_crypto::envelope::{EnvelopeHeader, SealedRecord, seal};
use renkei_crypto::keys::{KeyVersion, RecordKey};
use renkei_crypto::token::{record_id, subject_binding};
use renkei_e2e::APP;
use renkei_e2e::flow::field;
use renkei_e2e::scene::Member;
use serde_json::{Value, json};

use super::world::{CLINIC, Raw, World, count, grant, refusal, strings};

/// Attack 1, grants: the app's answers name the resident by its own pseudonym.
pub fn no_subject_token_in_grant_answers(w: &World) {
    for g in [&w.app_consent, &w.clinic_consent] {
        assert!(
            !g.stdout.contains("st1_"),
            "the app received a subject token:\n{}",
            g.stdout
        );
        assert_eq!(
            g.json.pointer("/consent/subject"),
            Some(&json!(w.pseudonym))
        );
        assert_eq!(
            g.json.pointer("/receipt/terms/subject"),
            Some(&json!(w.pseudonym))
        );
    }
}

/// Attack 1, revocations: the clinic revokes consents that name it (one with the CLI, one
/// over its own connection to see the raw answer) and learns no subject token.
pub async fn no_subject_token_in_revoke_answers(w: &World) {
    let mut clinic_names = BTreeSet::new();
    for (hours, raw) in [(47, false), (46, true)] {
        let g = grant(
            &w.scene,
            &w.pseudonym,
            CLINIC,
            "online-consultation",
            &w.categories,
            Some(hours),
        )
        .await
        .unwrap();
        let text = if raw {
            let mut conn = Raw::open(&w.member(CLINIC), w.hub.addrs.participant).unwrap();
            let path = format!("/v1/consents/{}/revoke", g.id);
            let r = conn
                .call("POST", &path, Some(&json!({"reason": "e2e"})))
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            r.text()
        } else {
            let out = w
                .scene
                .client(CLINIC, &["consent", "revoke", &g.id])
                .await
                .unwrap();
            out.ok().unwrap().stdout
        };
        assert!(
            !text.contains("st1_"),
            "the clinic received a subject token: {text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], g.id.as_str());
        assert_eq!(v["status"], "revoked", "{v}");
        clinic_names.insert(v["subject"].as_str().unwrap().to_owned());
    }
    // The clinic's own pseudonym: one name, not the app's.
    assert_eq!(clinic_names.len(), 1, "{clinic_names:?}");
    let name = clinic_names.first().unwrap();
    assert!(name.starts_with("rp1_") && name != &w.pseudonym, "{name}");
}

/// The one line of a record (its category and effective date) among a recipient's lines.
fn line_of<'a>(lines: &'a [Value], original: &Value) -> &'a Value {
    let key = |l: &Value| {
        (
            field(l, "category").clone(),
            field(l, "effective_date").clone(),
        )
    };
    let found: Vec<&Value> = lines.iter().filter(|l| key(l) == key(original)).collect();
    assert_eq!(found.len(), 1, "{:?}: {found:?}", key(original));
    found[0]
}

/// Attack 2: the app and the clinic pulled the same records; apart from the category, the
/// date, the source and the clinical content (strings of the source's own payload other
/// than its `urn:uuid:` ids), nothing they received coincides. Then the same over what the
/// hub serves them: feed items, envelope headers and ciphertext bytes.
pub async fn no_shared_identifiers(w: &World, app_lines: &[Value], clinic_lines: &[Value]) {
    let mut uuids_seen = 0;
    for original in w.originals.values() {
        let (a, b) = (
            line_of(app_lines, original),
            line_of(clinic_lines, original),
        );
        let mut content = BTreeSet::new();
        strings(field(original, "payload"), &mut content);
        let source_uuids: BTreeSet<String> = content
            .iter()
            .filter(|s| s.starts_with("urn:uuid:"))
            .cloned()
            .collect();
        uuids_seen += source_uuids.len();
        let mut allowed: BTreeSet<String> = &content - &source_uuids;
        for f in ["category", "effective_date", "source"] {
            allowed.insert(field(a, f).as_str().unwrap().to_owned());
        }
        let (mut sa, mut sb) = (BTreeSet::new(), BTreeSet::new());
        strings(a, &mut sa);
        strings(b, &mut sb);
        let shared: Vec<&String> = sa
            .intersection(&sb)
            .filter(|s| !allowed.contains(*s))
            .collect();
        assert!(shared.is_empty(), "the app and the clinic share {shared:?}");
        for (who, got) in [(APP, &sa), (CLINIC, &sb)] {
            let theirs: Vec<&String> = got.intersection(&source_uuids).collect();
            assert!(
                theirs.is_empty(),
                "{who} got the source's own ids {theirs:?}"
            );
            assert!(
                !got.iter().any(|s| w.originals.contains_key(s)),
                "{who} got city A's record id"
            );
            assert!(
                !got.iter().any(|s| s.starts_with("st1_")),
                "{who} got a subject token"
            );
        }
    }
    assert!(
        uuids_seen > 0,
        "no urn:uuid in any payload: nothing to compare"
    );

    // What the hub serves each of them, from the start of their feeds.
    let mut served = Vec::new();
    for who in [APP, CLINIC] {
        let page = w.client(who).feed(0, 100).await.unwrap();
        assert_eq!(
            page.items.len(),
            w.originals.len(),
            "{who}: {:?}",
            page.items
        );
        let mut all = BTreeSet::new();
        let mut ciphertexts = Vec::new();
        for item in &page.items {
            strings(&serde_json::to_value(item).unwrap(), &mut all);
            let raw = data_encoding::BASE64
                .decode(item.sealed.as_bytes())
                .unwrap();
            let sealed = SealedRecord::from_bytes(&raw).unwrap();
            all.insert(sealed.header().record_id.to_string());
            all.insert(sealed.header().subject_binding.to_string());
            ciphertexts.push(sealed.ciphertext().to_vec());
        }
        served.push((all, ciphertexts));
    }
    let (app, clinic) = (&served[0], &served[1]);
    let mut allowed: BTreeSet<String> = w.categories.iter().cloned().collect();
    for l in w.originals.values() {
        allowed.insert(field(l, "effective_date").as_str().unwrap().to_owned());
    }
    let shared: Vec<&String> = app
        .0
        .intersection(&clinic.0)
        .filter(|s| !allowed.contains(*s))
        .collect();
    assert!(shared.is_empty(), "feed items share {shared:?}");
    let windows: BTreeSet<&[u8]> = app.1.iter().flat_map(|c| c.windows(16)).collect();
    assert!(
        !clinic
            .1
            .iter()
            .any(|c| c.windows(16).any(|x| windows.contains(x))),
        "the two recipients' ciphertexts share bytes"
    );
}

/// Attack 3: the clinic tries to revoke the app's consent: refused without its terms;
/// the app still reads under it.
pub async fn a_clinic_cannot_revoke_the_apps_consent(w: &World, app_record: &str) {
    let out = w
        .scene
        .client(
            CLINIC,
            &[
                "consent",
                "revoke",
                &w.app_consent.id,
                "--reason",
                "not mine",
            ],
        )
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "the clinic revoked the app's consent: {out}"
    );
    assert!(out.stderr.contains("refused with 404"), "{out}");
    assert!(
        !out.stdout.contains("phr-display") && !out.stderr.contains("phr-display"),
        "{out}"
    );
    w.get(APP, app_record).await.ok().unwrap();
}

/// `source:city-b`: a certificate from `internet-hub pki issue`, registered with
/// `internet-hub participants add`, as an operator adds a second municipality. Its
/// folder and the certificate's serial.
pub async fn register_city_b(w: &World) -> (Member, String) {
    use renkei_e2e::proc::{command, run};
    use renkei_e2e::scene::CLI_TIMEOUT;
    let b = Member {
        id: "source:city-b".into(),
        dir: w.scene.root().join("source-city-b"),
    };
    let mut issue = command("internet-hub").unwrap();
    issue
        .args(["pki", "issue", "--dir"])
        .arg(w.scene.root().join("pki"));
    issue
        .args(["--participant", &b.id, "--out"])
        .arg(b.dir.join("tls"));
    let out = run(issue.args(["--days", "30"]), CLI_TIMEOUT)
        .await
        .unwrap()
        .ok()
        .unwrap();
    let serial = out
        .stdout
        .split("serial ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .to_owned();
    let mut add = w.scene.hub_admin(&["participants"]).unwrap();
    add.args(["add", &b.id, "--name", "City B (LGWAN agent)"]);
    run(&mut add, CLI_TIMEOUT).await.unwrap().ok().unwrap();
    (b, serial)
}

/// A record city B seals with its own key for `subject`.
fn sealed_by_city_b(subject: &str, doc: &str) -> SealedRecord {
    let key = RecordKey::from_bytes([0x0b; 32], KeyVersion::V1);
    let rid = record_id(&key, doc, "checkup.body");
    let header = EnvelopeHeader {
        subject_binding: subject_binding(&key, &rid, subject),
        record_id: rid,
        category: "checkup.body".into(),
        source: "source:city-b".into(),
        effective_date: chrono::NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(),
        schema_version: 1,
        key_version: KeyVersion::V1,
    };
    let planted = r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":"体重"},"valueQuantity":{"value":199.9,"unit":"kg"}}}]}"#;
    seal(&key, header, planted.as_bytes()).unwrap()
}

/// Attack 4: city B, with its own valid certificate, uploads under city A's resident's
/// token, grants a counter consent for them and revokes the app's consent: refused
/// (`subject_not_owned`, 404), audited, nothing stored; the app still reads. Its own new
/// resident it may upload.
pub async fn a_second_source_acts_on_no_one_elses_resident(
    w: &World,
    b: &Member,
    app_record: &str,
) {
    let mut cfg = renkei_client::ClientConfig::new(&w.scene.hub_url(), b.ca(), b.cert(), b.key());
    cfg.retry.max_attempts = 1;
    let city_b = renkei_client::HubClient::new(cfg).unwrap();
    let planted = Upload {
        sealed: sealed_by_city_b(&w.token, "planted").to_bytes(),
        subject: w.token.clone(),
    };
    let e = city_b.upload_records(&[planted]).await.unwrap_err();
    assert_eq!(
        refusal(&e),
        (403, "subject_not_owned".into()),
        "upload: {e}"
    );

    let counter = GrantBody {
        subject: w.token.clone(),
        recipient: CLINIC.into(),
        purpose: "online-consultation".into(),
        categories: vec!["checkup.body".into()],
        data_period: Default::default(),
        valid_from: None,
        valid_until: Some(chrono::Utc::now() + chrono::Duration::hours(48)),
        method: Method::Counter,
        evidence: None,
        granted_by: "staff-b-0001".into(),
        statement: None,
        guardian: None,
    };
    let e = city_b.grant_consent(&counter).await.unwrap_err();
    assert_eq!(
        refusal(&e),
        (403, "subject_not_owned".into()),
        "counter consent: {e}"
    );

    let e = city_b
        .revoke_consent(&w.app_consent.id, "city b")
        .await
        .unwrap_err();
    assert_eq!(refusal(&e).0, 404, "revoke: {e}");

    let stored = "SELECT COUNT(*) FROM hub_records WHERE source = $1";
    assert_eq!(
        count(w, stored, &[&b.id]).await,
        0,
        "city B's planted record was stored"
    );
    let denied =
        "SELECT COUNT(*) FROM hub_audit WHERE actor = $1 AND action = $2 AND decision = 'deny'";
    for action in ["ingest", "consent.grant"] {
        assert_eq!(
            count(w, denied, &[&b.id, action]).await,
            1,
            "{action} refusal not audited"
        );
    }
    w.get(APP, app_record).await.ok().unwrap();

    // Control: city B's own (new) resident is its to upload.
    let own = "st1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let mine = Upload {
        sealed: sealed_by_city_b(own, "own").to_bytes(),
        subject: own.into(),
    };
    city_b.upload_records(&[mine]).await.unwrap();
    assert_eq!(count(w, stored, &[&b.id]).await, 1);
}
