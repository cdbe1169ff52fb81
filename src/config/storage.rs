//! `storage`: which blob backend, and the switches distribution keeps beside it.

use serde::Deserialize;

use super::cache::CacheConfig;
use super::cloud::{AzureConfig, GcsConfig, S3Config};
use super::duration::ConfigDuration;
use super::gc::GcConfig;
use super::maintenance::MaintenanceConfig;
use super::ConfigError;

/// The storage drivers, as the keys under `storage` that choose them.
pub const DRIVERS: [&str; 5] = ["filesystem", "inmemory", "s3", "azure", "gcs"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    #[serde(default = "default_root")]
    pub rootdirectory: String,
    /// Accepted for compatibility (distribution's write concurrency); unused.
    #[serde(default)]
    pub maxthreads: Option<u32>,
}

fn default_root() -> String {
    "./wharf-data".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InMemoryConfig {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Default for DeleteConfig {
    fn default() -> Self {
        DeleteConfig { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// `storage.redirect.disable`: stream blob bytes through the registry instead of
    /// answering a cloud store's blob GET with a `307` to a presigned URL.
    #[serde(default)]
    pub disable: bool,
    /// `storage.redirect.expiry` (a Wharf key): how long a presigned URL is valid
    /// (default 20 minutes, at most 7 days).
    #[serde(default = "default_expiry")]
    pub expiry: ConfigDuration,
}

fn default_expiry() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(20 * 60))
}

impl Default for RedirectConfig {
    fn default() -> Self {
        RedirectConfig {
            disable: false,
            expiry: default_expiry(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub filesystem: Option<FilesystemConfig>,
    #[serde(default)]
    pub inmemory: Option<InMemoryConfig>,
    #[serde(default)]
    pub s3: Option<S3Config>,
    #[serde(default)]
    pub azure: Option<AzureConfig>,
    #[serde(default)]
    pub gcs: Option<GcsConfig>,
    #[serde(default)]
    pub delete: DeleteConfig,
    #[serde(default)]
    pub redirect: RedirectConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// Online garbage collection (a Wharf key).
    #[serde(default)]
    pub gc: GcConfig,
    /// distribution's `storage.tag.concurrencylimit` (parallel tag lookups in its
    /// storage driver); accepted and ignored: Wharf's tag lookups are one query.
    #[serde(default)]
    pub tag: Option<serde_norway::Value>,
}

/// The chosen blob backend.
#[derive(Debug, Clone)]
pub enum StorageDriver {
    Filesystem { rootdirectory: String },
    InMemory,
    S3(Box<S3Config>),
    Azure(Box<AzureConfig>),
    Gcs(Box<GcsConfig>),
}

impl StorageConfig {
    /// The configured driver (the filesystem under `./wharf-data` if none is).
    /// Assumes [`StorageConfig::validate`] passed: at most one driver is set.
    pub fn driver(&self) -> StorageDriver {
        if self.inmemory.is_some() {
            StorageDriver::InMemory
        } else if let Some(s3) = &self.s3 {
            StorageDriver::S3(Box::new(s3.clone()))
        } else if let Some(azure) = &self.azure {
            StorageDriver::Azure(Box::new(azure.clone()))
        } else if let Some(gcs) = &self.gcs {
            StorageDriver::Gcs(Box::new(gcs.clone()))
        } else {
            StorageDriver::Filesystem {
                rootdirectory: self
                    .filesystem
                    .as_ref()
                    .map_or_else(default_root, |fs| fs.rootdirectory.clone()),
            }
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let chosen = [
            self.filesystem.is_some(),
            self.inmemory.is_some(),
            self.s3.is_some(),
            self.azure.is_some(),
            self.gcs.is_some(),
        ];
        let names: Vec<&str> = DRIVERS
            .iter()
            .zip(chosen)
            .filter(|(_, c)| *c)
            .map(|(n, _)| *n)
            .collect();
        if names.len() > 1 {
            return Err(ConfigError::key(
                "storage",
                format!(
                    "configure exactly one storage driver ({}), not {}",
                    DRIVERS.join(", "),
                    names.join(" and ")
                ),
            ));
        }
        if let Some(fs) = &self.filesystem {
            if fs.rootdirectory.trim().is_empty() {
                return Err(ConfigError::key(
                    "storage.filesystem.rootdirectory",
                    "must not be empty",
                ));
            }
        }
        if let Some(s3) = &self.s3 {
            s3.validate()?;
        }
        if let Some(azure) = &self.azure {
            azure.validate()?;
        }
        if let Some(gcs) = &self.gcs {
            gcs.validate()?;
        }
        self.maintenance.validate()?;
        let expiry = self.redirect.expiry.0;
        if expiry.is_zero() || expiry > std::time::Duration::from_secs(7 * 24 * 3600) {
            return Err(ConfigError::key(
                "storage.redirect.expiry",
                "must be more than 0 and at most 7 days (S3's and GCS's limit)",
            ));
        }
        Ok(())
    }
}
