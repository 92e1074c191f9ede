//! The resident portal (HTTPS, no client certificate; Japanese first, English with
//! `?lang=en`): enter the receipt's revocation code → see that consent and the reads
//! under it (a summary per recipient and category, then every read, paged) → revoke.
//! A code opens its own consent and nothing else about the resident: the app that
//! took the consent also holds the code.
//!
//! CSRF: a double-submit token (SameSite=Strict cookie + hidden field) and an Origin
//! check. Code attempts are counted per client address in the database, so every hub
//! instance enforces the same lockout. Unknown and wrong codes are the same case (the
//! lookup is by keyed hash), with one message and one code path.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use rand::RngCore;
use renkei_consent::{Consent, ConsentStore, Guardian, RevocationCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::broker::{Hub, consents};
use crate::db;
use crate::error::Result;
use crate::server::ClientAddr;

/// Portal settings.
#[derive(Debug, Clone, Copy)]
pub struct PortalLimits {
    /// Wrong codes before lockout.
    pub max_failures: u32,
    /// Lockout length in seconds.
    pub lockout_secs: u64,
}

#[derive(Debug)]
struct PortalState {
    hub: Arc<Hub>,
    limits: PortalLimits,
}

/// The portal router.
pub fn router(hub: Arc<Hub>, limits: PortalLimits) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/view", post(view))
        .route("/revoke", post(revoke))
        .route("/proof", post(proof))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            crate::metrics::Tracked {
                listener: "portal",
                metrics: hub.metrics.clone(),
            },
            crate::metrics::track,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(8 * 1024))
        .with_state(Arc::new(PortalState { hub, limits }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Ja,
    En,
}

#[derive(Debug, Deserialize)]
struct LangQuery {
    #[serde(default)]
    lang: Option<String>,
}

impl LangQuery {
    fn lang(&self) -> Lang {
        if self.lang.as_deref() == Some("en") {
            Lang::En
        } else {
            Lang::Ja
        }
    }
}

fn t(lang: Lang, ja: &'static str, en: &'static str) -> &'static str {
    if lang == Lang::En { en } else { ja }
}

/// Escapes text for HTML element and attribute content.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(lang: Lang, body: &str) -> String {
    let (html_lang, title, other) = match lang {
        Lang::Ja => (
            "ja",
            "Renkei 同意の確認と撤回",
            "<a href=\"/?lang=en\">English</a>",
        ),
        Lang::En => ("en", "Renkei: your consents", "<a href=\"/\">日本語</a>"),
    };
    format!(
        "<!doctype html><html lang=\"{html_lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title>\
         <style>*{{box-sizing:border-box}}body{{font-family:sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.6;overflow-wrap:anywhere}}\
         h1{{font-size:1.4rem;word-break:keep-all}}h2{{font-size:1.15rem;word-break:keep-all}}\
         table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;word-break:normal}}\
         th{{white-space:nowrap}}\
         .err{{color:#a00}}.ok{{color:#060}}input[type=text]{{font-size:1.1rem;width:100%;max-width:30rem}}\
         button{{font-size:1rem;padding:.4rem 1rem}}\
         @media (max-width:36rem){{body{{margin:1rem auto}}table,thead,tbody,tr,th,td{{display:block}}\
         tr:first-child:has(th){{display:none}}tr{{border:1px solid #ccc;margin:0 0 .6rem}}td{{border:none;padding:.2rem .5rem}}\
         td[data-label]::before{{content:attr(data-label) \"：\";font-weight:bold}}}}</style></head><body><header><h1>{title}</h1>\
         <nav>{other}</nav></header><main>{body}</main></body></html>"
    )
}

/// A table cell that names its column, so that rows stacked on a narrow screen keep
/// their labels (`data-label`, shown by the page's CSS).
fn td(label: &str, content: &str) -> String {
    format!("<td data-label=\"{}\">{content}</td>", esc(label))
}

/// The CSRF cookie's name. The `__Host-` prefix makes a browser keep it only when this
/// host set it over HTTPS for `/` with no `Domain`, so a sibling subdomain cannot plant
/// a token of its choosing.
pub const CSRF_COOKIE: &str = "__Host-renkei_csrf";

fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn respond(status: StatusCode, html: String, csrf_cookie: Option<&str>) -> Response {
    let mut resp = (status, Html(html)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // The portal is HTTPS only: browsers keep to it for a year.
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    if let Some(tok) = csrf_cookie {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={tok}; Path=/; Secure; HttpOnly; SameSite=Strict"
        )) {
            h.insert(header::SET_COOKIE, v);
        }
    }
    resp
}

fn code_form(lang: Lang, csrf: &str, message: &str) -> String {
    let q = if lang == Lang::En { "?lang=en" } else { "" };
    format!(
        "{message}<p>{intro}</p><form method=\"post\" action=\"/view{q}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"code\">{label}</label><br><input type=\"text\" id=\"code\" name=\"code\" \
         autocomplete=\"off\" placeholder=\"XXXX-XXXX-…\" required>\
         <p><button type=\"submit\" id=\"show\">{button}</button></p></form>",
        intro = t(
            lang,
            "同意したときにお渡しした控え（レシート）の撤回コードを入力してください。",
            "Enter the revocation code printed on the receipt you were given when you consented."
        ),
        label = t(lang, "撤回コード", "Revocation code"),
        button = t(lang, "同意内容を表示", "Show my consent"),
    )
}

async fn index(Query(q): Query<LangQuery>) -> Response {
    let token = new_token();
    respond(
        StatusCode::OK,
        page(q.lang(), &code_form(q.lang(), &token, "")),
        Some(&token),
    )
}

#[derive(Debug, Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
    #[serde(default)]
    reason: Option<String>,
    /// Page of the access history (0 = newest).
    #[serde(default)]
    page: Option<u32>,
    /// The audit entry whose inclusion proof is asked for.
    #[serde(default)]
    seq: Option<i64>,
    /// `yes` once the resident confirmed a revocation.
    #[serde(default)]
    confirm: Option<String>,
}

/// Reads listed per history page.
const HISTORY_PAGE: i64 = 50;

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (name, value) = c.trim().split_once('=')?;
            (name == CSRF_COOKIE).then(|| value.to_owned())
        })
}

/// Same-site check: the double-submit token matches the SameSite=Strict cookie, and
/// the request does not come from another site: an `Origin` must be this host (a
/// browser that hides it sends `null`, accepted only with `Sec-Fetch-Site:
/// same-origin`), and `Sec-Fetch-Site`, when sent, must not be `cross-site`.
fn csrf_ok(headers: &HeaderMap, form_token: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let fetch_site = header("sec-fetch-site");
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return false;
    }
    if let Some(origin) = header("origin") {
        let same_host = header("host").is_some_and(|host| origin == format!("https://{host}"));
        let hidden_but_same = origin == "null" && fetch_site == Some("same-origin");
        if !same_host && !hidden_but_same {
            return false;
        }
    }
    match cookie_token(headers) {
        Some(c) => c.len() == 64 && bool::from(c.as_bytes().ct_eq(form_token.as_bytes())),
        None => false,
    }
}

fn forbidden(lang: Lang) -> Response {
    let token = new_token();
    let msg = format!(
        "<p class=\"err\">{}</p>",
        t(
            lang,
            "このページからの送信ではないため受け付けませんでした。もう一度お試しください。",
            "The form was not sent from this page, so it was refused. Please try again."
        )
    );
    respond(
        StatusCode::FORBIDDEN,
        page(lang, &code_form(lang, &token, &msg)),
        Some(&token),
    )
}

/// The lockout key of a client: a hash of its address, an IPv6 client's /64 network
/// ([`crate::server::address_key`]).
fn client_key(addr: Option<&ClientAddr>) -> String {
    let ip = addr
        .map(|a| crate::server::address_key(a.0.ip()).to_string())
        .unwrap_or_default();
    hex::encode(Sha256::digest(format!("renkei-portal {ip}").as_bytes()))
}

