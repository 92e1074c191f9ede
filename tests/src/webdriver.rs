//! A real browser: headless Chromium driven through chromedriver's W3C WebDriver HTTP
//! API (JSON over plain HTTP to chromedriver on a free loopback port).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::http::{Request, plain};
use crate::proc::Background;

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian's `chromium` and `chromium-driver` put their programs.
fn find(names: &[&str]) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    names.iter().find_map(|n| {
        dirs.iter()
            .chain(&[
                PathBuf::from("/usr/bin"),
                PathBuf::from("/usr/lib/chromium"),
            ])
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// The Chromium and chromedriver programs, or `None` when they are not installed.
pub fn installed() -> Option<(PathBuf, PathBuf)> {
    Some((
        find(&["chromium", "chromium-browser"])?,
        find(&["chromedriver"])?,
    ))
}

/// A chromedriver with one browser session. Dropping it ends the session and the driver.
#[derive(Debug)]
pub struct Browser {
    driver: Background,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile; logs go to `dir`.
    pub async fn start(
        chromium: &Path,
        chromedriver: &Path,
        dir: &Path,
    ) -> anyhow::Result<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut c = Command::new(chromedriver);
        c.arg(format!("--port={port}")).arg(format!(
            "--log-path={}",
            dir.join("chromedriver.log").display()
        ));
        let driver = Background::spawn("chromedriver", &mut c, &dir.join("chromedriver.out"))?;
        crate::proc::wait_until(
            "chromedriver /status",
            Duration::from_secs(20),
            || async move {
                let r = tokio::task::spawn_blocking(move || {
                    crate::http::get(addr, "/status", Duration::from_secs(2))
                })
                .await??;
                Ok(r.json()?
                    .pointer("/value/ready")
                    .and_then(Value::as_bool)
                    .filter(|r| *r))
            },
        )
        .await?;
        let profile = tempfile::tempdir_in(dir).context("browser profile folder")?;
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--ignore-certificate-errors".to_owned(),
            "--lang=ja".to_owned(),
            "--window-size=1100,1400".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args,
                                   "prefs": {"intl.accept_languages": "ja"}}
        }}});
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let v = b
            .call("POST", "/session", Some(&caps))
            .context("starting a browser session")?;
        b.session = v
            .pointer("/sessionId")
            .and_then(Value::as_str)
            .context("no sessionId")?
            .to_owned();
        Ok(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut req = Request::new(method, &self.addr.to_string(), path);
        if let Some(b) = body {
            req = req.json(b);
        } else if method == "POST" {
            req = req.json(&json!({}));
        }
        let resp = plain(self.addr, &req, Duration::from_secs(60))?;
        let v = resp.json()?;
        if resp.status != 200 {
            bail!(
                "WebDriver {method} {path} answered {}: {}",
                resp.status,
                v.pointer("/value/message").unwrap_or(&v)
            );
        }
        Ok(v.get("value").cloned().unwrap_or(Value::Null))
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Navigates to `url` and waits for the page to load.
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(&json!({ "url": url })),
        )
        .map(|_| ())
    }

    /// The element matching a CSS selector, waiting up to `timeout` for it to appear.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            let v = self.call(
                "POST",
                &self.session_path("/elements"),
                Some(&json!({"using": "css selector", "value": css})),
            )?;
            if let Some(id) = v
                .pointer("/0")
                .and_then(|e| e.get(ELEMENT))
                .and_then(Value::as_str)
            {
                return Ok(id.to_owned());
            }
            if started.elapsed() > timeout {
                bail!(
                    "no element `{css}` after {timeout:?}; page:\n{}",
                    crate::proc::tail(&self.source()?, 3000)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into an element.
    pub fn type_into(&self, element: &str, text: &str) -> anyhow::Result<()> {
        let path = self.session_path(&format!("/element/{element}/value"));
        self.call("POST", &path, Some(&json!({ "text": text })))
            .map(|_| ())
    }

    /// Clicks an element.
    pub fn click(&self, element: &str) -> anyhow::Result<()> {
        self.call(
            "POST",
            &self.session_path(&format!("/element/{element}/click")),
            None,
        )
        .map(|_| ())
    }

    /// The visible text of an element.
    pub fn text(&self, element: &str) -> anyhow::Result<String> {
        let v = self.call(
            "GET",
            &self.session_path(&format!("/element/{element}/text")),
            None,
        )?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// The current page's HTML.
    pub fn source(&self) -> anyhow::Result<String> {
        Ok(self
            .call("GET", &self.session_path("/source"), None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its
    /// value. WebDriver runs it outside the page's Content-Security-Policy.
    pub fn execute(&self, script: &str, args: &[Value]) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` whose last argument is the callback that ends it, and returns the
    /// value it was called with.
    pub fn execute_async(&self, script: &str, args: &[Value]) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/async"),
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Resizes the window so that the viewport is `width` CSS pixels wide (a phone at 390,
    /// a desktop at 1280).
    pub fn set_width(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            "POST",
            &self.session_path("/window/rect"),
            Some(&json!({ "width": width, "height": height })),
        )
        .map(|_| ())
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let v = self.call("GET", &self.session_path("/screenshot"), None)?;
        let b64 = v.as_str().context("screenshot is not a string")?;
        data_encoding::BASE64
            .decode(b64.as_bytes())
            .context("screenshot is not base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.session_path(""), None);
        }
        let _ = self.driver.check_running();
    }
}
