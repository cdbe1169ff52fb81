//! `notifications`: webhook endpoints, with distribution's keys (`endpoints[]`: name,
//! disabled, url, headers, timeout, threshold, backoff, ignoredmediatypes,
//! ignore.{mediatypes,actions}; `events.includereferences`) and Wharf's own per
//! endpoint: `secret` (HMAC-SHA256 signatures), `format` (`distribution` or
//! `cloudevents`), `mediatype` (the envelope's `Content-Type`, distribution 2.x's
//! `…events.v1+json` or distribution 3's `…events.v2+json`), `maxbatch`,
//! `maxattempts`, `maxage`, `maxbackoff`, `linger`. Every value is checked at start-up and a bad
//! one names its key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigDuration, ConfigError, Secret};

/// distribution 2.x's envelope media type (the default).
pub const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";
/// distribution 3's.
pub const EVENTS_V2: &str = "application/vnd.docker.distribution.events.v2+json";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    #[serde(default)]
    pub events: EventsConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// A manifest's references (config, layers, children) in its push and pull events.
    #[serde(default)]
    pub includereferences: bool,
}

/// How an endpoint's requests are shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    /// distribution's envelope `{"events": […]}`.
    #[default]
    Distribution,
    /// CloudEvents 1.0, structured JSON mode (one event per request when `maxbatch` is
    /// 1, else batched).
    Cloudevents,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreConfig {
    #[serde(default)]
    pub mediatypes: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub name: String,
    #[serde(default)]
    pub disabled: bool,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    /// Longest a request may take.
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
    /// Failed attempts before backing off (distribution's meaning); the first retries
    /// come quickly.
    #[serde(default = "default_threshold")]
    pub threshold: i64,
    /// The first backoff; it doubles with each further failure up to `maxbackoff`.
    #[serde(default = "default_backoff")]
    pub backoff: ConfigDuration,
    /// distribution's older spelling of `ignore.mediatypes`.
    #[serde(default)]
    pub ignoredmediatypes: Vec<String>,
    #[serde(default)]
    pub ignore: IgnoreConfig,
    /// (Wharf) signs every request (`X-Wharf-Signature`).
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub format: EventFormat,
    /// (Wharf) `Content-Type` of the distribution envelope.
    #[serde(default)]
    pub mediatype: Option<String>,
    /// (Wharf) most events in one request.
    #[serde(default = "default_maxbatch")]
    pub maxbatch: i64,
    /// (Wharf) failed attempts after which the events go to the dead letters.
    #[serde(default = "default_maxattempts")]
    pub maxattempts: i64,
    /// (Wharf) age after which an undeliverable event goes to the dead letters.
    #[serde(default = "default_maxage")]
    pub maxage: ConfigDuration,
    /// (Wharf) the longest pause between attempts.
    #[serde(default = "default_maxbackoff")]
    pub maxbackoff: ConfigDuration,
    /// (Wharf) how long a worker gathers events into one round of requests when it
    /// has less than a full round (see `notify::worker`): longer sends fewer, fuller
    /// requests — less work per event for the registry and the receiver — and delays
    /// each event by up to as much.
    #[serde(default = "default_linger")]
    pub linger: ConfigDuration,
}

fn default_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}
fn default_threshold() -> i64 {
    10
}
fn default_backoff() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(1))
}
fn default_maxbatch() -> i64 {
    100
}
fn default_maxattempts() -> i64 {
    100
}
fn default_maxage() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(24 * 3600))
}
fn default_maxbackoff() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(300))
}
/// Longest `linger`: events wait at most this long for company.
pub const MAX_LINGER: Duration = Duration::from_secs(10);
fn default_linger() -> ConfigDuration {
    ConfigDuration(Duration::from_millis(100))
}

/// The actions events have.
pub const ACTIONS: [&str; 4] = ["push", "pull", "mount", "delete"];

impl EndpointConfig {
    /// The envelope's `Content-Type` (distribution format).
    pub fn media_type(&self) -> &str {
        self.mediatype.as_deref().unwrap_or(EVENTS_V1)
    }

    /// Media types whose events this endpoint does not want.
    pub fn ignored_media_types(&self) -> impl Iterator<Item = &str> {
        self.ignoredmediatypes
            .iter()
            .chain(&self.ignore.mediatypes)
            .map(String::as_str)
    }

    /// Whether the endpoint wants events of `action`.
    pub fn wants_action(&self, action: &str) -> bool {
        !self.ignore.actions.iter().any(|a| a == action)
    }
}

