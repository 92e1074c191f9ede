//! nginx (Debian's package) as the reference server: a generated config in a temporary
//! folder, TLS 1.3 only, the hub's server certificate, client certificates required and
//! verified against the participant CA and its CRL, one static file, no access log.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::hub::free_port;

/// The path under which nginx serves the static body.
pub const BODY_PATH: &str = "/record.json";

/// An nginx master process (and its workers) serving one file.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    /// Listen address.
    pub addr: SocketAddr,
    /// Master process id.
    pub pid: u32,
}

/// The config text: `workers` worker processes, `root` as the document root.
pub fn config(dir: &Path, pki: &Path, port: u16, workers: usize, as_root: bool) -> String {
    let d = dir.display();
    let p = pki.display();
    let user = if as_root { "user root;\n" } else { "" };
    format!(
        "{user}worker_processes {workers};\nworker_rlimit_nofile 65536;\ndaemon off;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nodelay on;\n\
         \x20 keepalive_timeout 300s;\n  keepalive_requests 100000000;\n\
         \x20 client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
         \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n\
         \x20 scgi_temp_path {d}/tmp/scgi;\n\
         \x20 server {{\n    listen 127.0.0.1:{port} ssl;\n\
         \x20   ssl_certificate {p}/server.pem;\n    ssl_certificate_key {p}/server.key;\n\
         \x20   ssl_protocols TLSv1.3;\n\
         \x20   ssl_client_certificate {p}/ca.pem;\n    ssl_verify_client on;\n    ssl_crl {p}/crl.pem;\n\
         \x20   ssl_session_cache off;\n    ssl_session_tickets off;\n\
         \x20   root {d}/www;\n    default_type application/json;\n  }}\n}}\n"
    )
}

impl Nginx {
    /// Starts `bin` serving `body` at [`BODY_PATH`] with the PKI in `pki`.
    pub async fn start(
        bin: &Path,
        pki: &Path,
        body: &[u8],
        dir: &Path,
        workers: usize,
    ) -> Result<Nginx> {
        std::fs::create_dir_all(dir.join("www"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        std::fs::write(
            dir.join("www").join(BODY_PATH.trim_start_matches('/')),
            body,
        )?;
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            config(dir, pki, port, workers, crate::proc::running_as_root()),
        )?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting `{}`", bin.display()))?;
        let pid = child.id();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut nginx = Nginx { child, addr, pid };
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(nginx);
            }
            if let Some(status) = nginx.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited with {status}: {log}");
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("nginx did not listen on {addr} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops nginx (SIGTERM to the master, then SIGKILL after 5 s).
    pub async fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_requires_client_certificates_and_tls13() {
        let c = config(Path::new("/t"), Path::new("/p"), 8443, 2, true);
        for needle in [
            "ssl_verify_client on;",
            "ssl_protocols TLSv1.3;",
            "ssl_client_certificate /p/ca.pem;",
            "ssl_crl /p/crl.pem;",
            "listen 127.0.0.1:8443 ssl;",
            "worker_processes 2;",
            "user root;",
            "access_log off;",
        ] {
            assert!(c.contains(needle), "missing `{needle}` in\n{c}");
        }
        assert!(!config(Path::new("/t"), Path::new("/p"), 1, 1, false).contains("user root"));
    }
}
