//! `quotas` (a Wharf key): storage quotas in bytes per repository, per namespace prefix
//! (`team-a/` covers every repository under `team-a/`) and a default for every
//! namespace without its own. These seed the quotas the metadata store holds (the
//! admin API changes them at run time; see `registry::quota`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ByteSize, ConfigDuration, ConfigError};
use crate::types::RepoName;

/// `quotas`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotasConfig {
    /// The quota of every namespace (the name up to its first `/`; a name without one
    /// is its own namespace) that has no quota of its own.
    #[serde(default)]
    pub default: Option<ByteSize>,
    /// Quotas by namespace prefix, each ending in `/` (`team-a/`, `team-a/ci/`).
    #[serde(default)]
    pub namespaces: BTreeMap<String, ByteSize>,
    /// Quotas by repository name.
    #[serde(default)]
    pub repositories: BTreeMap<String, ByteSize>,
    /// How long an upload's reservation lasts after its last request (default 1h):
    /// past it the reservation no longer counts, and the upload's next request
    /// reserves again.
    #[serde(default)]
    pub reservationttl: Option<ConfigDuration>,
}

impl QuotasConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for prefix in self.namespaces.keys() {
            let key = format!("quotas.namespaces.{prefix}");
            let Some(name) = prefix.strip_suffix('/') else {
                return Err(ConfigError::key(
                    key,
                    "a namespace prefix ends in `/` (`team-a/`); name a repository under quotas.repositories",
                ));
            };
            RepoName::parse(name).map_err(|e| ConfigError::key(&key, e.to_string()))?;
        }
        for name in self.repositories.keys() {
            RepoName::parse(name).map_err(|e| {
                ConfigError::key(format!("quotas.repositories.{name}"), e.to_string())
            })?;
        }
        if let Some(ttl) = self.reservationttl {
            if ttl.0 < std::time::Duration::from_secs(1) {
                return Err(ConfigError::key(
                    "quotas.reservationttl",
                    "must be at least 1s",
                ));
            }
        }
        Ok(())
    }

    /// Every configured quota as (scope, bytes): the default as `*`.
    pub fn scopes(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        if let Some(d) = self.default {
            out.push(("*".to_string(), d.0));
        }
        out.extend(self.namespaces.iter().map(|(k, v)| (k.clone(), v.0)));
        out.extend(self.repositories.iter().map(|(k, v)| (k.clone(), v.0)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<QuotasConfig, String> {
        let c: QuotasConfig = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn quotas_parse_and_validate() {
        let c = parse(
            "default: 10GiB\nnamespaces: { team-a/: 50GiB }\nrepositories: { team-a/app: 1000 }\n",
        )
        .unwrap();
        assert_eq!(
            c.scopes(),
            vec![
                ("*".to_string(), 10 << 30),
                ("team-a/".to_string(), 50 << 30),
                ("team-a/app".to_string(), 1000)
            ]
        );
        let e = parse("namespaces: { team-a: 1GiB }\n").unwrap_err();
        assert!(
            e.contains("quotas.namespaces.team-a") && e.contains("ends in"),
            "{e}"
        );
        let e = parse("repositories: { Bad/Name: 1GiB }\n").unwrap_err();
        assert!(e.contains("quotas.repositories.Bad/Name"), "{e}");
        let e = parse("default: 10 parsecs\n").unwrap_err();
        assert!(e.contains("unknown unit"), "{e}");
        assert!(parse("defualt: 1GiB\n").is_err());
        let e = parse("reservationttl: 0s\n").unwrap_err();
        assert!(e.contains("quotas.reservationttl"), "{e}");
    }
}
