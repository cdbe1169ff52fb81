//! The blob store: where blob bytes live.
//!
//! [`BlobStore`] is what the registry core uses: write an upload's chunk as it streams,
//! assemble an upload's chunks into the blob (in place on a filesystem; the single chunk
//! itself, or a copy, on object stores), read a blob or a byte range of it, delete.
//! Each backend is one module implementing [`BlobBackend`]; the generic one wraps any
//! `object_store::ObjectStore` (in-memory; S3, Azure Blob and GCS, built in `cloud`)
//! rather than duplicating that trait. Storage keys are opaque strings recorded in the
//! metadata database; nothing here is addressed by digest.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::metadata::ChunkRecord;

pub mod azure_compose;
pub mod cloud;
pub mod fs;
pub mod gcs_compose;
mod http_retry;
pub mod object;
pub mod s3_compose;
mod url_encoding;

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob object {0:?} not found in storage")]
    NotFound(String),
    #[error("upload is being written by another request")]
    Busy,
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store error: {0}")]
    ObjectStore(#[from] object_store::Error),
}

pub type Result<T> = std::result::Result<T, BlobError>;

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

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

/// The registry's handle on blob storage.
#[derive(Clone)]
pub struct BlobStore {
    backend: Arc<dyn BlobBackend>,
    redirector: Option<Arc<crate::redirect::Redirector>>,
}

impl BlobStore {
    pub fn new(backend: Arc<dyn BlobBackend>) -> Self {
        BlobStore {
            backend,
            redirector: None,
        }
    }

    /// Blob GETs are redirected as `redirector` decides (`None`: always streamed).
    pub fn with_redirector(mut self, redirector: Option<crate::redirect::Redirector>) -> Self {
        self.redirector = redirector.map(Arc::new);
        self
    }

    pub fn redirector(&self) -> Option<&crate::redirect::Redirector> {
        self.redirector.as_deref()
    }

    pub fn backend(&self) -> &dyn BlobBackend {
        self.backend.as_ref()
    }
}

impl std::ops::Deref for BlobStore {
    type Target = dyn BlobBackend;

    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

/// Appends a finished chunk to an upload's chunk list, merging a chunk that continues
/// the previous one in place (the filesystem writes every chunk into one file).
pub fn push_chunk(chunks: &mut Vec<ChunkRecord>, chunk: ChunkRecord) {
    if let Some(last) = chunks.last_mut() {
        if last.key == chunk.key && last.offset + last.len == chunk.offset {
            last.len += chunk.len;
            return;
        }
    }
    chunks.push(chunk);
}
