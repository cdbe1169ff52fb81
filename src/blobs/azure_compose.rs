//! Server-side compose on Azure Blob: each chunk object is copied inside the service into
//! uncommitted blocks of the blob (Put Block From URL: the source a read SAS of the
//! chunk, the request authorized by a write SAS of the blob), then one Put Block List
//! (object_store's `MultipartStore::complete_multipart`) makes them the blob at once.
//! Uncommitted blocks are never visible and the service drops them after a week, so a
//! compose that fails part-way leaves nothing under the blob's key.
//!
//! object_store has no Put Block From URL, and the Azure SDK crates would bring a second
//! HTTP and auth stack beside object_store's; the request is one `PUT` whose
//! authorization is the SAS in its URL (signed by object_store's `Signer`, from the
//! account key or a user delegation key), so it is written here with `reqwest`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::prelude::{Engine as _, BASE64_STANDARD};
use futures_util::{StreamExt, TryStreamExt};
use object_store::azure::MicrosoftAzure;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use reqwest::Method;
use tracing::Instrument;

use super::http_retry::{retryable_error, retryable_status, ATTEMPTS, FIRST_BACKOFF, GROWTH};
use super::object::Composer;
use super::{BlobError, Result};

/// The largest block Put Block From URL copies.
const MAX_BLOCK: u64 = 4000 * 1024 * 1024;
/// The most blocks a blob may have.
const MAX_BLOCKS: usize = 50_000;
/// Block copies in flight at once.
const CONCURRENCY: usize = 4;
/// How long the SAS URLs of one compose are valid.
const SAS_LIFETIME: Duration = Duration::from_secs(3600);
/// REST API version of the requests (the one object_store speaks).
const API_VERSION: &str = "2023-11-03";

/// One block of the composed blob: `range` (end exclusive) of chunk `chunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockCopy {
    pub chunk: usize,
    pub range: std::ops::Range<u64>,
}

/// The blocks that compose chunks of these lengths, or `None` when Azure's block rules
/// cannot be met (an empty chunk, more than 50,000 blocks).
pub(crate) fn plan(lens: &[u64]) -> Option<Vec<BlockCopy>> {
    let mut blocks = Vec::new();
    for (chunk, &len) in lens.iter().enumerate() {
        if len == 0 {
            return None;
        }
        let pieces = len.div_ceil(MAX_BLOCK);
        let size = len.div_ceil(pieces);
        let mut start = 0;
        while start < len {
            let end = (start + size).min(len);
            blocks.push(BlockCopy {
                chunk,
                range: start..end,
            });
            start = end;
        }
    }
    (blocks.len() <= MAX_BLOCKS).then_some(blocks)
}

pub struct AzureComposer {
    store: Arc<MicrosoftAzure>,
    http: reqwest::Client,
}

impl AzureComposer {
    pub fn new(store: Arc<MicrosoftAzure>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A block of up to 4000 MiB is copied before the service answers.
            .timeout(Duration::from_secs(600))
            .build()
            .expect("a default HTTP client builds");
        AzureComposer { store, http }
    }

    /// Copies one block into `dest`'s uncommitted blocks; returns its id.
    async fn copy_block(
        &self,
        dest: &url::Url,
        source: &url::Url,
        range: &std::ops::Range<u64>,
        whole: bool,
    ) -> Result<PartId> {
        let content_id = format!(
            "{:032x}",
            u128::from_be_bytes(*uuid::Uuid::new_v4().as_bytes())
        );
        let mut url = dest.clone();
        url.query_pairs_mut()
            .append_pair("comp", "block")
            .append_pair("blockid", &BASE64_STANDARD.encode(&content_id));
        let mut delay = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .http
                .request(Method::PUT, url.clone())
                .header("x-ms-version", API_VERSION)
                .header("x-ms-copy-source", source.as_str())
                .header("Content-Length", "0")
                .headers(super::traced::headers());
            if !whole {
                request = request.header(
                    "x-ms-source-range",
                    format!("bytes={}-{}", range.start, range.end - 1),
                );
            }
            let retryable = match request.send().await {
                Ok(r) if r.status().is_success() => return Ok(PartId { content_id }),
                Ok(r) => {
                    let status = r.status();
                    let code = r
                        .headers()
                        .get("x-ms-error-code")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    if status.as_u16() == 501 {
                        // An emulator without it (Azurite before 3.37): copy by streaming.
                        return Err(BlobError::Unsupported("Put Block From URL".into()));
                    }
                    let message = format!("Put Block From URL: {status} {code}");
                    if !retryable_status(status) || attempt == ATTEMPTS {
                        return Err(store_error(message));
                    }
                    message
                }
                Err(e) if attempt == ATTEMPTS || !retryable_error(&e) => {
                    return Err(store_error(format!("Put Block From URL: {e}")))
                }
                Err(e) => e.to_string(),
            };
            tracing::debug!(attempt, error = %retryable, "block copy failed; retrying");
            tokio::time::sleep(delay).await;
            delay *= GROWTH;
        }
        unreachable!("the last attempt returns")
    }
}

#[async_trait]
impl Composer for AzureComposer {
    async fn compose(&self, dest: &Path, sources: &[(Path, u64)]) -> Result<bool> {
        let lens: Vec<u64> = sources.iter().map(|(_, len)| *len).collect();
        let Some(blocks) = plan(&lens) else {
            return Ok(false);
        };
        let span = tracing::info_span!(
            "blob.compose",
            backend = "azure",
            key = %dest,
            chunks = sources.len(),
            blocks = blocks.len(),
            bytes = lens.iter().sum::<u64>(),
        );
        async {
            let dest_url = self
                .store
                .signed_url(Method::PUT, dest, SAS_LIFETIME)
                .await?;
            let mut source_urls = Vec::with_capacity(sources.len());
            for (path, _) in sources {
                source_urls.push(
                    self.store
                        .signed_url(Method::GET, path, SAS_LIFETIME)
                        .await?,
                );
            }
            let (dest_url, source_urls, lens) = (&dest_url, &source_urls, &lens);
            let copies = blocks.into_iter().map(move |b| async move {
                let whole = b.range.start == 0 && b.range.end == lens[b.chunk];
                self.copy_block(dest_url, &source_urls[b.chunk], &b.range, whole)
                    .await
            });
            let copied: Result<Vec<PartId>> = futures_util::stream::iter(copies)
                .buffered(CONCURRENCY)
                .try_collect()
                .await;
            let parts = match copied {
                Err(BlobError::Unsupported(_)) => {
                    tracing::warn!(
                        "the store does not implement Put Block From URL; copying by streaming"
                    );
                    return Ok(false);
                }
                other => other?,
            };
            self.store
                .complete_multipart(dest, &String::new(), parts)
                .await?;
            Ok(true)
        }
        .instrument(span)
        .await
    }
}

/// A failed Azure call after its retries: transient (503 with `Retry-After`).
fn store_error(message: String) -> BlobError {
    BlobError::Unavailable(format!("MicrosoftAzure: {message}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        const MIB: u64 = 1024 * 1024;
        let p = plan(&[1, 5 * MIB, 2]).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[1],
            BlockCopy {
                chunk: 1,
                range: 0..5 * MIB
            }
        );
        // A chunk over 4000 MiB becomes even ranged blocks.
        let big = 9000 * MIB;
        let p = plan(&[big]).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].range, 0..3000 * MIB);
        assert_eq!(p[2].range, 6000 * MIB..big);
        assert!(plan(&[3, 0, 4]).is_none());
        assert!(plan(&vec![1; MAX_BLOCKS + 1]).is_none());
    }
}
