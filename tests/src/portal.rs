//! The resident portal as a form client would use it: HTTPS trusting the test CA, the
//! `__Host-renkei_csrf` cookie from a GET sent back with the hidden `csrf` field of a POST.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use renkei_crypto::tls::{crypto_provider, load_certs};

use crate::http::{Request, Response, exchange, form_encode};

/// A browser-like session with the portal (no client certificate).
#[derive(Debug)]
pub struct PortalClient {
    addr: SocketAddr,
    host: String,
    tls: Arc<rustls::ClientConfig>,
    csrf: Option<String>,
}

impl PortalClient {
    /// A session with the portal at `addr`, trusting `ca`; `host` is the TLS server name.
    pub fn new(addr: SocketAddr, host: &str, ca: &Path) -> anyhow::Result<PortalClient> {
        let mut roots = rustls::RootCertStore::empty();
        for c in load_certs(ca).context("loading the portal CA")? {
            roots.add(c).context("adding the portal CA")?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(PortalClient {
            addr,
            host: host.to_owned(),
            tls: Arc::new(tls),
            csrf: None,
        })
    }

    fn send(&mut self, req: Request) -> anyhow::Result<Response> {
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .context("portal server name")?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), name).context("portal TLS")?;
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to the portal at {}", self.addr))?;
        tcp.set_read_timeout(Some(Duration::from_secs(15)))
            .context("read timeout")?;
        let authority = format!("{}:{}", self.host, self.addr.port());
        let mut req = req.header("origin", &format!("https://{authority}"));
        req.host = authority;
        if let Some(t) = &self.csrf {
            req = req.header("cookie", &format!("__Host-renkei_csrf={t}"));
        }
        let resp = exchange(rustls::StreamOwned::new(conn, tcp), &req)?;
        for c in resp.headers_named("set-cookie") {
            if let Some(v) = c
                .split(';')
                .next()
                .and_then(|kv| kv.trim().strip_prefix("__Host-renkei_csrf="))
            {
                self.csrf = Some(v.to_owned());
            }
        }
        Ok(resp)
    }

    /// `GET /` (Japanese unless `lang` says otherwise); keeps the CSRF cookie.
    pub fn open(&mut self, lang: Option<&str>) -> anyhow::Result<String> {
        let path = lang.map_or_else(|| "/".to_owned(), |l| format!("/?lang={l}"));
        let resp = self.send(Request::new("GET", "", &path))?;
        if resp.status != 200 {
            bail!(
                "the portal start page answered {}: {}",
                resp.status,
                resp.text()
            );
        }
        Ok(resp.text())
    }

    /// POSTs a form with the session's CSRF token; returns status and page.
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<(u16, String)> {
        let token = self
            .csrf
            .clone()
            .context("no CSRF cookie yet: open the start page first")?;
        let mut body = format!("csrf={}", form_encode(&token));
        for (k, v) in fields {
            body.push_str(&format!("&{k}={}", form_encode(v)));
        }
        let mut req = Request::new("POST", "", path)
            .header("content-type", "application/x-www-form-urlencoded");
        req.body = body.into_bytes();
        let resp = self.send(req)?;
        Ok((resp.status, resp.text()))
    }

    /// Shows the consent of a receipt code (consent, other consents, access history).
    pub fn view(&mut self, code: &str) -> anyhow::Result<(u16, String)> {
        self.post("/view", &[("code", code)])
    }

    /// Revokes the consent of a receipt code: asks, then confirms (the page that says
    /// what stops must come first).
    pub fn revoke(&mut self, code: &str, reason: &str) -> anyhow::Result<(u16, String)> {
        let (status, page) = self.post("/revoke", &[("code", code), ("reason", reason)])?;
        if status != 200 || !page.contains("id=\"confirm\"") {
            return Ok((status, page));
        }
        self.post(
            "/revoke",
            &[("code", code), ("reason", reason), ("confirm", "yes")],
        )
    }
}

/// The rows (`<tr>` after the header row) of the table with this `id` in a portal page.
pub fn table_rows(page: &str, id: &str) -> Vec<String> {
    let open = format!("<table id=\"{id}\">");
    let Some(start) = page.find(&open) else {
        return Vec::new();
    };
    let rest = page.get(start + open.len()..).unwrap_or_default();
    let body = rest.split("</table>").next().unwrap_or_default();
    body.split("<tr>")
        .skip(2)
        .map(|r| r.replace("</tr>", ""))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_skip_the_header_and_stop_at_the_table_end() {
        let page = "<table id=\"other\"><tr><th>x</th></tr><tr><td>no</td></tr></table>\
                    <table id=\"history\"><tr><th>when</th></tr><tr><td>a</td></tr><tr><td>b</td></tr></table><tr>";
        assert_eq!(
            table_rows(page, "history"),
            vec!["<td>a</td>", "<td>b</td>"]
        );
        assert!(table_rows(page, "missing").is_empty());
    }
}
