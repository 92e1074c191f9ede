//! Fuzzing the API's JSON bodies (the short CI run): every POST/PUT endpoint gets
//! arbitrary JSON values, structurally mutated valid bodies and byte-mutated body
//! text, as every participant kind. The hub never answers 5xx and every error has
//! the `{"error":{"code","message"}}` shape. Cases come from a seeded generator so
//! every run tries the same ones (this crate has no proptest).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use renkei_hub::server::PeerIdentity;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::harness::{Backend, SUBJECT, TestHub, d};

/// Bodies tried per endpoint and caller kind, in each of the three modes.
const CASES: usize = 6;

/// The registered callers, one per kind (two PHR apps).
const CALLERS: [&str; 6] = [
    "source:city-a",
    "phr:asmile",
    "phr:other",
    "clinic:mysos",
    "analyst:hachioji",
    "municipality:city-a",
];

/// SplitMix64: a tiny seeded generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Strings that probe parsers, validators and SQL.
fn string(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => String::new(),
        1 => "x".repeat(1 + rng.below(70_000)),
        2 => SUBJECT.to_owned(),
        3 => "rp1_abcdefghijklmnopqrstuvwxyz234567".to_owned(),
        4 => "rec1_abcdefghijklmnopqrstuvwxyz234567".to_owned(),
        5 => rng.pick(&CALLERS).to_string(),
        6 => rng
            .pick(&[
                "' OR '1'='1",
                "\"; DROP TABLE hub_records; --",
                "\u{0}",
                "\u{202e}",
                "%00",
                "../../etc/passwd",
            ])
            .to_string(),
        7 => rng
            .pick(&[
                "AAAA",
                "====",
                "A",
                "not base64!",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ])
            .to_string(),
        8 => rng
            .pick(&[
                "2026-06-01",
                "2026-02-30",
                "2026-06-01T00:00:00Z",
                "9999-99-99T99:99:99Z",
                "-1",
            ])
            .to_string(),
        9 => rng
            .pick(&[
                "phr-display",
                "checkup.lipids",
                "app",
                "web",
                "counter",
                "linked",
                "rejected",
            ])
            .to_string(),
        10 => (0..rng.below(24))
            .map(|_| char::from_u32(rng.below(0x3_0000) as u32).unwrap_or('\u{fffd}'))
            .collect(),
        _ => format!(
            "{}:{}",
            rng.pick(&["source", "phr", "clinic", "x", ""]),
            rng.below(1000)
        ),
    }
}

