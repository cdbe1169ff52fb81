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

/// `http.tls`: HTTPS with rustls.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file: the server's certificate, then its chain.
    #[serde(default)]
    pub certificate: Option<String>,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<String>,
    /// PEM files of the CAs whose client certificates are required (mutual TLS).
    #[serde(default)]
    pub clientcas: Vec<String>,
    /// `tls1.2` (the default) or `tls1.3`; rustls has no TLS 1.0 or 1.1.
    #[serde(default)]
    pub minimumtls: Option<String>,
    /// Cipher suites by their IANA (Go) names; TLS 1.3 suites stay all enabled when
    /// none is named, as in Go.
    #[serde(default)]
    pub ciphersuites: Vec<String>,
    /// ACME: refused (Wharf obtains no certificates).
    #[serde(default)]
    pub letsencrypt: Option<serde_norway::Value>,
}

/// `http.tls.minimumtls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinimumTls {
    Tls12,
    Tls13,
}

impl TlsConfig {
    pub fn minimum(&self) -> Result<MinimumTls, ConfigError> {
        match self
            .minimumtls
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("tls1.2") => Ok(MinimumTls::Tls12),
            Some("tls1.3") => Ok(MinimumTls::Tls13),
            Some(v @ ("tls1.0" | "tls1.1")) => Err(ConfigError::key(
                "http.tls.minimumtls",
                format!(
                    "{v} is not supported (rustls speaks TLS 1.2 and 1.3): use tls1.2 or tls1.3"
                ),
            )),
            Some(v) => Err(ConfigError::key(
                "http.tls.minimumtls",
                format!("{v:?} is not a TLS version (tls1.2 or tls1.3)"),
            )),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.letsencrypt.is_some() {
            return Err(ConfigError::key(
                "http.tls.letsencrypt",
                "Wharf does not obtain certificates (no ACME): get one with certbot, \
                 cert-manager or your load balancer and name its files in \
                 http.tls.certificate and http.tls.key",
            ));
        }
        for key in ["certificate", "key"] {
            let v = if key == "key" {
                &self.key
            } else {
                &self.certificate
            };
            if v.as_deref().is_none_or(|v| v.trim().is_empty()) {
                return Err(ConfigError::key(
                    format!("http.tls.{key}"),
                    "required with http.tls (a PEM file)",
                ));
            }
        }
        self.minimum()?;
        self.cipher_suites()?;
        Ok(())
    }

    /// The enabled cipher suites (rustls' ring provider's, in its order of preference):
    /// those named in `ciphersuites` for the TLS versions they name, every suite of a
    /// version none is named for, only TLS 1.3's with `minimumtls: tls1.3`.
    pub fn cipher_suites(&self) -> Result<Vec<rustls::SupportedCipherSuite>, ConfigError> {
        let all = rustls::crypto::ring::ALL_CIPHER_SUITES;
        let mut named = Vec::new();
        for (i, name) in self.ciphersuites.iter().enumerate() {
            let wanted = go_suite_name(name);
            let Some(suite) = all
                .iter()
                .find(|s| go_suite_name(&format!("{:?}", s.suite())) == wanted)
            else {
                let known: Vec<String> = all.iter().map(|s| format!("{:?}", s.suite())).collect();
                return Err(ConfigError::key(
                    format!("http.tls.ciphersuites[{i}]"),
                    format!(
                        "{name:?} is not a cipher suite rustls offers (it has {})",
                        known.join(", ")
                    ),
                ));
            };
            named.push(*suite);
        }
        let is13 =
            |s: &rustls::SupportedCipherSuite| matches!(s, rustls::SupportedCipherSuite::Tls13(_));
        let named13 = named.iter().any(is13);
        let named12 = named.iter().any(|s| !is13(s));
        let mut suites: Vec<_> = all
            .iter()
            .filter(|s| {
                if is13(s) {
                    !named13 || named.contains(s)
                } else {
                    !named12 || named.contains(s)
                }
            })
            .copied()
            .collect();
        if self.minimum()? == MinimumTls::Tls13 {
            suites.retain(is13);
            if named12 && !named13 {
                return Err(ConfigError::key(
                    "http.tls.ciphersuites",
                    "names only TLS 1.2 suites, but http.tls.minimumtls is tls1.3",
                ));
            }
        }
        Ok(suites)
    }
}