impl NotificationsConfig {
    /// The endpoints that deliver.
    pub fn enabled(&self) -> impl Iterator<Item = &EndpointConfig> {
        self.endpoints.iter().filter(|e| !e.disabled)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let key = |k: &str| format!("notifications.endpoints[{i}].{k}");
            if e.name.trim().is_empty() {
                return Err(ConfigError::key(key("name"), "must not be empty"));
            }
            if !names.insert(e.name.as_str()) {
                return Err(ConfigError::key(
                    key("name"),
                    format!("{:?} names two endpoints", e.name),
                ));
            }
            match url::Url::parse(&e.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(_) => {
                    return Err(ConfigError::key(
                        key("url"),
                        format!("{:?} is not an http:// or https:// URL", e.url),
                    ))
                }
                Err(err) => {
                    return Err(ConfigError::key(
                        key("url"),
                        format!("{:?} is not a URL: {err}", e.url),
                    ))
                }
            }
            for (name, values) in &e.headers {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(ConfigError::key(
                        key(&format!("headers.{name}")),
                        "not a valid header name",
                    ));
                }
                if values
                    .iter()
                    .any(|v| http::HeaderValue::from_str(v).is_err())
                {
                    return Err(ConfigError::key(
                        key(&format!("headers.{name}")),
                        "not a valid header value",
                    ));
                }
            }
            if e.timeout.0.is_zero() {
                return Err(ConfigError::key(key("timeout"), "must be more than 0"));
            }
            if e.threshold < 0 {
                return Err(ConfigError::key(
                    key("threshold"),
                    format!("{} is negative", e.threshold),
                ));
            }
            if e.backoff.0.is_zero() {
                return Err(ConfigError::key(key("backoff"), "must be more than 0"));
            }
            if e.maxbackoff.0 < e.backoff.0 {
                return Err(ConfigError::key(
                    key("maxbackoff"),
                    "must be at least `backoff`",
                ));
            }
            if !(1..=1000).contains(&e.maxbatch) {
                return Err(ConfigError::key(key("maxbatch"), "must be 1 to 1000"));
            }
            if e.maxattempts < 1 {
                return Err(ConfigError::key(key("maxattempts"), "must be at least 1"));
            }
            if e.maxage.0.is_zero() {
                return Err(ConfigError::key(key("maxage"), "must be more than 0"));
            }
            if e.linger.0 > MAX_LINGER {
                return Err(ConfigError::key(key("linger"), "must be at most 10s"));
            }
            for (j, a) in e.ignore.actions.iter().enumerate() {
                if !ACTIONS.contains(&a.as_str()) {
                    return Err(ConfigError::key(
                        key(&format!("ignore.actions[{j}]")),
                        format!("{a:?} is not one of {}", ACTIONS.join(", ")),
                    ));
                }
            }
            if let Some(m) = &e.mediatype {
                if m != EVENTS_V1 && m != EVENTS_V2 {
                    return Err(ConfigError::key(
                        key("mediatype"),
                        format!("{m:?} is neither {EVENTS_V1} nor {EVENTS_V2}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn load(yaml: &str) -> Result<Config, String> {
        let tree: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        Config::from_tree(tree).map_err(|e| e.to_string())
    }

    #[test]
    fn distribution_keys_and_defaults() {
        let c = load(
            "notifications:\n  events:\n    includereferences: true\n  endpoints:\n    - name: a\n      url: http://127.0.0.1:9/hook\n      headers:\n        Authorization: [Bearer x]\n      timeout: 500ms\n      threshold: 5\n      backoff: 1s\n      ignoredmediatypes: [application/octet-stream]\n      ignore:\n        mediatypes: [x/y]\n        actions: [pull]\n    - name: b\n      disabled: true\n      url: https://example.com/\n",
        )
        .unwrap();
        let n = &c.notifications;
        assert!(n.events.includereferences);
        assert_eq!(n.enabled().count(), 1);
        let a = &n.endpoints[0];
        assert_eq!(a.timeout.0.as_millis(), 500);
        assert_eq!(a.threshold, 5);
        assert_eq!(a.ignored_media_types().count(), 2);
        assert!(!a.wants_action("pull") && a.wants_action("push"));
        assert_eq!(a.media_type(), super::EVENTS_V1);
        assert_eq!(a.maxbatch, 100);
        assert_eq!(a.linger.0.as_millis(), 100);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (endpoint, key) in [
            ("url: 'not a url'", "endpoints[0].url"),
            ("url: ftp://x/", "endpoints[0].url"),
            (
                "url: http://x/\n      threshold: -1",
                "endpoints[0].threshold",
            ),
            ("url: http://x/\n      timeout: 0s", "endpoints[0].timeout"),
            ("url: http://x/\n      timeout: 5", "endpoints[0].timeout"),
            ("url: http://x/\n      bogus: 1", "bogus"),
            (
                "url: http://x/\n      ignore:\n        actions: [poke]",
                "ignore.actions[0]",
            ),
            (
                "url: http://x/\n      mediatype: text/plain",
                "endpoints[0].mediatype",
            ),
            ("url: http://x/\n      maxbatch: 0", "endpoints[0].maxbatch"),
            ("url: http://x/\n      linger: 11s", "endpoints[0].linger"),
            ("url: http://x/\n      format: xml", "endpoints[0].format"),
            (
                "url: http://x/\n      headers:\n        'a b': [x]",
                "headers.a b",
            ),
        ] {
            let e = load(&format!(
                "notifications:\n  endpoints:\n    - name: a\n      {endpoint}\n"
            ))
            .unwrap_err();
            assert!(e.contains(key), "{endpoint}: {e}");
        }
        let e = load("notifications:\n  endpoints:\n    - name: a\n      url: http://x/\n    - name: a\n      url: http://y/\n").unwrap_err();
        assert!(e.contains("endpoints[1].name"), "{e}");
        let e = load("notifications:\n  endpointz: []\n").unwrap_err();
        assert!(e.contains("endpointz"), "{e}");
    }
}
