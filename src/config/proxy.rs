//! `proxy`: the pull-through cache. distribution's keys (`remoteurl`, `username`,
//! `password`, `ttl`) mirror one upstream for every repository, as distribution does;
//! Wharf's `upstreams` mirror several, each under a repository prefix and/or for the
//! host containerd names with `?ns=`, beside local repositories. `maxsize` bounds the
//! bytes the cache keeps.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{ConfigDuration, ConfigError, Secret};
use crate::types::RepoName;

/// Docker Hub's registry host, where `docker.io` (and `index.docker.io`) pull from.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// distribution's: the one upstream every repository mirrors.
    #[serde(default)]
    pub remoteurl: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// (Wharf) a file holding `remoteurl`'s password, re-read when it changes.
    #[serde(default)]
    pub passwordfile: Option<String>,
    /// Cached content not pulled for this long is removed (distribution: after it was
    /// fetched). `0s`: kept until evicted.
    #[serde(default)]
    pub ttl: Option<ConfigDuration>,
    /// (Wharf) how long a cached tag is served before a `HEAD` upstream revalidates it.
    #[serde(default)]
    pub tagttl: Option<ConfigDuration>,
    /// (Wharf) revalidate tags on every pull (a `HEAD`, which Docker Hub does not count).
    #[serde(default)]
    pub revalidatetags: Option<bool>,
    /// (Wharf) the most blob bytes the cache keeps: least recently pulled content is
    /// evicted beyond it. A number of bytes or `500MiB`, `20GiB`, `1TB`.
    #[serde(default)]
    pub maxsize: Option<ByteSize>,
    /// (Wharf) how long an upstream may take to answer a request's headers.
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    /// (Wharf) how often the expiry and eviction sweep runs.
    #[serde(default)]
    pub sweepinterval: Option<ConfigDuration>,
    /// (Wharf) the upstreams, each under a prefix and/or a `?ns=` host.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
}

/// One upstream registry of `proxy.upstreams`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Its name in logs and metrics (`[a-z0-9._-]`).
    pub name: String,
    /// Repositories under `<prefix>/` mirror it (`hub/library/alpine` → `library/alpine`
    /// upstream). Default: the name, when `ns` is not given.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The registry host containerd names with `?ns=` (`docker.io`, `ghcr.io`): such
    /// requests are served from this upstream, under `prefix` (default: `ns`).
    #[serde(default)]
    pub ns: Option<String>,
    /// Its URL; default `https://<ns>` (Docker Hub: `https://registry-1.docker.io`).
    #[serde(default)]
    pub remoteurl: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub passwordfile: Option<String>,
    #[serde(default)]
    pub ttl: Option<ConfigDuration>,
    #[serde(default)]
    pub tagttl: Option<ConfigDuration>,
    #[serde(default)]
    pub revalidatetags: Option<bool>,
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
}

/// Where an upstream's password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    None,
    Static(Secret),
    /// Re-read when the file changes.
    File(String),
}

/// An upstream with every default applied, as the cache uses it.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// Local repository prefix (`""`: every repository, distribution's mode).
    pub prefix: String,
    pub ns: Option<String>,
    /// Base URL, without a trailing `/`.
    pub url: String,
    /// Docker Hub: single-component names get `library/`.
    pub docker_hub: bool,
    pub username: Option<String>,
    pub password: Password,
    pub ttl: Duration,
    pub tag_ttl: Duration,
    pub revalidate_tags: bool,
    pub timeout: Duration,
}

/// distribution's proxy ttl default.
const DEFAULT_TTL: Duration = Duration::from_secs(168 * 3600);
const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_SWEEP: Duration = Duration::from_secs(600);

/// A number of bytes, written as a number or with a unit (`500MiB`, `20GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a size such as 500MiB or 20GB"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "m" | "mb" => 1000_u64.pow(2),
            "g" | "gb" => 1000_u64.pow(3),
            "t" | "tb" => 1000_u64.pow(4),
            "ki" | "kib" => 1 << 10,
            "mi" | "mib" => 1 << 20,
            "gi" | "gib" => 1 << 30,
            "ti" | "tib" => 1 << 40,
            other => return Err(format!("{text:?}: unknown unit {other:?}")),
        };
        n.checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_norway::Value::deserialize(d)? {
            serde_norway::Value::Number(n) => n
                .as_u64()
                .map(ByteSize)
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a byte count"))),
            serde_norway::Value::String(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom("expected a size such as 20GiB")),
        }
    }
}

fn is_docker_hub_host(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

/// The host of an `http(s)://host[:port][/]` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host = rest.split('/').next()?;
    (!host.is_empty()).then_some(host)
}

