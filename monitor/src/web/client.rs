//! Who is asking: the client address, its bucket, and the `Host` a request names.
//!
//! Behind a proxy every connection comes from the proxy, so limits keyed on the peer address
//! would lump every client together (and one client could lock everybody out). The client
//! address is therefore the peer's, unless the peer is a configured trusted proxy: then it is
//! the right-most `X-Forwarded-For` address that is not itself a trusted proxy (the left part of
//! that header is whatever the client wrote, and never believed). Limits count per
//! [`bucket`]: an IPv4 address, or an IPv6 /64 (one subscriber gets a whole /64, so counting
//! single IPv6 addresses would let anyone step around a limit).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::{header, HeaderMap};

/// An address block such as `10.0.0.0/8` or `fd00::/8`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/bits`.
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) => b.parse().ok()?,
            Some(_) => return None,
            None => max,
        };
        (bits <= max).then_some(Cidr { net, bits })
    }

    /// Whether `ip` lies in this block (IPv4-mapped IPv6 addresses count as IPv4).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
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

/// `ip`, with an IPv4-mapped IPv6 address turned back into IPv4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The bucket limits count `ip` in: the IPv4 address itself, or the IPv6 /64 it lies in.
pub(crate) fn bucket(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", Ipv6Addr::from(net))
        }
    }
}

/// Whether `peer` is one of `proxies`.
pub(crate) fn is_trusted(peer: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|p| p.contains(peer))
}

/// The client's address: `peer`, or, when `peer` is a trusted proxy, the right-most
/// `X-Forwarded-For` address that is not a trusted proxy. A trusted proxy that sends no usable
/// header is taken as the client.
pub(crate) fn client_ip(peer: SocketAddr, headers: &HeaderMap, proxies: &[Cidr]) -> IpAddr {
    let peer = canonical(peer.ip());
    if !is_trusted(peer, proxies) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(client, proxies) {
                    return client;
                }
            }
            // Garbage from further left cannot be trusted: stop at the last good hop.
            Err(_) => return client,
        }
    }
    client
}

/// Whether `s` is a host name or address as written in `allowed_hosts` (no port, no scheme).
pub(crate) fn valid_host(s: &str) -> bool {
    let s = s.trim_start_matches('[').trim_end_matches(']');
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The host part of a `Host` header value (`name`, `name:port`, `[v6]:port`), lower-cased.
pub(crate) fn host_name(value: &str) -> Option<String> {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        rest.split_once(']')?.0
    } else {
        match value.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => value,
        }
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether a request naming `host` may be answered. `allowed` empty: any host, unless the
/// server listens on loopback, when only loopback names are answered (a web page elsewhere
/// must not reach a local dashboard by pointing its own name at 127.0.0.1). A request with no
/// `Host` at all (HTTP/1.0, a health check) is answered: browsers always send one, so it cannot
/// be a page on another site.
pub(crate) fn host_allowed(headers: &HeaderMap, allowed: &[String], loopback: bool) -> bool {
    let Some(value) = headers.get(header::HOST) else {
        return true;
    };
    let Some(host) = value.to_str().ok().and_then(host_name) else {
        return false;
    };
    if !allowed.is_empty() {
        return allowed.iter().any(|a| {
            a.trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(&host)
        });
    }
    if loopback {
        return host == "localhost"
            || host
                .parse::<IpAddr>()
                .is_ok_and(|ip| canonical(ip).is_loopback());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(c.contains(ip("10.200.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.1.1")), "mapped v4");
        assert!(Cidr::parse("::1").expect("v6").contains(ip("::1")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("all")
            .contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "x", "10.0.0.0/", "10.0.0.0/a", "::/129"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket(ip("192.0.2.7")), "192.0.2.7");
        assert_eq!(bucket(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            bucket(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            bucket(ip("2001:db8:1:2::5")),
            "one /64, one bucket"
        );
        assert_ne!(bucket(ip("2001:db8:1:3::1")), bucket(ip("2001:db8:1:2::1")));
        assert_eq!(bucket(ip("::ffff:192.0.2.7")), "192.0.2.7");
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxies = [Cidr::parse("10.0.0.0/8").expect("cidr")];
        let from_proxy = SocketAddr::from(([10, 0, 0, 2], 5000));
        let stranger = SocketAddr::from(([203, 0, 113, 9], 5000));
        assert_eq!(
            client_ip(stranger, &xff("198.51.100.1"), &proxies),
            ip("203.0.113.9"),
            "a stranger's header is ignored"
        );
        assert_eq!(
            client_ip(from_proxy, &xff("198.51.100.1"), &proxies),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_ip(
                from_proxy,
                &xff("6.6.6.6, 198.51.100.1, 10.0.0.9"),
                &proxies
            ),
            ip("198.51.100.1"),
            "right-most untrusted hop; the client's own prefix is not believed"
        );
        assert_eq!(
            client_ip(from_proxy, &xff("junk, 198.51.100.1"), &proxies),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_ip(from_proxy, &HeaderMap::new(), &proxies),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(from_proxy, &xff("198.51.100.1"), &[]),
            ip("10.0.0.2"),
            "no trusted proxies: never believed"
        );
    }

    fn host(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host_name("Dash.Example.org:8443").as_deref(),
            Some("dash.example.org")
        );
        assert_eq!(host_name("[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(host_name("127.0.0.1").as_deref(), Some("127.0.0.1"));
        let allowed = vec!["dash.example.org".to_owned()];
        assert!(host_allowed(&host("dash.example.org:443"), &allowed, false));
        assert!(!host_allowed(&host("evil.example"), &allowed, false));
        assert!(
            host_allowed(&HeaderMap::new(), &allowed, false),
            "HTTP/1.0 health checks"
        );
        assert!(
            !host_allowed(&host("[::1"), &allowed, false),
            "unreadable Host"
        );
        assert!(host_allowed(&host("127.0.0.1:8080"), &[], true));
        assert!(host_allowed(&host("localhost:8080"), &[], true));
        assert!(host_allowed(&host("[::1]:8080"), &[], true));
        assert!(!host_allowed(&host("rebind.evil.example:8080"), &[], true));
        assert!(host_allowed(&host("anything"), &[], false));
        assert!(valid_host("dash.example.org") && valid_host("::1") && valid_host("[::1]"));
        assert!(!valid_host("https://x") && !valid_host("x:80") && !valid_host(""));
    }
}
