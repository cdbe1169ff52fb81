//! How Wharf authenticates to an upstream: its challenges (`WWW-Authenticate`) parsed,
//! Basic credentials (the password re-read from `passwordfile` when it changes), and
//! Docker's token flow (a token fetched from the challenge's realm, cached per scope
//! until shortly before it expires).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::StatusCode;

use super::{retry_after, unavailable, Failure, UpstreamClient};
use crate::config::Password;
use crate::registry::mirror::UpstreamError;

/// A token is used until this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// A token whose answer gives no lifetime lives 60 s (the token spec's default).
const DEFAULT_TOKEN_LIFETIME: u64 = 60;

/// How the upstream wants to be authenticated, as its challenges said.
#[derive(Debug, Clone)]
pub(super) struct Bearer {
    pub(super) realm: String,
    pub(super) service: Option<String>,
}

/// The parameters of a `WWW-Authenticate` challenge (`Bearer realm="…",service="…"`).
pub(super) fn parse_challenge(value: &str) -> Option<(String, HashMap<String, String>)> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, val);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_ascii_lowercase(), params))
}

impl UpstreamClient {
    /// The password, re-reading `passwordfile` when its modification time changed.
    fn password(&self) -> Option<String> {
        match &self.config.password {
            Password::None => None,
            Password::Static(s) => Some(s.0.clone()),
            Password::File(path) => {
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                let mut cached = self.password_file.lock().ok()?;
                match (&*cached, mtime) {
                    (Some((at, pw)), Some(m)) if *at == m => Some(pw.clone()),
                    (_, Some(m)) => match std::fs::read_to_string(path) {
                        Ok(text) => {
                            let pw = text.trim_end_matches(['\n', '\r']).to_string();
                            *cached = Some((m, pw.clone()));
                            Some(pw)
                        }
                        Err(e) => {
                            tracing::warn!(upstream = %self.config.name, path, error = %e, "cannot read the upstream's passwordfile");
                            cached.as_ref().map(|(_, pw)| pw.clone())
                        }
                    },
                    (Some((_, pw)), None) => Some(pw.clone()),
                    (None, None) => {
                        tracing::warn!(upstream = %self.config.name, path, "the upstream's passwordfile is missing");
                        None
                    }
                }
            }
        }
    }

    pub(super) fn basic_header(&self) -> Option<String> {
        use base64::Engine as _;
        let user = self.config.username.as_deref()?;
        let pw = self.password().unwrap_or_default();
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        ))
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        tokens
            .get(scope)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    /// The `Authorization` to send for `scope` before any challenge of this request.
    pub(super) fn authorization(&self, scope: &str) -> Option<String> {
        if let Some(t) = self.cached_token(scope) {
            return Some(format!("Bearer {t}"));
        }
        if self.basic.load(std::sync::atomic::Ordering::Relaxed) {
            return self.basic_header();
        }
        None
    }

    /// Fetches a token for `scope` from the realm a challenge named.
    pub(super) async fn fetch_token(
        &self,
        bearer: &Bearer,
        scope: &str,
    ) -> Result<String, Failure> {
        let up = &self.config;
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = &bearer.service {
            query.push(("service", s));
        }
        if !scope.is_empty() {
            query.push(("scope", scope));
        }
        let mut trace = HeaderMap::new();
        crate::telemetry::otlp::inject(&mut trace);
        let mut req = self.http.get(&bearer.realm).query(&query).headers(trace);
        if let Some(basic) = self.basic_header() {
            req = req.header(AUTHORIZATION, basic);
        }
        let resp = tokio::time::timeout(up.timeout, req.send())
            .await
            .map_err(|_| unavailable(up, "the token service did not answer in time"))?
            .map_err(|e| unavailable(up, format!("token service: {e}")))?;
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Upstream(UpstreamError::TooManyRequests {
                upstream: up.name.clone(),
                retry_after: retry_after(resp.headers()),
            }));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::Upstream(UpstreamError::Denied {
                upstream: up.name.clone(),
                message: format!("the token service answered {status}"),
            }));
        }
        if !status.is_success() {
            return Err(unavailable(
                up,
                format!("the token service answered {status}"),
            ));
        }
        let body = tokio::time::timeout(up.timeout, resp.bytes())
            .await
            .map_err(|_| unavailable(up, "the token service did not answer in time"))?
            .map_err(|e| unavailable(up, format!("token service: {e}")))?;
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| unavailable(up, format!("token service answer: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unavailable(up, "the token service's answer has no token"))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME));
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        if let Ok(mut tokens) = self.tokens.lock() {
            if tokens.len() > 10_000 {
                tokens.retain(|_, (_, u)| *u > Instant::now());
            }
            tokens.insert(scope.to_string(), (token.clone(), until));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(scheme, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
        let (scheme, p) = parse_challenge(r#"Basic realm="x, y""#).unwrap();
        assert_eq!(scheme, "basic");
        assert_eq!(p["realm"], "x, y");
        let (_, p) = parse_challenge("Bearer realm=http://a/b, service=s").unwrap();
        assert_eq!(p["realm"], "http://a/b");
        assert_eq!(p["service"], "s");
    }
}
