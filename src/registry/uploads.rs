//! Blob upload sessions: start, append chunks, finish with a digest, cancel, mount.
//!
//! A session lives in the metadata store with its offset, its stored chunks and the hash
//! mid-state, so any instance can serve any request of it. A chunk counts only once it is
//! durably stored *and* the session row has advanced (conditionally on the offset it
//! started from); an interrupted request leaves the session where it was.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tracing::{debug, warn};

use super::hasher::ResumableHasher;
use super::quota::SMALL_PUSH;
use super::{now_ms, Registry, RegistryError, Result};
use crate::metadata::quota::{ChargedCommit, QuotaCharge};
use crate::types::digest::{Algorithm, Digest};
use crate::types::name::RepoName;
use crate::types::records::push_chunk;
use crate::types::{
    BlobRecord, ChunkRange, ChunkRecord, EventAction, RequestContext, UploadRecord,
};

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

/// The quota reservation a streamed chunk extends as its bytes arrive
/// (`registry::quota`): the session's id, its repository, the quotas that bind it and
/// the total reserved so far.
struct QuotaWatch<'a> {
    id: &'a str,
    repo: &'a RepoName,
    /// The blob's digest when the request names it (a final `PUT`).
    digest: Option<&'a Digest>,
    limits: Vec<(String, u64)>,
    reserved: u64,
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

    /// Grows `q`'s reservation to cover `total` bytes before they are written: a step
    /// ahead when there is room for it, else exactly `total`.
    async fn extend_reservation(&self, q: &mut QuotaWatch<'_>, total: u64) -> Result<()> {
        if total <= q.reserved || q.limits.is_empty() {
            return Ok(());
        }
        let ahead = total.saturating_add(super::quota::STREAM_STEP);
        match self
            .reserve_upload(q.id, q.repo, ahead, q.digest, &q.limits)
            .await
        {
            Ok(()) => q.reserved = ahead,
            Err(RegistryError::QuotaExceeded { .. }) => {
                self.reserve_upload(q.id, q.repo, total, q.digest, &q.limits)
                    .await?;
                q.reserved = total;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Reserves what a request declares up front (`offset` + its declared length) and
    /// returns the watch that extends the reservation while its body streams.
    async fn watch_quota<'a>(
        &self,
        id: &'a str,
        repo: &'a RepoName,
        digest: Option<&'a Digest>,
        offset: u64,
        declared: Option<u64>,
    ) -> Result<Option<QuotaWatch<'a>>> {
        let limits = self.binding_quotas(repo).await?;
        if limits.is_empty() {
            return Ok(None);
        }
        let mut watch = QuotaWatch {
            id,
            repo,
            digest,
            limits,
            reserved: 0,
        };
        self.extend_reservation_exact(&mut watch, offset + declared.unwrap_or(0))
            .await?;
        Ok(Some(watch))
    }

    /// Guards a request that names its blob (a final `PUT`, a `POST ?digest=`) before
    /// its bytes are written. Its length known and at most [`SMALL_PUSH`]: checked
    /// against the room left now (a read, nothing recorded) — its commit charges it,
    /// checking again — and no watch. Otherwise reserved as [`Registry::watch_quota`]
    /// does, with a watch that extends the reservation as the bytes stream.
    async fn guard_quota<'a>(
        &self,
        id: &'a str,
        repo: &'a RepoName,
        digest: &'a Digest,
        offset: u64,
        length: Option<u64>,
        limits: &[(String, u64)],
    ) -> Result<Option<QuotaWatch<'a>>> {
        if limits.is_empty() {
            return Ok(None);
        }
        match length {
            Some(n) if n <= SMALL_PUSH => {
                self.check_upload_room(id, repo, offset + n, digest, limits)
                    .await?;
                Ok(None)
            }
            _ => {
                let mut watch = QuotaWatch {
                    id,
                    repo,
                    digest: Some(digest),
                    limits: limits.to_vec(),
                    reserved: 0,
                };
                self.extend_reservation_exact(&mut watch, offset + length.unwrap_or(0))
                    .await?;
                Ok(Some(watch))
            }
        }
    }

    async fn extend_reservation_exact(&self, q: &mut QuotaWatch<'_>, total: u64) -> Result<()> {
        self.reserve_upload(q.id, q.repo, total, q.digest, &q.limits)
            .await?;
        q.reserved = total;
        Ok(())
    }

    /// A push refused for its quota leaves nothing: the session and every byte it
    /// wrote go.
    async fn refuse_upload(&self, upload: &UploadRecord, e: RegistryError) -> RegistryError {
        if matches!(e, RegistryError::QuotaExceeded { .. }) {
            self.drop_upload(upload, &upload.chunks, &upload.storage_key)
                .await;
        }
        e
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
        let written = match self
            .write_chunk(
                &upload.storage_key,
                upload.offset,
                hasher,
                declared,
                Some((repo, id)),
                quota,
                body,
            )
            .await
        {
            Ok(w) => w,
            Err(e) => return Err(self.refuse_upload(&upload, e).await),
        };
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

    /// `PUT ?digest=`: appends the optional last chunk, verifies the digest, and commits.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, upload = %id, digest = %expected))]
    // The request's parts, each its own value as the handler parsed it.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_upload<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        expected: &Digest,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: S,
        ctx: &RequestContext,
    ) -> Result<BlobRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.finish_upload_announced(repo, id, expected, range, content_length, body, Some(ctx))
            .await
    }

    /// Commits a session that no client pushed (a pull-through cache's fill): as
    /// [`Registry::finish_upload`] with no body, but without a `push` event, as
    /// mirrored manifests have none.
    pub async fn finish_fill_upload(
        &self,
        repo: &RepoName,
        id: &str,
        expected: &Digest,
    ) -> Result<BlobRecord> {
        let body = futures_util::stream::empty::<std::result::Result<Bytes, String>>();
        self.finish_upload_announced(repo, id, expected, None, Some(0), body, None)
            .await
    }

    /// `finish_upload`, with the push event written only when `ctx` is given.
    // The request's parts, each its own value as the handler parsed it.
    #[allow(clippy::too_many_arguments)]
    async fn finish_upload_announced<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        expected: &Digest,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: S,
        ctx: Option<&RequestContext>,
    ) -> Result<BlobRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.require_writable()?;
        let upload = self.load_upload(repo, id).await?;
        let declared = Self::check_range(&upload, range)?;
        let hasher = Self::restore_hasher(&upload)?;
        // A final request whose length is known and small is checked now (a read)
        // and charged by the commit; a longer or unknown one reserves ahead of its
        // bytes. Either way the commit checks the blob again, so a reservation that
        // expired while the session idled is checked once more.
        let limits = self.binding_quotas(repo).await?;
        let length = declared.or(content_length);
        let quota = match self
            .guard_quota(id, repo, expected, upload.offset, length, &limits)
            .await
        {
            Ok(q) => q,
            Err(e) => return Err(self.refuse_upload(&upload, e).await),
        };
        let charge = (!limits.is_empty()).then_some(QuotaCharge {
            limits,
            reservation: None,
        });
        let written = match self
            .write_chunk(
                &upload.storage_key,
                upload.offset,
                hasher,
                declared,
                Some((repo, id)),
                quota,
                body,
            )
            .await
        {
            Ok(w) => w,
            Err(e) => return Err(self.refuse_upload(&upload, e).await),
        };
        let mut chunks = upload.chunks.clone();
        if let Some(chunk) = written.chunk.clone() {
            push_chunk(&mut chunks, chunk);
        }
        let size = upload.offset + written.len;
        // The hold on the upload (written._hold) lasts until the commit is recorded.
        let committed = self
            .commit(
                repo,
                &upload,
                true,
                Received {
                    chunks,
                    size,
                    hasher: written.hasher.clone(),
                },
                expected,
                ctx,
                charge,
            )
            .await;
        drop(written);
        committed
    }

    /// Assembles, verifies and records the blob, closing the upload's session row if it
    /// has one; on a digest mismatch the upload is gone.
    #[tracing::instrument(level = "debug", skip_all, fields(size))]
    // The request's parts, each its own value as the upload gathered it.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        repo: &RepoName,
        upload: &UploadRecord,
        has_session_row: bool,
        received: Received,
        expected: &Digest,
        ctx: Option<&RequestContext>,
        charge: Option<QuotaCharge>,
    ) -> Result<BlobRecord> {
        let Received {
            chunks,
            size,
            hasher,
        } = received;
        let storage_key = self
            .blobs
            .assemble(&upload.storage_key, &chunks, size)
            .await?;
        let actual = if hasher.algorithm() == expected.algorithm() {
            hasher.finish()
        } else {
            // The session hashed with another algorithm (sha256 unless the client said
            // otherwise when it started): hash the stored blob once with the asked one.
            self.rehash(&storage_key, expected.algorithm()).await?
        };
        if &actual != expected {
            self.drop_upload(upload, &chunks, &storage_key).await;
            return Err(RegistryError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let record = BlobRecord {
            digest: actual,
            size,
            storage_key: storage_key.clone(),
        };
        let session = has_session_row.then_some(upload.id.as_str());
        let target = super::events::blob_target(&record.digest, Some(size));
        // No event for a commit no client asked for (a mirror's fill).
        let events = match ctx {
            Some(ctx) => self.event(ctx, EventAction::Push, repo, target),
            None => Vec::new(),
        };
        crate::clock::race_point("upload.before_commit", &record.digest.to_string()).await;
        let committed = match &charge {
            Some(charge) => self
                .meta
                .quotas
                .commit_blob_charged(repo, &record, session, &events, charge)
                .await
                .map(|c| match c {
                    ChargedCommit::Committed(c) => Ok(c),
                    ChargedCommit::Refused(outcome) => Err(outcome),
                }),
            None => self
                .meta
                .blobs
                .commit_blob(repo, &record, session, &events)
                .await
                .map(Ok),
        };
        let commit = match committed {
            Ok(Ok(c)) => c,
            // No room left at commit (taken by a push that committed or reserved since
            // this one was checked): the blob is not recorded, and its bytes go.
            Ok(Err(outcome)) => {
                self.drop_upload(upload, &chunks, &storage_key).await;
                super::quota::refused(outcome)?;
                return Err(RegistryError::Metadata(
                    crate::metadata::MetadataError::Corrupt(
                        "a quota-charged commit was refused without a reason".into(),
                    ),
                ));
            }
            // Cancelled, purged or finished by another request meanwhile: its data is
            // not ours to keep or delete.
            Err(crate::metadata::MetadataError::UploadGone) => {
                return Err(RegistryError::UploadUnknown(upload.id.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self.blobs.release_chunks(&chunks, &storage_key).await {
            warn!(upload = %upload.id, error = %e, "could not delete composed chunks");
        }
        if commit.stored_new
            && self
                .meta
                .gc
                .is_tombstoned(&record.digest)
                .await
                .unwrap_or(false)
        {
            // The digest's old bytes are being collected; these are stored anew.
            super::gc::metrics::tombstone_hit("upload");
        }
        if !commit.stored_new && commit.blob.storage_key != storage_key {
            // The registry already had these bytes: ours are redundant.
            if let Err(e) = self.blobs.delete(&storage_key).await {
                warn!(key = %storage_key, error = %e, "could not delete a duplicate blob");
            }
        }
        debug!(repo = %repo, digest = %record.digest, size, "blob committed");
        Ok(commit.blob)
    }

    async fn rehash(&self, key: &str, algorithm: Algorithm) -> Result<Digest> {
        let mut hasher = ResumableHasher::new(algorithm);
        let mut stream = self.blobs.get(key, None).await?;
        while let Some(piece) = stream.next().await {
            hasher.update(&piece?);
        }
        Ok(hasher.finish())
    }

    async fn drop_upload(&self, upload: &UploadRecord, chunks: &[ChunkRecord], assembled: &str) {
        if let Err(e) = self.meta.uploads.delete_upload(&upload.id).await {
            warn!(upload = %upload.id, error = %e, "could not delete upload session");
        }
        if let Err(e) = self.blobs.discard_upload(&upload.storage_key, chunks).await {
            warn!(upload = %upload.id, error = %e, "could not delete upload data");
        }
        if assembled != upload.storage_key {
            let _ = self.blobs.delete(assembled).await;
        }
    }

    /// `POST ?digest=`: the whole blob in one request, no session row.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %expected))]
    pub async fn upload_monolithic<S, E>(
        &self,
        repo: &RepoName,
        expected: &Digest,
        content_length: Option<u64>,
        body: S,
        ctx: &RequestContext,
    ) -> Result<BlobRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.require_writable()?;
        let id = uuid::Uuid::new_v4().to_string();
        let limits = self.binding_quotas(repo).await?;
        let quota = self
            .guard_quota(&id, repo, expected, 0, content_length, &limits)
            .await?;
        // A reservation (a push too long, or of unknown length, to be only checked
        // first) has no session row to end it: the commit ends it, else it is released
        // here.
        let reserved = quota.is_some();
        let charge = (!limits.is_empty()).then(|| QuotaCharge {
            limits,
            reservation: reserved.then(|| id.clone()),
        });
        let result = self
            .upload_monolithic_reserved(repo, expected, &id, quota, charge, body, ctx)
            .await;
        if reserved && result.is_err() {
            // Off the request's path: the client need not wait for one more write (a
            // failure, or a process that dies first, leaves it to expire).
            let registry = self.clone();
            tokio::spawn(async move { registry.release_reservation(Some(id)).await });
        }
        result
    }

    // The request's parts, each its own value as the handler parsed it.
    #[allow(clippy::too_many_arguments)]
    async fn upload_monolithic_reserved<S, E>(
        &self,
        repo: &RepoName,
        expected: &Digest,
        id: &str,
        quota: Option<QuotaWatch<'_>>,
        charge: Option<QuotaCharge>,
        body: S,
        ctx: &RequestContext,
    ) -> Result<BlobRecord>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = id.to_string();
        let now = now_ms();
        let upload = UploadRecord {
            id: id.clone(),
            repository: repo.clone(),
            offset: 0,
            storage_key: self.blobs.new_storage_key(&id),
            chunks: Vec::new(),
            hash_state: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        let written = self
            .write_chunk(
                &upload.storage_key,
                0,
                ResumableHasher::new(expected.algorithm()),
                None,
                None,
                quota,
                body,
            )
            .await?;
        let chunks: Vec<ChunkRecord> = written.chunk.iter().cloned().collect();
        let received = Received {
            chunks,
            size: written.len,
            hasher: written.hasher,
        };
        self.commit(repo, &upload, false, received, expected, Some(ctx), charge)
            .await
    }

    /// `DELETE` of an upload: cancels it and frees its storage.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        self.require_writable()?;
        let upload = self.load_upload(repo, id).await?;
        if let Some(u) = self.meta.uploads.delete_upload(&upload.id).await? {
            self.blobs.discard_upload(&u.storage_key, &u.chunks).await?;
        }
        Ok(())
    }

    /// `POST ?mount=&from=`: links an existing blob into `repo` if it can be, otherwise
    /// opens an ordinary session. Without `from`, any repository's copy may be mounted.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %digest))]
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        ctx: &RequestContext,
    ) -> Result<MountOutcome> {
        self.require_writable()?;
        let source = match from {
            Some(from) => self.meta.blobs.repo_blob(from, digest).await?,
            None => self.meta.blobs.any_blob(digest).await?,
        };
        let events = match &source {
            Some(blob) if self.events_enabled() => {
                let mut target = super::events::blob_target(digest, Some(blob.size));
                target.from_repository = from.map(|f| f.to_string());
                self.event(ctx, EventAction::Mount, repo, target)
            }
            _ => Vec::new(),
        };
        if let Some(blob) = &source {
            // A mount counts against the quota: reserved while it links.
            let already = self.meta.blobs.repo_blob(repo, digest).await?.is_some();
            let reservation = if already {
                None
            } else {
                self.reserve_mount(repo, digest, blob.size).await?
            };
            let linked = self.meta.blobs.link_blob(repo, digest, &events).await;
            self.release_reservation(reservation).await;
            if linked? {
                if let Some(blob) = self.meta.blobs.repo_blob(repo, digest).await? {
                    return Ok(MountOutcome::Mounted(blob));
                }
            } else if self.meta.gc.is_tombstoned(digest).await.unwrap_or(false) {
                super::gc::metrics::tombstone_hit("mount");
            }
        }
        Ok(MountOutcome::Started(
            self.start_upload(repo, digest.algorithm()).await?,
        ))
    }
}

impl Registry {
    /// Deletes upload sessions idle for longer than `max_age`, with their data, and
    /// returns how many went. With `dry_run`, deletes nothing and returns how many
    /// (of the first batch) would go. Safe on every instance at once: only the instance
    /// whose delete removes a session's row frees its data.
    pub async fn purge_stale_uploads(
        &self,
        max_age: std::time::Duration,
        dry_run: bool,
    ) -> Result<usize> {
        const BATCH: u32 = 500;
        let before = now_ms() - i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        if dry_run {
            let stale = self.meta.uploads.stale_uploads(before, BATCH).await?;
            for u in &stale {
                tracing::info!(upload = %u.id, repo = %u.repository, "dry run: would purge upload session");
            }
            return Ok(stale.len());
        }
        let mut purged = 0;
        loop {
            let stale = self.meta.uploads.stale_uploads(before, BATCH).await?;
            let full = stale.len() == BATCH as usize;
            let mut progress = false;
            for upload in stale {
                if let Some(u) = self.meta.uploads.delete_upload(&upload.id).await? {
                    self.blobs.discard_upload(&u.storage_key, &u.chunks).await?;
                    purged += 1;
                    progress = true;
                }
            }
            // Another instance may be sweeping the same rows: stop when a full batch
            // freed nothing here, so two sweepers never spin on each other's rows.
            if !full || !progress {
                return Ok(purged);
            }
        }
    }
}
