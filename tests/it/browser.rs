//! The resident portal in a real browser: headless Chromium opens the Japanese page,
//! enters the receipt code, sees who read what, confirms and revokes; a screenshot is kept
//! in `target/e2e-artifacts/portal.png` (the history) and `portal-revoked.png`. Each page
//! is also shown at 390 px (a phone) and 1280 px (a desktop): no horizontal scroll,
//! screenshots `portal-<page>-<width>.png`, and axe-core (npm, `tests/browser`) finds no
//! violation.

use std::path::PathBuf;
use std::time::Duration;

use renkei_e2e::webdriver::{Browser, installed};
use renkei_e2e::{APP, Backend, Basic, under_ci};

const WAIT: Duration = Duration::from_secs(20);

/// axe-core's browser build, installed by `npm ci` in `tests/browser` (`.ci/run` does).
fn axe_source() -> Option<String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/node_modules/axe-core/axe.min.js");
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) => {
            assert!(
                !under_ci(),
                "CI must install axe-core (`npm ci` in tests/browser): {}: {e}",
                path.display()
            );
            eprintln!(
                "NOTE: {} missing; the pages are not checked with axe-core",
                path.display()
            );
            None
        }
    }
}

/// The page as a phone (390 px) and a desktop (1280 px) show it: nothing scrolls
/// sideways, a screenshot of each is kept, and axe-core reports no violation.
fn check_widths(browser: &Browser, axe: Option<&str>, page: &str, dir: &std::path::Path) {
    for width in [390, 1280] {
        browser.set_width(width, 900).unwrap();
        let m = browser
            .execute(
                "var d = document.documentElement; return [d.scrollWidth, d.clientWidth, window.innerWidth];",
                &[],
            )
            .unwrap();
        let (scroll, client) = (m[0].as_u64().unwrap(), m[1].as_u64().unwrap());
        let png = browser.screenshot().unwrap();
        std::fs::write(dir.join(format!("portal-{page}-{width}.png")), &png).unwrap();
        assert!(
            scroll <= client,
            "{page} at {width} px scrolls sideways: content {scroll} px in {client} px ({m})"
        );
        if let Some(axe) = axe {
            browser.execute(&format!("{axe}\nreturn 1;"), &[]).unwrap();
            let v = browser
                .execute_async(
                    "var done = arguments[arguments.length - 1];\
                     axe.run(document, {resultTypes: ['violations']}).then(function (r) {\
                       done(r.violations.map(function (v) {\
                         return v.id + ' (' + v.impact + '): ' + v.help + ' at ' +\
                           v.nodes.map(function (n) { return n.target.join(' '); }).join(', ');\
                       }));\
                     }, function (e) { done(['axe failed: ' + e]); });",
                    &[],
                )
                .unwrap();
            let found = v.as_array().cloned().unwrap_or_default();
            assert!(
                found.is_empty(),
                "axe-core on {page} at {width} px: {found:#?}"
            );
        }
    }
    browser.set_width(1100, 1400).unwrap();
}

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
    browser.wait_for("input#code", WAIT).await.unwrap();
    let page = browser.source().unwrap();
    assert!(
        page.contains("<html lang=\"ja\"") && page.contains("撤回コード"),
        "the start page is not in Japanese:\n{page}"
    );

    let dir = artifacts();
    let axe = axe_source();
    check_widths(&browser, axe.as_deref(), "start", &dir);
    let code_field = browser.wait_for("input#code", WAIT).await.unwrap();
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
    check_widths(&browser, axe.as_deref(), "history", &dir);

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
    check_widths(&browser, axe.as_deref(), "confirm", &dir);
    let confirm = browser.wait_for("button#confirm", WAIT).await.unwrap();
    browser.click(&confirm).unwrap();
    let done = browser.wait_for("#revoked", WAIT).await.unwrap();
    let done_text = browser.text(&done).unwrap();
    assert!(done_text.contains("撤回しました"), "{done_text}");
    shot("portal-revoked.png");
    check_widths(&browser, axe.as_deref(), "revoked", &dir);
    // The portal's own pages for a page that does not exist and for a spent code.
    let base = format!("https://localhost:{}", b.hub.addrs.portal.port());
    browser.goto(&format!("{base}/no-such-page")).unwrap();
    browser.wait_for("p#error", WAIT).await.unwrap();
    check_widths(&browser, axe.as_deref(), "not-found", &dir);
    browser.goto(&format!("{base}/?lang=en")).unwrap();
    let code_field = browser.wait_for("input#code", WAIT).await.unwrap();
    browser.type_into(&code_field, &b.consent.code).unwrap();
    let show = browser.wait_for("button#show", WAIT).await.unwrap();
    browser.click(&show).unwrap();
    let refused = browser.wait_for("p#error", WAIT).await.unwrap();
    assert!(
        browser
            .text(&refused)
            .unwrap()
            .contains("already been used"),
        "a spent code must be refused"
    );
    check_widths(&browser, axe.as_deref(), "spent-code-en", &dir);

    // The revocation took effect for the app.
    let record = b.expected.keys().next().unwrap();
    let get = b.scene.client(APP, &["get", record]).await.unwrap();
    assert!(
        !get.status.success(),
        "read after the portal revocation succeeded: {get}"
    );
}
