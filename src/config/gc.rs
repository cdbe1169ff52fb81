//! `storage.gc` (online garbage collection: review delay, pace, orphan sweep) and
//! `retention` (per-repository policies). Wharf keys; distribution has neither.

use serde::Deserialize;

use super::{ConfigDuration, ConfigError};

const HOUR: u64 = 3600;

fn hours(n: u64) -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(n * HOUR))
}

/// `storage.gc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcConfig {
    /// Collect at all. Default: `storage.delete.enabled`; `true` with deletes
    /// disabled is refused (`storage.delete.enabled: false` means nothing is collected).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// How long after the last event touching a blob or manifest (a reference dropped,
    /// an upload, a mount, a HEAD) it is reviewed.
    #[serde(default = "default_review_delay")]
    pub reviewdelay: ConfigDuration,
    /// Pause between review passes when nothing is due.
    #[serde(default = "default_interval")]
    pub interval: ConfigDuration,
    /// Reviews claimed per transaction.
    #[serde(default = "default_batch")]
    pub batchsize: u32,
    /// How often retention policies are applied.
    #[serde(default = "default_retention_interval")]
    pub retentioninterval: ConfigDuration,
    #[serde(default)]
    pub orphansweep: OrphanSweepConfig,
}

fn default_review_delay() -> ConfigDuration {
    hours(24)
}

fn default_interval() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(30))
}

fn default_batch() -> u32 {
    100
}

fn default_retention_interval() -> ConfigDuration {
    hours(1)
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            enabled: None,
            reviewdelay: default_review_delay(),
            interval: default_interval(),
            batchsize: default_batch(),
            retentioninterval: default_retention_interval(),
            orphansweep: OrphanSweepConfig::default(),
        }
    }
}

/// `storage.gc.orphansweep`: objects in the store that no row names, older than
/// `safetyage`, removed every `interval`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrphanSweepConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_sweep_interval")]
    pub interval: ConfigDuration,
    #[serde(default = "default_safety_age")]
    pub safetyage: ConfigDuration,
}

fn yes() -> bool {
    true
}

fn default_sweep_interval() -> ConfigDuration {
    hours(24)
}

fn default_safety_age() -> ConfigDuration {
    hours(24)
}

impl Default for OrphanSweepConfig {
    fn default() -> Self {
        OrphanSweepConfig {
            enabled: true,
            interval: default_sweep_interval(),
            safetyage: default_safety_age(),
        }
    }
}

/// One `retention` entry: which repositories, and what to keep.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicyConfig {
    /// Globs of repository names (`*` matches anything, `/` included).
    pub repositories: Vec<String>,
    /// Keep the N most recently pushed tags.
    #[serde(default)]
    pub keeptags: Option<usize>,
    /// Keep tags matching any of these regular expressions.
    #[serde(default)]
    pub keepmatching: Vec<String>,
    /// Delete manifests nothing keeps (no tag, parent or subject) pushed longer ago.
    #[serde(default)]
    pub untaggedolderthan: Option<ConfigDuration>,
    /// Keep tags and manifests pulled within this.
    #[serde(default)]
    pub keeppulledwithin: Option<ConfigDuration>,
    /// Only log what would be deleted.
    #[serde(default)]
    pub dryrun: bool,
}

impl RetentionPolicyConfig {
    /// The compiled `keepmatching` patterns (validated at load).
    pub fn keep_patterns(&self) -> Vec<regex::Regex> {
        self.keepmatching
            .iter()
            .filter_map(|p| regex::Regex::new(p).ok())
            .collect()
    }
}

impl GcConfig {
    /// Whether collection runs, given `storage.delete.enabled`.
    pub fn effective(&self, delete_enabled: bool) -> bool {
        delete_enabled && self.enabled.unwrap_or(true)
    }

    pub(super) fn validate(&self, delete_enabled: bool) -> Result<(), ConfigError> {
        if self.enabled == Some(true) && !delete_enabled {
            return Err(ConfigError::key(
                "storage.gc.enabled",
                "needs storage.delete.enabled: true (with deletes disabled nothing is collected)",
            ));
        }
        for (key, d) in [
            ("storage.gc.interval", self.interval),
            ("storage.gc.retentioninterval", self.retentioninterval),
            ("storage.gc.orphansweep.interval", self.orphansweep.interval),
        ] {
            if d.0.is_zero() {
                return Err(ConfigError::key(key, "must be more than 0"));
            }
        }
        if self.batchsize == 0 || self.batchsize > 10_000 {
            return Err(ConfigError::key(
                "storage.gc.batchsize",
                "must be between 1 and 10000",
            ));
        }
        if self.orphansweep.safetyage.0 < std::time::Duration::from_secs(60) {
            return Err(ConfigError::key(
                "storage.gc.orphansweep.safetyage",
                "must be at least 1m (objects being written are younger than this)",
            ));
        }
        Ok(())
    }
}

