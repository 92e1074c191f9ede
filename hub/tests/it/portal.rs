//! The resident portal through its router: CSRF, code lookup, history, revoke, lockout.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use renkei_hub::portal::{CSRF_COOKIE, PortalLimits, router};
use serde_json::json;
use tower::ServiceExt;

use crate::harness::{Backend, SUBJECT, TestHub, both, d};

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    (status, body, cookie)
}

/// The portal's router over `h`, locking a client out after `max_failures` wrong codes
/// for 900 s.
fn portal(h: &TestHub, max_failures: u32) -> axum::Router {
    router(
        h.hub.clone(),
        PortalLimits {
            max_failures,
            lockout_secs: 900,
        },
    )
}

/// A counter consent for `SUBJECT` to phr:asmile: its revocation code and id.
async fn counter_consent(h: &TestHub) -> (String, String) {
    let (_, v) = h.call(Some("source:city-a"), "POST", "/v1/consents", Some(json!({"subject": SUBJECT, "recipient": "phr:asmile", "purpose": "phr-display", "categories": ["checkup.lipids"], "method": "counter", "granted_by": "staff-1"}))).await;
    let code = v["receipt"]["revocation_code"].as_str().unwrap().to_owned();
    let id = v["consent"]["id"].as_str().unwrap().to_owned();
    (code, id)
}

/// Posts `form` to `path` as a same-site browser would (the same token in the cookie and
/// the form).
async fn submit(
    app: &axum::Router,
    path: &str,
    form: &str,
) -> (StatusCode, String, Option<String>) {
    let tok = "a".repeat(64);
    send(app, post(path, &tok, Some(&tok), form, None)).await
}

fn token_of(cookie: &str) -> String {
    cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches(CSRF_COOKIE)
        .trim_start_matches('=')
        .to_owned()
}

