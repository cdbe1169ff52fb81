//! One upstream registry as the cache talks to it: its base URL, credentials and the
//! registry auth flows — anonymous, Basic, and Docker's token flow (a `401` with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, a token fetched from the
//! realm with Basic credentials if there are any, cached per scope until it
//! expires) — with a timeout on every answer's headers and `429`/`Retry-After`
//! reported as such.
//!
//! Requests go only to the configured URL (and where its answers redirect, as a
//! registry's blob GETs do to a CDN; `reqwest` drops `Authorization` on a redirect to
//! another host). Nothing a client sends chooses a host. How it authenticates (challenges,
//! credentials, tokens) is `auth`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::metrics;
use crate::config::Upstream;
use crate::registry::mirror::UpstreamError;
use crate::types::Digest;

mod auth;

use auth::{parse_challenge, Bearer};

/// What a manifest request accepts: every manifest and index type Wharf stores.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Why a request to the upstream did not give what was asked.
#[derive(Debug)]
pub enum Failure {
    /// The upstream says there is no such thing (404).
    NotFound,
    /// Anything else: the core's error.
    Upstream(UpstreamError),
}

/// A manifest as fetched.
pub struct FetchedManifest {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
}

/// A blob's bytes as they arrive, with where they start and the blob's length.
pub struct BlobBody {
    /// The offset of the first byte of `stream` in the blob.
    pub start: u64,
    /// The blob's whole length.
    pub size: u64,
    pub stream: BoxStream<'static, Result<Bytes, String>>,
}

pub struct UpstreamClient {
    pub config: Upstream,
    http: reqwest::Client,
    /// The token flow's realm and service, once a challenge named them.
    bearer: Mutex<Option<Bearer>>,
    /// The upstream challenged with Basic.
    basic: std::sync::atomic::AtomicBool,
    /// Tokens by scope, with when they stop being used.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// `passwordfile`'s content and the modification time it was read at.
    password_file: Mutex<Option<(SystemTime, String)>>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("name", &self.config.name)
            .field("url", &self.config.url)
            .finish()
    }
}

