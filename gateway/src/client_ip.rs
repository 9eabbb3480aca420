//! The client's IP address, as every per-IP rule sees it (login limits, alerts,
//! the sessions list). Behind a reverse proxy the TCP peer is the proxy, so
//! `X-Forwarded-For` is honoured — but only when the peer is one of the
//! `--trusted-proxies`, since anyone else could write the header. The client is
//! then the right-most address in the header that is not itself a trusted proxy
//! (each proxy appends the address it saw; addresses to the left of the first
//! untrusted hop are whatever the client claimed).

use std::net::IpAddr;

use actix_web::HttpRequest;

/// An address range, `ADDR/BITS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `ADDR/BITS` (or a bare address: one host).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { network, bits })
    }

    /// Parses a comma-separated list, refusing any bad entry.
    pub fn try_parse_list(list: &str) -> Result<Vec<Cidr>, String> {
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Cidr::parse)
            .collect()
    }

    /// Parses a list, skipping bad entries (start-up validates with
    /// [`Cidr::try_parse_list`] first, so none are skipped in practice).
    pub fn parse_list(list: &str) -> Vec<Cidr> {
        list.split(',')
            .filter_map(|s| Cidr::parse(s).ok())
            .collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The client address of `peer` with the given `X-Forwarded-For` value.
pub fn resolve(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let Some(header) = forwarded_for else {
        return Some(peer);
    };
    let mut client = peer;
    // Right to left: skip our own proxies; the first other hop is the client. A
    // malformed entry ends the walk (what lies left of it can't be trusted).
    for hop in header.rsplit(',').take(32) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => client = ip,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(client)
}

/// The client address of `req` as a string (`unknown` when there is no peer).
pub fn of(req: &HttpRequest, trusted: &[Cidr]) -> String {
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    resolve(req.peer_addr().map(|a| a.ip()), forwarded, trusted)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted = Cidr::try_parse_list("10.0.0.0/8, 127.0.0.1").unwrap();
        let xff = Some("1.2.3.4, 5.6.7.8, 10.1.1.1");
        // From a trusted proxy: the right-most untrusted hop.
        assert_eq!(
            resolve(Some(ip("10.0.0.2")), xff, &trusted),
            Some(ip("5.6.7.8"))
        );
        // From anyone else: the peer; the header is ignored.
        assert_eq!(
            resolve(Some(ip("9.9.9.9")), xff, &trusted),
            Some(ip("9.9.9.9"))
        );
        // No header: the peer.
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), None, &trusted),
            Some(ip("127.0.0.1"))
        );
        // Nothing trusted: never the header.
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), xff, &[]),
            Some(ip("127.0.0.1"))
        );
        // Garbage in the header ends the walk at the last good trusted hop.
        assert_eq!(
            resolve(Some(ip("10.0.0.2")), Some("evil, 10.3.3.3"), &trusted),
            Some(ip("10.3.3.3"))
        );
    }

    #[test]
    fn cidr_ranges_parse_and_match() {
        assert!(Cidr::parse("10.0.0.0/8")
            .unwrap()
            .contains(ip("10.200.1.1")));
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().contains(ip("11.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(Cidr::parse("127.0.0.1")
            .unwrap()
            .contains(ip("::ffff:127.0.0.1")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
        assert!(Cidr::try_parse_list("10.0.0.0/8,bad").is_err());
    }
}
