//! `auth`: who may use the registry. `auth.htpasswd` (Basic, bcrypt users file) and
//! `auth.token` (Docker token auth: JWT bearer tokens) follow distribution's keys;
//! `auth.tokenserver` is Wharf's own: the built-in token server at `/auth/token`, which
//! checks users against `auth.htpasswd.path`, grants by the `access` rules, and signs
//! with `key` (so every instance with the same key accepts every other's tokens).
//! No `auth` section: no authentication at all (the default).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub htpasswd: Option<HtpasswdConfig>,
    #[serde(default)]
    pub token: Option<TokenConfig>,
    #[serde(default)]
    pub tokenserver: Option<TokenServerConfig>,
}

/// `auth.htpasswd`: Basic authentication against an Apache htpasswd file (bcrypt only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HtpasswdConfig {
    #[serde(default = "default_realm")]
    pub realm: String,
    pub path: String,
}

fn default_realm() -> String {
    "Registry Realm".into()
}

/// `auth.token`: JWT bearer tokens from a token service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Where clients get tokens (the `realm` of the `Bearer` challenge).
    pub realm: String,
    /// This registry's name: the tokens' required audience.
    pub service: String,
    /// The tokens' required issuer.
    pub issuer: String,
    /// PEM certificates whose keys sign tokens (kid: libtrust key id or RFC 7638 thumbprint).
    #[serde(default)]
    pub rootcertbundle: Option<String>,
    /// A JWK set file whose keys sign tokens (kid: the JWK's `kid` or its thumbprint).
    #[serde(default)]
    pub jwks: Option<String>,
    /// Accepted `alg`s; default RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    #[serde(default)]
    pub signingalgorithms: Option<Vec<String>>,
    /// Clock skew allowed on `exp`/`nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway: u64,
    /// Accepted for compatibility with distribution; ignored.
    #[serde(default)]
    pub autoredirect: Option<bool>,
}

fn default_leeway() -> u64 {
    30
}

/// `auth.tokenserver`: the built-in token server (`/auth/token`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenServerConfig {
    /// PEM file with the signing key: PKCS#8 P-256 (ES256) or RSA (RS256).
    pub key: String,
    /// The `kid` put in tokens; default: the key's RFC 7638 thumbprint.
    #[serde(default)]
    pub kid: Option<String>,
    /// Access token lifetime, seconds.
    #[serde(default = "default_expiration")]
    pub expiration: u64,
    /// Refresh token lifetime, seconds.
    #[serde(default = "default_refresh_expiration")]
    pub refreshexpiration: u64,
    /// Group name → user names.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Access rules; with none, every authenticated user may do everything and
    /// anonymous users nothing.
    #[serde(default)]
    pub access: Vec<AccessRule>,
}

fn default_expiration() -> u64 {
    300
}

fn default_refresh_expiration() -> u64 {
    86_400
}

/// One rule: who (users, groups, anonymous; `"*"` in users is any authenticated user),
/// which repositories (globs: `*` matches any run of characters, `/` included), which
/// actions (`pull`, `push`, `delete`, `*`); `catalog: true` also grants `_catalog`;
/// `quotas: true` grants the quota admin API (`registry:quota:read`/`write`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub catalog: bool,
    #[serde(default)]
    pub quotas: bool,
}

const ACTIONS: [&str; 4] = ["pull", "push", "delete", "*"];
const ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

impl AuthConfig {
    /// True when any mechanism is configured.
    pub fn enabled(&self) -> bool {
        self.htpasswd.is_some() || self.token.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(h) = &self.htpasswd {
            if h.path.is_empty() {
                return Err(ConfigError::key("auth.htpasswd.path", "must not be empty"));
            }
        }
        if let Some(t) = &self.token {
            for (key, v) in [
                ("auth.token.realm", &t.realm),
                ("auth.token.service", &t.service),
                ("auth.token.issuer", &t.issuer),
            ] {
                if v.is_empty() {
                    return Err(ConfigError::key(key, "must not be empty"));
                }
            }
            if let Some(algs) = &t.signingalgorithms {
                for a in algs {
                    if !ALGORITHMS.contains(&a.as_str()) {
                        return Err(ConfigError::key(
                            "auth.token.signingalgorithms",
                            format!("{a:?} is not one of {}", ALGORITHMS.join(", ")),
                        ));
                    }
                }
            }
            if t.rootcertbundle.is_none() && t.jwks.is_none() && self.tokenserver.is_none() {
                return Err(ConfigError::key(
                    "auth.token",
                    "needs rootcertbundle or jwks (or auth.tokenserver) to check signatures",
                ));
            }
            if self.htpasswd.is_some() && self.tokenserver.is_none() {
                return Err(ConfigError::key(
                    "auth",
                    "htpasswd and token are both set: choose one (htpasswd with token only \
                     serves auth.tokenserver's users)",
                ));
            }
        }
        if let Some(s) = &self.tokenserver {
            if self.token.is_none() {
                return Err(ConfigError::key(
                    "auth.tokenserver",
                    "needs auth.token (its service and issuer name the tokens)",
                ));
            }
            if self.htpasswd.is_none() {
                return Err(ConfigError::key(
                    "auth.tokenserver",
                    "needs auth.htpasswd (its users)",
                ));
            }
            if s.expiration == 0 {
                return Err(ConfigError::key(
                    "auth.tokenserver.expiration",
                    "must be at least 1",
                ));
            }
            for (i, rule) in s.access.iter().enumerate() {
                for a in &rule.actions {
                    if !ACTIONS.contains(&a.as_str()) {
                        return Err(ConfigError::key(
                            format!("auth.tokenserver.access[{i}].actions"),
                            format!("{a:?} is not one of pull, push, delete, *"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(yaml: &str) -> Result<Config, String> {
        let tree = serde_norway::from_str(yaml).unwrap();
        Config::from_tree(tree).map_err(|e| e.to_string())
    }

    #[test]
    fn auth_keys_checked() {
        assert!(!load("{}").unwrap().auth.enabled());
        let c = load("auth:\n  htpasswd:\n    path: /etc/htpasswd\n").unwrap();
        assert_eq!(c.auth.htpasswd.unwrap().realm, "Registry Realm");
        for (yaml, key) in [
            ("auth:\n  htpasswd:\n    path: x\n    nope: 1\n", "nope"),
            ("auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n", "auth.token"),
            ("auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n    jwks: j\n    signingalgorithms: [HS256]\n", "auth.token.signingalgorithms"),
            ("auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n    jwks: j\n  htpasswd:\n    path: p\n", "auth"),
            ("auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n  tokenserver:\n    key: k\n", "auth.tokenserver"),
            ("auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n  htpasswd:\n    path: p\n  tokenserver:\n    key: k\n    access:\n      - actions: [write]\n", "auth.tokenserver.access[0].actions"),
        ] {
            let e = load(yaml).unwrap_err();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }
}
