//! Server-side compose on Google Cloud Storage: the JSON API's `objects.compose`
//! concatenates up to 32 source objects of a bucket into a new object, inside the store.
//! This module owns that call, the tree of calls an upload of more than 32 chunks needs,
//! and the temporary objects of that tree.
//!
//! More than 32 chunks: groups of up to 32 are composed into temporary objects beside
//! the blob (`<blob key>.compose-<uuid>-<n>`), those (again in groups, if need be) into
//! the blob; each call is atomic, and only the last one writes the blob's key, so the
//! blob is never visible half-written. The temporaries are deleted afterwards, whether
//! the compose succeeded or not.
//!
//! object_store has no compose (its GCS client speaks the XML API, which has one too,
//! but without a way to send it through object_store), and Google's SDK crates would
//! bring a second HTTP and auth stack; the call is one JSON `POST` authorized by the
//! bearer token of object_store's own credential provider, so it is written here with
//! `reqwest`. An emulator used without credentials (`storage.gcs.endpoint` and no key)
//! gets no `Authorization` header.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use object_store::gcp::GcpCredentialProvider;
use object_store::path::Path;
use reqwest::{Method, StatusCode};
use tracing::Instrument;

use super::http_retry::{retryable_error, retryable_status, ATTEMPTS, FIRST_BACKOFF, GROWTH};
use super::object::Composer;
use super::url_encoding::encode_segment;
use super::{BlobError, Result};

/// The most source objects one compose call takes.
pub(crate) const MAX_SOURCES: usize = 32;
/// The JSON API's base URL when no endpoint is configured.
pub const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";
/// What every blob object is stored as (as `ObjectBackend` writes them).
const CONTENT_TYPE: &str = "application/octet-stream";
/// Compose (and delete) calls in flight at once.
const CONCURRENCY: usize = 4;

/// Why one JSON API call failed (boxed as the source of a [`BlobError`]).
#[derive(Debug, thiserror::Error)]
pub enum GcsCallError {
    #[error("GCS {call} of {object:?}: {status} {message}")]
    Status {
        call: &'static str,
        object: String,
        status: StatusCode,
        message: String,
    },
    #[error("GCS {call} of {object:?}: {source}")]
    Http {
        call: &'static str,
        object: String,
        source: reqwest::Error,
    },
    #[error("GCS credentials: {0}")]
    Credentials(#[source] object_store::Error),
}

impl GcsCallError {
    /// As the store error Wharf reports: a missing object, a refusal (credentials,
    /// permissions, preconditions; a 500 at the HTTP layer) or a transient failure
    /// (a 503 with `Retry-After`).
    fn into_blob_error(self) -> BlobError {
        let (status, path) = match self {
            GcsCallError::Status {
                status, ref object, ..
            } => (Some(status), object.clone()),
            GcsCallError::Http { ref object, .. } => (None, object.clone()),
            GcsCallError::Credentials(e) => return BlobError::from(e),
        };
        match status {
            Some(StatusCode::NOT_FOUND) => BlobError::NotFound(path),
            Some(
                StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED | StatusCode::PRECONDITION_FAILED,
            ) => BlobError::Refused(Box::new(self)),
            _ => BlobError::Unavailable(Box::new(self)),
        }
    }
}

/// How a compose went wrong.
enum Failed {
    /// The store does not compose this request (400: a limit of the store's; 501: an
    /// emulator without compose); the caller copies by streaming.
    Refused(String),
    Error(BlobError),
}

/// The compose calls that join `count` sources, level by level: each level's groups (of
/// up to 32 consecutive inputs) become the next level's inputs; the last level is one
/// group, the call that writes the destination.
pub(crate) fn plan(count: usize) -> Vec<Vec<std::ops::Range<usize>>> {
    let mut levels = Vec::new();
    let mut inputs = count;
    loop {
        let groups: Vec<_> = (0..inputs)
            .step_by(MAX_SOURCES)
            .map(|start| start..(start + MAX_SOURCES).min(inputs))
            .collect();
        inputs = groups.len();
        levels.push(groups);
        if inputs <= 1 {
            return levels;
        }
    }
}

/// Composes chunk objects into a blob object with the JSON API's `objects.compose`.
pub struct GcsComposer {
    http: reqwest::Client,
    /// `https://storage.googleapis.com`, or the configured endpoint; no trailing `/`.
    base: String,
    bucket: String,
    /// `None`: unauthenticated requests (an emulator without credentials).
    credentials: Option<GcpCredentialProvider>,
    first_backoff: Duration,
}

impl GcsComposer {
    /// `base` is the JSON API's base URL ([`DEFAULT_BASE_URL`] or `storage.gcs.endpoint`);
    /// `credentials` the GCS client's provider (`GoogleCloudStorage::credentials`), or
    /// `None` to send no `Authorization` header.
    pub fn new(base: &str, bucket: &str, credentials: Option<GcpCredentialProvider>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A compose of 32 objects is metadata work for the service, but its answer
            // may take a while under load; longer than object_store's 30 s default.
            .timeout(Duration::from_secs(300))
            .build()
            .expect("a default HTTP client builds");
        GcsComposer {
            http,
            base: base.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            credentials,
            first_backoff: FIRST_BACKOFF,
        }
    }