fn post(
    path: &str,
    token: &str,
    cookie_token: Option<&str>,
    form: &str,
    origin: Option<&str>,
) -> Request<Body> {
    let mut r = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "hub.example");
    if let Some(c) = cookie_token {
        r = r.header("cookie", format!("{CSRF_COOKIE}={c}"));
    }
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    r.body(Body::from(format!("csrf={token}&{form}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_sees_history_and_revokes_with_the_receipt_code() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    let ps = h.register_all().await;
    let r = h.sealed(
        "doc-1",
        SUBJECT,
        "checkup.lipids",
        d(2026, 5, 1),
        b"{\"x\":1}",
    );
    h.upload(&[&r]).await;
    let p = h.enroll("phr:asmile", SUBJECT).await;
    let (_, v) = h.call(Some("phr:asmile"), "POST", "/v1/consents", Some(json!({"subject": p, "recipient": "phr:asmile", "purpose": "phr-display", "categories": ["checkup.lipids"], "method": "app", "granted_by": "resident"}))).await;
    let code = v["receipt"]["revocation_code"].as_str().unwrap().to_owned();
    h.answer_grants().await;
    assert_eq!(h.pull(&ps[1]).await.len(), 1);

    let app = portal(&h, 3);
    let (st, body, cookie) = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("lang=\"ja\"") && body.contains("撤回コード"),
        "Japanese first"
    );
    let cookie = cookie.expect("csrf cookie");
    assert!(cookie.contains("SameSite=Strict") && cookie.contains("HttpOnly"));
    assert!(
        cookie.starts_with("__Host-renkei_csrf=")
            && cookie.contains("Path=/")
            && cookie.contains("Secure")
            && !cookie.contains("Domain"),
        "a cookie a sibling subdomain could plant: {cookie}"
    );
    let tok = token_of(&cookie);
    let form = format!("code={}", code.to_lowercase());
    // A token under a name without the `__Host-` prefix (what a sibling subdomain could
    // set) is not the portal's cookie.
    let planted = Request::post("/view")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "hub.example")
        .header("cookie", format!("renkei_csrf={tok}"))
        .body(Body::from(format!("csrf={tok}&{form}")))
        .unwrap();
    assert_eq!(send(&app, planted).await.0, StatusCode::FORBIDDEN);

    // Without the cookie, or from another site: refused.
    assert_eq!(
        send(&app, post("/view", &tok, None, &form, None)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(
            &app,
            post(
                "/view",
                &tok,
                Some(&tok),
                &form,
                Some("https://evil.example")
            )
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );

    // The right code (typed in lower case) shows the consent and who read what.
    let (st, body, _) = send(
        &app,
        post(
            "/view",
            &tok,
            Some(&tok),
            &form,
            Some("https://hub.example"),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body.contains("phr:asmile") && body.contains("脂質") && body.contains("有効"),
        "{body}"
    );
    assert!(
        body.contains("id=\"history\"") && body.matches(">phr:asmile</td>").count() >= 2,
        "the read is in the history: {body}"
    );

    // English is available.
    let (_, body, _) = send(&app, post("/view?lang=en", &tok, Some(&tok), &form, None)).await;
    assert!(body.contains("Who read your data"));

    // Revoke asks first, saying what stops; nothing is revoked yet.
    let (st, body, _) = send(
        &app,
        post(
            "/revoke",
            &tok,
            Some(&tok),
            &format!("{form}&reason=moving"),
            None,
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("id=\"confirm-what\"")
            && body.contains("脂質")
            && !body.contains("id=\"revoked\""),
        "{body}"
    );
    assert!(
        !h.pull(&ps[1]).await.is_empty(),
        "revoked before the resident confirmed"
    );
    // Confirmed: the vendor's next read is denied, and the code is spent.
    let (st, body, _) = send(
        &app,
        post(
            "/revoke",
            &tok,
            Some(&tok),
            &format!("{form}&reason=moving&confirm=yes"),
            None,
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("id=\"revoked\""), "{body}");
    assert!(h.pull(&ps[1]).await.is_empty());
    let (_, body, _) = send(&app, post("/view", &tok, Some(&tok), &form, None)).await;
    assert!(body.contains("id=\"error\""), "a used code no longer works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_lock_the_client_out_with_one_message() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let (code, _) = counter_consent(&h).await;
    let app = portal(&h, 3);
    let tok = "a".repeat(64);
    let unknown = send(
        &app,
        post(
            "/view",
            &tok,
            Some(&tok),
            "code=0000-0000-0000-0000-0000-0000-0000-0000",
            None,
        ),
    )
    .await;
    let malformed = send(&app, post("/view", &tok, Some(&tok), "code=hello", None)).await;
    assert_eq!(unknown.0, StatusCode::OK);
    let msg = |b: &str| {
        b.split("id=\"error\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        msg(&unknown.1),
        msg(&malformed.1),
        "unknown and malformed codes get the same message"
    );
    let third = send(
        &app,
        post(
            "/view",
            &tok,
            Some(&tok),
            "code=1111-1111-1111-1111-1111-1111-1111-1111",
            None,
        ),
    )
    .await;
    assert_eq!(third.0, StatusCode::TOO_MANY_REQUESTS);
    // Locked out: even the right code is refused now.
    let right = send(
        &app,
        post("/view", &tok, Some(&tok), &format!("code={code}"), None),
    )
    .await;
    assert_eq!(right.0, StatusCode::TOO_MANY_REQUESTS);
    assert!(!right.1.contains("phr:asmile"));
}

// Wrong codes count within the lockout window: typos months apart never lock a client
// out, and clients with nothing in the window are forgotten.
both!(
    wrong_codes_are_forgotten_after_the_window,
    |h: TestHub| async move {
        h.register_all().await;
        let app = portal(&h, 3);
        let wrong = |n: u32| format!("code={n:04}-0000-0000-0000-0000-0000-0000-0000");
        let t = h.hub.now();
        for day in 0..6 {
            h.clock.set(t + chrono::Duration::days(day));
            for n in 0..2 {
                let (st, body, _) = submit(&app, "/view", &wrong(n)).await;
                assert_eq!(
                    st,
                    StatusCode::OK,
                    "day {day}: locked out by old failures: {body}"
                );
            }
        }
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hub_portal_attempts")
            .fetch_one(h.hub.db.pool())
            .await
            .unwrap();
        assert_eq!(rows, 1, "one client, one row");
        // Within one window the third failure still locks the client out.
        let (st, _, _) = submit(&app, "/view", &wrong(3)).await;
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
        // Another address's row is deleted once its window has passed.
        sqlx::query(
            "INSERT INTO hub_portal_attempts (client, failures, locked_until, updated_at) \
         VALUES ('another address', 2, 0, $1)",
        )
        .bind(renkei_hub::db::micros(t + chrono::Duration::days(5)))
        .execute(h.hub.db.pool())
        .await
        .unwrap();
        h.clock.set(t + chrono::Duration::days(30));
        let (st, _, _) = submit(&app, "/view", &wrong(4)).await;
        assert_eq!(st, StatusCode::OK, "the lockout has ended");
        let clients: Vec<(String, i64)> =
            sqlx::query_as("SELECT client, failures FROM hub_portal_attempts")
                .fetch_all(h.hub.db.pool())
                .await
                .unwrap();
        assert_eq!(clients.len(), 1, "old rows kept: {clients:?}");
        assert_eq!(clients.first().map(|c| c.1), Some(1), "{clients:?}");
    }
);

// The right code for a consent the app already ended: the portal says so, offers no
// revoke button, and does not count it as a wrong code (the resident is not locked out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_for_an_ended_consent_says_so_and_counts_no_failure() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let p = h.enroll("phr:asmile", SUBJECT).await;
    let (_, v) = h.call(Some("phr:asmile"), "POST", "/v1/consents", Some(json!({"subject": p, "recipient": "phr:asmile", "purpose": "phr-display", "categories": ["checkup.lipids"], "method": "app", "granted_by": "resident"}))).await;
    let code = v["receipt"]["revocation_code"].as_str().unwrap().to_owned();
    let id = v["consent"]["id"].as_str().unwrap().to_owned();
    let (st, v) = h
        .call(
            Some("phr:asmile"),
            "POST",
            &format!("/v1/consents/{id}/revoke"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let app = portal(&h, 2);
    let form = format!("code={code}");
    let (st, body, _) = submit(&app, "/view", &form).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body.contains("撤回済み")
            && body.contains("id=\"ended\"")
            && !body.contains("id=\"revoke\""),
        "an ended consent offers no revoke button: {body}"
    );
    for confirm in ["", "&confirm=yes", "&confirm=yes"] {
        let (st, body, _) = submit(&app, "/revoke", &format!("{form}{confirm}")).await;
        assert_eq!(st, StatusCode::CONFLICT, "{body}");
        assert!(
            body.contains("id=\"ended\"") && !body.contains("id=\"error\""),
            "{body}"
        );
    }
    let (st, body, _) = submit(&app, "/view", &form).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "counted as wrong codes and locked out: {body}"
    );
}

// The reason typed on the portal is stored with control and direction characters
// escaped, as every participant's reason is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reason_from_the_portal_cannot_forge_lines() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let (code, id) = counter_consent(&h).await;
    let app = portal(&h, 3);
    // ESC [31m, a line feed, and a right-to-left override, form-encoded.
    let reason = "x%1B%5B31mRED%0AFAKE+LOG+LINE%E2%80%AEevil";
    let (st, body, _) = submit(
        &app,
        "/revoke",
        &format!("code={code}&reason={reason}&confirm=yes"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let consent = renkei_consent::ConsentStore::get(&h.hub.consents, &id)
        .await
        .unwrap()
        .unwrap();
    let stored = consent.revocation.unwrap().reason;
    assert!(
        !stored.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "stored as typed: {stored:?}"
    );
    assert!(
        stored.contains("\\u{1b}[31mRED\\u{a}FAKE LOG LINE\\u{202e}evil"),
        "{stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_origin_rules() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let app = portal(&h, 100);
    let tok = "b".repeat(64);
    let form = "code=0000-0000-0000-0000-0000-0000-0000-0000";
    let with = |origin: Option<&str>, site: Option<&str>| {
        let mut r = post("/view", &tok, Some(&tok), form, origin);
        if let Some(s) = site {
            r.headers_mut().insert("sec-fetch-site", s.parse().unwrap());
        }
        r
    };
    // A real browser on this page: same-origin, or Origin hidden as `null` but same-origin.
    assert_eq!(
        send(&app, with(Some("https://hub.example"), Some("same-origin")))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, with(Some("null"), Some("same-origin"))).await.0,
        StatusCode::OK
    );
    // Another site: refused whatever else it sends.
    assert_eq!(
        send(&app, with(Some("null"), Some("cross-site"))).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, with(Some("null"), None)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, with(None, Some("cross-site"))).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(
            &app,
            with(Some("https://evil.example"), Some("same-origin"))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
}

/// A receipt code opens its own consent and the reads under it, nothing else about the
/// resident: the app that took the consent holds the code too. The reads are summarized
/// per recipient and category and paged, so volume cannot hide a read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_code_opens_only_its_own_consent() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    let ps = h.register_all().await;
    let r = h.sealed(
        "doc-1",
        SUBJECT,
        "checkup.lipids",
        d(2026, 5, 1),
        b"{\"x\":1}",
    );
    h.upload(&[&r]).await;
    let p = h.enroll("phr:asmile", SUBJECT).await;
    let (_, v) = h.call(Some("phr:asmile"), "POST", "/v1/consents", Some(json!({"subject": p, "recipient": "phr:asmile", "purpose": "phr-display", "categories": ["checkup.lipids"], "method": "app", "granted_by": "resident"}))).await;
    let code = v["receipt"]["revocation_code"].as_str().unwrap().to_owned();
    h.call(Some("source:city-a"), "POST", "/v1/consents", Some(json!({"subject": SUBJECT, "recipient": "clinic:mysos", "purpose": "online-consultation", "categories": ["checkup.lipids"], "method": "counter", "granted_by": "staff-1", "valid_until": (crate::harness::t0() + chrono::Duration::hours(48)).to_rfc3339()}))).await;
    h.answer_grants().await;
    assert_eq!(h.pull(&ps[3]).await.len(), 1, "the clinic read once");
    let rid = v["consent"]["id"].as_str().unwrap().to_owned();
    let record = {
        let (_, f) = h.call(Some("phr:asmile"), "GET", "/v1/feed", None).await;
        f["items"][0]["record_id"].as_str().unwrap().to_owned()
    };
    // The app read it once from the feed, then reads it 60 times more: two pages.
    for _ in 0..60 {
        let (st, _) = h
            .call(
                Some("phr:asmile"),
                "GET",
                &format!("/v1/records/{record}"),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    let app = portal(&h, 3);
    let tok = "c".repeat(64);
    let form = format!("code={code}");
    let (st, body, _) = send(&app, post("/view", &tok, Some(&tok), &form, None)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        !body.contains("clinic:mysos"),
        "the code showed another recipient's consent or reads: {body}"
    );
    assert!(
        !body.contains("オンライン診療") && !body.contains("online-consultation"),
        "{body}"
    );
    let summary = body
        .split("id=\"summary\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert!(
        summary.contains(">phr:asmile</td>") && summary.contains(">61</td>"),
        "{summary}"
    );
    let history = body
        .split("id=\"history\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(
        history.matches(">phr:asmile</td>").count(),
        50,
        "one page of 50"
    );
    assert!(body.contains("id=\"older\""), "a next page is offered");
    let (_, page2, _) = send(
        &app,
        post("/view", &tok, Some(&tok), &format!("{form}&page=1"), None),
    )
    .await;
    let history = page2
        .split("id=\"history\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(history.matches(">phr:asmile</td>").count(), 11);
    assert!(page2.contains("id=\"newer\"") && !page2.contains("id=\"older\""));
    assert!(!rid.is_empty());
}

/// Each read in the history comes with a proof file once witnesses cosigned a
/// checkpoint covering it; `renkei-client verify-proof` checks it offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_entries_download_as_proofs_that_verify_offline() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    let ps = h.register_all().await;
    let r = h.sealed(
        "doc-1",
        SUBJECT,
        "checkup.lipids",
        d(2026, 5, 1),
        b"{\"x\":1}",
    );
    h.upload(&[&r]).await;
    let p = h.enroll("phr:asmile", SUBJECT).await;
    let (_, v) = h.call(Some("phr:asmile"), "POST", "/v1/consents", Some(json!({"subject": p, "recipient": "phr:asmile", "purpose": "phr-display", "categories": ["checkup.lipids"], "method": "app", "granted_by": "resident"}))).await;
    let code = v["receipt"]["revocation_code"].as_str().unwrap().to_owned();
    h.answer_grants().await;
    assert_eq!(h.pull(&ps[1]).await.len(), 1);
    let app = portal(&h, 3);
    let (_, _, cookie) = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    let tok = token_of(&cookie.unwrap());
    let (st, body, _) = send(
        &app,
        post("/view", &tok, Some(&tok), &format!("code={code}"), None),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let seq: i64 = body
        .split("name=\"seq\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    let ask = |seq: i64| {
        post(
            "/proof",
            &tok,
            Some(&tok),
            &format!("code={code}&seq={seq}"),
            None,
        )
    };

    // Not yet witnessed: not yet.
    let (st, body, _) = send(&app, ask(seq)).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("証人"), "{body}");

    // A witness cosigns a checkpoint: the proof file verifies against the log key.
    renkei_hub::audit::checkpoint_as(
        &h.hub.db,
        &h.hub.signing_key,
        &h.hub.log_origin,
        h.hub.now(),
    )
    .await
    .unwrap();
    let vkey = renkei_hub::audit::log::vkey(&h.hub.log_origin, &h.hub.signing_key).unwrap();
    let (_, note) = h
        .call_raw(Some("source:city-a"), "GET", "/v1/log/checkpoint", None)
        .await;
    let note = String::from_utf8(note).unwrap();
    let wkey = renkei_crypto::sign::SigningKey::generate(renkei_crypto::keys::KeyVersion::V1);
    let w = renkei_crypto::tlog::note::NoteSigner::witness(
        "renkei-witness/source:city-a",
        &wkey,
        1_780_000_000,
    )
    .unwrap();
    let line = renkei_crypto::tlog::note::cosign(&note, &w).unwrap();
    let size = renkei_crypto::tlog::note::open_checkpoint(
        &note,
        &renkei_crypto::tlog::note::NoteVerifier::parse(&vkey).unwrap(),
    )
    .unwrap()
    .size;
    let (st, _) = h
        .call(
            Some("source:city-a"),
            "POST",
            "/v1/log/cosignature",
            Some(json!({"size": size, "vkey": w.vkey(), "cosignature": line})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, file, _) = send(&app, ask(seq)).await;
    assert_eq!(st, StatusCode::OK, "{file}");
    let ok = renkei_client::proof::verify(file.as_bytes(), &vkey).unwrap();
    assert_eq!(
        (ok.seq, ok.cosigners.clone()),
        (seq, vec!["renkei-witness/source:city-a".to_owned()])
    );
    assert!(file.contains("\"actor\": \"phr:asmile\""), "{file}");
    // The app that took the consent holds the code too: the file gives it neither the
    // shared subject token nor the hub's record id, only salted commitments to them.
    let rid = r.0.header().record_id.as_str().to_owned();
    assert!(!file.contains(SUBJECT) && !file.contains("st1_"), "{file}");
    assert!(!file.contains(&rid) && !file.contains("rec1_"), "{file}");
    assert!(file.contains("\"subject\": \"ac1_"), "{file}");
    let stored: String = sqlx::query_scalar("SELECT subject FROM hub_audit WHERE seq = $1")
        .bind(seq)
        .fetch_one(h.hub.db.pool())
        .await
        .unwrap();
    assert_eq!(
        stored, SUBJECT,
        "the hub keeps the token for the resident's history"
    );

    // Only the reads under this code's consent.
    let (st, _, _) = send(&app, ask(1)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, body, _) = send(
        &app,
        post(
            "/proof",
            &tok,
            Some(&tok),
            &format!("code=AAAA-BBBB&seq={seq}"),
            None,
        ),
    )
    .await;
    assert!(
        st == StatusCode::OK || st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN,
        "{st}"
    );
    assert!(!body.contains("renkei-audit-proof"), "{body}");
}

/// Every page a resident can reach is the portal's own, in Japanese or English, never the
/// framework's text; participants appear by their display names; HTTPS is pinned (HSTS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_the_portals_own_pages_and_recipients_have_names() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let app = portal(&h, 5);
    let tok = "b".repeat(64);
    for lang in ["", "?lang=en"] {
        // A form without its fields, or not a form at all.
        let bare = Request::post(format!("/view{lang}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", "hub.example")
            .body(Body::from("code=x"))
            .unwrap();
        let (st, body, _) = send(&app, bare).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(
            body.contains("id=\"error\"")
                && !body.contains("deserialize")
                && !body.contains("csrf`"),
            "{body}"
        );
        let json = Request::post(format!("/revoke{lang}"))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let (st, body, _) = send(&app, json).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(
            body.contains("id=\"error\"") && !body.contains("Content-Type"),
            "{body}"
        );
        // An unknown page, a wrong method.
        for req in [
            Request::get(format!("/nope{lang}"))
                .body(Body::empty())
                .unwrap(),
            Request::get(format!("/view{lang}"))
                .body(Body::empty())
                .unwrap(),
        ] {
            let (st, body, _) = send(&app, req).await;
            assert_eq!(st, StatusCode::NOT_FOUND);
            assert!(
                body.contains("id=\"error\"") && body.contains("<html"),
                "{body}"
            );
        }
    }
    let resp = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        resp.headers()
            .get("strict-transport-security")
            .is_some_and(|v| v.to_str().unwrap().starts_with("max-age="))
    );

    // Names instead of ids, in the resident's language.
    let asmile: renkei_crypto::participant::ParticipantId = "phr:asmile".parse().unwrap();
    renkei_hub::registry::add(
        &h.hub.db,
        &asmile,
        "アスマイル",
        None,
        None,
        crate::harness::t0(),
    )
    .await
    .unwrap();
    renkei_hub::registry::set_english_name(&h.hub.db, &asmile, "Asmile")
        .await
        .unwrap();
    let (code, _) = counter_consent(&h).await;
    let form = format!("code={code}");
    let (_, body, _) = send(&app, post("/view", &tok, Some(&tok), &form, None)).await;
    assert!(
        body.contains(">アスマイル</span>") && !body.contains(">phr:asmile</td>"),
        "{body}"
    );
    let (_, body, _) = send(&app, post("/view?lang=en", &tok, Some(&tok), &form, None)).await;
    assert!(body.contains(">Asmile</span>"), "{body}");
    let (_, body, _) = send(&app, post("/revoke", &tok, Some(&tok), &form, None)).await;
    assert!(
        body.contains(">アスマイル</span>") && body.contains("id=\"confirm\""),
        "{body}"
    );
}

/// A child's consent that a parent gave says so on the portal, in the resident's language.
#[tokio::test]
async fn a_guardians_consent_says_so_on_the_portal() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let r = h.sealed("doc-1", SUBJECT, "checkup.body", d(2026, 5, 1), b"{}");
    h.upload(&[&r]).await;
    let p = h.enroll("phr:asmile", SUBJECT).await;
    let until = (crate::harness::t0() + chrono::Duration::days(30)).to_rfc3339();
    let (st, v) = h.call(Some("phr:asmile"), "POST", "/v1/consents", Some(json!({"subject": p, "recipient": "municipality:city-a", "purpose": "child-health-followup", "categories": ["checkup.body"], "method": "app", "granted_by": "guardian", "guardian": "parent", "valid_until": until}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let code = v["receipt"]["revocation_code"].as_str().unwrap().to_owned();
    // An unknown relationship is refused, naming the field.
    let (st, v) = h.call(Some("phr:asmile"), "POST", "/v1/consents", Some(json!({"subject": p, "recipient": "municipality:city-a", "purpose": "child-health-followup", "categories": ["checkup.body"], "method": "app", "granted_by": "guardian", "guardian": "neighbour", "valid_until": until}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("guardian"), "{v}");

    let app = portal(&h, 3);
    let (_, _, cookie) = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    let tok = token_of(&cookie.unwrap());
    let form = format!("code={code}");
    let (st, body, _) = send(
        &app,
        post(
            "/view",
            &tok,
            Some(&tok),
            &form,
            Some("https://hub.example"),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains("保護者 (親) が同意"), "{body}");
}
