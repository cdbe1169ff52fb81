//! The blob store: where blob bytes live.
//!
//! [`BlobBackend`] is what the registry core uses: write an upload's chunk as it streams,
//! assemble an upload's chunks into the blob (in place on a filesystem; the single chunk
//! itself, or a copy, on object stores), read a blob or a byte range of it, delete.
//! Each backend is one module implementing [`BlobBackend`]; the generic one wraps any
//! `object_store::ObjectStore` (in-memory; S3, Azure Blob and GCS, built in `cloud`)
//! rather than duplicating that trait. Storage keys are opaque strings recorded in the
//! metadata database; nothing here is addressed by digest.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::types::ChunkRecord;

pub mod azure_compose;
pub mod cloud;
pub mod fs;
pub mod gcs_compose;
mod http_retry;
pub mod instrumented;
pub mod object;
pub mod s3_compose;
mod traced;
mod url_encoding;

/// A failure's cause, as the store's client reported it (its type stays in here).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the blob store. No client type appears here: each backend classifies its
/// client's errors (`object::store_error` for `object_store`) as one of these.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob object {0:?} not found in storage")]
    NotFound(String),
    #[error("upload is being written by another request")]
    Busy,
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The store could not answer now (timeouts, lost connections, throttling, its own
    /// 5xx after the client's retries): the request may be retried.
    #[error("object store temporarily unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The store refused the request for good: bad credentials, permission denied, a
    /// missing bucket, a request it considers invalid.
    #[error("object store refused the request: {0}")]
    Refused(#[source] BoxError),
    /// The store does not implement an operation (callers fall back where they can).
    #[error("operation not supported by the store: {0}")]
    Unsupported(String),
}

impl BlobError {
    /// True for failures a retry may cure (answered with 503 and `Retry-After`).
    pub fn is_transient(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            BlobError::Unavailable(_) | BlobError::Busy => true,
            BlobError::Io(e) => matches!(
                e.kind(),
                K::TimedOut | K::Interrupted | K::ConnectionReset | K::ConnectionAborted
            ),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, BlobError>;

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// An object found by [`BlobBackend::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Its storage key (what the metadata database records).
    pub key: String,
    pub size: u64,
    /// Last modified, Unix milliseconds.
    pub modified_ms: i64,
}

/// A listing, object by object.
pub type ObjectStream = BoxStream<'static, Result<ListedObject>>;

/// A durably written chunk. `hold` keeps the backend's exclusive hold on the upload
/// (the filesystem's file lock) until the caller has recorded the chunk and drops it.
pub struct FinishedChunk {
    pub chunk: Option<ChunkRecord>,
    pub hold: Option<Box<dyn Send + Sync>>,
}

/// Writes one chunk of an upload as its bytes arrive.
#[async_trait]
pub trait ChunkWriter: Send {
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// Makes the chunk durable and returns where it is (`chunk` is `None` if nothing
    /// was written).
    async fn finish(self: Box<Self>) -> Result<FinishedChunk>;
    /// Drops what was written; the upload stays as it was before this chunk.
    async fn abort(self: Box<Self>);
}

/// One storage backend.
#[async_trait]
pub trait BlobBackend: Send + Sync + 'static {
    /// A short name for logs and metrics (`filesystem`, `inmemory`, `s3`, …).
    fn name(&self) -> &'static str;
    /// A fresh storage key for a new upload (its blob's key if it ends as one chunk).
    fn new_storage_key(&self, upload_id: &str) -> String;
    /// The smallest chunk the backend composes without copying (advertised to clients).
    fn min_chunk_len(&self) -> u64;
    /// True if every chunk of an upload is written into one shared object (the
    /// filesystem): the writer then holds the upload exclusively from `chunk_writer`
    /// until its [`FinishedChunk::hold`] is dropped, changes nothing before its first
    /// `write`/`finish`, and the caller must re-check the upload's offset once it holds it.
    fn writes_in_place(&self) -> bool {
        false
    }
    /// Starts writing the chunk that begins at `offset` of the upload.
    async fn chunk_writer(&self, storage_key: &str, offset: u64) -> Result<Box<dyn ChunkWriter>>;
    /// Turns an upload's chunks (in order, covering `0..total`) into one blob object and
    /// returns its key. The chunks stay until [`BlobBackend::release_chunks`], so a
    /// commit that fails afterwards can be retried.
    async fn assemble(
        &self,
        storage_key: &str,
        chunks: &[ChunkRecord],
        total: u64,
    ) -> Result<String>;
    /// Reads `range` (or everything) of an object.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream>;
    /// Deletes an object; deleting a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Deletes the chunks of a committed upload that are not the blob itself.
    async fn release_chunks(&self, chunks: &[ChunkRecord], blob_key: &str) -> Result<()> {
        for c in chunks.iter().filter(|c| c.key != blob_key) {
            self.delete(&c.key).await?;
        }
        Ok(())
    }
    /// A URL from which a client can GET the object (honouring `Range`) for `expiry`
    /// without the registry, if the backend can presign one (the cloud stores); `None`:
    /// the registry streams it.
    async fn presigned_get(
        &self,
        _key: &str,
        _expiry: std::time::Duration,
    ) -> Result<Option<url::Url>> {
        Ok(None)
    }
    /// The object's path in its bucket (what a CDN in front of the bucket serves it
    /// under); `None` where there is no bucket.
    fn object_path(&self, _key: &str) -> Option<String> {
        None
    }
    /// Checks the store is reachable with the configured location and credentials
    /// (readiness): a missing bucket or refused credentials is an error here.
    async fn check(&self) -> Result<()> {
        Ok(())
    }
    /// Every object whose key starts with `prefix` (a whole key component, such as
    /// `blobs/`), in no particular order: for the orphan sweep.
    async fn list(&self, prefix: &str) -> Result<ObjectStream>;
    /// Deletes everything an unfinished upload wrote.
    async fn discard_upload(&self, storage_key: &str, chunks: &[ChunkRecord]) -> Result<()> {
        self.delete(storage_key).await?;
        for c in chunks {
            if c.key != storage_key {
                self.delete(&c.key).await?;
            }
        }
        Ok(())
    }
}