fn check_url(key: &str, url: &str) -> Result<String, ConfigError> {
    let host = url_host(url).ok_or_else(|| {
        ConfigError::key(key, format!("{url:?} is not an http:// or https:// URL"))
    })?;
    let without_port = host.split(':').next().unwrap_or(host);
    if without_port.is_empty() {
        return Err(ConfigError::key(key, format!("{url:?} names no host")));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn password(
    key: &str,
    username: &Option<String>,
    password: &Option<Secret>,
    file: &Option<String>,
) -> Result<Password, ConfigError> {
    let pw = match (password, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::key(
                format!("{key}.passwordfile"),
                "give password or passwordfile, not both",
            ))
        }
        (Some(p), None) => Password::Static(p.clone()),
        (None, Some(f)) => Password::File(f.clone()),
        (None, None) => Password::None,
    };
    if username.is_none() && pw != Password::None {
        return Err(ConfigError::key(
            format!("{key}.username"),
            "a password needs a username",
        ));
    }
    Ok(pw)
}

impl ProxyConfig {
    /// True if any upstream is configured.
    pub fn enabled(&self) -> bool {
        self.remoteurl.is_some() || !self.upstreams.is_empty()
    }

    pub fn sweep_interval(&self) -> Duration {
        self.sweepinterval.map_or(DEFAULT_SWEEP, |d| d.0)
    }

    pub fn max_size(&self) -> Option<u64> {
        self.maxsize.map(|s| s.0)
    }

