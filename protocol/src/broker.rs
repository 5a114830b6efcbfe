//! Broker addresses.
//!
//! Every component reaches the MQTT broker with a URL of the same form: `mqtt://host[:port]` (also
//! `tcp://`; default port 1883) in the clear, or `mqtts://host[:port]` (also `ssl://`; default port
//! 8883) over TLS, optionally with `user:password@`.

/// Default MQTT port.
pub const DEFAULT_PORT: u16 = 1883;
/// Default MQTT-over-TLS port.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Username and password from the URL, if any.
    pub credentials: Option<(String, String)>,
    /// `mqtts://`: the connection is TLS.
    pub tls: bool,
}

/// Why a broker URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MQTT URL {url:?}: {why}")]
pub struct BrokerUrlError {
    /// The URL with any password removed.
    pub url: String,
    /// What is wrong.
    pub why: &'static str,
}

impl BrokerUrl {
    /// Parses `mqtt://[user:password@]host[:port]` (also `tcp://`), or `mqtts://…` (also
    /// `ssl://`) for TLS.
    pub fn parse(url: &str) -> Result<Self, BrokerUrlError> {
        let bad = |why| BrokerUrlError {
            url: redact(url),
            why,
        };
        let (tls, rest) = if let Some(r) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
        {
            (false, r)
        } else if let Some(r) = url
            .strip_prefix("mqtts://")
            .or_else(|| url.strip_prefix("ssl://"))
        {
            (true, r)
        } else {
            return Err(bad("expected mqtt://host[:port] or mqtts://host[:port]"));
        };
        let default_port = if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
        let rest = rest.trim_end_matches('/');
        let (credentials, hostport) = match rest.rsplit_once('@') {
            Some((cred, hp)) => {
                let (u, p) = cred.split_once(':').unwrap_or((cred, ""));
                (Some((u.to_owned(), p.to_owned())), hp)
            }
            None => (None, rest),
        };
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            // [v6]:port or [v6]
            let (h, after) = inner.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse::<u16>().map_err(|_| bad("port is not 1-65535"))?),
                None if after.is_empty() => (h, default_port),
                None => return Err(bad("unexpected text after ']'")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("port is not 1-65535"))?),
                None => (hostport, default_port),
            }
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(bad("missing or invalid host"));
        }
        if port == 0 {
            return Err(bad("port is not 1-65535"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            credentials,
            tls,
        })
    }
}

impl std::fmt::Display for BrokerUrl {
    /// The URL as [`BrokerUrl::parse`] reads it back: `mqtt://` or `mqtts://`, the credentials
    /// (password included: [`redact`] the text before showing it), the host (an IPv6 address in
    /// brackets) and the port.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://")?;
        if let Some((user, password)) = &self.credentials {
            write!(f, "{user}:{password}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_what_it_parses() {
        for url in [
            "mqtt://127.0.0.1:1883",
            "mqtts://u:p@broker.example:8883",
            "mqtt://[::1]:1884",
        ] {
            let parsed = BrokerUrl::parse(url).expect("parses");
            assert_eq!(parsed.to_string(), url);
            assert_eq!(BrokerUrl::parse(&parsed.to_string()), Ok(parsed));
        }
    }

    #[test]
    fn parses() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.credentials),
            ("127.0.0.1", 1884, None)
        );
        let u = BrokerUrl::parse("tcp://broker/").expect("url");
        assert_eq!((u.host.as_str(), u.port), ("broker", 1883));
        let u = BrokerUrl::parse("mqtt://bridge:s3cret@emqx:1884").expect("url");
        assert_eq!(u.credentials, Some(("bridge".into(), "s3cret".into())));
        assert_eq!((u.host.as_str(), u.port), ("emqx", 1884));
        let u = BrokerUrl::parse("mqtt://[::1]:1885").expect("url");
        assert_eq!((u.host.as_str(), u.port), ("::1", 1885));
        assert!(!u.tls);
        let u = BrokerUrl::parse("mqtts://g7:pw@broker.example").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("broker.example", 8883, true)
        );
        let u = BrokerUrl::parse("ssl://broker:9883").expect("url");
        assert_eq!((u.port, u.tls), (9883, true));
    }

    #[test]
    fn refuses() {
        for bad in [
            "http://x",
            "mqtt://",
            "mqtt://h:x",
            "mqtt://h:0",
            "mqtts://",
            "https://h",
            "mqtt://[::1",
            "mqtt://a b",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
        let e = BrokerUrl::parse("mqtt://u:pw@h:x").expect_err("bad port");
        assert!(!e.to_string().contains("pw"), "{e}");
    }

    #[test]
    fn redacts() {
        assert_eq!(redact("redis://:pw@h:6379"), "redis://***@h:6379");
        assert_eq!(redact("mqtt://h:1883"), "mqtt://h:1883");
    }
}
