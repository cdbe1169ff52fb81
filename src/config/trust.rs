//! `trust`: trust policies (a Wharf key; distribution has none). Each policy names the
//! repositories it covers (globs, as `retention`'s: `*` matches any run of characters,
//! `/` included), when it applies (`pull` by tag, and optionally `push` of a tag) and
//! the keys a signature must verify against: cosign/sigstore public keys (ECDSA P-256,
//! PEM) and OpenPGP public keys for simple signing (armored or binary). The key files
//! are read and parsed at start-up (`trust::Trust::from_config`), so a bad key stops
//! the server with a message naming the policy and the file.

use serde::Deserialize;

use super::ConfigError;

/// `trust`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    #[serde(default)]
    pub policies: Vec<TrustPolicyConfig>,
}

/// When a policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustAction {
    /// `GET`/`HEAD` of a manifest by tag (and by digest for callers without push scope).
    Pull,
    /// `PUT` of a manifest by tag: the manifest must already be signed.
    Push,
}

/// How a signature's claimed image must match the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityCheck {
    /// The signed reference's repository (its registry host left aside) is the
    /// repository pulled from.
    #[default]
    Repository,
    /// Only the manifest digest is checked (images signed under another name).
    Digest,
}

/// The keys of one policy.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustKeys {
    /// PEM `PUBLIC KEY` files of ECDSA P-256 keys (cosign, `skopeo
    /// --sign-by-sigstore-private-key`): sigstore attachments and cosign referrers.
    #[serde(default)]
    pub cosign: Vec<String>,
    /// OpenPGP public key files (RSA or Ed25519): simple signing through the signature
    /// API extension (`skopeo --sign-by`).
    #[serde(default)]
    pub gpg: Vec<String>,
}

/// `trust.policies[]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicyConfig {
    /// Named in refusals and metrics.
    pub name: String,
    /// Repository globs; the first policy matching a repository is its policy.
    pub repositories: Vec<String>,
    /// When the policy applies; default `[pull]`.
    #[serde(default = "default_actions")]
    pub on: Vec<TrustAction>,
    pub keys: TrustKeys,
    #[serde(default)]
    pub identity: IdentityCheck,
}

fn default_actions() -> Vec<TrustAction> {
    vec![TrustAction::Pull]
}

impl TrustConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            let key = |k: &str| format!("trust.policies[{i}].{k}");
            if p.name.trim().is_empty()
                || !p
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(ConfigError::key(
                    key("name"),
                    "a name of letters, digits, '-', '_' and '.' is required",
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(ConfigError::key(
                    key("name"),
                    format!("{:?} names another policy too", p.name),
                ));
            }
            if p.repositories.is_empty() || p.repositories.iter().any(|r| r.trim().is_empty()) {
                return Err(ConfigError::key(
                    key("repositories"),
                    "name at least one repository glob, none empty",
                ));
            }
            if p.on.is_empty() {
                return Err(ConfigError::key(key("on"), "name pull, push or both"));
            }
            if p.keys.cosign.is_empty() && p.keys.gpg.is_empty() {
                return Err(ConfigError::key(
                    key("keys"),
                    "name at least one key (cosign or gpg): a policy no signature can satisfy \
                     would refuse every pull",
                ));
            }
            for (kind, files) in [("cosign", &p.keys.cosign), ("gpg", &p.keys.gpg)] {
                if let Some(f) = files.iter().find(|f| f.trim().is_empty()) {
                    return Err(ConfigError::key(
                        key(&format!("keys.{kind}")),
                        format!("{f:?} is not a file name"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{IdentityCheck, TrustAction};
    use crate::config::Config;

    fn load(yaml: &str) -> Result<Config, String> {
        let tree: serde_norway::Value = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        Config::from_tree(tree).map_err(|e| e.to_string())
    }

    #[test]
    fn a_policy_and_its_defaults() {
        let c = load(
            "trust:\n  policies:\n    - name: prod\n      repositories: [\"prod/*\"]\n      keys:\n        gpg: [/k.asc]\n",
        )
        .unwrap();
        let p = &c.trust.policies[0];
        assert_eq!(p.on, vec![TrustAction::Pull]);
        assert_eq!(p.identity, IdentityCheck::Repository);
        assert!(load("{}").unwrap().trust.policies.is_empty());
    }

    #[test]
    fn refusals_name_the_key() {
        let cases = [
            ("- {name: '', repositories: [a], keys: {gpg: [k]}}", "trust.policies[0].name"),
            ("- {name: 'a b', repositories: [a], keys: {gpg: [k]}}", "trust.policies[0].name"),
            ("- {name: a, repositories: [], keys: {gpg: [k]}}", "trust.policies[0].repositories"),
            ("- {name: a, repositories: [x], keys: {}}", "trust.policies[0].keys"),
            ("- {name: a, repositories: [x], on: [], keys: {gpg: [k]}}", "trust.policies[0].on"),
            ("- {name: a, repositories: [x], keys: {cosign: [' ']}}", "trust.policies[0].keys.cosign"),
            (
                "- {name: a, repositories: [x], keys: {gpg: [k]}}\n    - {name: a, repositories: [y], keys: {gpg: [k]}}",
                "trust.policies[1].name",
            ),
            ("- {name: a, repositories: [x], keys: {gpg: [k]}, on: [pul]}", "unknown variant"),
            ("- {name: a, repositories: [x], keys: {pgp: [k]}}", "unknown field"),
            ("- {name: a, repositories: [x], keys: {gpg: [k]}, identity: any}", "unknown variant"),
        ];
        for (policy, expected) in cases {
            let yaml = format!("trust:\n  policies:\n    {policy}\n");
            let err = load(&yaml).expect_err(&yaml);
            assert!(err.contains(expected), "{yaml}: {err}");
        }
    }
}
