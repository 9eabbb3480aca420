//! Where the load may go: only this machine. A load test is a deliberate flood, so
//! a mistyped `--url` must never point it at someone else's server; every address
//! the harness is given (the API's and the baseline's Redis) is checked here first
//! and refused unless its host is a loopback address (127.0.0.0/8, `::1`, or the
//! name `localhost`). The check is on the literal host: names other than
//! `localhost` are refused rather than resolved, since a resolver could answer
//! anything.

use std::net::IpAddr;

use anyhow::{bail, Context as _};

/// A base URL that passed the loopback check, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackUrl {
    base: String,
    host: String,
}

impl LoopbackUrl {
    /// Parses `url` (scheme `http`, or `redis` for the baseline) and refuses any host
    /// that is not loopback.
    pub fn parse(url: &str, allowed_schemes: &[&str]) -> anyhow::Result<LoopbackUrl> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
        if !allowed_schemes.contains(&parsed.scheme()) {
            bail!(
                "{url:?}: scheme {:?} not allowed here (expected one of {allowed_schemes:?})",
                parsed.scheme()
            );
        }
        let Some(raw_host) = parsed.host_str() else {
            bail!("{url:?}: no host");
        };
        // The URL parser normalises the host: IPv4 in dotted form, IPv6 in brackets,
        // names lower-cased.
        let literal = raw_host.trim_start_matches('[').trim_end_matches(']');
        let host = match literal.parse::<IpAddr>() {
            Ok(ip) => check_ip(url, ip)?,
            Err(_) if literal.eq_ignore_ascii_case("localhost") => "localhost".to_owned(),
            Err(_) => bail!("{url:?}: host {raw_host:?} is not a loopback address; the load test only targets this machine (127.0.0.0/8, ::1, localhost)"),
        };
        let base = parsed.as_str().trim_end_matches('/').to_owned();
        Ok(LoopbackUrl { base, host })
    }

    /// The URL without credentials, for reports and messages.
    pub fn redacted(&self) -> String {
        match reqwest::Url::parse(&self.base) {
            Ok(mut u) => {
                let _ = u.set_password(None);
                let _ = u.set_username("");
                u.as_str().trim_end_matches('/').to_owned()
            }
            Err(_) => self.base.clone(),
        }
    }

    /// The URL as given (normalised), without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// `base` + `path` (`path` starts with `/`).
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The same address with the scheme switched to `ws` (for `/v1/stream`).
    pub fn websocket(&self, path: &str) -> String {
        let rest = self.base.strip_prefix("http").unwrap_or(&self.base);
        format!("ws{rest}{path}")
    }

    pub fn host(&self) -> &str {
        &self.host
    }
}

fn check_ip(url: &str, ip: IpAddr) -> anyhow::Result<String> {
    // `is_loopback` is exactly 127.0.0.0/8 for v4 and ::1 for v6. An IPv4-mapped
    // v6 address (::ffff:127.0.0.1) is loopback too.
    let loopback = match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if !loopback {
        bail!("{url:?}: {ip} is not a loopback address; the load test only targets this machine (127.0.0.0/8, ::1, localhost)");
    }
    Ok(ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP: &[&str] = &["http"];

    #[test]
    fn loopback_hosts_are_accepted() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3:8080/",
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://[::1]:8080",
            "http://[::ffff:127.0.0.1]:80",
        ] {
            assert!(LoopbackUrl::parse(ok, HTTP).is_ok(), "{ok}");
        }
    }

    #[test]
    fn other_hosts_are_refused() {
        for bad in [
            "http://10.0.0.1:8080",
            "http://0.0.0.0:8080",
            "http://192.168.1.10",
            "http://example.com",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "http://[::2]:8080",
            "http://[::ffff:10.0.0.1]",
            "not a url",
        ] {
            assert!(LoopbackUrl::parse(bad, HTTP).is_err(), "{bad}");
        }
    }

    #[test]
    fn schemes_are_checked() {
        assert!(LoopbackUrl::parse("https://127.0.0.1", HTTP).is_err());
        assert!(LoopbackUrl::parse("redis://127.0.0.1:6379/", &["redis"]).is_ok());
        assert!(LoopbackUrl::parse("redis://10.1.1.1:6379/", &["redis"]).is_err());
    }

    #[test]
    fn urls_are_joined_and_switched_to_websocket() {
        let u = LoopbackUrl::parse("http://127.0.0.1:8080/", HTTP).unwrap();
        assert_eq!(u.join("/v1/account"), "http://127.0.0.1:8080/v1/account");
        assert_eq!(
            u.websocket("/v1/stream?token=t"),
            "ws://127.0.0.1:8080/v1/stream?token=t"
        );
        let r = LoopbackUrl::parse("redis://:secret@127.0.0.1:6379/0", &["redis"]).unwrap();
        assert_eq!(r.redacted(), "redis://127.0.0.1:6379/0");
    }
}