/// Whether this client is locked out now.
async fn locked(st: &PortalState, key: &str) -> Result<bool> {
    let now = db::micros(st.hub.now());
    let row = sqlx::query("SELECT locked_until FROM hub_portal_attempts WHERE client = $1")
        .bind(key)
        .fetch_optional(st.hub.db.pool())
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<i64, _>("locked_until")? > now,
        None => false,
    })
}

/// Counts a failed attempt; locks the client out after too many.
async fn record_failure(st: &PortalState, key: &str) -> Result<()> {
    let now = st.hub.now();
    let t = db::micros(now);
    let lock_us =
        i64::try_from(st.limits.lockout_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    let mut tx = st.hub.db.begin().await?;
    sqlx::query(
        "INSERT INTO hub_portal_attempts (client, failures, locked_until, updated_at) VALUES ($1, 0, 0, $2) \
         ON CONFLICT (client) DO NOTHING",
    )
    .bind(key)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    // Failures are counted within a window as long as the lockout: a client whose last
    // failure is older starts again from one.
    let window_start = t.saturating_sub(lock_us);
    sqlx::query(
        "UPDATE hub_portal_attempts SET \
         failures = CASE WHEN updated_at < $5 THEN 1 ELSE failures + 1 END, \
         locked_until = CASE WHEN (CASE WHEN updated_at < $5 THEN 1 ELSE failures + 1 END) >= $3 \
           THEN $4 ELSE locked_until END, \
         updated_at = $2 WHERE client = $1",
    )
    .bind(key)
    .bind(t)
    .bind(i64::from(st.limits.max_failures))
    .bind(t.saturating_add(lock_us))
    .bind(window_start)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE hub_portal_attempts SET failures = 0 WHERE client = $1 AND locked_until > $2",
    )
    .bind(key)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Clients with no failure in the window and no lockout are forgotten, so the table
    // holds only the clients of the last window, however many addresses guess. Its own
    // statement after the commit: deleting other clients' rows in the transaction above
    // could deadlock two failures on PostgreSQL. Best effort: the next failure deletes
    // what this one left (and an error here must not count this failure twice).
    let forget = "DELETE FROM hub_portal_attempts WHERE updated_at < $1 AND locked_until <= $2";
    if let Err(e) = sqlx::query(forget)
        .bind(window_start)
        .bind(t)
        .execute(st.hub.db.pool())
        .await
    {
        tracing::warn!(error = %e, "portal: old lockout rows not deleted this time");
    }
    Ok(())
}

/// The consent whose unused receipt code this is, if any.
async fn by_code(st: &PortalState, typed: &str) -> Result<Option<Consent>> {
    // A malformed code is hashed anyway (as an impossible value) so every miss costs the same.
    let hash = match RevocationCode::parse(typed) {
        Ok(code) => code.hash(&st.hub.receipt_pepper).unwrap_or_default(),
        Err(_) => hex::encode(Sha256::digest(typed.as_bytes())),
    };
    let row =
        sqlx::query("SELECT id FROM consents WHERE code_hash = $1 AND code_used_at_us IS NULL")
            .bind(&hash)
            .fetch_optional(st.hub.db.pool())
            .await?;
    let Some(row) = row else { return Ok(None) };
    let id: String = row.try_get("id")?;
    st.hub
        .consents
        .get(&id)
        .await
        .map_err(consents::consent_error)
}

