//! Blob upload sessions: start, append chunks, finish with a digest, cancel, mount.
//!
//! A session lives in the metadata store with its offset, its stored chunks and the hash
//! mid-state, so any instance can serve any request of it. A chunk counts only once it is
//! durably stored *and* the session row has advanced (conditionally on the offset it
//! started from); an interrupted request leaves the session where it was.
//!
//! This file starts a session, reports it and appends its chunks; the rest is split by
//! responsibility: `quota_guard` (the reservation or room check before bytes land),
//! `finish` (the final `PUT`: last chunk, digest, commit), `monolithic` (`POST ?digest=`,
//! no session row), `mount` (cancel, cross-repository mount) and `purge` (stale sessions).

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tracing::{debug, warn};

use super::hasher::ResumableHasher;
use super::{now_ms, Registry, RegistryError, Result};
use crate::types::digest::Algorithm;
use crate::types::name::RepoName;
use crate::types::records::push_chunk;
use crate::types::{BlobRecord, ChunkRange, ChunkRecord, UploadRecord};
use quota_guard::QuotaWatch;

mod finish;
mod monolithic;
mod mount;
mod purge;
mod quota_guard;

/// Where an upload stands.
#[derive(Debug, Clone)]
pub struct UploadStatus {
    pub id: String,
    pub repository: RepoName,
    pub offset: u64,
}

/// The outcome of a cross-repository mount request.
#[derive(Debug)]
pub enum MountOutcome {
    Mounted(BlobRecord),
    /// Not mountable: an ordinary upload session was opened instead.
    Started(UploadStatus),
}

/// Everything an upload received: its chunks, their total size, the hash over them.
struct Received {
    chunks: Vec<ChunkRecord>,
    size: u64,
    hasher: ResumableHasher,
}

/// A chunk streamed into storage: where it went and the hash advanced over it.
struct WrittenChunk {
    chunk: Option<ChunkRecord>,
    hasher: ResumableHasher,
    len: u64,
    /// The backend's exclusive hold on the upload; dropped once the chunk is recorded.
    _hold: Option<Box<dyn Send + Sync>>,
}

impl Registry {
    /// Opens a new upload session.
    pub async fn start_upload(
        &self,
        repo: &RepoName,
        algorithm: Algorithm,
    ) -> Result<UploadStatus> {
        self.require_writable()?;
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let record = UploadRecord {
            id: id.clone(),
            repository: repo.clone(),
            offset: 0,
            storage_key: self.blobs.new_storage_key(&id),
            chunks: Vec::new(),
            hash_state: ResumableHasher::new(algorithm).to_bytes(),
            created_at: now,
            updated_at: now,
        };
        self.meta.uploads.create_upload(&record).await?;
        debug!(upload = %id, repo = %repo, "upload started");
        Ok(UploadStatus {
            id,
            repository: repo.clone(),
            offset: 0,
        })
    }

    async fn load_upload(&self, repo: &RepoName, id: &str) -> Result<UploadRecord> {
        match self.meta.uploads.get_upload(id).await? {
            Some(u) if &u.repository == repo => Ok(u),
            _ => Err(RegistryError::UploadUnknown(id.chars().take(64).collect())),
        }
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        let u = self.load_upload(repo, id).await?;
        Ok(UploadStatus {
            id: u.id,
            repository: u.repository,
            offset: u.offset,
        })
    }

