//! `validation`: what a pushed manifest must satisfy beyond the spec's structure.
//!
//! distribution's keys are accepted: `enabled` (deprecated) and `disabled`,
//! `manifests.urls.{allow,deny}` (regular expressions the `urls` of non-distributable
//! layers must and must not match) and `manifests.indexes.platforms` (`all`: every
//! child of an index must be in the repository; `none`: none need be; distribution's
//! `list` with `platformlist` is refused, Wharf does not filter by platform).
//! Wharf adds `manifests.sparse`: a manifest may reference blobs and child manifests
//! that are not in the repository (the draft spec allows it; a pull-through cache and
//! an import fill such repositories), and a pull of a missing blob answers
//! `404 BLOB_UNKNOWN`.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// distribution's deprecated switch; accepted.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Turns the `manifests` checks off (the spec's own checks stay).
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub manifests: ManifestValidation,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestValidation {
    #[serde(default)]
    pub urls: UrlRules,
    #[serde(default)]
    pub indexes: IndexRules,
    /// (Wharf) referenced blobs and manifests need not be in the repository.
    #[serde(default)]
    pub sparse: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlRules {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexRules {
    /// `all` (default) or `none`.
    #[serde(default)]
    pub platforms: Option<String>,
    #[serde(default)]
    pub platformlist: Option<serde_norway::Value>,
}

impl ValidationConfig {
    /// Whether manifests may reference children that are not in the repository.
    pub fn sparse_manifests(&self) -> bool {
        !self.disabled && self.manifests.sparse
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self.manifests.indexes.platforms.as_deref() {
            None | Some("all") => {}
            Some("none") => {}
            Some("list") => {
                return Err(ConfigError::key(
                    "validation.manifests.indexes.platforms",
                    "`list` is not supported (Wharf does not filter index children by \
                     platform); use `all`, or `validation.manifests.sparse: true`",
                ))
            }
            Some(other) => {
                return Err(ConfigError::key(
                    "validation.manifests.indexes.platforms",
                    format!("unknown value {other:?}; expected all or none"),
                ))
            }
        }
        for (key, patterns) in [
            (
                "validation.manifests.urls.allow",
                &self.manifests.urls.allow,
            ),
            ("validation.manifests.urls.deny", &self.manifests.urls.deny),
        ] {
            for p in patterns {
                regex::Regex::new(p).map_err(|e| ConfigError::key(key, format!("{p:?}: {e}")))?;
            }
        }
        Ok(())
    }

    /// Compiled `urls.allow`/`urls.deny` patterns (checked by `validate`); none when
    /// the section is disabled.
    pub fn url_patterns(&self, patterns: &[String]) -> Vec<regex::Regex> {
        if self.disabled {
            return Vec::new();
        }
        patterns
            .iter()
            .filter_map(|p| regex::Regex::new(p).ok())
            .collect()
    }

    /// `manifests.indexes.platforms: none`: an index's children need not be present.
    pub fn sparse_indexes(&self) -> bool {
        !self.disabled && self.manifests.indexes.platforms.as_deref() == Some("none")
    }
}
