//! `http` and `log`: the listener and logging.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use serde::Deserialize;

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "default_level")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default = "default_formatter")]
    pub formatter: String,
    /// Accepted for compatibility; fields are added by the tracing spans instead.
    #[serde(default)]
    pub fields: Option<serde_yaml::Value>,
}

fn default_level() -> String {
    "info".into()
}

fn default_formatter() -> String {
    "text".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_level(),
            formatter: default_formatter(),
            fields: None,
        }
    }
}