/// An arbitrary JSON value, at most `depth` levels deep.
fn arbitrary(rng: &mut Rng, depth: usize) -> Value {
    let leaf = depth == 0;
    match rng.below(if leaf { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => match rng.below(5) {
            0 => json!(i64::MIN),
            1 => json!(u64::MAX),
            2 => json!(1e308),
            3 => json!(-0.5),
            _ => json!(rng.below(1 << 40) as i64 - (1 << 39)),
        },
        3 | 4 => Value::String(string(rng)),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| arbitrary(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut map = Map::new();
            for _ in 0..rng.below(5) {
                let key = if rng.below(2) == 0 {
                    rng.pick(&KEYS).to_string()
                } else {
                    string(rng)
                };
                map.insert(key, arbitrary(rng, depth - 1));
            }
            Value::Object(map)
        }
    }
}

/// Field names the bodies use, so arbitrary objects hit real fields too.
const KEYS: [&str; 20] = [
    "records",
    "sealed",
    "subject",
    "recipient",
    "purpose",
    "categories",
    "data_period",
    "from",
    "until",
    "valid_from",
    "valid_until",
    "method",
    "evidence",
    "granted_by",
    "reason",
    "source",
    "user_ref",
    "deleted",
    "grants",
    "outcome",
];

/// One structural edit somewhere inside `v`.
fn mutate(rng: &mut Rng, v: &mut Value) {
    let descend = rng.below(3) != 0;
    match v {
        Value::Object(map) if !map.is_empty() && descend => {
            let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
            mutate(rng, map.get_mut(&key).unwrap());
        }
        Value::Array(items) if !items.is_empty() && descend => {
            let i = rng.below(items.len());
            mutate(rng, &mut items[i]);
        }
        Value::Object(map) if !map.is_empty() && rng.below(3) == 0 => {
            let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
            map.remove(&key);
        }
        Value::Object(map) if rng.below(3) == 0 => {
            map.insert(rng.pick(&KEYS).to_string(), arbitrary(rng, 2));
        }
        Value::Array(items) if rng.below(3) == 0 => {
            let copy = items.first().cloned().unwrap_or(Value::Null);
            items.extend(std::iter::repeat_n(copy, 1 + rng.below(8)));
        }
        // A leaf: usually a value of the same type (so the body still deserializes and
        // reaches validation), sometimes anything.
        Value::String(s) if rng.below(3) != 0 => *s = string(rng),
        Value::Bool(b) if rng.below(3) != 0 => *b = !*b,
        other => {
            *other = match rng.below(4) {
                // Deeper than serde_json's recursion limit.
                0 => (0..200).fold(Value::Null, |inner, _| json!([inner])),
                1 => Value::String(string(rng)),
                _ => arbitrary(rng, 3),
            }
        }
    }
}

/// One byte-level edit of a body's text: truncate, delete, duplicate or insert.
fn mutate_text(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let len = bytes.len().max(1);
    match rng.below(4) {
        0 => bytes.truncate(rng.below(len)),
        1 => {
            let at = rng.below(len).min(bytes.len());
            let end = (at + 1 + rng.below(8)).min(bytes.len());
            bytes.drain(at..end);
        }
        2 => {
            let at = rng.below(len).min(bytes.len());
            let end = (at + 1 + rng.below(32)).min(bytes.len());
            let chunk = bytes[at..end].to_vec();
            bytes.splice(at..at, chunk);
        }
        _ => {
            const TOKENS: [&[u8]; 13] = [
                b"{",
                b"}",
                b"[",
                b"]",
                b"\"",
                b",",
                b":",
                b"\\u0000",
                b"\\ud800",
                b"\xff",
                b"1e999999",
                b"null",
                b"\"deleted\":true,",
            ];
            let token = rng.pick(&TOKENS);
            let at = rng.below(len + 1).min(bytes.len());
            bytes.splice(at..at, token.iter().copied());
        }
    }
}

/// Calls the router with raw body bytes and a content type; returns the status and body.
async fn raw(
    h: &TestHub,
    who: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
    content_type: &str,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut()
        .insert(PeerIdentity::Participant(who.parse().unwrap()));
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, bytes)
}

/// The properties: no 5xx; an error body is `{"error":{"code","message"}}`; a success body is JSON.
fn check(what: &str, status: StatusCode, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    let shown: String = text.chars().take(300).collect();
    assert!(!status.is_server_error(), "{what}: {status} {shown}");
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: {status} body is not JSON ({e}): {shown}"));
    if !status.is_success() {
        let code = v["error"]["code"].as_str();
        let message = v["error"]["message"].as_str();
        assert!(
            code.is_some_and(|c| !c.is_empty()) && message.is_some_and(|m| !m.is_empty()),
            "{what}: {status} error body is not {{\"error\":{{\"code\",\"message\"}}}}: {shown}"
        );
    }
}

/// The endpoints, each with a path and a valid body for its usual caller.
struct Endpoint {
    method: &'static str,
    path: String,
    valid: Value,
}

