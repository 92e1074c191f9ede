//! Key statements: signed with the participant's certificate key, checked against the
//! pinned CA; the hub (or anyone without that key) cannot make or alter one.

use chrono::{TimeZone, Utc};
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
