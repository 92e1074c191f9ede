//! The resident portal in a real browser: headless Chromium opens the Japanese page,
//! enters the receipt code, sees who read what, revokes; a screenshot is kept in
//! `target/e2e-artifacts/portal.png` (the history) and `portal-revoked.png`.

use std::path::PathBuf;
use std::time::Duration;

use renkei_e2e::webdriver::{Browser, installed};
use renkei_e2e::{APP, Backend, Basic, under_ci};

const WAIT: Duration = Duration::from_secs(20);

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    let dir = target.join("e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_in_a_real_browser() {
    let Some((chromium, chromedriver)) = installed() else {
        assert!(
            !under_ci(),
            "CI must install Debian's `chromium` and `chromium-driver` for the portal browser test"
        );
        eprintln!("NOTE: chromium/chromedriver not installed; skipping the portal browser test");
        return;
    };
    let b = Basic::run(Backend::Sqlite, &[APP], None)
        .await
        .unwrap()
        .unwrap();
    let browser = Browser::start(&chromium, &chromedriver, b.scene.root())
        .await
        .unwrap();
    // The hub certificate names `localhost`; the browser accepts the test CA's certificate
    // with --ignore-certificate-errors.
    browser
        .goto(&format!("https://localhost:{}/", b.hub.addrs.portal.port()))
        .unwrap();

    // The start page is Japanese.
    let code_field = browser.wait_for("input#code", WAIT).await.unwrap();
    let page = browser.source().unwrap();
    assert!(
        page.contains("<html lang=\"ja\"") && page.contains("撤回コード"),
        "the start page is not in Japanese:\n{page}"
    );

    let dir = artifacts();
    let shot = |name: &str| {
        let png = browser.screenshot().unwrap();
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let path = dir.join(name);
        std::fs::write(&path, &png).unwrap();
        eprintln!("screenshot: {}", path.display());
    };

    // Enter the receipt code as printed (with its hyphens) and show the consent.
    browser.type_into(&code_field, &b.consent.code).unwrap();
    let show = browser.wait_for("button#show", WAIT).await.unwrap();
    browser.click(&show).unwrap();
    let shown = browser
        .wait_for("table#history, p.err", WAIT)
        .await
        .unwrap();
    let page = browser.source().unwrap();
    if page.contains("class=\"err\"") {
        shot("portal-refused.png");
    }
    assert!(
        !page.contains("class=\"err\""),
        "the portal refused the browser's own form (a browser sends `Origin: null` for a form \
         POST from a page served with `Referrer-Policy: no-referrer`):\n{}",
        browser.text(&shown).unwrap()
    );
    let history = browser.wait_for("table#history", WAIT).await.unwrap();
    let history_text = browser.text(&history).unwrap();
    assert!(
        history_text.contains("閲覧者"),
        "history header not Japanese: {history_text}"
    );
    let reads = history_text.lines().filter(|l| l.contains(APP)).count();
    assert!(
        reads >= b.expected.len(),
        "the history shows {reads} reads by {APP}, the app pulled {}:\n{history_text}",
        b.expected.len()
    );
    let consent = browser.wait_for("table#consent", WAIT).await.unwrap();
    let consent_text = browser.text(&consent).unwrap();
    assert!(
        consent_text.contains(APP) && consent_text.contains("PHRアプリでの本人への表示"),
        "{consent_text}"
    );

    shot("portal.png");

    // Revoke, with a reason.
    let reason = browser.wait_for("input#reason", WAIT).await.unwrap();
    browser
        .type_into(&reason, "アプリの利用をやめたため")
        .unwrap();
    let revoke = browser.wait_for("button#revoke", WAIT).await.unwrap();
    browser.click(&revoke).unwrap();
    // The portal says what stops and asks again.
    let what = browser.wait_for("#confirm-what", WAIT).await.unwrap();
    let what_text = browser.text(&what).unwrap();
    assert!(what_text.contains("止まります"), "{what_text}");
    shot("portal-confirm.png");
    let confirm = browser.wait_for("button#confirm", WAIT).await.unwrap();
    browser.click(&confirm).unwrap();
    let done = browser.wait_for("#revoked", WAIT).await.unwrap();
    let done_text = browser.text(&done).unwrap();
    assert!(done_text.contains("撤回しました"), "{done_text}");
    shot("portal-revoked.png");

    // The revocation took effect for the app.
    let record = b.expected.keys().next().unwrap();
    let get = b.scene.client(APP, &["get", record]).await.unwrap();
    assert!(
        !get.status.success(),
        "read after the portal revocation succeeded: {get}"
    );
}
