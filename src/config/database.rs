//! `database`: where metadata lives (`url`), the pool (`maxconnections`), and how the
//! metadata store fails when the database is slow to hand out a connection
//! (`acquiretimeout`) or cannot be reached (`breaker`).

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigDuration, ConfigError};

/// `database`: where metadata lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:///path/wharf.db` or `postgres://user:pass@host/db`.
    #[serde(default = "default_database_url")]
    pub url: String,
    /// Connections per instance.
    #[serde(default = "default_max_connections")]
    pub maxconnections: u32,
    /// How long a request waits for a pooled connection before its 503.
    #[serde(default = "default_acquire_timeout")]
    pub acquiretimeout: ConfigDuration,
    /// The circuit breaker (PostgreSQL).
    #[serde(default)]
    pub breaker: BreakerConfig,
}

fn default_database_url() -> String {
    "sqlite://./wharf-data/wharf.db".into()
}

fn default_max_connections() -> u32 {
    16
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: default_database_url(),
            maxconnections: default_max_connections(),
            acquiretimeout: default_acquire_timeout(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// `database.acquiretimeout`: how long a request waits for a pooled connection.
pub fn default_acquire_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(2))
}

/// `database.breaker` (PostgreSQL): after `failures` consecutive connection failures,
/// requests are refused at once (503 with `Retry-After`) for `openfor`, then one probe
/// decides whether the breaker closes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive connection failures that open it; 0 turns the breaker off.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long it stays open before a probe.
    #[serde(default = "default_open_for")]
    pub openfor: ConfigDuration,
}

fn default_failures() -> u32 {
    5
}

fn default_open_for() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(5))
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: default_failures(),
            openfor: default_open_for(),
        }
    }
}

/// Checks the keys this module owns.
pub fn validate(acquire: ConfigDuration, breaker: &BreakerConfig) -> Result<(), ConfigError> {
    if acquire.0 < Duration::from_millis(100) || acquire.0 > Duration::from_secs(60) {
        return Err(ConfigError::key(
            "database.acquiretimeout",
            "must be between 100ms and 60s",
        ));
    }
    if breaker.openfor.0 < Duration::from_millis(100)
        || breaker.openfor.0 > Duration::from_secs(600)
    {
        return Err(ConfigError::key(
            "database.breaker.openfor",
            "must be between 100ms and 10m",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let b: BreakerConfig = serde_norway::from_str("{}").unwrap();
        assert_eq!(b.failures, 5);
        assert_eq!(b.openfor.0, Duration::from_secs(5));
        assert!(validate(default_acquire_timeout(), &b).is_ok());
        let e = validate(ConfigDuration(Duration::from_millis(10)), &b).unwrap_err();
        assert!(e.to_string().contains("database.acquiretimeout"), "{e}");
        let b: BreakerConfig = serde_norway::from_str("{failures: 0, openfor: 1h}").unwrap();
        let e = validate(default_acquire_timeout(), &b).unwrap_err();
        assert!(e.to_string().contains("database.breaker.openfor"), "{e}");
        assert!(serde_norway::from_str::<BreakerConfig>("{failure: 3}").is_err());
    }
}
