//! A source (here a PHR app holding its residents' own records) checks the consent the hub
//! says a key-grant request rests on, without the hub's word: signed terms that cover the
//! request, for the record's own resident (its subject binding), by a signer that may
//! speak for that resident.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use renkei_client::api::GrantRequest;
use renkei_client::source::{AppRecord, consent_covers, seal_app_record};
use renkei_client::state::{EnrolledUser, StateDir};
use renkei_crypto::consent_statement::{
    ConsentStatement, ConsentTerms, commit_resident, user_resident,
};
use renkei_crypto::keys::{KeyVersion, RecordKey};
use renkei_crypto::participant::ParticipantId;

use crate::fixture::TestPki;

const ME: &str = "phr:asmile";
const MINE: &str = "rp1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const OTHER: &str = "rp1_cccccccccccccccccccccccccccccccc";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

fn terms(resident: &str) -> ConsentTerms {
    ConsentTerms {
        resident: resident.into(),
        recipient: "clinic:mysos".into(),
        purpose: "online-consultation".into(),
        categories: vec!["phr.vitals".into()],
        data_from: None,
        data_until: None,
        valid_from: Utc.with_ymd_and_hms(2026, 5, 31, 0, 0, 0).unwrap(),
        valid_until: Some(Utc.with_ymd_and_hms(2026, 6, 2, 0, 0, 0).unwrap()),
        aliases: Vec::new(),
        guardian: None,
    }
}

#[test]
fn an_app_releases_only_under_a_consent_for_the_records_own_resident() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let users = StateDir::open(dir.path()).unwrap();
    let user = user_resident(ME, "u-1");
    users
        .record_user(&EnrolledUser {
            pseudonym: MINE.into(),
            resident: user.clone(),
            source: "source:city-a".into(),
        })
        .unwrap();
    let key = RecordKey::from_bytes([9; 32], KeyVersion::V1);
    let me: ParticipantId = ME.parse().unwrap();
    let record = AppRecord {
        subject: MINE.into(),
        category: "phr.vitals".into(),
        effective_date: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
        document_id: "bp-1".into(),
        payload: br#"{"resourceType":"Bundle"}"#.to_vec(),
    };
    let sealed = seal_app_record(&key, &me, &record).unwrap();
    let sign = |who: &str, t: ConsentTerms| {
        ConsentStatement::sign(&pki.pem(who), &pki.key(who), t, now()).unwrap()
    };
    let request = |statement: Option<ConsentStatement>, subject: &str| GrantRequest {
        record_id: sealed.header().record_id.to_string(),
        recipient: "clinic:mysos".into(),
        recipient_key: String::new(),
        sealed: data_encoding::BASE64.encode(&sealed.to_bytes()),
        purpose: "online-consultation".into(),
        recipient_statement: None,
        consent_statement: statement,
        subject: subject.into(),
    };
    let check = |r: &GrantRequest| {
        consent_covers(|_| Some(&key), &me, &users, r, &pki.pem("ca"), now())
            .map(|other| other.map(|(signer, _)| signer.to_string()))
            .map_err(|e| e.to_string())
    };

    // The app's own consent for this user, and the city's counter consent naming the
    // user among its aliases: released.
    let own = sign("phr-asmile", terms(&user));
    assert_eq!(check(&request(Some(own.clone()), MINE)), Ok(None));
    let mut counter = terms("st1_abcdefghijklmnopqrstuvwxyz234567");
    counter.aliases = vec![user.clone()];
    let counter = sign("source-city-a", counter);
    // Signed by the city: released only once the city's revocation list is checked.
    assert_eq!(
        check(&request(Some(counter.clone()), MINE)),
        Ok(Some("source:city-a".into()))
    );
    // The same, as agents sign now: the resident and the aliases as commitments.
    let token = "st1_abcdefghijklmnopqrstuvwxyz234567";
    let other_app_user = user_resident("phr:kenko", "k-1");
    let (resident, aliases) = commit_resident(token, &[other_app_user.clone(), user.clone()]);
    let committed = sign(
        "source-city-a",
        ConsentTerms {
            resident,
            aliases,
            ..terms(token)
        },
    );
    assert_eq!(
        check(&request(Some(committed), MINE)),
        Ok(Some("source:city-a".into()))
    );

    let refused = |r: GrantRequest, why: &str| {
        let e = check(&r).unwrap_err();
        assert!(e.contains(why), "{e} (wanted {why})");
    };
    // No statement: the hub alone vouches.
    refused(request(None, MINE), "no signed consent statement");
    // The hub moves a real consent onto another resident's record (it names another
    // pseudonym, which the record's binding contradicts).
    refused(request(Some(own.clone()), OTHER), "another resident");
    // A consent for another user of the app.
    let other_user = sign("phr-asmile", terms(&user_resident(ME, "u-2")));
    refused(request(Some(other_user), MINE), "does not name");
    // A counter consent of the resident's city without the alias, or signed by a
    // participant that did not link the user.
    let bare = sign(
        "source-city-a",
        terms("st1_abcdefghijklmnopqrstuvwxyz234567"),
    );
    refused(request(Some(bare), MINE), "does not name");
    // Committed aliases naming only another app's user, or this user committed under
    // another statement's salt, do not name this user.
    let (resident, aliases) = commit_resident(token, std::slice::from_ref(&other_app_user));
    let others_only = ConsentTerms {
        resident,
        aliases,
        ..terms(token)
    };
    refused(
        request(Some(sign("source-city-a", others_only)), MINE),
        "does not name",
    );
    let (_, foreign_aliases) = commit_resident(token, std::slice::from_ref(&user));
    let (resident, _) = commit_resident(token, &[]);
    let wrong_salt = ConsentTerms {
        resident,
        aliases: foreign_aliases,
        ..terms(token)
    };
    refused(
        request(Some(sign("source-city-a", wrong_salt)), MINE),
        "does not name",
    );
    let mut by_clinic = terms("st1_abcdefghijklmnopqrstuvwxyz234567");
    by_clinic.aliases = vec![user.clone()];
    refused(
        request(Some(sign("clinic-mysos", by_clinic)), MINE),
        "does not name",
    );
    // Terms that do not cover the request.
    let mut r = request(Some(own.clone()), MINE);
    r.recipient = "analyst:hachioji".into();
    refused(r, "not for `analyst:hachioji`");
    let mut r = request(Some(own.clone()), MINE);
    r.purpose = "research".into();
    refused(r, "purpose");
    let mut narrow = terms(&user);
    narrow.categories = vec!["phr.medication".into()];
    refused(
        request(Some(sign("phr-asmile", narrow)), MINE),
        "does not cover",
    );
    let mut expired = terms(&user);
    expired.valid_until = Some(Utc.with_ymd_and_hms(2026, 5, 31, 12, 0, 0).unwrap());
    refused(request(Some(sign("phr-asmile", expired)), MINE), "expired");
    // The hub answers another enrollment of the app with this resident's pseudonym: the
    // pseudonym is now ambiguous and nothing is released for it.
    users
        .record_user(&EnrolledUser {
            pseudonym: MINE.into(),
            resident: user_resident(ME, "u-attacker"),
            source: "source:city-a".into(),
        })
        .unwrap();
    assert!(users.user_of(MINE).is_err());
    refused(request(Some(own.clone()), MINE), "more than one user");
    // Altered after signing.
    let mut altered = own;
    altered.terms.categories = vec!["phr.medication".into(), "phr.vitals".into()];
    refused(request(Some(altered), MINE), "does not verify");
}

