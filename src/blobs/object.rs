//! Blob backend over any `object_store::ObjectStore`: in-memory, and the clouds
//! (S3, Azure Blob, GCS; see `cloud`), each with its own part size and smallest chunk.
//!
//! Every chunk is its own object under a unique key, so two racing requests can never
//! overwrite each other's bytes; an upload that ends as one chunk *is* its blob (no copy).
//! Several chunks are composed inside the store by its [`Composer`] (S3's
//! `UploadPartCopy`, `s3_compose`; Azure's Put Block From URL, `azure_compose`; GCS's
//! `objects.compose`, `gcs_compose`) where it has one and can, else copied once into the
//! blob object, streaming.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{Attribute, Attributes, GetOptions, GetRange, ObjectStore, PutOptions};
use tokio::io::AsyncWriteExt;

use super::{BlobBackend, BlobError, ByteStream, ChunkWriter, FinishedChunk, Result};
use crate::types::ChunkRecord;

/// Below this, a chunk is one PUT; above, a multipart upload of parts this big.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one object uploading at once. Each holds a part in memory, so a write
/// holds at most about `(this + 1) × part size` (object_store's default of 8 made a
/// 1 GiB push on S3 peak at ~100 MiB with 10 MiB parts).
const PARTS_IN_FLIGHT: usize = 3;

/// Joins an upload's chunk objects into its blob object inside the store, without the
/// bytes passing through Wharf.
#[async_trait]
pub trait Composer: Send + Sync {
    /// Composes `sources` (store paths and lengths, in order) into `dest`. `Ok(false)`
    /// when this layout cannot be composed (the caller then copies by streaming); an
    /// error leaves nothing visible at `dest`.
    async fn compose(&self, dest: &Path, sources: &[(Path, u64)]) -> Result<bool>;
}

pub struct ObjectBackend {
    name: &'static str,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    part_size: usize,
    min_chunk_len: u64,
    attributes: Attributes,
    /// Presigns blob GETs for redirects (the cloud stores that can).
    signer: Option<Arc<dyn Signer>>,
    composer: Option<Arc<dyn Composer>>,
}

impl ObjectBackend {
    /// `prefix` is `storage.<backend>.rootdirectory` (may be empty).
    pub fn new(name: &'static str, store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/').to_string();
        ObjectBackend {
            name,
            store,
            prefix,
            part_size: PART_SIZE,
            min_chunk_len: 1,
            attributes: Attributes::from_iter([(
                Attribute::ContentType,
                "application/octet-stream",
            )]),
            signer: None,
            composer: None,
        }
    }

    /// Blob GETs may be redirected to URLs `signer` presigns.
    pub fn with_signer(mut self, signer: Arc<dyn Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Objects are written in one PUT up to `bytes`, else in parts of `bytes`.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// The chunk size advertised to clients (`OCI-Chunk-Min-Length`).
    pub fn with_min_chunk_len(mut self, bytes: u64) -> Self {
        self.min_chunk_len = bytes.max(1);
        self
    }

    /// Attributes set on every object written (a storage class), besides its
    /// `Content-Type: application/octet-stream` (what a redirected GET answers with).
    pub fn with_attributes(mut self, attributes: Attributes) -> Self {
        for (k, v) in attributes.iter() {
            self.attributes.insert(k.clone(), v.clone());
        }
        self
    }

    /// Composes several chunks server-side where `composer` can.
    pub fn with_composer(mut self, composer: Arc<dyn Composer>) -> Self {
        self.composer = Some(composer);
        self
    }

    fn writer(&self, key: &str) -> BufWriter {
        BufWriter::with_capacity(self.store.clone(), self.path(key), self.part_size)
            .with_attributes(self.attributes.clone())
            .with_max_concurrency(PARTS_IN_FLIGHT)
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{}", self.prefix, key))
        }
    }
}

/// `BufWriter::shutdown` (tokio's `AsyncWrite`) wraps the store's error in an
/// `io::Error`; unwrapped, it is classified like the rest.
fn unwrap_io(e: std::io::Error) -> BlobError {
    if !e.get_ref().is_some_and(|i| i.is::<object_store::Error>()) {
        return BlobError::Io(e);
    }
    match e.into_inner().map(|i| i.downcast::<object_store::Error>()) {
        Some(Ok(store)) => BlobError::from(*store),
        _ => BlobError::Io(std::io::Error::other("object store write failed")),
    }
}

/// An `object_store` error as a [`BlobError`]: a missing object is `NotFound` (named
/// `key`); what the client gave up on after its retries (network errors, timeouts,
/// throttling, 5xx: `Generic`) is transient; what the store refused (credentials,
/// permissions, preconditions, invalid requests) is permanent.
pub(crate) fn store_error(key: &str, e: object_store::Error) -> BlobError {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => BlobError::NotFound(key.to_string()),
        E::Generic { .. } | E::JoinError { .. } => BlobError::Unavailable(Box::new(e)),
        E::NotImplemented | E::NotSupported { .. } => BlobError::Unsupported(e.to_string()),
        other => BlobError::Refused(Box::new(other)),
    }
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        let key = match &e {
            object_store::Error::NotFound { path, .. } => path.clone(),
            _ => String::new(),
        };
        store_error(&key, e)
    }
}

/// Counts how an upload of several chunks became its blob.
fn compose_metric(backend: &str, method: &str) {
    crate::telemetry::metrics()
        .blob_compose
        .with_label_values(&[backend, method])
        .inc();
}

fn map_err(key: &str) -> impl Fn(object_store::Error) -> BlobError + '_ {
    move |e| store_error(key, e)
}

struct ObjectChunkWriter {
    key: String,
    offset: u64,
    written: u64,
    writer: BufWriter,
}