/// A cipher suite's name as Go (and so distribution's files) writes it: rustls'
/// `TLS13_AES_128_GCM_SHA256` is Go's `TLS_AES_128_GCM_SHA256`, and Go's ChaCha20 names
/// may omit the `_SHA256`.
fn go_suite_name(name: &str) -> String {
    let n = name.trim().to_ascii_uppercase();
    let n = n
        .strip_prefix("TLS13_")
        .map_or(n.clone(), |r| format!("TLS_{r}"));
    n.strip_suffix("_POLY1305_SHA256")
        .map_or(n.clone(), |r| format!("{r}_POLY1305"))
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
    /// The write limiter (off unless set): pushes and deletes running at once.
    #[serde(default)]
    pub writes: Option<WriteLimits>,
    /// Open connections per client address (the TCP peer; an IPv6 one by its /64;
    /// `http.trustedproxies` not counted); beyond it the connection's request is
    /// answered `429 TOOMANYREQUESTS` and the connection closed. 0: no limit.
    #[serde(default = "default_connectionsperclient")]
    pub connectionsperclient: usize,
}

fn default_connectionsperclient() -> usize {
    256
}

/// `http.limits.writes`: at most `concurrent` writes (`POST`, `PUT`, `PATCH`, `DELETE`
/// on the API) run at once; up to `queued` more wait up to `queuetimeout` for a turn;
/// beyond that, or past the wait, `429 TOOMANYREQUESTS` with `Retry-After`. Reads
/// (`GET`, `HEAD`) never wait behind writes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteLimits {
    pub concurrent: usize,
    #[serde(default)]
    pub queued: usize,
    #[serde(default = "default_write_queue_timeout")]
    pub queuetimeout: ConfigDuration,
}

fn default_write_queue_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
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
            writes: None,
            connectionsperclient: default_connectionsperclient(),
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
    /// Added to every log line (`key=value` in text, members of JSON lines).
    #[serde(default)]
    pub fields: Option<BTreeMap<String, serde_norway::Value>>,
    /// `log.accesslog`: one line per request (target `wharf::access`) unless
    /// `disabled`.
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

    fn tls(yaml: &str) -> TlsConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn go_cipher_suite_names_match_rustls() {
        assert_eq!(
            go_suite_name("TLS13_AES_128_GCM_SHA256"),
            go_suite_name("TLS_AES_128_GCM_SHA256")
        );
        assert_eq!(
            go_suite_name("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
            go_suite_name("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305")
        );
        // Only the named TLS 1.2 suite, and every TLS 1.3 one.
        let suites = tls("ciphersuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]")
            .cipher_suites()
            .unwrap();
        let tls12: Vec<_> = suites
            .iter()
            .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls12(_)))
            .collect();
        assert_eq!(tls12.len(), 1);
        assert_eq!(suites.len(), 1 + 3);
        // minimumtls: tls1.3 drops TLS 1.2's, and refuses a list of TLS 1.2 suites only.
        let only13 = tls("minimumtls: tls1.3").cipher_suites().unwrap();
        assert!(only13
            .iter()
            .all(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_))));
        let e = tls("minimumtls: tls1.3\nciphersuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]")
            .cipher_suites()
            .unwrap_err();
        assert!(e.to_string().contains("http.tls.ciphersuites"), "{e}");
        let e = tls("ciphersuites: [TLS_RSA_WITH_AES_128_CBC_SHA]")
            .cipher_suites()
            .unwrap_err();
        assert!(e.to_string().contains("http.tls.ciphersuites[0]"), "{e}");
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
