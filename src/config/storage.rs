//! `storage`: which blob backend, and the switches distribution keeps beside it.

use serde::Deserialize;

use super::ConfigError;

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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    #[serde(default)]
    pub disable: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub filesystem: Option<FilesystemConfig>,
    #[serde(default)]
    pub inmemory: Option<InMemoryConfig>,
    #[serde(default)]
    pub delete: DeleteConfig,
    #[serde(default)]
    pub redirect: RedirectConfig,
    /// Accepted for compatibility: distribution's upload purging settings. Wharf purges
    /// stale uploads from the database on its own.
    #[serde(default)]
    pub maintenance: Option<serde_yaml::Value>,
}

/// The chosen blob backend.
#[derive(Debug, Clone)]
pub enum StorageDriver {
    Filesystem { rootdirectory: String },
    InMemory,
}

impl StorageConfig {
    pub fn driver(&self) -> StorageDriver {
        match (&self.filesystem, &self.inmemory) {
            (_, Some(_)) => StorageDriver::InMemory,
            (Some(fs), None) => StorageDriver::Filesystem {
                rootdirectory: fs.rootdirectory.clone(),
            },
            (None, None) => StorageDriver::Filesystem {
                rootdirectory: default_root(),
            },
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let chosen = [self.filesystem.is_some(), self.inmemory.is_some()]
            .iter()
            .filter(|c| **c)
            .count();
        if chosen > 1 {
            return Err(ConfigError::key(
                "storage",
                "configure exactly one storage driver (filesystem or inmemory)",
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
        Ok(())
    }
}
