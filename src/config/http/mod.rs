//! `http`: the listener — its address or socket, URLs (`prefix`, `host`), extra
//! headers, trusted proxies, the debug listener — with its parts in `tls`
//! (`http.tls`) and `limits` (`http.timeouts`, `http.limits`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

mod limits;
mod tls;

use limits::{HttpLimits, HttpTimeouts};
pub use tls::{MinimumTls, TlsConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port`; `:port` listens on every interface, as in distribution.
    #[serde(default = "default_addr")]
    pub addr: String,
    /// Accepted for compatibility and ignored: Wharf needs no shared secret between
    /// instances (upload state lives in the database).
    #[serde(default)]
    pub secret: Option<String>,
    /// Extra headers added to every response.
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    /// `http.trustedproxies` (a Wharf extension): the addresses or CIDR ranges of the
    /// proxies whose `X-Forwarded-For` is believed when finding a client's address.
    #[serde(default)]
    pub trustedproxies: Vec<String>,
    /// `tcp` (the default) or `unix` (then `addr` is the socket's path).
    #[serde(default)]
    pub net: Option<String>,
    /// The path before `/v2/` when the registry is not served at the root (`/path/`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// The externally reachable URL (`https://registry.example.com`): generated
    /// `Location` URLs are absolute on it. Without it they are relative.
    #[serde(default)]
    pub host: Option<String>,
    /// distribution's switch for relative `Location` URLs; Wharf's are relative unless
    /// `host` is set, and `relativeurls: true` keeps them relative even then.
    #[serde(default)]
    pub relativeurls: bool,
    /// How long a stopping server waits for requests in progress (default 30 s).
    #[serde(default)]
    pub draintimeout: Option<super::ConfigDuration>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub http2: Http2Config,
    /// `http.h2c`: HTTP/2 without TLS (prior knowledge); accepted, not served.
    #[serde(default)]
    pub h2c: Option<serde_norway::Value>,
    /// `http.debug`: a second listener for operators (metrics, health).
    #[serde(default)]
    pub debug: Option<DebugConfig>,
    /// `http.timeouts` (Wharf): how long a slow or silent client may hold a connection.
    #[serde(default)]
    pub timeouts: HttpTimeouts,
    /// `http.limits` (Wharf): how much work the server takes at once.
    #[serde(default)]
    pub limits: HttpLimits,
}

/// `http.debug`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
    /// `host:port` of the debug listener.
    pub addr: String,
    #[serde(default)]
    pub prometheus: PrometheusConfig,
}

/// `http.debug.prometheus`: the metrics on the debug listener (and then not on the
/// public port).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Default `/metrics`.
    #[serde(default)]
    pub path: Option<String>,
}

impl PrometheusConfig {
    pub fn path(&self) -> String {
        self.path.clone().unwrap_or_else(|| "/metrics".into())
    }
}

impl DebugConfig {
    /// The debug listener's address (`:5001` is every interface).
    pub fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr(&self.addr, "http.debug.addr")
    }
}

/// `host:port`, or `:port` for every interface, as distribution writes them.
fn parse_addr(addr: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConfigError::key(key, format!("{addr:?} is not a host:port address")))
}

/// `http.http2`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Config {
    /// Serve HTTP/1.1 only over TLS (no `h2` in ALPN).
    #[serde(default)]
    pub disabled: bool,
}

fn default_addr() -> String {
    "127.0.0.1:5000".into()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: default_addr(),
            secret: None,
            headers: BTreeMap::new(),
            trustedproxies: Vec::new(),
            net: None,
            prefix: None,
            host: None,
            relativeurls: false,
            draintimeout: None,
            tls: None,
            http2: Http2Config::default(),
            h2c: None,
            debug: None,
            timeouts: HttpTimeouts::default(),
            limits: HttpLimits::default(),
        }
    }
}

impl HttpConfig {
    /// True when `http.net` is `unix`: `addr` is a socket path.
    pub fn is_unix(&self) -> bool {
        self.net.as_deref() == Some("unix")
    }

