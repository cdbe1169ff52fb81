//! Server-side compose of an upload's chunks on S3: one multipart upload on the blob's
//! key whose parts are `UploadPartCopy`s of the chunk objects, so the bytes never leave
//! the store. object_store has no `UploadPartCopy` (nor a storage class or encryption on
//! `MultipartStore::create_multipart`), hence the AWS SDK for creating the upload and
//! copying parts; completing and aborting go through object_store's `MultipartStore`,
//! whose reading of the answer is lenient where the SDK's is not (moto answers
//! `CompleteMultipartUploadResponse`, which the SDK refuses). The SDK client gets the
//! same credentials (object_store's provider), endpoint, region, path style, storage
//! class and encryption as the object_store client in `cloud`.
//!
//! S3's rules: every part but the last is 5 MiB to 5 GiB, at most 10,000 parts. A chunk
//! over 5 GiB is copied as several ranged parts (`x-amz-copy-source-range`); when a chunk
//! other than the last is under 5 MiB (a client that ignored `OCI-Chunk-Min-Length`) no
//! valid layout exists without moving bytes, and [`ObjectBackend`] falls back to one
//! streaming copy. Any failure aborts the multipart upload: no half-composed blob is
//! ever visible under the blob's key.
//!
//! [`ObjectBackend`]: super::object::ObjectBackend

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, ProvideCredentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation,
};
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AwsCredentialProvider};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use tracing::Instrument;

use super::object::Composer;
use super::url_encoding::encode_path;
use super::{BlobError, Result};
use crate::config::S3Config;

/// The smallest part S3 accepts, but for the last one.
const MIN_PART: u64 = 5 * 1024 * 1024;
/// The largest part (and the largest single copy) S3 accepts.
const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
/// The most parts one multipart upload may have.
const MAX_PARTS: usize = 10_000;
/// Part copies in flight at once.
const CONCURRENCY: usize = 4;

/// One part of the composed object: `range` (end exclusive) of chunk `chunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartCopy {
    pub chunk: usize,
    pub range: std::ops::Range<u64>,
    /// False when the part is the whole chunk (no `x-amz-copy-source-range`).
    pub ranged: bool,
}

/// The parts that compose chunks of these lengths, or `None` when S3's part rules
/// cannot be met by copying alone (a chunk other than the last under 5 MiB, an empty
/// chunk, more than 10,000 parts).
pub(crate) fn plan(lens: &[u64]) -> Option<Vec<PartCopy>> {
    let mut parts = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let last = i + 1 == lens.len();
        if len == 0 || (!last && len < MIN_PART) {
            return None;
        }
        if len <= MAX_PART {
            parts.push(PartCopy {
                chunk: i,
                range: 0..len,
                ranged: false,
            });
            continue;
        }
        // Even pieces of at most 5 GiB: each is then far above 5 MiB.
        let pieces = len.div_ceil(MAX_PART);
        let size = len.div_ceil(pieces);
        let mut start = 0;
        while start < len {
            let end = (start + size).min(len);
            parts.push(PartCopy {
                chunk: i,
                range: start..end,
                ranged: true,
            });
            start = end;
        }
    }
    (parts.len() <= MAX_PARTS).then_some(parts)
}

/// object_store's S3 credentials (configured keys, or the environment's chain as it
/// resolved them) handed to the AWS SDK, so both clients always sign alike.
struct SharedCredentials(AwsCredentialProvider);

impl std::fmt::Debug for SharedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedCredentials(object_store)")
    }
}

impl ProvideCredentials for SharedCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let c = self.0.get_credential().await.map_err(|e| {
                aws_credential_types::provider::error::CredentialsError::provider_error(e)
            })?;
            Ok(Credentials::new(
                &c.key_id,
                &c.secret_key,
                c.token.clone(),
                None,
                "object_store",
            ))
        })
    }
}

/// Composes chunk objects into a blob object with `UploadPartCopy`.
pub struct S3Composer {
    client: aws_sdk_s3::Client,
    store: Arc<AmazonS3>,
    bucket: String,
    storage_class: Option<StorageClass>,
    encryption: Option<(ServerSideEncryption, Option<String>)>,
}

