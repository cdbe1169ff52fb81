//! Blob storage, instrumented once: [`Instrumented`] wraps any [`BlobBackend`] and gives
//! each call a span (`store.call`) and an observation in
//! `wharf_storage_call_duration_seconds{backend, operation, outcome}`
//! (`telemetry::calls`); a chunk writer's `finish` (where the chunk becomes durable)
//! is measured as `finish_chunk`, its many small `write`s are not. `get` measures the
//! time to the response's start, not the whole transfer. `server::blob_backend` wraps
//! the backend it opens.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobBackend, ByteStream, ChunkWriter, FinishedChunk, ObjectStream, Result};
use crate::telemetry::calls::{observe, Store};
use crate::types::ChunkRecord;

/// A backend whose every call is measured.
pub struct Instrumented {
    inner: Arc<dyn BlobBackend>,
    backend: &'static str,
}

/// `backend` with its calls measured.
pub fn wrap(backend: Arc<dyn BlobBackend>) -> Arc<dyn BlobBackend> {
    let name = backend.name();
    Arc::new(Instrumented {
        inner: backend,
        backend: name,
    })
}

/// A chunk writer whose `finish` is measured.
struct Writer {
    inner: Box<dyn ChunkWriter>,
    backend: &'static str,
}

#[async_trait]
impl ChunkWriter for Writer {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.inner.write(data).await
    }

    async fn finish(self: Box<Self>) -> Result<FinishedChunk> {
        observe(
            Store::Storage,
            self.backend,
            "finish_chunk",
            self.inner.finish(),
        )
        .await
    }

    async fn abort(self: Box<Self>) {
        self.inner.abort().await
    }
}

#[async_trait]
impl BlobBackend for Instrumented {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn new_storage_key(&self, upload_id: &str) -> String {
        self.inner.new_storage_key(upload_id)
    }

    fn min_chunk_len(&self) -> u64 {
        self.inner.min_chunk_len()
    }

    fn writes_in_place(&self) -> bool {
        self.inner.writes_in_place()
    }

    async fn chunk_writer(&self, storage_key: &str, offset: u64) -> Result<Box<dyn ChunkWriter>> {
        let inner = observe(
            Store::Storage,
            self.backend,
            "chunk_writer",
            self.inner.chunk_writer(storage_key, offset),
        )
        .await?;
        Ok(Box::new(Writer {
            inner,
            backend: self.backend,
        }))
    }

    async fn assemble(
        &self,
        storage_key: &str,
        chunks: &[ChunkRecord],
        total: u64,
    ) -> Result<String> {
        observe(
            Store::Storage,
            self.backend,
            "assemble",
            self.inner.assemble(storage_key, chunks, total),
        )
        .await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        observe(
            Store::Storage,
            self.backend,
            "get",
            self.inner.get(key, range),
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        observe(
            Store::Storage,
            self.backend,
            "delete",
            self.inner.delete(key),
        )
        .await
    }

    async fn release_chunks(&self, chunks: &[ChunkRecord], blob_key: &str) -> Result<()> {
        observe(
            Store::Storage,
            self.backend,
            "release_chunks",
            self.inner.release_chunks(chunks, blob_key),
        )
        .await
    }

    async fn presigned_get(
        &self,
        key: &str,
        expiry: std::time::Duration,
    ) -> Result<Option<url::Url>> {
        observe(
            Store::Storage,
            self.backend,
            "presigned_get",
            self.inner.presigned_get(key, expiry),
        )
        .await
    }

    fn object_path(&self, key: &str) -> Option<String> {
        self.inner.object_path(key)
    }

    async fn check(&self) -> Result<()> {
        observe(Store::Storage, self.backend, "check", self.inner.check()).await
    }

    async fn list(&self, prefix: &str) -> Result<ObjectStream> {
        observe(
            Store::Storage,
            self.backend,
            "list",
            self.inner.list(prefix),
        )
        .await
    }

    async fn discard_upload(&self, storage_key: &str, chunks: &[ChunkRecord]) -> Result<()> {
        observe(
            Store::Storage,
            self.backend,
            "discard_upload",
            self.inner.discard_upload(storage_key, chunks),
        )
        .await
    }
}
