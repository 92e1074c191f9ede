//! A minimal browser for the demo: HTTPS to the resident portal (no client
//! certificate), keeping the CSRF cookie between a GET and a form POST.

use std::sync::Arc;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use renkei_crypto::tls::{crypto_provider, load_certs};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A portal session: the address, the trusted CA and the cookie it was given.
#[derive(Debug)]
pub(super) struct Browser {
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    cookie: Option<String>,
}

impl Browser {
    /// A browser trusting the hub's CA.
    pub(super) fn new(addr: std::net::SocketAddr, ca: &std::path::Path) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for c in load_certs(ca)? {
            roots.add(c).context("portal CA")?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .context("tls versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Browser {
            addr,
            tls: Arc::new(tls),
            cookie: None,
        })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        form: Option<String>,
    ) -> anyhow::Result<(u16, String)> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .context("connect to the portal")?;
        let name = rustls::pki_types::ServerName::try_from("localhost").context("server name")?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .context("portal TLS")?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("localhost:{}", self.addr.port()))
            .header("origin", format!("https://localhost:{}", self.addr.port()));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c.as_str());
        }
        let body = match form {
            Some(f) => {
                req = req.header("content-type", "application/x-www-form-urlencoded");
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = sender.send_request(req.body(body)?).await?;
        if let Some(set) = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
        {
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        let status = resp.status().as_u16();
        let text =
            String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
        Ok((status, text))
    }

    /// Opens the start page and keeps its CSRF token.
    pub(super) async fn open(&mut self) -> anyhow::Result<String> {
        let (status, page) = self.send("GET", "/", None).await?;
        if status != 200 {
            bail!("portal start page answered {status}");
        }
        Ok(page)
    }

    /// Posts a form from the last page (with its CSRF token).
    pub(super) async fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String)> {
        let token = self
            .cookie
            .as_deref()
            .and_then(|c| {
                c.strip_prefix(renkei_hub::portal::CSRF_COOKIE)?
                    .strip_prefix('=')
            })
            .map(str::to_owned)
            .context("no CSRF cookie; open the page first")?;
        let mut form = format!("csrf={token}");
        for (k, v) in fields {
            form.push_str(&format!("&{k}={}", urlencode(v)));
        }
        self.send("POST", path, Some(form)).await
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