    /// Every upstream with its defaults, validated: `proxy.upstreams` in order, then
    /// `proxy.remoteurl` (prefix `""`, matching every other repository).
    pub fn upstreams(&self) -> Result<Vec<Upstream>, ConfigError> {
        let mut out: Vec<Upstream> = Vec::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let key = format!("proxy.upstreams[{i}]");
            let name_ok = !u.name.is_empty()
                && u.name.len() <= 64
                && u.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
            if !name_ok {
                return Err(ConfigError::key(
                    format!("{key}.name"),
                    format!("{:?}: use 1 to 64 of a-z, 0-9, '.', '_', '-'", u.name),
                ));
            }
            let ns = match &u.ns {
                Some(ns) => {
                    let ok = !ns.is_empty()
                        && ns
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
                    if !ok {
                        return Err(ConfigError::key(
                            format!("{key}.ns"),
                            format!("{ns:?} is not a registry host such as docker.io"),
                        ));
                    }
                    Some(ns.to_ascii_lowercase())
                }
                None => None,
            };
            let prefix = u
                .prefix
                .clone()
                .or_else(|| ns.clone())
                .unwrap_or_else(|| u.name.clone());
            let prefix = prefix.trim_matches('/').to_string();
            if RepoName::parse(&prefix).is_err() {
                return Err(ConfigError::key(
                    format!("{key}.prefix"),
                    format!(
                        "{prefix:?} is not a repository name prefix such as hub or mirror/docker"
                    ),
                ));
            }
            let url = match (&u.remoteurl, &ns) {
                (Some(url), _) => check_url(&format!("{key}.remoteurl"), url)?,
                (None, Some(ns)) if is_docker_hub_host(ns) => {
                    format!("https://{DOCKER_HUB_REGISTRY}")
                }
                (None, Some(ns)) => format!("https://{ns}"),
                (None, None) => {
                    return Err(ConfigError::key(
                        format!("{key}.remoteurl"),
                        "needed when ns is not given",
                    ))
                }
            };
            let docker_hub = url_host(&url)
                .is_some_and(|h| is_docker_hub_host(h.split(':').next().unwrap_or(h)));
            let password = password(&key, &u.username, &u.password, &u.passwordfile)?;
            for other in &out {
                if other.name == u.name {
                    return Err(ConfigError::key(
                        format!("{key}.name"),
                        format!("{:?} names two upstreams", u.name),
                    ));
                }
                if other.prefix == prefix {
                    return Err(ConfigError::key(
                        format!("{key}.prefix"),
                        format!("{prefix:?} is the prefix of upstream {:?} too", other.name),
                    ));
                }
                if ns.is_some() && other.ns == ns {
                    return Err(ConfigError::key(
                        format!("{key}.ns"),
                        format!("{ns:?} is the ns of upstream {:?} too", other.name),
                    ));
                }
            }
            out.push(Upstream {
                name: u.name.clone(),
                prefix,
                ns,
                url,
                docker_hub,
                username: u.username.clone(),
                password,
                ttl: u.ttl.or(self.ttl).map_or(DEFAULT_TTL, |d| d.0),
                tag_ttl: u.tagttl.or(self.tagttl).map_or(DEFAULT_TAG_TTL, |d| d.0),
                revalidate_tags: u.revalidatetags.or(self.revalidatetags).unwrap_or(false),
                timeout: u.timeout.or(self.timeout).map_or(DEFAULT_TIMEOUT, |d| d.0),
            });
        }
        if let Some(url) = &self.remoteurl {
            let url = check_url("proxy.remoteurl", url)?;
            let docker_hub = url_host(&url)
                .is_some_and(|h| is_docker_hub_host(h.split(':').next().unwrap_or(h)));
            let password = password("proxy", &self.username, &self.password, &self.passwordfile)?;
            out.push(Upstream {
                name: "remote".into(),
                prefix: String::new(),
                ns: None,
                url,
                docker_hub,
                username: self.username.clone(),
                password,
                ttl: self.ttl.map_or(DEFAULT_TTL, |d| d.0),
                tag_ttl: self.tagttl.map_or(DEFAULT_TAG_TTL, |d| d.0),
                revalidate_tags: self.revalidatetags.unwrap_or(false),
                timeout: self.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            });
        } else if self.username.is_some() || self.password.is_some() || self.passwordfile.is_some()
        {
            return Err(ConfigError::key(
                "proxy.remoteurl",
                "proxy.username/password are for proxy.remoteurl, which is not set",
            ));
        }
        Ok(out)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.upstreams()?;
        if self.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(ConfigError::key("proxy.timeout", "must be more than 0"));
        }
        if self.sweepinterval.is_some_and(|t| t.0.is_zero()) {
            return Err(ConfigError::key(
                "proxy.sweepinterval",
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(yaml: &str) -> Result<Vec<Upstream>, ConfigError> {
        let c: ProxyConfig = serde_norway::from_str(yaml).unwrap();
        c.validate()?;
        c.upstreams()
    }

    #[test]
    fn distribution_keys() {
        let u =
            proxy("remoteurl: https://registry-1.docker.io\nusername: u\npassword: p\nttl: 72h\n")
                .unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].prefix, "");
        assert!(u[0].docker_hub);
        assert_eq!(u[0].ttl.as_secs(), 72 * 3600);
        assert_eq!(u[0].password, Password::Static(Secret("p".into())));
    }

    #[test]
    fn upstreams_with_defaults() {
        let u = proxy(
            "upstreams:\n  - name: hub\n    ns: docker.io\n  - name: ghcr\n    ns: ghcr.io\n    prefix: mirror/ghcr\n    revalidatetags: true\n  - name: local2\n    remoteurl: http://127.0.0.1:5001/\n    username: a\n    passwordfile: /run/pw\n",
        )
        .unwrap();
        assert_eq!(u[0].url, "https://registry-1.docker.io");
        assert_eq!(u[0].prefix, "docker.io");
        assert!(u[0].docker_hub);
        assert_eq!(u[1].url, "https://ghcr.io");
        assert_eq!(u[1].prefix, "mirror/ghcr");
        assert!(u[1].revalidate_tags && !u[1].docker_hub);
        assert_eq!(u[2].prefix, "local2");
        assert_eq!(u[2].url, "http://127.0.0.1:5001");
        assert_eq!(u[2].password, Password::File("/run/pw".into()));
    }

    #[test]
    fn refusals_name_the_key() {
        for (yaml, key) in [
            ("remoteurl: ftp://x\n", "proxy.remoteurl"),
            ("username: a\n", "proxy.remoteurl"),
            (
                "upstreams:\n  - name: Hub\n    ns: docker.io\n",
                "proxy.upstreams[0].name",
            ),
            ("upstreams:\n  - name: a\n", "proxy.upstreams[0].remoteurl"),
            (
                "upstreams:\n  - name: a\n    ns: x.io\n  - name: b\n    ns: x.io\n    prefix: b\n",
                "proxy.upstreams[1].ns",
            ),
            (
                "upstreams:\n  - name: a\n    ns: x.io\n    password: p\n",
                "proxy.upstreams[0].username",
            ),
            (
                "upstreams:\n  - name: a\n    ns: 'x y'\n",
                "proxy.upstreams[0].ns",
            ),
            (
                "upstreams:\n  - name: a\n    ns: x.io\n    prefix: 'A/'\n",
                "proxy.upstreams[0].prefix",
            ),
            ("timeout: 0s\n", "proxy.timeout"),
        ] {
            let e = proxy(yaml).unwrap_err().to_string();
            assert!(e.contains(key), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("500MiB").unwrap().0, 500 << 20);
        assert_eq!(ByteSize::parse("2GB").unwrap().0, 2_000_000_000);
        assert_eq!(ByteSize::parse("1024").unwrap().0, 1024);
        assert!(ByteSize::parse("lots").is_err());
    }
}