    /// The wait before the first retry (tests shorten it).
    pub fn with_first_backoff(mut self, wait: Duration) -> Self {
        self.first_backoff = wait;
        self
    }

    fn object_url(&self, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            encode_segment(&self.bucket),
            encode_segment(name)
        )
    }

    /// Sends a request (built anew for each attempt), retrying throttling, 5xx answers,
    /// timeouts and connection failures. Returns the answer's status when it is a success
    /// or one of `accept`.
    async fn send(
        &self,
        call: &'static str,
        object: &str,
        accept: &[StatusCode],
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> std::result::Result<StatusCode, GcsCallError> {
        let mut delay = self.first_backoff;
        let mut attempt = 1;
        loop {
            let mut request = build().headers(super::traced::headers());
            if let Some(credentials) = &self.credentials {
                let token = credentials
                    .get_credential()
                    .await
                    .map_err(GcsCallError::Credentials)?;
                if !token.bearer.is_empty() {
                    request = request.bearer_auth(&token.bearer);
                }
            }
            let error = match request.send().await {
                Ok(r) if r.status().is_success() || accept.contains(&r.status()) => {
                    return Ok(r.status())
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.bytes().await.unwrap_or_default();
                    GcsCallError::Status {
                        call,
                        object: object.to_string(),
                        status,
                        message: error_message(&body),
                    }
                }
                Err(source) => GcsCallError::Http {
                    call,
                    object: object.to_string(),
                    source,
                },
            };
            let retryable = match &error {
                GcsCallError::Status { status, .. } => retryable_status(*status),
                GcsCallError::Http { source, .. } => retryable_error(source),
                GcsCallError::Credentials(_) => false,
            };
            if !retryable || attempt == ATTEMPTS {
                return Err(error);
            }
            tracing::debug!(attempt, error = %error, "GCS call failed; retrying");
            tokio::time::sleep(delay).await;
            delay *= GROWTH;
            attempt += 1;
        }
    }

    /// One compose call: `sources` (in order) into `dest`.
    async fn compose_once(&self, dest: &str, sources: &[&str]) -> std::result::Result<(), Failed> {
        let body = serde_json::json!({
            "kind": "storage#composeRequest",
            "sourceObjects": sources.iter().map(|name| serde_json::json!({ "name": name })).collect::<Vec<_>>(),
            "destination": { "contentType": CONTENT_TYPE },
        })
        .to_string();
        let url = format!("{}/compose", self.object_url(dest));
        let refused = [StatusCode::BAD_REQUEST, StatusCode::NOT_IMPLEMENTED];
        tracing::debug!(dest, sources = sources.len(), "GCS compose");
        let status = self
            .send("compose", dest, &[], || {
                self.http
                    .request(Method::POST, &url)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
            })
            .await;
        match status {
            Ok(_) => Ok(()),
            Err(e @ GcsCallError::Status { status, .. }) if refused.contains(&status) => {
                Err(Failed::Refused(e.to_string()))
            }
            Err(e) => Err(Failed::Error(e.into_blob_error())),
        }
    }

    /// Deletes an object; a missing one is not an error.
    async fn delete(&self, name: &str) -> std::result::Result<(), GcsCallError> {
        let url = self.object_url(name);
        self.send("delete", name, &[StatusCode::NOT_FOUND], || {
            self.http.request(Method::DELETE, &url)
        })
        .await
        .map(|_| ())
    }

    /// Composes every level of [`plan`]; `temporaries` collects each temporary object
    /// a call was sent for (whether it was written or not), for the caller to delete.
    async fn compose_tree(
        &self,
        dest: &str,
        sources: &[&str],
        temporaries: &mut Vec<String>,
    ) -> std::result::Result<(), Failed> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let levels = plan(sources.len());
        let last = levels.len() - 1;
        let mut inputs: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        for (depth, groups) in levels.into_iter().enumerate() {
            if depth == last {
                let names: Vec<&str> = inputs.iter().map(String::as_str).collect();
                return self.compose_once(dest, &names).await;
            }
            let first = temporaries.len();
            let outputs: Vec<String> = (first..first + groups.len())
                .map(|n| format!("{dest}.compose-{nonce}-{n}"))
                .collect();
            temporaries.extend(outputs.iter().cloned());
            // Every call of the level runs to its end (none is dropped in flight), so
            // that no temporary is written after the cleanup has deleted it.
            let calls: Vec<(Vec<String>, String)> = groups
                .into_iter()
                .map(|group| inputs[group].to_vec())
                .zip(outputs.iter().cloned())
                .collect();
            let results: Vec<_> = futures_util::stream::iter(calls)
                .map(|(names, out)| async move {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    self.compose_once(&out, &names).await
                })
                .buffered(CONCURRENCY)
                .collect()
                .await;
            if let Some(failure) = results.into_iter().find_map(|r| r.err()) {
                return Err(failure);
            }
            inputs = outputs;
        }
        Ok(())
    }

