//! Key statements: signed with the participant's certificate key, checked against the
//! pinned CA; the hub (or anyone without that key) cannot make or alter one.

use chrono::{TimeZone, Utc};
use renkei_crypto::consent_statement::{
    ConsentStatement, ConsentTerms, RevocationList, commit_resident, user_resident,
};
use renkei_crypto::statement::KeyStatement;

use crate::tls::TestPki;

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn now() -> chrono::DateTime<Utc> {
    // Inside the fixture certificates' validity (2024-2044), after the expired one's.
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

#[test]
fn a_statement_verifies_against_the_pinned_ca_and_nothing_else() {
    let pki = TestPki::new();
    let st = KeyStatement::sign(
        &pki.pem("phr-asmile"),
        &pki.key("phr-asmile"),
        Some(KEY_A),
        None,
        now(),
    )
    .unwrap();
    assert_eq!(st.participant, "phr:asmile");
    let v = st.verify(&pki.pem("ca"), now()).unwrap();
    assert_eq!(v.participant.to_string(), "phr:asmile");
    assert_eq!(v.grant_key.as_deref(), Some(KEY_A));

    // The hub swaps the key: the signature no longer verifies.
    let swapped = KeyStatement {
        grant_key: Some(KEY_B.into()),
        ..st.clone()
    };
    assert!(
        swapped
            .verify(&pki.pem("ca"), now())
            .unwrap_err()
            .to_string()
            .contains("does not verify")
    );
    // It claims the statement is another participant's.
    let renamed = KeyStatement {
        participant: "clinic:mysos".into(),
        ..st.clone()
    };
    assert!(renamed.verify(&pki.pem("ca"), now()).is_err());
    // It puts another participant's certificate on it.
    let clinic = KeyStatement::sign(
        &pki.pem("clinic-mysos"),
        &pki.key("clinic-mysos"),
        Some(KEY_B),
        None,
        now(),
    )
    .unwrap();
    let recert = KeyStatement {
        certificate: clinic.certificate.clone(),
        ..st.clone()
    };
    assert!(recert.verify(&pki.pem("ca"), now()).is_err());
    // A participant of the hub's own CA (not the pinned one) signs a statement.
    let rogue = KeyStatement::sign(
        &pki.pem("wrong-ca"),
        &pki.key("wrong-ca"),
        Some(KEY_B),
        None,
        now(),
    )
    .unwrap();
    assert!(
        rogue
            .verify(&pki.pem("ca"), now())
            .unwrap_err()
            .to_string()
            .contains("pinned CA")
    );
    // The same statement checked against another CA file fails.
    assert!(st.verify(&pki.pem("other-ca"), now()).is_err());
    // An expired certificate's statement fails.
    if let Ok(expired) = KeyStatement::sign(
        &pki.pem("expired"),
        &pki.key("expired"),
        Some(KEY_A),
        None,
        now(),
    ) {
        assert!(expired.verify(&pki.pem("ca"), now()).is_err());
    }
}

/// One change to consent terms.
type Change = Box<dyn Fn(&mut ConsentTerms)>;

fn terms() -> ConsentTerms {
    ConsentTerms {
        resident: user_resident("phr:asmile", "u-1234"),
        recipient: "clinic:mysos".into(),
        purpose: "online-consultation".into(),
        categories: vec!["checkup.body".into(), "checkup.lipids".into()],
        data_from: None,
        data_until: Some(chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap()),
        valid_from: Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap(),
        valid_until: Some(Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap()),
        aliases: Vec::new(),
        guardian: None,
    }
}

#[test]
fn a_consent_statement_binds_its_terms_and_signer() {
    let pki = TestPki::new();
    let ca = pki.pem("ca");
    let st = ConsentStatement::sign(
        &pki.pem("phr-asmile"),
        &pki.key("phr-asmile"),
        terms(),
        now(),
    )
    .unwrap();
    assert_eq!(st.signer, "phr:asmile");
    assert_eq!(st.verify(&ca, now()).unwrap().to_string(), "phr:asmile");
    assert_eq!(st.id().len(), 64);

    // The hub changes any one term: the signature no longer verifies.
    let changes: Vec<Change> = vec![
        Box::new(|t| t.resident = user_resident("phr:asmile", "u-9999")),
        Box::new(|t| t.recipient = "clinic:evil".into()),
        Box::new(|t| t.purpose = "research".into()),
        Box::new(|t| t.categories.push("checkup.urine".into())),
        Box::new(|t| t.data_until = None),
        Box::new(|t| t.valid_until = None),
        Box::new(|t| t.valid_from = Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap()),
        Box::new(|t| t.aliases = vec![user_resident("phr:kenko", "u-1")]),
        Box::new(|t| t.guardian = Some("parent".into())),
    ];
    for change in &changes {
        let mut forged = st.clone();
        change(&mut forged.terms);
        assert!(forged.verify(&ca, now()).is_err(), "{forged:?}");
        assert_ne!(forged.id(), st.id());
    }
    // It claims another signer, or puts another participant's certificate on it.
    let renamed = ConsentStatement {
        signer: "source:city-a".into(),
        ..st.clone()
    };
    assert!(renamed.verify(&ca, now()).is_err());
    let clinic = ConsentStatement::sign(
        &pki.pem("clinic-mysos"),
        &pki.key("clinic-mysos"),
        terms(),
        now(),
    )
    .unwrap();
    let recert = ConsentStatement {
        certificate: clinic.certificate.clone(),
        ..st.clone()
    };
    assert!(recert.verify(&ca, now()).is_err());
    // A participant of a CA the verifier did not pin signs one.
    let rogue =
        ConsentStatement::sign(&pki.pem("wrong-ca"), &pki.key("wrong-ca"), terms(), now()).unwrap();
    assert!(rogue.verify(&ca, now()).is_err());
    // Dated in the future.
    let later = ConsentStatement::sign(
        &pki.pem("phr-asmile"),
        &pki.key("phr-asmile"),
        terms(),
        now() + chrono::Duration::hours(1),
    )
    .unwrap();
    assert!(later.verify(&ca, now()).is_err());
    assert!(
        later
            .verify(&ca, now() + chrono::Duration::hours(2))
            .is_ok()
    );
}

/// A guardian's consent for a child signs the relationship too (format v2); a statement
/// without one keeps the v1 bytes, so statements signed before keep their ids.
#[test]
fn a_guardians_relationship_is_signed_and_v1_stays_as_it_was() {
    use sha2::{Digest, Sha256};
    let pki = TestPki::new();
    let ca = pki.pem("ca");
    let sign = |t: ConsentTerms| {
        ConsentStatement::sign(&pki.pem("phr-asmile"), &pki.key("phr-asmile"), t, now())
    };
    let plain = sign(terms()).unwrap();
    let v1 = format!(
        "renkei consent statement v1\nphr:asmile\n{}\nclinic:mysos\nonline-consultation\n\
         checkup.body,checkup.lipids\n\n2026-03-31\n2026-05-01T00:00:00Z\n2026-07-01T00:00:00Z\n\n\
         2026-06-01T00:00:00.000000Z\n",
        terms().resident
    );
    assert_eq!(
        plain.id(),
        data_encoding::HEXLOWER.encode(&Sha256::digest(v1.as_bytes()))
    );
    let parent = sign(ConsentTerms {
        guardian: Some("parent".into()),
        ..terms()
    })
    .unwrap();
    assert!(parent.verify(&ca, now()).is_ok());
    assert_ne!(parent.id(), plain.id());
    let v2 = v1.replacen("statement v1", "statement v2", 1).replacen(
        "\n\n2026-06-01",
        "\n\nparent\n2026-06-01",
        1,
    );
    assert_eq!(
        parent.id(),
        data_encoding::HEXLOWER.encode(&Sha256::digest(v2.as_bytes()))
    );
    // The hub drops the relationship, or changes it: the signature no longer verifies.
    for guardian in [None, Some("legal-guardian".to_owned())] {
        let mut forged = parent.clone();
        forged.terms.guardian = guardian;
        assert!(forged.verify(&ca, now()).is_err());
    }
    // Only the known relationships.
    let err = sign(ConsentTerms {
        guardian: Some("neighbour".into()),
        ..terms()
    })
    .unwrap_err();
    assert!(err.to_string().contains("guardian"), "{err}");
}

/// A counter consent names the resident by a salted commitment: the token and the
/// apps' user digests are not in it, the holder of the token (hub, source) and each app
/// for its own user can check it, and two statements for one resident share nothing.
#[test]
fn a_counter_consent_commits_to_the_token_and_aliases() {
    let token = "st1_tetzd4iap44qh2iib3nrwg36yqzk6qhm";
    let other = "st1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let asmile = user_resident("phr:asmile", "u-1");
    let kenko = user_resident("phr:kenko", "k-9");
    let (resident, aliases) = commit_resident(token, &[asmile.clone(), kenko.clone()]);
    let t = ConsentTerms {
        resident: resident.clone(),
        aliases: aliases.clone(),
        ..terms()
    };
    t.check().unwrap();
    let bytes = serde_json::to_string(&t).unwrap();
    for secret in [token, &asmile[5..], &kenko[5..]] {
        assert!(!bytes.contains(secret), "{secret} is in {bytes}");
    }
    assert!(t.names_token(token) && !t.names_token(other));
    assert!(t.names_alias(&asmile) && t.names_alias(&kenko));
    assert!(!t.names_alias(&user_resident("phr:asmile", "u-2")));
    // Another statement for the same resident: other salt, no value in common.
    let (again, again_aliases) = commit_resident(token, std::slice::from_ref(&asmile));
    assert_ne!(again, resident);
    assert!(again_aliases.iter().all(|a| !aliases.contains(a)));
    // Plain aliases beside a commitment, or a malformed commitment, are refused.
    let mixed = ConsentTerms {
        aliases: vec![asmile.clone()],
        ..t.clone()
    };
    assert!(mixed.check().is_err());
    let cut = ConsentTerms {
        resident: resident[..resident.len() - 1].to_owned(),
        ..t.clone()
    };
    assert!(cut.check().is_err());
    // A statement from before commitments names the token and its digests plainly.
    let plain = ConsentTerms {
        resident: token.into(),
        aliases: vec![asmile.clone()],
        ..terms()
    };
    plain.check().unwrap();
    assert!(plain.names_token(token) && plain.names_alias(&asmile));
}

#[test]
fn consent_terms_say_what_they_cover() {
    let t = terms();
    let day = |m, d| chrono::NaiveDate::from_ymd_opt(2026, m, d).unwrap();
    let at = |m, d| Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap();
    assert!(t.covers("checkup.lipids", day(3, 1), at(6, 1)).is_ok());
    assert!(t.covers("checkup.urine", day(3, 1), at(6, 1)).is_err());
    assert!(
        t.covers("checkup.lipids", day(4, 1), at(6, 1)).is_err(),
        "after the data period"
    );
    assert!(
        t.covers("checkup.lipids", day(3, 1), at(4, 30)).is_err(),
        "not valid yet"
    );
    assert!(
        t.covers("checkup.lipids", day(3, 1), at(7, 1)).is_err(),
        "expired"
    );

    let bad: Vec<Change> = vec![
        Box::new(|t| t.resident = "someone".into()),
        Box::new(|t| t.resident = "user:".into()),
        Box::new(|t| t.resident = "user:u-1234".into()),
        Box::new(|t| t.recipient = "nobody".into()),
        Box::new(|t| t.categories.clear()),
        Box::new(|t| t.categories.reverse()),
        Box::new(|t| t.categories.push("checkup.z,checkup.y".into())),
        Box::new(|t| t.purpose = "a\nb".into()),
        Box::new(|t| t.data_from = Some(chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap())),
        Box::new(|t| t.valid_until = Some(t.valid_from)),
        Box::new(|t| t.valid_from += chrono::Duration::milliseconds(5)),
        Box::new(|t| t.aliases = vec!["user:u-1".into()]),
        Box::new(|t| {
            t.aliases = vec![user_resident("phr:b", "1"), user_resident("phr:a", "1")];
            t.aliases.sort();
            t.aliases.reverse();
        }),
    ];
    for change in &bad {
        let mut t = terms();
        change(&mut t);
        assert!(t.check().is_err(), "{t:?}");
    }
    let mut counter = terms();
    counter.resident = "st1_abcdefghijklmnopqrstuvwxyz234567".into();
    assert!(counter.check().is_ok());
}

#[test]
fn a_revocation_list_is_bound_to_its_signer_and_ids() {
    let pki = TestPki::new();
    let ca = pki.pem("ca");
    let st = ConsentStatement::sign(
        &pki.pem("phr-asmile"),
        &pki.key("phr-asmile"),
        terms(),
        now(),
    )
    .unwrap();
    let other = "f".repeat(64);
    let list = RevocationList::sign(
        &pki.pem("phr-asmile"),
        &pki.key("phr-asmile"),
        vec![other.clone(), st.id(), st.id()],
        now(),
    )
    .unwrap();
    assert_eq!(list.revoked.len(), 2, "sorted and deduplicated");
    assert_eq!(list.verify(&ca, now()).unwrap().to_string(), "phr:asmile");
    assert!(list.names(&st.id()) && list.names(&other) && !list.names(&"0".repeat(64)));
    // Dropping a revoked id, adding one, or moving the list in time breaks the signature.
    let dropped = RevocationList {
        revoked: vec![other.clone()],
        ..list.clone()
    };
    assert!(dropped.verify(&ca, now()).is_err());
    let mut more = list.revoked.clone();
    more.insert(0, "0".repeat(64));
    assert!(
        RevocationList {
            revoked: more,
            ..list.clone()
        }
        .verify(&ca, now())
        .is_err()
    );
    let older = RevocationList {
        issued_at: now() - chrono::Duration::hours(1),
        ..list.clone()
    };
    assert!(older.verify(&ca, now()).is_err());
    // Ids that are not statement ids, unsorted ids, a list from the future: refused.
    for bad in [vec!["not-an-id".to_owned()], vec![other.clone(), st.id()]] {
        let l = RevocationList {
            revoked: bad,
            ..list.clone()
        };
        assert!(
            l.verify(&ca, now())
                .unwrap_err()
                .to_string()
                .contains("sorted")
        );
    }
    let early = now() - chrono::Duration::hours(1);
    assert!(
        list.verify(&ca, early)
            .unwrap_err()
            .to_string()
            .contains("future")
    );
    // Another participant's certificate cannot sign for the app.
    let forged = RevocationList::sign(
        &pki.pem("clinic-mysos"),
        &pki.key("clinic-mysos"),
        Vec::new(),
        now(),
    )
    .unwrap();
    let claimed = RevocationList {
        signer: "phr:asmile".into(),
        ..forged
    };
    assert!(claimed.verify(&ca, now()).is_err());
}