async fn endpoints(h: &TestHub) -> Vec<Endpoint> {
    let record = h.sealed(
        "doc-1",
        SUBJECT,
        "checkup.lipids",
        d(2026, 5, 1),
        b"{\"ldl\":120}",
    );
    assert_eq!(h.upload(&[&record]).await.0, StatusCode::OK);
    let pseudonym = h.enroll("phr:asmile", SUBJECT).await;
    let consent = json!({
        "subject": pseudonym, "recipient": "phr:asmile", "purpose": "phr-display",
        "categories": ["checkup.lipids"], "data_period": {"from": "2020-01-01", "until": "2030-12-31"},
        "method": "app", "granted_by": "resident", "evidence": "sha256:00"
    });
    let (st, v) = h
        .call(
            Some("phr:asmile"),
            "POST",
            "/v1/consents",
            Some(consent.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let consent_id = v["consent"]["id"].as_str().unwrap().to_owned();
    // A second consent revoked at once leaves an event to acknowledge.
    let mut second = consent.clone();
    second["categories"] = json!(["checkup.body"]);
    let (_, v) = h
        .call(Some("phr:asmile"), "POST", "/v1/consents", Some(second))
        .await;
    let revoked = v["consent"]["id"].as_str().unwrap().to_owned();
    let (st, _) = h
        .call(
            Some("phr:asmile"),
            "POST",
            &format!("/v1/consents/{revoked}/revoke"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = h.call(Some("phr:asmile"), "GET", "/v1/events", None).await;
    let event_id = v["events"][0]["id"].as_i64().unwrap();
    let sealed = data_encoding::BASE64.encode(b"sealed identifiers");
    let (st, v) = h
        .call(
            Some("phr:other"),
            "POST",
            "/v1/enrollments",
            Some(json!({"source": "source:city-a", "user_ref": "u-2", "sealed": sealed})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let enrollment_id = v["id"].as_str().unwrap().to_owned();
    let key = data_encoding::BASE64.encode(&[9u8; 32]);
    let sealed_record = data_encoding::BASE64.encode(&record.0.to_bytes());
    vec![
        Endpoint {
            method: "POST",
            path: "/v1/records".into(),
            valid: json!({"records": [{"sealed": sealed_record, "subject": SUBJECT}]}),
        },
        Endpoint {
            method: "POST",
            path: "/v1/consents".into(),
            valid: consent,
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/consents/{consent_id}/revoke"),
            valid: json!({"reason": "changed my mind"}),
        },
        Endpoint {
            method: "POST",
            path: "/v1/enrollments".into(),
            valid: json!({"source": "source:city-a", "user_ref": "u-1", "sealed": sealed}),
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/events/{event_id}/ack"),
            valid: json!({"deleted": true}),
        },
        Endpoint {
            method: "POST",
            path: "/v1/source/key-grants".into(),
            valid: json!({"grants": [{"record_id": record.0.header().record_id.as_str(), "recipient": "phr:asmile", "grant": data_encoding::BASE64.encode(&[7u8; 80]), "sealed": data_encoding::BASE64.encode(&record.0.to_bytes())}]}),
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/source/enrollments/{enrollment_id}/result"),
            valid: json!({"outcome": "linked", "subject_token": SUBJECT}),
        },
        Endpoint {
            method: "PUT",
            path: "/v1/participants/{self}/keys".into(),
            valid: json!({"grant_key": key, "enrollment_key": key}),
        },
    ]
}

/// The endpoint's path for `caller`: its own key path for the PUT; sometimes an odd id.
fn path_for(rng: &mut Rng, e: &Endpoint, caller: &str) -> String {
    let own = caller.replacen(':', "/", 1);
    let path = e.path.replace("{self}", &own);
    if rng.below(4) != 0
        || e.path == "/v1/consents"
        || e.path == "/v1/records"
        || e.path == "/v1/enrollments"
        || e.path == "/v1/source/key-grants"
    {
        return path;
    }
    let odd: String = string(rng)
        .bytes()
        .take(200)
        .map(|b| format!("%{b:02X}"))
        .collect();
    let odd = if odd.is_empty() { "-1".to_owned() } else { odd };
    let parts: Vec<&str> = path.split('/').collect();
    // /v1/<a>/<id>/<verb> or /v1/participants/<kind>/<id>/keys: replace the id.
    let i = if e.path.contains("{self}") {
        4
    } else {
        parts.len() - 2
    };
    parts
        .iter()
        .enumerate()
        .map(|(j, p)| if j == i { odd.as_str() } else { p })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_never_cause_5xx_and_errors_have_one_shape() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let endpoints = endpoints(&h).await;
    let mut rng = Rng(0xB0D1E5);
    let (mut calls, mut ok, mut errors) = (0usize, 0usize, 0usize);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for e in &endpoints {
        for caller in CALLERS {
            for case in 0..CASES * 3 {
                let path = path_for(&mut rng, e, caller);
                let (body, content_type) = match case % 3 {
                    0 => (
                        arbitrary(&mut rng, 4).to_string().into_bytes(),
                        "application/json",
                    ),
                    1 => {
                        let mut v = e.valid.clone();
                        for _ in 0..=rng.below(2) {
                            mutate(&mut rng, &mut v);
                        }
                        (v.to_string().into_bytes(), "application/json")
                    }
                    _ => {
                        let mut bytes = e.valid.to_string().into_bytes();
                        for _ in 0..=rng.below(3) {
                            mutate_text(&mut rng, &mut bytes);
                        }
                        let ct = *rng.pick(&[
                            "application/json",
                            "application/json; charset=utf-8",
                            "text/plain",
                            "application/x-www-form-urlencoded",
                        ]);
                        (bytes, ct)
                    }
                };
                let (status, resp) = raw(&h, caller, e.method, &path, body, content_type).await;
                check(
                    &format!("{caller} {} {path} (case {case})", e.method),
                    status,
                    &resp,
                );
                calls += 1;
                *statuses.entry(status.as_u16()).or_default() += 1;
                if status.is_success() {
                    ok += 1
                } else {
                    errors += 1
                }
            }
        }
    }
    eprintln!(
        "fuzzed bodies: {calls} calls, {ok} accepted, {errors} refused; statuses {statuses:?}"
    );
    assert_eq!(calls, endpoints.len() * CALLERS.len() * CASES * 3);
    assert!(
        errors > calls / 2,
        "most fuzzed bodies must be refused: {ok} accepted of {calls}"
    );
    // The unmutated valid bodies still work for their usual callers: the cases above
    // exercised endpoints that accept bodies, not only the JSON parser.
    let mut accepted = 0;
    for (e, caller) in endpoints.iter().zip([
        "source:city-a",
        "phr:asmile",
        "phr:asmile",
        "phr:asmile",
        "phr:asmile",
        "source:city-a",
        "source:city-a",
        "phr:asmile",
    ]) {
        let path = e.path.replace("{self}", &caller.replacen(':', "/", 1));
        let valid = if e.method == "PUT" {
            json!({"grant_key": e.valid["grant_key"]})
        } else {
            e.valid.clone()
        };
        let (status, resp) = raw(
            &h,
            caller,
            e.method,
            &path,
            valid.to_string().into_bytes(),
            "application/json",
        )
        .await;
        check(
            &format!("{caller} {} {path} (valid)", e.method),
            status,
            &resp,
        );
        accepted += usize::from(status.is_success());
    }
    assert!(
        accepted >= 3,
        "only {accepted} valid bodies were accepted after fuzzing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_regressions() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<&[u8]> = vec![
        b"",
        b"{",
        b"\xff\xfe",
        b"{\"records\": [{\"sealed\": \"AAAA\", \"subject\": \"\\ud800\"}]}",
        b"{\"records\": [], \"records\": []}",
        b"{\"records\": 1e999999}",
        deep.as_bytes(),
    ];
    for body in bodies {
        for path in [
            "/v1/records",
            "/v1/consents",
            "/v1/enrollments",
            "/v1/source/key-grants",
        ] {
            let (status, resp) = raw(
                &h,
                "source:city-a",
                "POST",
                path,
                body.to_vec(),
                "application/json",
            )
            .await;
            check(
                &format!(
                    "{path} {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                ),
                status,
                &resp,
            );
            assert!(status.is_client_error(), "{path}: {status}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_source_in_an_enrollment_is_not_echoed() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let sealed = data_encoding::BASE64.encode(b"sealed identifiers");
    for source in [
        format!("source:{}", "a".repeat(500_000)),
        format!("{}:{}", "x".repeat(100_000), "y"),
        "source:not-registered".to_owned(),
    ] {
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "POST",
                "/v1/enrollments",
                Some(json!({"source": source, "user_ref": "u-1", "sealed": sealed})),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v.to_string().len() < 600,
            "echoed {} bytes",
            v.to_string().len()
        );
    }
}