impl S3Composer {
    /// `path_style` as the object_store client was built (forced, or an endpoint that
    /// cannot take the bucket as a subdomain).
    pub fn new(config: &S3Config, store: Arc<AmazonS3>, path_style: bool) -> Self {
        let credentials = store.credentials().clone();
        // The same retry budget as `cloud::retry_config`: SlowDown, 503 and 5xx,
        // timeouts and connection errors, up to 10 retries with growing waits.
        let retry = aws_sdk_s3::config::retry::RetryConfig::standard()
            .with_max_attempts(11)
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(5));
        // A part copy of up to 5 GiB happens inside the store before S3 answers.
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(15 * 60))
            .build();
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region().to_string()))
            .credentials_provider(SharedCredentials(credentials))
            .http_client(http)
            .retry_config(retry)
            .timeout_config(timeouts)
            .force_path_style(path_style)
            .interceptor(super::traced::SdkInterceptor)
            // What object_store sends: no extra checksums that S3-compatible
            // servers may not know.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = config.endpoint() {
            builder = builder.endpoint_url(endpoint);
        }
        let encryption = config.encrypt.then(|| match &config.keyid {
            Some(key) => (ServerSideEncryption::AwsKms, Some(key.clone())),
            None => (ServerSideEncryption::Aes256, None),
        });
        S3Composer {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            store,
            bucket: config.bucket.clone().unwrap_or_default(),
            storage_class: config
                .storage_class()
                .map(|c| StorageClass::from(c.as_str())),
            encryption,
        }
    }

    async fn copy_parts(
        &self,
        dest: &Path,
        upload_id: &str,
        sources: &[(Path, u64)],
        parts: Vec<PartCopy>,
    ) -> Result<Vec<PartId>> {
        futures_util::stream::iter(parts.into_iter().enumerate())
            .map(|(n, part)| {
                let number = n as i32 + 1;
                let source = format!(
                    "{}/{}",
                    self.bucket,
                    encode_path(sources[part.chunk].0.as_ref())
                );
                let mut request = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(dest.as_ref())
                    .upload_id(upload_id)
                    .part_number(number)
                    .copy_source(source);
                if part.ranged {
                    request = request.copy_source_range(format!(
                        "bytes={}-{}",
                        part.range.start,
                        part.range.end - 1
                    ));
                }
                async move {
                    let out = request.send().await.map_err(sdk_error)?;
                    let etag = out.copy_part_result.and_then(|r| r.e_tag).ok_or_else(|| {
                        store_error(format!("UploadPartCopy of part {number} returned no ETag"))
                    })?;
                    Ok::<_, BlobError>(PartId { content_id: etag })
                }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }
}

#[async_trait]
impl Composer for S3Composer {
    async fn compose(&self, dest: &Path, sources: &[(Path, u64)]) -> Result<bool> {
        let lens: Vec<u64> = sources.iter().map(|(_, len)| *len).collect();
        let Some(parts) = plan(&lens) else {
            return Ok(false);
        };
        let span = tracing::info_span!(
            "blob.compose",
            backend = "s3",
            key = %dest,
            chunks = sources.len(),
            parts = parts.len(),
            bytes = lens.iter().sum::<u64>(),
        );
        async {
            let mut create = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(dest.as_ref())
                .set_storage_class(self.storage_class.clone());
            if let Some((sse, key)) = &self.encryption {
                create = create
                    .server_side_encryption(sse.clone())
                    .set_ssekms_key_id(key.clone());
            }
            let upload = create.send().await.map_err(sdk_error)?;
            let upload_id = upload
                .upload_id
                .ok_or_else(|| store_error("CreateMultipartUpload returned no UploadId".into()))?;
            let completed = async {
                let done = self.copy_parts(dest, &upload_id, sources, parts).await?;
                self.store
                    .complete_multipart(dest, &upload_id, done)
                    .await
                    .map_err(BlobError::from)
            }
            .await;
            if let Err(e) = completed {
                tracing::warn!(error = %e, "composing server-side failed; aborting");
                if let Err(a) = self.store.abort_multipart(dest, &upload_id).await {
                    tracing::warn!(error = %a, "aborting the compose upload failed");
                }
                return Err(e);
            }
            Ok(true)
        }
        .instrument(span)
        .await
    }
}

/// An SDK failure as a store error: the HTTP layer answers 503 with `Retry-After`.
/// (The SDK's own `Display` says only "service error"; its context names S3's code.)
fn sdk_error(e: impl std::error::Error) -> BlobError {
    store_error(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
}

fn store_error(message: String) -> BlobError {
    BlobError::Unavailable(format!("S3: {message}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn whole_chunks_become_whole_parts() {
        let p = plan(&[5 * MIB, 8 * MIB, 1]).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|p| !p.ranged));
        assert_eq!(p[2].range, 0..1);
    }

    #[test]
    fn a_small_chunk_before_the_last_cannot_be_copied() {
        assert_eq!(plan(&[5 * MIB - 1, 5 * MIB]), None);
        assert_eq!(plan(&[5 * MIB, 0]), None);
    }

    #[test]
    fn chunks_over_five_gib_are_split_into_ranges() {
        let big = 11 * 1024 * MIB + 7;
        let p = plan(&[6 * MIB, big]).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].chunk, 0);
        let ranges: Vec<_> = p[1..].iter().map(|p| p.range.clone()).collect();
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges[2].end, big);
        for w in ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &ranges {
            assert!(r.end - r.start <= MAX_PART && r.end - r.start >= MIN_PART);
        }
        assert!(p[1..].iter().all(|p| p.ranged && p.chunk == 1));
    }

    #[test]
    fn too_many_parts() {
        assert!(plan(&vec![5 * MIB; MAX_PARTS]).is_some());
        assert_eq!(plan(&vec![5 * MIB; MAX_PARTS + 1]), None);
    }
}