    /// `http.prefix` normalized to `/path` (no trailing slash), or "" at the root.
    pub fn prefix(&self) -> String {
        let p = self
            .prefix
            .as_deref()
            .unwrap_or("")
            .trim()
            .trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("/{p}")
        }
    }

    /// What generated `Location` URLs start with: `host` (unless `relativeurls`) and
    /// the prefix, never a trailing slash.
    pub fn url_base(&self) -> String {
        let host = match (&self.host, self.relativeurls) {
            (Some(h), false) => h.trim().trim_end_matches('/').to_string(),
            _ => String::new(),
        };
        format!("{host}{}", self.prefix())
    }

    /// `http.draintimeout`, 30 s by default.
    pub fn drain_timeout(&self) -> std::time::Duration {
        self.draintimeout
            .map_or(std::time::Duration::from_secs(30), |d| d.0)
    }

    /// The address to bind.
    pub fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr(&self.addr, "http.addr")
    }

    /// `http.debug.prometheus.enabled`: the metrics leave the public port.
    pub fn metrics_on_debug(&self) -> bool {
        self.debug.as_ref().is_some_and(|d| d.prometheus.enabled)
    }

    /// `http.trustedproxies` as networks (a plain address is a /32 or /128).
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trustedproxies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let p = p.trim();
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::key(
                            format!("http.trustedproxies[{i}]"),
                            format!("{p:?} is neither an IP address nor a CIDR range"),
                        )
                    })
            })
            .collect()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self.net.as_deref() {
            None | Some("tcp") => {
                self.socket_addr()?;
            }
            Some("unix") => {
                if self.addr.trim().is_empty() {
                    return Err(ConfigError::key(
                        "http.addr",
                        "with http.net: unix, the path of the socket",
                    ));
                }
            }
            Some(other) => {
                return Err(ConfigError::key(
                    "http.net",
                    format!("{other:?} is not a network Wharf listens on (tcp or unix)"),
                ))
            }
        }
        if let Some(host) = &self.host {
            let ok = url::Url::parse(host.trim())
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(ConfigError::key(
                    "http.host",
                    format!("{host:?} is not an absolute URL such as https://registry.example.com"),
                ));
            }
        }
        if let Some(prefix) = &self.prefix {
            let p = prefix.trim();
            if !p.is_empty()
                && (!p.starts_with('/') || p.contains("//") || p.contains(['?', '#', ' ']))
            {
                return Err(ConfigError::key(
                    "http.prefix",
                    format!("{prefix:?} is not a path such as /registry/"),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        if let Some(debug) = &self.debug {
            debug.socket_addr()?;
            if !debug.prometheus.path().starts_with('/') {
                return Err(ConfigError::key(
                    "http.debug.prometheus.path",
                    format!(
                        "{:?} is not a path such as /metrics",
                        debug.prometheus.path()
                    ),
                ));
            }
        }
        self.trusted_proxies()?;
        let t = &self.timeouts;
        for (key, d) in [
            ("header", t.header),
            ("body", t.body),
            ("send", t.send),
            ("idle", t.idle),
        ] {
            if d.0 < Duration::from_secs(1) {
                return Err(ConfigError::key(
                    format!("http.timeouts.{key}"),
                    "must be at least 1s",
                ));
            }
        }
        if self.limits.manifestbytes < 4 * 1024 * 1024 {
            return Err(ConfigError::key(
                "http.limits.manifestbytes",
                "must be at least 4194304 (one manifest of the largest size)",
            ));
        }
        if let Some(w) = self.limits.writes {
            if w.concurrent == 0 {
                return Err(ConfigError::key(
                    "http.limits.writes.concurrent",
                    "must be at least 1",
                ));
            }
            if w.queuetimeout.0 > Duration::from_secs(300) {
                return Err(ConfigError::key(
                    "http.limits.writes.queuetimeout",
                    "must be at most 5m (a queued push holds its connection)",
                ));
            }
        }
        for (key, n) in [
            ("connections", self.limits.connections),
            ("transfers", self.limits.transfers),
        ] {
            if n == 0 {
                return Err(ConfigError::key(
                    format!("http.limits.{key}"),
                    "must be at least 1",
                ));
            }
        }
        for name in self.headers.keys() {
            if actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::key(
                    format!("http.headers.{name}"),
                    "not a valid header name",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> HttpConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn timeouts_and_limits_have_defaults_and_are_checked() {
        let c = parse("addr: 127.0.0.1:5000\n");
        assert_eq!(c.timeouts.header.0, Duration::from_secs(10));
        assert_eq!(c.timeouts.body.0, Duration::from_secs(60));
        assert_eq!(c.timeouts.send.0, Duration::from_secs(60));
        assert_eq!(c.timeouts.idle.0, Duration::from_secs(30));
        assert_eq!(c.limits.connections, 10_000);
        assert_eq!(c.limits.transfers, 4_096);
        assert_eq!(c.limits.manifestbytes, 64 * 1024 * 1024);
        assert_eq!(c.limits.connectionsperclient, 256);
        assert!(c.validate().is_ok());

        let c = parse("timeouts: { body: 5s, send: 2m }\nlimits: { transfers: 10 }\n");
        assert_eq!(c.timeouts.body.0, Duration::from_secs(5));
        assert_eq!(c.timeouts.send.0, Duration::from_secs(120));
        assert_eq!(c.limits.transfers, 10);

        let e = parse("timeouts: { body: 100ms }\n").validate().unwrap_err();
        assert!(e.to_string().contains("http.timeouts.body"), "{e}");
        let e = parse("limits: { transfers: 0 }\n").validate().unwrap_err();
        assert!(e.to_string().contains("http.limits.transfers"), "{e}");
        let e = parse("limits: { manifestbytes: 1000 }\n")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("http.limits.manifestbytes"), "{e}");
        assert!(serde_norway::from_str::<HttpConfig>("timeouts: { bdy: 5s }\n").is_err());
    }

    #[test]
    fn url_base_from_host_prefix_and_relativeurls() {
        let http = |yaml: &str| serde_norway::from_str::<HttpConfig>(yaml).unwrap();
        assert_eq!(http("{}").url_base(), "");
        assert_eq!(http("prefix: /r/").url_base(), "/r");
        assert_eq!(
            http("prefix: /r/\nhost: https://h.example:5000/").url_base(),
            "https://h.example:5000/r"
        );
        assert_eq!(
            http("host: https://h.example\nrelativeurls: true").url_base(),
            ""
        );
    }
}