fn bad_code(lang: Lang, locked_out: bool) -> Response {
    let token = new_token();
    let text = if locked_out {
        t(
            lang,
            "試行回数が多すぎます。しばらくしてからもう一度お試しください。",
            "Too many attempts. Please try again later.",
        )
    } else {
        t(
            lang,
            "コードが正しくないか、すでに使用されています。",
            "The code is not valid or has already been used.",
        )
    };
    let status = if locked_out {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    let msg = format!("<p class=\"err\" id=\"error\">{text}</p>");
    respond(
        status,
        page(lang, &code_form(lang, &token, &msg)),
        Some(&token),
    )
}

/// The portal's own page for an address it does not serve (and a wrong method).
async fn not_found(Query(q): Query<LangQuery>) -> Response {
    let lang = q.lang();
    let token = new_token();
    let msg = format!(
        "<p class=\"err\" id=\"error\">{}</p>",
        t(
            lang,
            "このページはありません。撤回コードを入力してください。",
            "There is no such page. Please enter your revocation code."
        )
    );
    respond(
        StatusCode::NOT_FOUND,
        page(lang, &code_form(lang, &token, &msg)),
        Some(&token),
    )
}

/// The portal's own page for a form it cannot read (a field missing, too long, not a
/// form): never the framework's text.
fn unreadable_form(lang: Lang) -> Response {
    let token = new_token();
    let msg = format!(
        "<p class=\"err\" id=\"error\">{}</p>",
        t(
            lang,
            "送信された内容を読み取れませんでした。もう一度入力してください。",
            "The form could not be read. Please enter your code again."
        )
    );
    respond(
        StatusCode::BAD_REQUEST,
        page(lang, &code_form(lang, &token, &msg)),
        Some(&token),
    )
}

/// A participant as residents read it: its display name in their language (the id as
/// a tooltip), else its id.
fn who(names: &Names, lang: Lang, id: &str) -> String {
    let name = names.get(id).and_then(|(ja, en)| match lang {
        Lang::En => en.clone().or_else(|| Some(ja.clone())),
        Lang::Ja => Some(ja.clone()),
    });
    match name.filter(|n| n != id && !n.is_empty()) {
        Some(n) => format!("<span title=\"{}\">{}</span>", esc(id), esc(&n)),
        None => esc(id),
    }
}

/// Display names by participant id.
type Names = std::collections::HashMap<String, (String, Option<String>)>;

async fn names_of(st: &PortalState, ids: &[&str]) -> Result<Names> {
    let mut conn = st.hub.db.pool().acquire().await?;
    crate::registry::names(&mut conn, ids).await
}

fn fmt_time(t: chrono::DateTime<chrono::Utc>) -> String {
    match chrono::FixedOffset::east_opt(9 * 3600) {
        Some(jst) => t
            .with_timezone(&jst)
            .format("%Y-%m-%d %H:%M JST")
            .to_string(),
        None => t.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// How a resident reads catalog codes: the category's or purpose's name in their language.
fn label(policies: &renkei_policies::Policies, lang: Lang, code: &str) -> String {
    let catalog = policies.catalog();
    let named = catalog
        .category(code)
        .map(|c| if lang == Lang::En { &c.en } else { &c.ja })
        .or_else(|| {
            catalog
                .purpose(code)
                .map(|p| if lang == Lang::En { &p.en } else { &p.ja })
        });
    named.map_or_else(|| code.to_owned(), |n| n.clone())
}

fn status_label(lang: Lang, status: renkei_consent::Status) -> &'static str {
    use renkei_consent::Status as S;
    match status {
        S::Active => t(lang, "有効", "active"),
        S::Revoked => t(lang, "撤回済み", "revoked"),
        S::Expired => t(lang, "期限切れ", "expired"),
        S::Superseded => t(lang, "更新済み", "superseded"),
    }
}

fn consent_row(
    policies: &renkei_policies::Policies,
    names: &Names,
    lang: Lang,
    c: &Consent,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let until = c
        .terms
        .valid_until
        .map(fmt_time)
        .unwrap_or_else(|| t(lang, "撤回するまで", "until revoked").to_owned());
    let categories: Vec<String> = c
        .terms
        .categories
        .iter()
        .map(|k| label(policies, lang, k))
        .collect();
    format!(
        "<tr>{}{}{}{}{}</tr>",
        td(
            t(lang, "提供先", "Recipient"),
            &who(names, lang, &c.terms.recipient)
        ),
        td(
            t(lang, "目的", "Purpose"),
            &esc(&purpose_text(policies, lang, c))
        ),
        td(
            t(lang, "データの種類", "Data"),
            &esc(&categories.join("、"))
        ),
        td(t(lang, "有効期限", "Valid until"), &esc(&until)),
        td(
            t(lang, "状態", "Status"),
            &esc(status_label(lang, c.effective_status(now)))
        ),
    )
}

/// The purpose as a resident reads it, saying so when a guardian consented for a child.
fn purpose_text(policies: &renkei_policies::Policies, lang: Lang, c: &Consent) -> String {
    let purpose = label(policies, lang, &c.terms.purpose);
    match c.terms.guardian {
        Some(Guardian::Parent) => format!(
            "{purpose} {}",
            t(lang, "(保護者 (親) が同意)", "(consented by a parent)")
        ),
        Some(Guardian::LegalGuardian) => format!(
            "{purpose} {}",
            t(
                lang,
                "(未成年後見人が同意)",
                "(consented by a legal guardian)"
            )
        ),
        None => purpose,
    }
}

/// The checks every form post passes first: a form the portal can read, same-site
/// (CSRF), then the client's lockout. Gives the form and the client's lockout key, or the
/// page that refuses it.
async fn admit(
    st: &PortalState,
    lang: Lang,
    addr: Option<&ClientAddr>,
    headers: &HeaderMap,
    form: std::result::Result<Form<CodeForm>, FormRejection>,
) -> Result<std::result::Result<(CodeForm, String), Response>> {
    let Ok(Form(f)) = form else {
        return Ok(Err(unreadable_form(lang)));
    };
    if !csrf_ok(headers, &f.csrf) {
        return Ok(Err(forbidden(lang)));
    }
    let key = client_key(addr);
    if locked(st, &key).await? {
        return Ok(Err(bad_code(lang, true)));
    }
    Ok(Ok((f, key)))
}

/// A wrong or spent code: counted against the client, answered with the one message.
async fn wrong_code(st: &PortalState, lang: Lang, key: &str) -> Result<Response> {
    crate::error::retry(|| record_failure(st, key)).await?;
    Ok(bad_code(lang, locked(st, key).await?))
}

/// A right code for a consent that has already ended (revoked by the app or at the
/// counter, expired, superseded): nothing to revoke, and not counted against the client.
fn already_ended(lang: Lang) -> Response {
    respond(
        StatusCode::CONFLICT,
        page(lang, &ended_paragraph(lang)),
        None,
    )
}

/// What the portal shows instead of a revoke button for a consent that has ended.
fn ended_paragraph(lang: Lang) -> String {
    let text = t(
        lang,
        "この同意はすでに終了しています。撤回の必要はありません。",
        "This consent has already ended: there is nothing to revoke.",
    );
    format!("<p id=\"ended\">{text}</p>")
}

/// The consent of the form's code, or the page for a wrong code.
async fn consent_of(
    st: &PortalState,
    lang: Lang,
    key: &str,
    code: &str,
) -> Result<std::result::Result<Consent, Response>> {
    Ok(match by_code(st, code).await? {
        Some(consent) => Ok(consent),
        None => Err(wrong_code(st, lang, key).await?),
    })
}

async fn view(
    State(st): State<Arc<PortalState>>,
    Query(q): Query<LangQuery>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    form: std::result::Result<Form<CodeForm>, FormRejection>,
) -> Result<Response> {
    let lang = q.lang();
    let (f, key) = match admit(&st, lang, addr.as_deref(), &headers, form).await? {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    let consent = match consent_of(&st, lang, &key, &f.code).await? {
        Ok(consent) => consent,
        Err(refused) => return Ok(refused),
    };
    let now = st.hub.now();
    let policies = st.hub.policies();
    let page_no = i64::from(f.page.unwrap_or(0).min(100_000));
    // Only reads under this consent, by its subject (the audit index) and its id.
    let summary = sqlx::query(
        "SELECT actor, category, COUNT(*) AS n, MIN(at) AS first_at, MAX(at) AS last_at \
         FROM hub_audit WHERE subject = $1 AND consent = $2 AND action = 'read' \
         AND decision = 'allow' GROUP BY actor, category ORDER BY actor, category",
    )
    .bind(&consent.terms.subject)
    .bind(&consent.id)
    .fetch_all(st.hub.db.pool())
    .await?;
    let history = sqlx::query(
        "SELECT seq, at, actor, category FROM hub_audit WHERE subject = $1 AND consent = $2 \
         AND action = 'read' AND decision = 'allow' ORDER BY seq DESC LIMIT $3 OFFSET $4",
    )
    .bind(&consent.terms.subject)
    .bind(&consent.id)
    .bind(HISTORY_PAGE + 1)
    .bind(page_no * HISTORY_PAGE)
    .fetch_all(st.hub.db.pool())
    .await?;
    let mut ids: Vec<String> = vec![consent.terms.recipient.clone()];
    for r in summary.iter().chain(&history) {
        ids.push(r.try_get("actor")?);
    }
    ids.sort_unstable();
    ids.dedup();
    let names = names_of(&st, &ids.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let head = format!(
        "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(lang, "提供先", "Recipient"),
        t(lang, "目的", "Purpose"),
        t(lang, "データの種類", "Data"),
        t(lang, "有効期限", "Valid until"),
        t(lang, "状態", "Status")
    );
    let mut sums = String::new();
    for r in &summary {
        let first = db::from_micros(r.try_get("first_at")?)?;
        let last = db::from_micros(r.try_get("last_at")?)?;
        sums.push_str(&format!(
            "<tr>{}{}{}{}{}</tr>",
            td(
                t(lang, "閲覧者", "Who"),
                &who(&names, lang, &r.try_get::<String, _>("actor")?)
            ),
            td(
                t(lang, "データの種類", "Data"),
                &esc(&label(
                    &policies,
                    lang,
                    &r.try_get::<String, _>("category")?
                ))
            ),
            td(
                t(lang, "件数", "Records read"),
                &r.try_get::<i64, _>("n")?.to_string()
            ),
            td(t(lang, "最初", "First"), &esc(&fmt_time(first))),
            td(t(lang, "最後", "Last"), &esc(&fmt_time(last))),
        ));
    }
    let more = history.len() > usize::try_from(HISTORY_PAGE).unwrap_or(usize::MAX);
    let token = new_token();
    let qs = if lang == Lang::En { "?lang=en" } else { "" };
    let mut hist = String::new();
    for r in history
        .iter()
        .take(usize::try_from(HISTORY_PAGE).unwrap_or(0))
    {
        let at = db::from_micros(r.try_get("at")?)?;
        let seq: i64 = r.try_get("seq")?;
        let proof_form = format!(
            "<form method=\"post\" action=\"/proof{qs}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\"><input type=\"hidden\" name=\"code\" value=\"{code}\">\
             <input type=\"hidden\" name=\"seq\" value=\"{seq}\"><button type=\"submit\">{proof}</button></form>",
            code = esc(&f.code),
            proof = t(lang, "証明をダウンロード", "Download proof"),
        );
        hist.push_str(&format!(
            "<tr>{}{}{}{}</tr>",
            td(t(lang, "日時", "When"), &esc(&fmt_time(at))),
            td(
                t(lang, "閲覧者", "Who"),
                &who(&names, lang, &r.try_get::<String, _>("actor")?)
            ),
            td(
                t(lang, "データの種類", "Data"),
                &esc(&label(
                    &policies,
                    lang,
                    &r.try_get::<String, _>("category")?
                ))
            ),
            td(t(lang, "記録の証明", "Proof of the record"), &proof_form),
        ));
    }
    let pager = |to: i64, id: &str, text: &str| {
        format!(
            "<form method=\"post\" action=\"/view{qs}\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <input type=\"hidden\" name=\"code\" value=\"{code}\"><input type=\"hidden\" name=\"page\" value=\"{to}\">\
             <button type=\"submit\" id=\"{id}\">{text}</button></form>",
            code = esc(&f.code),
        )
    };
    let mut paging = String::new();
    if page_no > 0 {
        paging.push_str(&pager(page_no - 1, "newer", t(lang, "新しい記録", "Newer")));
    }
    if more {
        paging.push_str(&pager(page_no + 1, "older", t(lang, "古い記録", "Older")));
    }
    let revoke_form = if consent.effective_status(now) == renkei_consent::Status::Active {
        format!(
            "<form method=\"post\" action=\"/revoke{qs}\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <input type=\"hidden\" name=\"code\" value=\"{code}\"><label for=\"reason\">{l_reason}</label><br>\
             <input type=\"text\" id=\"reason\" name=\"reason\" maxlength=\"200\"><p><button type=\"submit\" id=\"revoke\">{b_revoke}</button></p></form>",
            code = esc(&f.code),
            l_reason = t(lang, "撤回の理由（任意）", "Reason (optional)"),
            b_revoke = t(lang, "この同意を撤回する", "Revoke this consent"),
        )
    } else {
        ended_paragraph(lang)
    };
    let body = format!(
        "<h2>{h_this}</h2><table id=\"consent\">{head}{this}</table>{revoke_form}\
         <h2>{h_sum}</h2><table id=\"summary\"><tr><th>{c_who}</th><th>{c_what}</th><th>{c_n}</th><th>{c_first}</th><th>{c_last}</th></tr>{sums}</table>\
         <h2>{h_hist}</h2><table id=\"history\"><tr><th>{c_at}</th><th>{c_who}</th><th>{c_what}</th><th>{c_proof}</th></tr>{hist}</table>{paging}",
        c_proof = t(lang, "記録の証明", "Proof of the record"),
        h_this = t(lang, "この控えの同意", "The consent on this receipt"),
        this = consent_row(&policies, &names, lang, &consent, now),
        h_sum = t(
            lang,
            "この同意による閲覧のまとめ",
            "Reads under this consent, in summary"
        ),
        h_hist = t(lang, "閲覧の記録", "Who read your data"),
        c_at = t(lang, "日時", "When"),
        c_who = t(lang, "閲覧者", "Who"),
        c_what = t(lang, "データの種類", "Data"),
        c_n = t(lang, "件数", "Records read"),
        c_first = t(lang, "最初", "First"),
        c_last = t(lang, "最後", "Last"),
    );
    Ok(respond(StatusCode::OK, page(lang, &body), Some(&token)))
}

/// One read of the history as a proof file (`renkei-client verify-proof` checks it
/// offline against the hub's log key): only a read under the consent of this code.
async fn proof(
    State(st): State<Arc<PortalState>>,
    Query(q): Query<LangQuery>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    form: std::result::Result<Form<CodeForm>, FormRejection>,
) -> Result<Response> {
    let lang = q.lang();
    let (f, key) = match admit(&st, lang, addr.as_deref(), &headers, form).await? {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    let consent = match consent_of(&st, lang, &key, &f.code).await? {
        Ok(consent) => consent,
        Err(refused) => return Ok(refused),
    };
    let seq = f.seq.unwrap_or(0);
    let theirs = sqlx::query(
        "SELECT seq FROM hub_audit WHERE seq = $1 AND subject = $2 AND consent = $3 \
         AND action = 'read' AND decision = 'allow'",
    )
    .bind(seq)
    .bind(&consent.terms.subject)
    .bind(&consent.id)
    .fetch_optional(st.hub.db.pool())
    .await?;
    let not_yet = |msg: &str| {
        respond(
            StatusCode::NOT_FOUND,
            page(lang, &format!("<p class=\"err\">{}</p>", esc(msg))),
            None,
        )
    };
    if theirs.is_none() {
        return Ok(not_yet(t(
            lang,
            "その記録はありません。",
            "No such record.",
        )));
    }
    let file = match crate::audit::log::entry_proof(&st.hub.db, seq).await {
        Ok(p) => p,
        Err(crate::error::Error::NotFound(_)) => {
            return Ok(not_yet(t(
                lang,
                "この記録はまだ第三者（証人）に確認されていません。しばらくしてからお試しください。",
                "This record is not yet confirmed by witnesses. Please try again later.",
            )));
        }
        Err(e) => return Err(e),
    };
    let body = serde_json::to_vec_pretty(&file)
        .map_err(|e| crate::error::Error::internal_from("audit proof file", e))?;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"renkei-proof-{seq}.json\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

async fn revoke(
    State(st): State<Arc<PortalState>>,
    Query(q): Query<LangQuery>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    form: std::result::Result<Form<CodeForm>, FormRejection>,
) -> Result<Response> {
    let lang = q.lang();
    let (f, key) = match admit(&st, lang, addr.as_deref(), &headers, form).await? {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    let reason: String = f.reason.unwrap_or_default().chars().take(200).collect();
    let qs = if lang == Lang::En { "?lang=en" } else { "" };
    let policies = st.hub.policies();
    if f.confirm.as_deref() != Some("yes") {
        // First say what will stop, and ask again.
        let consent = match consent_of(&st, lang, &key, &f.code).await? {
            Ok(consent) => consent,
            Err(refused) => return Ok(refused),
        };
        if consent.effective_status(st.hub.now()) != renkei_consent::Status::Active {
            return Ok(already_ended(lang));
        }
        let names = names_of(&st, &[consent.terms.recipient.as_str()]).await?;
        let categories: Vec<String> = consent
            .terms
            .categories
            .iter()
            .map(|k| label(&policies, lang, k))
            .collect();
        let token = new_token();
        let body = format!(
            "<h2>{h}</h2><p id=\"confirm-what\">{what}</p><ul><li>{l_to}: {to}</li><li>{l_for}: {purpose}</li>\
             <li>{l_data}: {data}</li></ul><p>{after}</p>\
             <form method=\"post\" action=\"/revoke{qs}\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <input type=\"hidden\" name=\"code\" value=\"{code}\"><input type=\"hidden\" name=\"reason\" value=\"{reason}\">\
             <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
             <p><button type=\"submit\" id=\"confirm\">{yes}</button></p></form>\
             <form method=\"post\" action=\"/view{qs}\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <input type=\"hidden\" name=\"code\" value=\"{code}\"><p><button type=\"submit\" id=\"cancel\">{no}</button></p></form>",
            h = t(lang, "撤回の確認", "Confirm the revocation"),
            what = t(
                lang,
                "撤回すると、次の提供が止まります。提供先には、受け取ったデータを削除するよう通知されます。",
                "Revoking stops the following. The recipient is told to delete the data it received."
            ),
            l_to = t(lang, "提供先", "Recipient"),
            to = who(&names, lang, &consent.terms.recipient),
            l_for = t(lang, "目的", "Purpose"),
            purpose = esc(&label(&policies, lang, &consent.terms.purpose)),
            l_data = t(lang, "データの種類", "Data"),
            data = esc(&categories.join("、")),
            after = t(
                lang,
                "撤回は取り消せません。もう一度提供するには、新しく同意が必要です。",
                "A revocation cannot be undone: sharing again needs a new consent."
            ),
            code = esc(&f.code),
            reason = esc(&reason),
            yes = t(lang, "撤回する", "Revoke"),
            no = t(lang, "やめる", "Cancel"),
        );
        return Ok(respond(StatusCode::OK, page(lang, &body), Some(&token)));
    }
    match consents::revoke_by_code(&st.hub, &f.code, &reason).await {
        Ok(c) => {
            let names = names_of(&st, &[c.terms.recipient.as_str()]).await?;
            let categories: Vec<String> = c
                .terms
                .categories
                .iter()
                .map(|k| label(&policies, lang, k))
                .collect();
            let body = format!(
                "<p class=\"ok\" id=\"revoked\">{}</p><ul><li>{}</li><li>{}</li><li>{}</li></ul>",
                t(
                    lang,
                    "同意を撤回しました。提供先は今後このデータを受け取れません。",
                    "Your consent is revoked. The recipient can no longer receive this data."
                ),
                who(&names, lang, &c.terms.recipient),
                esc(&label(&policies, lang, &c.terms.purpose)),
                esc(&categories.join("、"))
            );
            Ok(respond(StatusCode::OK, page(lang, &body), None))
        }
        // The code was right and unused, but the consent had ended.
        Err(crate::error::Error::Conflict(_)) => Ok(already_ended(lang)),
        Err(crate::error::Error::NotFound(_) | crate::error::Error::BadRequest { .. }) => {
            wrong_code(&st, lang, &key).await
        }
        Err(e) => Err(e),
    }
}
