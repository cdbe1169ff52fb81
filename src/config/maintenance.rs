//! `storage.maintenance`: distribution's upload purging (`uploadpurging`: enabled, age,
//! interval, dryrun) and read-only mode (`readonly.enabled`).

use serde::Deserialize;

use super::{ConfigDuration, ConfigError};

const HOUR: u64 = 3600;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    #[serde(default)]
    pub uploadpurging: UploadPurgingConfig,
    #[serde(default)]
    pub readonly: ReadOnlyConfig,
}

/// Upload sessions nobody has touched for `age` are removed (their chunks, then their
/// rows) by a sweep every `interval`; `dryrun` only logs what would go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadPurgingConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_age")]
    pub age: ConfigDuration,
    #[serde(default = "default_interval")]
    pub interval: ConfigDuration,
    #[serde(default)]
    pub dryrun: bool,
}

/// Pushes and deletes refused with `405 UNSUPPORTED`; pulls go on. Upload purging is
/// paused meanwhile (as distribution does).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadOnlyConfig {
    #[serde(default)]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// distribution's defaults: 168h and 24h.
fn default_age() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(168 * HOUR))
}

fn default_interval() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(24 * HOUR))
}

impl Default for UploadPurgingConfig {
    fn default() -> Self {
        UploadPurgingConfig {
            enabled: true,
            age: default_age(),
            interval: default_interval(),
            dryrun: false,
        }
    }
}

impl MaintenanceConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.uploadpurging;
        if p.age.0.is_zero() {
            return Err(ConfigError::key(
                "storage.maintenance.uploadpurging.age",
                "must be more than 0",
            ));
        }
        if p.interval.0.is_zero() {
            return Err(ConfigError::key(
                "storage.maintenance.uploadpurging.interval",
                "must be more than 0",
            ));
        }
        Ok(())
    }
}
