//! `storage.cache` (which metadata cache) and `redis` (how to reach the shared one), with
//! distribution's key names; `storage.cache.ttl` is Wharf's own.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::cloud::Secret;
use super::ConfigError;

/// `storage.cache.blobdescriptor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// Shared by every instance through `redis`.
    Redis,
    /// In this process only: right for one instance.
    Inmemory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(default)]
    pub blobdescriptor: Option<CacheKind>,
    /// Accepted for compatibility (distribution's in-memory entry count); the in-memory
    /// cache is bounded by bytes instead.
    #[serde(default)]
    pub blobdescriptorsize: Option<u64>,
    /// How long an entry may live (Wharf). Bounds how stale an entry can get in the one
    /// case invalidation cannot reach: an instance killed while Redis was unreachable.
    #[serde(default = "default_ttl", deserialize_with = "duration")]
    pub ttl: Duration,
}

fn default_ttl() -> Duration {
    Duration::from_secs(600)
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            blobdescriptor: None,
            blobdescriptorsize: None,
            ttl: default_ttl(),
        }
    }
}

/// `redis.tls`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTlsConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Client certificate (PEM), for servers that require one.
    #[serde(default)]
    pub certificate: Option<String>,
    /// The client certificate's key (PEM).
    #[serde(default)]
    pub key: Option<String>,
    /// CA certificates (PEM files) that sign the server's certificate, instead of the
    /// public roots.
    #[serde(default)]
    pub clientcas: Vec<String>,
}

/// `redis.pool`: distribution's pool keys. Wharf multiplexes requests over `poolsize`
/// pipelined connections, so these are accepted and only `maxactive` is read (as
/// `poolsize` when that is not set).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisPoolConfig {
    #[serde(default)]
    pub maxidle: Option<u32>,
    #[serde(default)]
    pub maxactive: Option<u32>,
    #[serde(default)]
    pub idletimeout: Option<serde_norway::Value>,
}

/// `redis`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// One server (`host:port`).
    #[serde(default)]
    pub addr: Option<String>,
    /// One server, or several: the nodes of a Redis Cluster.
    #[serde(default)]
    pub addrs: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub db: i64,
    #[serde(default = "default_dial", deserialize_with = "duration")]
    pub dialtimeout: Duration,
    #[serde(default = "default_io", deserialize_with = "duration")]
    pub readtimeout: Duration,
    #[serde(default = "default_io", deserialize_with = "duration")]
    pub writetimeout: Duration,
    /// Pipelined connections per instance.
    #[serde(default)]
    pub poolsize: Option<u32>,
    #[serde(default)]
    pub pool: RedisPoolConfig,
    #[serde(default)]
    pub tls: RedisTlsConfig,
}

fn default_dial() -> Duration {
    Duration::from_secs(1)
}

/// Short on purpose: a slow Redis must not slow every pull (the cache fails open).
fn default_io() -> Duration {
    Duration::from_millis(250)
}

impl RedisConfig {
    /// The configured servers, `addr` first.
    pub fn servers(&self) -> Vec<String> {
        self.addr.iter().chain(&self.addrs).cloned().collect()
    }

    /// Connections to keep open.
    pub fn connections(&self) -> usize {
        self.poolsize
            .or(self.pool.maxactive)
            .unwrap_or(4)
            .clamp(1, 64) as usize
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let servers = self.servers();
        if servers.is_empty() {
            return Err(ConfigError::key(
                "redis.addr",
                "storage.cache.blobdescriptor is redis: set redis.addr or redis.addrs",
            ));
        }
        for s in &servers {
            let port = s
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
                return Err(ConfigError::key(
                    "redis.addrs",
                    format!("{s:?} is not host:port"),
                ));
            }
        }
        if self.addr.is_some() && self.addrs.len() > 1 {
            return Err(ConfigError::key(
                "redis.addr",
                "set either addr (one server) or addrs (cluster nodes), not both",
            ));
        }
        if self.tls.certificate.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::key(
                "redis.tls.key",
                "a client certificate needs both certificate and key",
            ));
        }
        if self.db != 0 && servers.len() > 1 {
            return Err(ConfigError::key(
                "redis.db",
                "Redis Cluster has only database 0",
            ));
        }
        Ok(())
    }
}

/// Checks the cache and redis sections together.
pub(super) fn validate(
    cache: &CacheConfig,
    redis: Option<&RedisConfig>,
) -> Result<(), ConfigError> {
    if cache.ttl.is_zero() {
        return Err(ConfigError::key("storage.cache.ttl", "must be more than 0"));
    }
    match (cache.blobdescriptor, redis) {
        (Some(CacheKind::Redis), None) => Err(ConfigError::key(
            "redis",
            "storage.cache.blobdescriptor is redis but there is no redis section",
        )),
        (Some(CacheKind::Redis), Some(r)) => r.validate(),
        _ => Ok(()),
    }
}

/// A duration as distribution writes them (`250ms`, `20m`, `1h30m`).
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    super::duration::ConfigDuration::deserialize(d).map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(yaml: &str) -> Result<RedisConfig, String> {
        serde_norway::from_str::<RedisConfig>(yaml)
            .map_err(|e| e.to_string())
            .and_then(|r| r.validate().map(|()| r).map_err(|e| e.to_string()))
    }

    #[test]
    fn durations_as_go_writes_them() {
        let r = redis(
            "addr: localhost:6379\ndialtimeout: 2s\nreadtimeout: 150ms\nwritetimeout: 1m30s\n",
        )
        .unwrap();
        assert_eq!(r.dialtimeout, Duration::from_secs(2));
        assert_eq!(r.readtimeout, Duration::from_millis(150));
        assert_eq!(r.writetimeout, Duration::from_secs(90));
        assert!(redis("addr: localhost:6379\nreadtimeout: soon\n")
            .unwrap_err()
            .contains("is not a duration"));
    }

    #[test]
    fn servers_and_their_checks() {
        let r = redis("addrs: [a:7000, b:7001, c:7002]\npassword: hush\n").unwrap();
        assert_eq!(r.servers().len(), 3);
        assert!(!format!("{r:?}").contains("hush"));
        assert!(redis("addr: nohost\n").unwrap_err().contains("host:port"));
        assert!(redis("addrs: []\n").unwrap_err().contains("redis.addr"));
        assert!(redis("addrs: [a:1, b:2]\ndb: 3\n")
            .unwrap_err()
            .contains("redis.db"));
        assert!(redis("addr: a:1\ntls:\n  certificate: c.pem\n")
            .unwrap_err()
            .contains("redis.tls.key"));
        assert!(redis("addr: a:1\nsentinel: x\n")
            .unwrap_err()
            .contains("sentinel"));
    }

    #[test]
    fn pool_size() {
        assert_eq!(redis("addr: a:1\n").unwrap().connections(), 4);
        assert_eq!(
            redis("addr: a:1\npool:\n  maxactive: 9\n")
                .unwrap()
                .connections(),
            9
        );
        assert_eq!(
            redis("addr: a:1\npoolsize: 2\npool:\n  maxactive: 9\n")
                .unwrap()
                .connections(),
            2
        );
    }
}
