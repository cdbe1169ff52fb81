//! `http` and `log`: the listener and logging.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use std::time::Duration;

use serde::Deserialize;

use super::duration::ConfigDuration;
use super::ConfigError;

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
    /// `http.timeouts` (Wharf): how long a slow or silent client may hold a connection.
    #[serde(default)]
    pub timeouts: HttpTimeouts,
    /// `http.limits` (Wharf): how much work the server takes at once.
    #[serde(default)]
    pub limits: HttpLimits,
}

/// `http.timeouts`: each a duration such as `30s`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTimeouts {
    /// A request's head (request line and headers) must arrive within this.
    #[serde(default = "default_header")]
    pub header: ConfigDuration,
    /// A request body that brings no byte for this long ends the request (`408`); an
    /// upload keeps the offset of its last completed chunk.
    #[serde(default = "default_body")]
    pub body: ConfigDuration,
    /// Response bytes the client leaves unacknowledged for this long close the
    /// connection (the socket's `TCP_USER_TIMEOUT`, which also ends a zero window).
    #[serde(default = "default_send")]
    pub send: ConfigDuration,
    /// An idle keep-alive connection is closed after this.
    #[serde(default = "default_idle")]
    pub idle: ConfigDuration,
}

fn default_header() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}
fn default_body() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_send() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_idle() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            header: default_header(),
            body: default_body(),
            send: default_send(),
            idle: default_idle(),
        }
    }
}

/// `http.limits`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimits {
    /// Open connections at most (beyond it, new ones wait in the listen backlog).
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Blob uploads and downloads in progress at most; beyond it a new one is refused
    /// with `429 TOOMANYREQUESTS` and `Retry-After`, and `/readyz` says `saturated`.
    #[serde(default = "default_transfers")]
    pub transfers: usize,
    /// Bytes of manifest bodies held in memory at once (each counted at its
    /// `Content-Length`, or the 4 MiB maximum without one); beyond it a push is refused
    /// with `429 TOOMANYREQUESTS` and `Retry-After`.
    #[serde(default = "default_manifestbytes")]
    pub manifestbytes: usize,
}

fn default_manifestbytes() -> usize {
    64 * 1024 * 1024
}

fn default_connections() -> usize {
    10_000
}
fn default_transfers() -> usize {
    4_096
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connections: default_connections(),
            transfers: default_transfers(),
            manifestbytes: default_manifestbytes(),
        }
    }
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
            timeouts: HttpTimeouts::default(),
            limits: HttpLimits::default(),
        }
    }
}

impl HttpConfig {
    /// The address to bind.
    pub fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        let addr = if self.addr.starts_with(':') {
            format!("0.0.0.0{}", self.addr)
        } else {
            self.addr.clone()
        };
        addr.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                ConfigError::key(
                    "http.addr",
                    format!("{:?} is not a host:port address", self.addr),
                )
            })
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
        self.socket_addr()?;
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

/// `log`: distribution's keys, every value checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info` (the default) or `debug`, as in distribution (any case),
    /// and `trace`. `RUST_LOG`, when set, replaces it.
    #[serde(default)]
    pub level: LogLevel,
    /// `text` (the default), `json`, or `logstash` (JSON lines, as `json`).
    #[serde(default)]
    pub formatter: LogFormatter,
    /// Accepted for compatibility with distribution's files; not yet added to log
    /// lines (start-up says so when it is set).
    #[serde(default)]
    pub fields: Option<BTreeMap<String, serde_yaml::Value>>,
    /// `log.accesslog`: accepted for compatibility; Wharf writes no access log of its
    /// own yet (each request is a tracing span).
    #[serde(default)]
    pub accesslog: AccessLogConfig,
}

/// `log.accesslog`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    #[serde(default)]
    pub disabled: bool,
}

/// `log.level`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    const NAMES: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

    /// The level as a tracing filter directive.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let levels = [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ];
        levels
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(&s))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a log level ({})",
                    Self::NAMES.join(", ")
                ))
            })
    }
}

/// `log.formatter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatter {
    #[default]
    Text,
    Json,
    /// distribution's logstash formatter: JSON lines with logstash's field names;
    /// Wharf writes its usual JSON lines.
    Logstash,
}

impl LogFormatter {
    /// Whether lines are JSON objects.
    pub fn is_json(self) -> bool {
        matches!(self, LogFormatter::Json | LogFormatter::Logstash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> HttpConfig {
        serde_yaml::from_str(yaml).unwrap()
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
        assert!(serde_yaml::from_str::<HttpConfig>("timeouts: { bdy: 5s }\n").is_err());
    }
}