/// A revocation names every statement the app signed for the consent's terms, not only
/// the one the hub's consent id points at: one the hub never answered for, one kept twice
/// under one id (a retry), and an older one for the same resident, recipient and purpose.
#[test]
fn a_revocation_names_every_statement_signed_for_the_same_terms() {
    use renkei_client::consent::statements_to_revoke;
    use renkei_client::state::SignedConsent;
    let kept = |consent: &str, statement: &str, resident: &str, purpose: &str| SignedConsent {
        consent_id: consent.into(),
        statement_id: statement.repeat(64),
        valid_until: None,
        resident: resident.into(),
        recipient: "clinic:mysos".into(),
        purpose: purpose.into(),
    };
    let signed = vec![
        kept("", "a", "user:1", "online-consultation"),
        kept("c-1", "a", "user:1", "online-consultation"),
        kept("c-1", "b", "user:1", "online-consultation"),
        kept("c-0", "c", "user:1", "online-consultation"),
        kept("", "d", "user:1", "online-consultation"),
        kept("c-2", "e", "user:2", "online-consultation"),
        kept("c-3", "f", "user:1", "phr-display"),
    ];
    let named: Vec<String> = statements_to_revoke(&signed, "c-1")
        .into_iter()
        .map(|c| c.statement_id.chars().next().unwrap().to_string())
        .collect();
    assert_eq!(named, ["a", "b", "c", "d"]);
    assert!(statements_to_revoke(&signed, "unknown").is_empty());
}

