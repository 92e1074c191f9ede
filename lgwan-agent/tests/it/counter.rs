//! The counter path without a hub: the grant body carries the subject token and
//! the terms, never the identifiers typed by staff; bad terms fail before sending.

use lgwan_agent::counter::{CounterTerms, grant_body};
use renkei_client::api::Method;
use renkei_crypto::identity::{Identity, Sex};

use crate::preview::agent;

fn person() -> Identity {
    Identity {
        insurer_number: "06131186".into(),
        symbol: "１０６－４７".into(),
        number: "９７８７５６０".into(),
        birth_date: "1963-01-03".into(),
        sex: Sex::Female,
        branch: Some("02".into()),
    }
}

#[test]
fn grant_body_sends_only_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir.path().join("agent"));
    let categories = vec!["checkup.lipids".to_owned(), "checkup.glucose".to_owned()];
    let terms = CounterTerms {
        recipient: "clinic:mysos",
        purpose: "online-consultation",
        categories: &categories,
        valid_until: None,
        staff: "staff-0042",
    };
    let body = grant_body(&agent, &person(), &terms).unwrap();
    let (token, _) = agent.tokenize_identity(&person()).unwrap();
    assert_eq!(body.subject, token.as_str());
    assert_eq!(body.method, Method::Counter);
    assert_eq!(body.granted_by, "staff-0042");
    let json = serde_json::to_string(&body).unwrap();
    for secret in ["06131186", "9787560", "106-47", "１０６", "1963", "02\""] {
        assert!(!json.contains(secret), "`{secret}` leaked: {json}");
    }

    let unknown = vec!["checkup.everything".to_owned()];
    let e = grant_body(
        &agent,
        &person(),
        &CounterTerms {
            categories: &unknown,
            ..terms.clone()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`checkup.everything`") && e.contains("catalog"),
        "{e}"
    );
    let e = grant_body(
        &agent,
        &person(),
        &CounterTerms {
            staff: "a b",
            ..terms.clone()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("staff id"), "{e}");
    let e = grant_body(
        &agent,
        &person(),
        &CounterTerms {
            recipient: "mysos",
            ..terms.clone()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("recipient"), "{e}");
    let bad_person = Identity {
        birth_date: "1963-02-30".into(),
        ..person()
    };
    assert!(grant_body(&agent, &bad_person, &terms).is_err());
}