pub(super) fn validate_retention(
    policies: &[RetentionPolicyConfig],
    delete_enabled: bool,
) -> Result<(), ConfigError> {
    if !policies.is_empty() && !delete_enabled {
        return Err(ConfigError::key(
            "retention",
            "needs storage.delete.enabled: true",
        ));
    }
    for (i, p) in policies.iter().enumerate() {
        if p.repositories.is_empty() || p.repositories.iter().any(|r| r.trim().is_empty()) {
            return Err(ConfigError::key(
                format!("retention[{i}].repositories"),
                "name at least one repository glob, none empty",
            ));
        }
        for pattern in &p.keepmatching {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(ConfigError::key(
                    format!("retention[{i}].keepmatching"),
                    format!("{pattern:?} is not a regular expression: {e}"),
                ));
            }
        }
        if p.keeptags.is_none() && p.keepmatching.is_empty() && p.untaggedolderthan.is_none() {
            return Err(ConfigError::key(
                format!("retention[{i}]"),
                "says nothing to delete: set keeptags, keepmatching or untaggedolderthan",
            ));
        }
        if p.untaggedolderthan.is_some_and(|d| d.0.is_zero()) {
            return Err(ConfigError::key(
                format!("retention[{i}].untaggedolderthan"),
                "must be more than 0",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(yaml: &str) -> Result<Config, String> {
        let tree: serde_norway::Value = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        Config::from_tree(tree).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = load("{}").unwrap();
        let gc = &c.storage.gc;
        assert!(gc.effective(true) && !gc.effective(false));
        assert_eq!(gc.reviewdelay.0.as_secs(), 24 * 3600);
        assert_eq!(gc.interval.0.as_secs(), 30);
        assert_eq!(gc.batchsize, 100);
        assert!(gc.orphansweep.enabled);
        assert_eq!(gc.orphansweep.safetyage.0.as_secs(), 24 * 3600);
        assert!(c.retention.is_empty());
        let c = load("storage:\n  delete:\n    enabled: false\n").unwrap();
        assert!(!c.storage.gc.effective(c.storage.delete.enabled));
    }

    #[test]
    fn keys_and_policies() {
        let c = load(
            "storage:\n  gc:\n    reviewdelay: 0s\n    interval: 500ms\n    batchsize: 7\n    orphansweep:\n      enabled: false\n      safetyage: 2h\nretention:\n  - repositories: ['team/*']\n    keeptags: 10\n    keepmatching: ['^v[0-9]+']\n    untaggedolderthan: 168h\n    keeppulledwithin: 720h\n    dryrun: true\n",
        )
        .unwrap();
        assert!(c.storage.gc.reviewdelay.0.is_zero());
        assert_eq!(c.storage.gc.batchsize, 7);
        assert!(!c.storage.gc.orphansweep.enabled);
        let p = &c.retention[0];
        assert_eq!(p.keeptags, Some(10));
        assert!(p.keep_patterns()[0].is_match("v12"));
        assert_eq!(p.untaggedolderthan.unwrap().0.as_secs(), 168 * 3600);
        assert!(p.dryrun);
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, key) in [
            (
                "storage:\n  delete:\n    enabled: false\n  gc:\n    enabled: true\n",
                "storage.gc.enabled",
            ),
            ("storage:\n  gc:\n    batchsize: 0\n", "storage.gc.batchsize"),
            ("storage:\n  gc:\n    interval: 0s\n", "storage.gc.interval"),
            ("storage:\n  gc:\n    reviewdelay: soon\n", "storage.gc.reviewdelay"),
            ("storage:\n  gc:\n    colour: red\n", "colour"),
            (
                "storage:\n  gc:\n    orphansweep:\n      safetyage: 1s\n",
                "storage.gc.orphansweep.safetyage",
            ),
            (
                "retention:\n  - repositories: [a]\n    keepmatching: ['(']\n",
                "retention[0].keepmatching",
            ),
            ("retention:\n  - repositories: []\n    keeptags: 1\n", "retention[0].repositories"),
            ("retention:\n  - repositories: [a]\n", "retention[0]"),
            ("retention:\n  - repositories: [a]\n    keeptags: -1\n", "retention[0].keeptags"),
            (
                "storage:\n  delete:\n    enabled: false\nretention:\n  - repositories: [a]\n    keeptags: 1\n",
                "retention",
            ),
        ] {
            let e = load(yaml).unwrap_err();
            assert!(e.contains(key), "{yaml:?}: {e}");
        }
    }
}