fn unavailable(up: &Upstream, message: impl Into<String>) -> Failure {
    Failure::Upstream(UpstreamError::Unavailable {
        upstream: up.name.clone(),
        message: message.into(),
    })
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

impl UpstreamClient {
    pub fn new(config: Upstream) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!(
                "wharf/",
                env!("CARGO_PKG_VERSION"),
                " (pull-through cache)"
            ))
            .build()
            .map_err(|e| format!("upstream {}: {e}", config.name))?;
        Ok(UpstreamClient {
            config,
            http,
            bearer: Mutex::new(None),
            basic: std::sync::atomic::AtomicBool::new(false),
            tokens: Mutex::new(HashMap::new()),
            password_file: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Sends `method path` (relative to the upstream's `/v2/`), answering a challenge
    /// once: a Bearer one with a token for `scope`, a Basic one with the credentials.
    /// Returns the response whatever its status, unless it is a 429 or a 5xx.
    async fn send(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, Failure> {
        let up = &self.config;
        let url = format!("{}/v2/{path}", up.url);
        let mut auth = self.authorization(scope);
        let mut headers = headers;
        // The request's trace continues upstream.
        crate::telemetry::otlp::inject(&mut headers);
        for attempt in 0..2 {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .headers(headers.clone());
            if let Some(a) = &auth {
                req = req.header(AUTHORIZATION, a);
            }
            metrics::upstream_request(&up.name);
            let resp = match tokio::time::timeout(up.timeout, req.send()).await {
                Err(_) => {
                    metrics::upstream_error(&up.name);
                    return Err(unavailable(
                        up,
                        format!("no answer within {:?}", up.timeout),
                    ));
                }
                Ok(Err(e)) => {
                    metrics::upstream_error(&up.name);
                    return Err(unavailable(up, e.to_string()));
                }
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                metrics::upstream_throttled(&up.name);
                return Err(Failure::Upstream(UpstreamError::TooManyRequests {
                    upstream: up.name.clone(),
                    retry_after: retry_after(resp.headers()),
                }));
            }
            if status.is_server_error() {
                metrics::upstream_error(&up.name);
                return Err(unavailable(up, format!("answered {status}")));
            }
            if status != StatusCode::UNAUTHORIZED || attempt == 1 {
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    metrics::upstream_error(&up.name);
                    return Err(Failure::Upstream(UpstreamError::Denied {
                        upstream: up.name.clone(),
                        message: format!("{method} {path} answered {status}"),
                    }));
                }
                return Ok(resp);
            }
            // 401: answer its challenge once.
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            match challenge {
                Some((scheme, params)) if scheme == "bearer" => {
                    let Some(realm) = params.get("realm").cloned() else {
                        return Err(Failure::Upstream(UpstreamError::Denied {
                            upstream: up.name.clone(),
                            message: "a Bearer challenge without a realm".into(),
                        }));
                    };
                    let bearer = Bearer {
                        realm,
                        service: params.get("service").cloned(),
                    };
                    if let Ok(mut b) = self.bearer.lock() {
                        *b = Some(bearer.clone());
                    }
                    let want = params
                        .get("scope")
                        .cloned()
                        .unwrap_or_else(|| scope.to_string());
                    let token = self.fetch_token(&bearer, &want).await?;
                    if want != scope {
                        if let Ok(mut tokens) = self.tokens.lock() {
                            if let Some(entry) = tokens.get(&want).cloned() {
                                tokens.insert(scope.to_string(), entry);
                            }
                        }
                    }
                    auth = Some(format!("Bearer {token}"));
                }
                Some((scheme, _)) if scheme == "basic" => {
                    self.basic.store(true, std::sync::atomic::Ordering::Relaxed);
                    match self.basic_header() {
                        Some(b) => auth = Some(b),
                        None => {
                            return Err(Failure::Upstream(UpstreamError::Denied {
                                upstream: up.name.clone(),
                                message: "Basic credentials asked, none configured".into(),
                            }))
                        }
                    }
                }
                _ => {
                    return Err(Failure::Upstream(UpstreamError::Denied {
                        upstream: up.name.clone(),
                        message: "401 without a challenge this registry can answer".into(),
                    }))
                }
            }
        }
        Err(unavailable(up, "authentication did not settle"))
    }

    fn scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }

    fn manifest_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        h
    }

    /// `HEAD` of a manifest: its digest (`Docker-Content-Digest`), `None` if the
    /// answer did not carry one.
    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Digest>, Failure> {
        let resp = self
            .send(
                Method::HEAD,
                &format!("{repo}/manifests/{reference}"),
                &Self::scope(repo),
                Self::manifest_headers(),
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Err(Failure::NotFound),
            s if s.is_success() => Ok(resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            s => Err(unavailable(
                &self.config,
                format!("HEAD manifest answered {s}"),
            )),
        }
    }

    /// `GET` of a manifest (at most 4 MiB).
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<FetchedManifest, Failure> {
        let resp = self
            .send(
                Method::GET,
                &format!("{repo}/manifests/{reference}"),
                &Self::scope(repo),
                Self::manifest_headers(),
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => return Err(Failure::NotFound),
            s if s.is_success() => {}
            s => {
                return Err(unavailable(
                    &self.config,
                    format!("GET manifest answered {s}"),
                ))
            }
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let limit = crate::registry::manifest_format::MAX_MANIFEST_BYTES;
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        loop {
            let piece = tokio::time::timeout(self.config.timeout, stream.next())
                .await
                .map_err(|_| unavailable(&self.config, "manifest body stalled"))?;
            match piece {
                None => break,
                Some(Err(e)) => return Err(unavailable(&self.config, e.to_string())),
                Some(Ok(b)) => {
                    if body.len() + b.len() > limit {
                        return Err(Failure::Upstream(UpstreamError::Invalid {
                            upstream: self.config.name.clone(),
                            message: format!("manifest larger than {limit} bytes"),
                        }));
                    }
                    body.extend_from_slice(&b);
                }
            }
        }
        metrics::upstream_bytes(&self.config.name, body.len() as u64);
        Ok(FetchedManifest { body, content_type })
    }

    /// `HEAD` of a blob: its length.
    pub async fn head_blob(&self, repo: &str, digest: &Digest) -> Result<u64, Failure> {
        let resp = self
            .send(
                Method::HEAD,
                &format!("{repo}/blobs/{digest}"),
                &Self::scope(repo),
                HeaderMap::new(),
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Err(Failure::NotFound),
            s if s.is_success() => resp
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| unavailable(&self.config, "HEAD blob without a Content-Length")),
            s => Err(unavailable(&self.config, format!("HEAD blob answered {s}"))),
        }
    }

    /// `GET` of a blob from byte `from` on. An upstream that ignores the `Range`
    /// answers 200: then `start` is 0.
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: u64,
    ) -> Result<BlobBody, Failure> {
        let mut headers = HeaderMap::new();
        if from > 0 {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={from}-")) {
                headers.insert(reqwest::header::RANGE, v);
            }
        }
        let resp = self
            .send(
                Method::GET,
                &format!("{repo}/blobs/{digest}"),
                &Self::scope(repo),
                headers,
            )
            .await?;
        let status = resp.status();
        let length = resp.content_length();
        let (start, size) = match status {
            StatusCode::NOT_FOUND => return Err(Failure::NotFound),
            StatusCode::PARTIAL_CONTENT => {
                // Content-Range: bytes a-b/total
                let range = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        let (ab, total) = v.strip_prefix("bytes ")?.split_once('/')?;
                        let (a, _) = ab.split_once('-')?;
                        Some((a.parse::<u64>().ok()?, total.parse::<u64>().ok()?))
                    });
                range.ok_or_else(|| {
                    unavailable(&self.config, "206 without a usable Content-Range")
                })?
            }
            s if s.is_success() => (
                0,
                length.ok_or_else(|| {
                    unavailable(&self.config, "blob GET without a Content-Length")
                })?,
            ),
            s => return Err(unavailable(&self.config, format!("GET blob answered {s}"))),
        };
        let name = self.config.name.clone();
        let idle = self.config.timeout;
        let body = resp.bytes_stream().boxed();
        // A body that stops sending for longer than the timeout fails, rather than
        // holding the fill (and its lease) for ever.
        let stream = futures_util::stream::unfold(Some((body, name)), move |state| async move {
            let (mut body, name) = state?;
            match tokio::time::timeout(idle, body.next()).await {
                Err(_) => Some((Err(format!("no bytes for {idle:?}")), None)),
                Ok(None) => None,
                Ok(Some(Err(e))) => Some((Err(e.to_string()), None)),
                Ok(Some(Ok(b))) => {
                    metrics::upstream_bytes(&name, b.len() as u64);
                    Some((Ok(b), Some((body, name))))
                }
            }
        })
        .boxed();
        Ok(BlobBody {
            start,
            size,
            stream,
        })
    }
}
