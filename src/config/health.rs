//! `health`: distribution's health checks — the storage driver, files, HTTP URLs and
//! TCP addresses, each checked every `interval`, failing after `threshold` failures in
//! a row. Failing checks make the instance unready (`/readyz`, `/debug/health`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigDuration, ConfigError};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(default)]
    pub storagedriver: StorageDriverCheck,
    #[serde(default)]
    pub file: Vec<FileCheck>,
    #[serde(default)]
    pub http: Vec<HttpCheck>,
    #[serde(default)]
    pub tcp: Vec<TcpCheck>,
}

/// `health.storagedriver`: the blob store answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageDriverCheck {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub interval: Option<ConfigDuration>,
    #[serde(default)]
    pub threshold: u32,
}

/// `health.file[]`: unhealthy while the file exists (a maintenance switch).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    pub file: String,
    #[serde(default)]
    pub interval: Option<ConfigDuration>,
}

/// `health.http[]`: the URL answers `statuscode` (200) within `timeout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub uri: String,
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub statuscode: Option<u16>,
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub interval: Option<ConfigDuration>,
    #[serde(default)]
    pub threshold: u32,
}

/// `health.tcp[]`: a connection to `addr` opens within `timeout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {
    pub addr: String,
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub interval: Option<ConfigDuration>,
    #[serde(default)]
    pub threshold: u32,
}

/// distribution's default interval.
pub fn interval(d: Option<ConfigDuration>) -> Duration {
    d.map_or(Duration::from_secs(10), |d| d.0)
}

/// distribution's default timeout for HTTP and TCP checks.
pub fn timeout(d: Option<ConfigDuration>) -> Duration {
    d.map_or(Duration::from_secs(1), |d| d.0)
}

impl HealthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let zero = |d: Option<ConfigDuration>, key: String| {
            if d.is_some_and(|d| d.0.is_zero()) {
                Err(ConfigError::key(key, "must be more than 0s"))
            } else {
                Ok(())
            }
        };
        zero(
            self.storagedriver.interval,
            "health.storagedriver.interval".into(),
        )?;
        for (i, f) in self.file.iter().enumerate() {
            zero(f.interval, format!("health.file[{i}].interval"))?;
            if f.file.trim().is_empty() {
                return Err(ConfigError::key(format!("health.file[{i}].file"), "empty"));
            }
        }
        for (i, h) in self.http.iter().enumerate() {
            zero(h.interval, format!("health.http[{i}].interval"))?;
            let ok = url::Url::parse(&h.uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return Err(ConfigError::key(
                    format!("health.http[{i}].uri"),
                    format!("{:?} is not an http(s) URL", h.uri),
                ));
            }
            if h.statuscode.is_some_and(|c| !(100..600).contains(&c)) {
                return Err(ConfigError::key(
                    format!("health.http[{i}].statuscode"),
                    "not an HTTP status",
                ));
            }
        }
        for (i, t) in self.tcp.iter().enumerate() {
            zero(t.interval, format!("health.tcp[{i}].interval"))?;
            if !t.addr.contains(':') {
                return Err(ConfigError::key(
                    format!("health.tcp[{i}].addr"),
                    format!("{:?} is not a host:port address", t.addr),
                ));
            }
        }
        Ok(())
    }
}