    async fn delete_temporaries(&self, names: &[String]) {
        let deleted: Vec<_> = futures_util::stream::iter(names.to_vec())
            .map(|name| async move {
                let result = self.delete(&name).await;
                (name, result)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (name, result) in deleted {
            if let Err(e) = result {
                tracing::warn!(object = %name, error = %e, "deleting a temporary compose object failed");
            }
        }
    }
}

#[async_trait]
impl Composer for GcsComposer {
    async fn compose(&self, dest: &Path, sources: &[(Path, u64)]) -> Result<bool> {
        if sources.is_empty() {
            return Ok(false);
        }
        let calls: usize = plan(sources.len()).iter().map(Vec::len).sum();
        let span = tracing::info_span!(
            "blob.compose",
            backend = "gcs",
            key = %dest,
            chunks = sources.len(),
            calls,
            bytes = sources.iter().map(|(_, len)| len).sum::<u64>(),
        );
        async {
            let names: Vec<&str> = sources.iter().map(|(p, _)| p.as_ref()).collect();
            let mut temporaries = Vec::new();
            let composed = self
                .compose_tree(dest.as_ref(), &names, &mut temporaries)
                .await;
            self.delete_temporaries(&temporaries).await;
            match composed {
                Ok(()) => Ok(true),
                Err(Failed::Refused(why)) => {
                    tracing::warn!(error = %why, "the store refused to compose; copying by streaming");
                    Ok(false)
                }
                Err(Failed::Error(e)) => {
                    tracing::warn!(error = %e, "composing server-side failed");
                    Err(e)
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// The `message` of a JSON API error answer (`{"error": {"message": …}}`), else the
/// start of the body.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(|m| m.as_str())
    {
        Some(message) => message.to_string(),
        None => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

#[cfg(test)]
mod emulator_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_one_call_up_to_32_sources() {
        assert_eq!(plan(1), vec![vec![0..1]]);
        assert_eq!(plan(32), vec![vec![0..32]]);
    }

    #[test]
    fn plans_a_tree_beyond_32() {
        assert_eq!(plan(33), vec![vec![0..32, 32..33], vec![0..2]]);
        assert_eq!(plan(70), vec![vec![0..32, 32..64, 64..70], vec![0..3]]);
        assert_eq!(plan(1024).len(), 2);
        let deep = plan(1025);
        assert_eq!(deep.len(), 3);
        assert_eq!(deep[1], vec![0..32, 32..33]);
        // Every level's groups cover its inputs in order, and feed the next level.
        for count in [1, 31, 32, 33, 64, 65, 1000, 40_000] {
            let levels = plan(count);
            let mut inputs = count;
            for groups in &levels {
                assert_eq!(groups.first().map(|g| g.start), Some(0));
                assert_eq!(groups.last().map(|g| g.end), Some(inputs));
                assert!(groups.windows(2).all(|w| w[0].end == w[1].start));
                assert!(groups
                    .iter()
                    .all(|g| !g.is_empty() && g.len() <= MAX_SOURCES));
                inputs = groups.len();
            }
            assert_eq!(inputs, 1);
        }
    }

    #[test]
    fn error_answers_give_their_message() {
        let body = br#"{"error":{"code":404,"message":"Object a/b not found."}}"#;
        assert_eq!(error_message(body), "Object a/b not found.");
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        let e = GcsCallError::Status {
            call: "compose",
            object: "a/b".into(),
            status: StatusCode::NOT_FOUND,
            message: "gone".into(),
        };
        assert!(matches!(e.into_blob_error(), BlobError::NotFound(_)));
    }
}
