//! The hub's address: host and port parsed from `https://host:port`.

use rustls_pki_types::ServerName;

use crate::error::{Error, Result, shorten};

/// Host and port of a hub URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubAddress {
    /// Host name or IP address (no brackets).
    pub host: String,
    /// TCP port (443 when the URL names none).
    pub port: u16,
}

impl HubAddress {
    /// Parses `https://host[:port][/]`; IPv6 addresses are written in brackets.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: &str| Error::invalid(format!("hub url `{}`", shorten(url)), reason);
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("must start with `https://`"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "must be `https://host:port` without a path, query or user",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let port = match port {
            None => 443,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("port must be a number from 1 to 65535"))?,
        };
        ServerName::try_from(host.to_owned()).map_err(|e| bad(&format!("host: {e}")))?;
        Ok(HubAddress {
            host: host.to_owned(),
            port,
        })
    }

    /// The `Host` header value.
    pub(super) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_parse_with_names_and_addresses() {
        let a = HubAddress::parse("https://hub.example.jp:8443").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("hub.example.jp", 8443));
        let a = HubAddress::parse("https://127.0.0.1:9000/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 9000));
        let a = HubAddress::parse("https://[::1]:9000").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 9000));
        assert_eq!(a.authority(), "[::1]:9000");
        let a = HubAddress::parse("https://hub.example.jp").unwrap();
        assert_eq!(a.port, 443);
        for bad in [
            "http://hub:1",
            "https://",
            "https://hub:0",
            "https://hub:99999",
            "https://hub:1/v1",
            "https://u@hub:1",
            "https://[::1:1",
            "https://bad host:1",
        ] {
            assert!(HubAddress::parse(bad).is_err(), "{bad} parsed");
        }
    }
}
