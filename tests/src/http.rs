//! A small blocking HTTP/1.1 client, one request per connection: enough for the hub's
//! admin endpoints, the resident portal (over TLS) and chromedriver's WebDriver API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// Largest response accepted (a screenshot fits).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A request: method, path, `Host`, extra headers and a body.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, `DELETE`.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Host` header.
    pub host: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body (a `Content-Length` is sent when it is not empty or the method is POST).
    pub body: Vec<u8>,
}

impl Request {
    /// A request without extra headers or body.
    pub fn new(method: &str, host: &str, path: &str) -> Request {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            host: host.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a JSON body.
    pub fn json(self, value: &serde_json::Value) -> Request {
        let mut r = self.header("content-type", "application/json");
        r.body = value.to_string().into_bytes();
        r
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every header of that (lowercase) name.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response is not JSON: {}", self.text()))
    }
}

/// Sends `req` over `stream` (asking the server to close) and reads the response.
pub fn exchange<S: Read + Write>(stream: S, req: &Request) -> anyhow::Result<Response> {
    let mut stream = stream;
    write_request(&mut stream, req, true)?;
    read_response(BufReader::new(stream))
}

/// Sends `req` over `stream` without asking the server to close, and reads the response;
/// the next request can follow on the same connection (HTTP/1.1 keep-alive).
pub fn exchange_kept<S: Read + Write>(stream: &mut S, req: &Request) -> anyhow::Result<Response> {
    write_request(stream, req, false)?;
    read_response(BufReader::new(stream))
}

fn write_request<S: Write>(stream: &mut S, req: &Request, close: bool) -> anyhow::Result<()> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        req.method, req.path, req.host
    );
    if close {
        head.push_str("connection: close\r\n");
    }
    for (n, v) in &req.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !req.body.is_empty() || req.method == "POST" {
        head.push_str(&format!("content-length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .context("sending the request head")?;
    stream
        .write_all(&req.body)
        .context("sending the request body")?;
    stream.flush().context("sending the request")
}

fn read_line<R: BufRead>(r: &mut R) -> anyhow::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line).context("reading a response line")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn read_response<R: BufRead>(mut r: R) -> anyhow::Result<Response> {
    let status_line = read_line(&mut r)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line `{status_line}`"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut r)?;
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    if chunked {
        loop {
            let size_line = read_line(&mut r)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size `{size_line}`"))?;
            if size == 0 {
                break;
            }
            if resp.body.len() + size > MAX_BODY {
                bail!("response body over {MAX_BODY} bytes");
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(resp.body.get_mut(start..).unwrap_or_default())
                .context("reading a chunk")?;
            read_line(&mut r)?;
        }
    } else if let Some(n) = length {
        if n > MAX_BODY {
            bail!("response body of {n} bytes is over {MAX_BODY}");
        }
        resp.body.resize(n, 0);
        r.read_exact(&mut resp.body)
            .context("reading the response body")?;
    } else {
        // Read to the end; a TLS peer closing without close_notify ends the body too.
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => resp
                    .body
                    .extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e).context("reading the response body"),
            }
            if resp.body.len() > MAX_BODY {
                bail!("response body over {MAX_BODY} bytes");
            }
        }
    }
    Ok(resp)
}

/// A plain-HTTP request to `addr` with connect and read timeouts of `timeout`.
pub fn plain(addr: SocketAddr, req: &Request, timeout: Duration) -> anyhow::Result<Response> {
    let s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))
        .context("setting a read timeout")?;
    s.set_write_timeout(Some(timeout))
        .context("setting a write timeout")?;
    exchange(s, req)
}

/// `GET path` on `addr` over plain HTTP.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<Response> {
    plain(addr, &Request::new("GET", &addr.to_string(), path), timeout)
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_length_chunked_and_close_delimited_bodies() {
        let r =
            read_response(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA"[..])
                .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("x-a")),
            (200, &b"hello"[..], Some("b"))
        );
        let r = read_response(&b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"[..]).unwrap();
        assert_eq!((r.status, r.text()), (404, "abcde".to_owned()));
        let r = read_response(&b"HTTP/1.0 200 OK\r\n\r\nto the end"[..]).unwrap();
        assert_eq!(r.text(), "to the end");
        assert!(read_response(&b"garbage\r\n\r\n"[..]).is_err());
        assert!(read_response(&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"[..]).is_err());
    }

    #[test]
    fn writes_the_request_and_encodes_forms() {
        struct Loop(Vec<u8>, &'static [u8]);
        impl Read for Loop {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.1.read(buf)
            }
        }
        impl Write for Loop {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut l = Loop(
            Vec::new(),
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        );
        let req = Request::new("POST", "h:1", "/p")
            .header("x", "y")
            .json(&serde_json::json!({"a": 1}));
        assert_eq!(exchange(&mut l, &req).unwrap().status, 204);
        let sent = String::from_utf8(l.0).unwrap();
        assert!(
            sent.starts_with("POST /p HTTP/1.1\r\nhost: h:1\r\nconnection: close\r\nx: y\r\n"),
            "{sent}"
        );
        assert!(
            sent.ends_with("content-length: 7\r\n\r\n{\"a\":1}"),
            "{sent}"
        );
        assert_eq!(form_encode("AB-12 撤&="), "AB-12%20%E6%92%A4%26%3D");
    }
}