    /// Writes `body` as the next chunk of the session `upload` (at its offset, its
    /// offset checked again under the writer's hold: [`Registry::write_chunk`]); a
    /// failure refuses the upload ([`Registry::refuse_upload`]: past a quota, the
    /// session is dropped). `PATCH` and the final `PUT` write their bytes this way.
    async fn write_session_chunk<S, E>(
        &self,
        upload: &UploadRecord,
        session: (&RepoName, &str),
        hasher: ResumableHasher,
        declared: Option<u64>,
        quota: Option<QuotaWatch<'_>>,
        body: S,
    ) -> Result<WrittenChunk>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let written = self
            .write_chunk(
                &upload.storage_key,
                upload.offset,
                hasher,
                declared,
                Some(session),
                quota,
                body,
            )
            .await;
        match written {
            Ok(w) => Ok(w),
            Err(e) => Err(self.refuse_upload(upload, e).await),
        }
    }

    /// Streams `body` into storage as the chunk at `offset`, hashing as it goes.
    /// `session` names the upload when it has a session row: on backends that write in
    /// place, its offset is checked again once the writer holds the upload, so a request
    /// that lost a race never touches bytes another request has recorded.
    // The request's parts, each its own value as the handler parsed it.
    #[allow(clippy::too_many_arguments)]
    async fn write_chunk<S, E>(
        &self,
        storage_key: &str,
        offset: u64,
        mut hasher: ResumableHasher,
        declared: Option<u64>,
        session: Option<(&RepoName, &str)>,
        mut quota: Option<QuotaWatch<'_>>,
        mut body: S,
    ) -> Result<WrittenChunk>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut writer = self.blobs.chunk_writer(storage_key, offset).await?;
        if let (true, Some((repo, id))) = (self.blobs.writes_in_place(), session) {
            let current = match self.load_upload(repo, id).await {
                Ok(u) => u.offset,
                Err(e) => {
                    writer.abort().await;
                    return Err(e);
                }
            };
            if current != offset {
                writer.abort().await;
                return Err(RegistryError::ChunkOutOfOrder { offset: current });
            }
        }
        let mut len = 0u64;
        while let Some(piece) = body.next().await {
            let data = match piece {
                Ok(d) => d,
                Err(e) => {
                    writer.abort().await;
                    return Err(RegistryError::BodyRead(e.to_string()));
                }
            };
            len += data.len() as u64;
            if declared.is_some_and(|d| len > d) {
                writer.abort().await;
                return Err(RegistryError::UploadInvalid(
                    "request body is longer than its Content-Range".into(),
                ));
            }
            if let Some(q) = quota.as_mut() {
                if let Err(e) = self.extend_reservation(q, offset + len).await {
                    writer.abort().await;
                    return Err(e);
                }
            }
            hasher.update(&data);
            if let Err(e) = writer.write(data).await {
                writer.abort().await;
                return Err(e.into());
            }
        }
        if declared.is_some_and(|d| len != d) {
            writer.abort().await;
            return Err(RegistryError::UploadInvalid(format!(
                "request body has {len} bytes but its Content-Range declares {}",
                declared.unwrap_or_default()
            )));
        }
        let finished = writer.finish().await?;
        crate::telemetry::metrics().upload_bytes.inc_by(len);
        Ok(WrittenChunk {
            chunk: finished.chunk,
            hasher,
            len,
            _hold: finished.hold,
        })
    }

    fn check_range(upload: &UploadRecord, range: Option<ChunkRange>) -> Result<Option<u64>> {
        match range {
            Some(r) if r.start != upload.offset => Err(RegistryError::ChunkOutOfOrder {
                offset: upload.offset,
            }),
            Some(r) => Ok(Some(r.len())),
            None => Ok(None),
        }
    }

    fn restore_hasher(upload: &UploadRecord) -> Result<ResumableHasher> {
        ResumableHasher::from_bytes(&upload.hash_state).map_err(|e| {
            RegistryError::Metadata(crate::metadata::MetadataError::Corrupt(e.to_string()))
        })
    }

    /// `PATCH`: appends one chunk.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, upload = %id))]
    pub async fn append_chunk<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<UploadStatus>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.require_writable()?;
        let upload = self.load_upload(repo, id).await?;
        let declared = Self::check_range(&upload, range)?;
        let hasher = Self::restore_hasher(&upload)?;
        let quota = match self
            .watch_quota(id, repo, None, upload.offset, declared.or(content_length))
            .await
        {
            Ok(q) => q,
            Err(e) => return Err(self.refuse_upload(&upload, e).await),
        };
        let written = self
            .write_session_chunk(&upload, (repo, id), hasher, declared, quota, body)
            .await?;
        let mut chunks = upload.chunks.clone();
        let Some(chunk) = written.chunk.clone() else {
            return Ok(UploadStatus {
                id: upload.id,
                repository: upload.repository,
                offset: upload.offset,
            });
        };
        push_chunk(&mut chunks, chunk.clone());
        let new_offset = upload.offset + written.len;
        let advanced = self
            .meta
            .uploads
            .advance_upload(
                &upload.id,
                upload.offset,
                new_offset,
                &chunks,
                &written.hasher.to_bytes(),
                now_ms(),
            )
            .await?;
        if !advanced {
            // Another request moved the session first; ours does not count.
            self.discard_chunk(&upload, &chunk).await;
            let current = self.load_upload(repo, id).await?;
            return Err(RegistryError::ChunkOutOfOrder {
                offset: current.offset,
            });
        }
        Ok(UploadStatus {
            id: upload.id,
            repository: upload.repository,
            offset: new_offset,
        })
    }

    /// Removes a chunk object that did not become part of its upload.
    async fn discard_chunk(&self, upload: &UploadRecord, chunk: &ChunkRecord) {
        // On the filesystem the chunk lives in the upload's own file: the next writer
        // truncates it. Elsewhere it is its own object.
        if chunk.key != upload.storage_key {
            if let Err(e) = self.blobs.delete(&chunk.key).await {
                warn!(key = %chunk.key, error = %e, "could not delete a discarded chunk");
            }
        }
    }
}