/// A clinic releases a vaccination record it published only under a consent the app that
/// introduced the patient signed for that user: not the city's, not its own, not another
/// user's, and nothing for a patient no app introduced.
#[test]
fn a_clinic_releases_only_under_the_introducing_apps_consent_for_its_user() {
    use renkei_protocol::introduction::Introduction;
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let users = StateDir::open(dir.path()).unwrap();
    let me: ParticipantId = "clinic:mysos".parse().unwrap();
    let user = user_resident(ME, "u-1");
    // The app's introduction, checked as `publish --introduction` checks it.
    let intro = Introduction::sign(
        &pki.pem("phr-asmile"),
        &pki.key("phr-asmile"),
        &user,
        "clinic:mysos",
        now(),
    )
    .unwrap();
    let introduced = intro.verify(&me, &pki.pem("ca"), now()).unwrap();
    assert_eq!(introduced.app.to_string(), ME);
    let elsewhere: ParticipantId = "clinic:other".parse().unwrap();
    assert!(intro.verify(&elsewhere, &pki.pem("ca"), now()).is_err());
    let mut tampered = intro.clone();
    tampered.resident = user_resident(ME, "u-2");
    assert!(tampered.verify(&me, &pki.pem("ca"), now()).is_err());
    let by_a_source = Introduction::sign(
        &pki.pem("source-city-a"),
        &pki.key("source-city-a"),
        &user,
        "clinic:mysos",
        now(),
    )
    .unwrap();
    assert!(
        by_a_source
            .verify(&me, &pki.pem("ca"), now())
            .unwrap_err()
            .contains("not a PHR app")
    );
    users
        .record_user(&EnrolledUser {
            pseudonym: MINE.into(),
            resident: introduced.resident.clone(),
            source: introduced.app.to_string(),
        })
        .unwrap();

    let key = RecordKey::from_bytes([7; 32], KeyVersion::V1);
    let sealed_for = |subject: &str| {
        let record = AppRecord {
            subject: subject.into(),
            category: "immunization.record".into(),
            effective_date: NaiveDate::from_ymd_opt(2026, 5, 20).unwrap(),
            document_id: format!("bcg-{subject}"),
            payload: br#"{"resourceType":"Bundle"}"#.to_vec(),
        };
        seal_app_record(&key, &me, &record).unwrap()
    };
    let display = |resident: &str| ConsentTerms {
        recipient: ME.into(),
        purpose: "phr-display".into(),
        categories: vec!["immunization.record".into()],
        ..terms(resident)
    };
    let sign = |who: &str, t: ConsentTerms| {
        ConsentStatement::sign(&pki.pem(who), &pki.key(who), t, now()).unwrap()
    };
    let request = |statement: ConsentStatement, subject: &str| {
        let sealed = sealed_for(subject);
        GrantRequest {
            record_id: sealed.header().record_id.to_string(),
            recipient: ME.into(),
            recipient_key: String::new(),
            sealed: data_encoding::BASE64.encode(&sealed.to_bytes()),
            purpose: "phr-display".into(),
            recipient_statement: None,
            consent_statement: Some(statement),
            subject: subject.into(),
        }
    };
    let check = |r: &GrantRequest| {
        consent_covers(|_| Some(&key), &me, &users, r, &pki.pem("ca"), now())
            .map(|other| other.map(|(signer, _)| signer.to_string()))
            .map_err(|e| e.to_string())
    };
    // Signed by the app: released only once the app's revocation list is checked.
    assert_eq!(
        check(&request(sign("phr-asmile", display(&user)), MINE)),
        Ok(Some("phr:asmile".into()))
    );
    let refused = |r: GrantRequest, why: &str| {
        let e = check(&r).unwrap_err();
        assert!(e.contains(why), "{e} (wanted {why})");
    };
    // Another user of the app; the city's counter consent naming the user as an alias;
    // the clinic's own signature.
    refused(
        request(sign("phr-asmile", display(&user_resident(ME, "u-2"))), MINE),
        "does not name",
    );
    let mut counter = display("st1_abcdefghijklmnopqrstuvwxyz234567");
    counter.aliases = vec![user.clone()];
    refused(
        request(sign("source-city-a", counter), MINE),
        "does not name",
    );
    refused(
        request(sign("clinic-mysos", display(&user)), MINE),
        "does not name",
    );
    // A patient no app introduced.
    refused(
        request(sign("phr-asmile", display(&user)), OTHER),
        "no app introduced",
    );
}