#[async_trait]
impl ChunkWriter for ObjectChunkWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.written += data.len() as u64;
        self.writer.put(data).await?;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<FinishedChunk> {
        if self.written == 0 {
            self.writer.abort().await.ok();
            return Ok(FinishedChunk {
                chunk: None,
                hold: None,
            });
        }
        self.writer.shutdown().await.map_err(unwrap_io)?;
        Ok(FinishedChunk {
            chunk: Some(ChunkRecord {
                key: self.key.clone(),
                offset: self.offset,
                len: self.written,
            }),
            hold: None,
        })
    }

    async fn abort(mut self: Box<Self>) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(key = %self.key, error = %e, "aborting chunk upload failed");
        }
    }
}

#[async_trait]
impl BlobBackend for ObjectBackend {
    fn name(&self) -> &'static str {
        self.name
    }

    fn new_storage_key(&self, upload_id: &str) -> String {
        format!("blobs/{upload_id}")
    }

    fn min_chunk_len(&self) -> u64 {
        self.min_chunk_len
    }

    async fn chunk_writer(&self, storage_key: &str, offset: u64) -> Result<Box<dyn ChunkWriter>> {
        let nonce = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let key = format!("{storage_key}.{offset}.{nonce}");
        let writer = self.writer(&key);
        Ok(Box::new(ObjectChunkWriter {
            key,
            offset,
            written: 0,
            writer,
        }))
    }

    async fn assemble(
        &self,
        storage_key: &str,
        chunks: &[ChunkRecord],
        total: u64,
    ) -> Result<String> {
        match chunks {
            [] => {
                let options = PutOptions {
                    attributes: self.attributes.clone(),
                    ..Default::default()
                };
                self.store
                    .put_opts(&self.path(storage_key), Bytes::new().into(), options)
                    .await?;
                Ok(storage_key.to_string())
            }
            [only] if only.len == total => Ok(only.key.clone()),
            _ => {
                if let Some(composer) = &self.composer {
                    let sources: Vec<_> =
                        chunks.iter().map(|c| (self.path(&c.key), c.len)).collect();
                    if composer.compose(&self.path(storage_key), &sources).await? {
                        compose_metric(self.name, "server_copy");
                        return Ok(storage_key.to_string());
                    }
                }
                let mut out = self.writer(storage_key);
                let copied = async {
                    for c in chunks {
                        let mut stream = self.get(&c.key, None).await?;
                        while let Some(piece) = stream.next().await {
                            out.put(piece?).await?;
                        }
                    }
                    Ok::<(), BlobError>(())
                }
                .await;
                if let Err(e) = copied {
                    // Leaves no half-written multipart upload behind.
                    out.abort().await.ok();
                    return Err(e);
                }
                out.shutdown().await.map_err(unwrap_io)?;
                compose_metric(self.name, "stream_copy");
                Ok(storage_key.to_string())
            }
        }
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&self.path(key), options)
            .await
            .map_err(map_err(key))?;
        let owned = key.to_string();
        Ok(result
            .into_stream()
            .map_err(move |e| map_err(&owned)(e))
            .boxed())
    }

    async fn presigned_get(
        &self,
        key: &str,
        expiry: std::time::Duration,
    ) -> Result<Option<url::Url>> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(http::Method::GET, &self.path(key), expiry)
            .await?;
        Ok(Some(url))
    }

    fn object_path(&self, key: &str) -> Option<String> {
        Some(self.path(key).to_string())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Lists one level under the prefix: refused credentials and a missing bucket
    /// (S3's `NoSuchBucket` is a 404 on the bucket itself) fail here, as refusals.
    async fn check(&self) -> Result<()> {
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        match self.store.list_with_delimiter(prefix.as_ref()).await {
            Ok(_) => Ok(()),
            Err(e @ object_store::Error::NotFound { .. }) => Err(BlobError::Refused(Box::new(e))),
            // object_store reports a failed listing as `Generic` whatever the answer was
            // (a missing bucket or container: a 404 on S3 and Azure); a 4xx other than
            // a timeout or throttling is for good, not something a retry cures.
            Err(e @ object_store::Error::Generic { .. })
                if reported_status(&e)
                    .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429) =>
            {
                Err(BlobError::Refused(Box::new(e)))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The HTTP status the store answered with, as object_store's message about it in
/// `e`'s chain of causes says ("Server returned non-2xx status code: 404 Not Found: …";
/// the type holding the status itself is private to object_store). The blob contract
/// suite (`tests/blobs`, a missing bucket on moto and Azurite) checks that it is found.
fn reported_status(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
    const MARK: &str = "non-2xx status code: ";
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if let Some(at) = text.find(MARK) {
            let code = text[at + MARK.len()..].get(..3)?;
            return code.parse().ok();
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_read_from_the_chain_of_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("Server returned non-2xx status code: 404 Not Found: <Error/>")]
        struct Answer;
        #[derive(Debug, thiserror::Error)]
        #[error("Error performing list request")]
        struct Listing(#[source] Answer);
        let e = object_store::Error::Generic {
            store: "S3",
            source: Box::new(Listing(Answer)),
        };
        assert_eq!(reported_status(&e), Some(404));
        let e = object_store::Error::Generic {
            store: "S3",
            source: "connection reset".into(),
        };
        assert_eq!(reported_status(&e), None);
    }

    #[test]
    fn store_errors_inside_io_errors_stay_store_errors() {
        let store = object_store::Error::Generic {
            store: "S3",
            source: "SlowDown".into(),
        };
        let wrapped: std::io::Error = store.into();
        assert!(matches!(unwrap_io(wrapped), BlobError::Unavailable(_)));
        let plain = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
        match unwrap_io(plain) {
            BlobError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe),
            other => panic!("{other:?}"),
        }
    }
}
