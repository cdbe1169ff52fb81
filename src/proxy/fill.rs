//! Blob fills: a blob the store does not hold, fetched from the upstream once for the
//! whole cluster, streamed to the first client while it is stored.
//!
//! A fill is an ordinary upload session (so the bytes, the chunk list and the hash
//! mid-state live in the metadata store like any upload's) owned by a lease
//! (`proxy_fills`: digest → owner instance, session, size, committed bytes,
//! `expires_at`). The instance that wins the lease runs the fill as a task of its own,
//! decoupled from the request that started it:
//!
//! - upstream bytes go to the client that asked (a bounded channel: a client that
//!   cannot keep up, or has gone, is dropped from it and follows the store instead;
//!   the fill never waits for a client and never buffers the blob) as they arrive,
//!   and, read ahead of the store by a bounded channel, segment by segment into the
//!   session (`Registry::append_chunk`: written, synced, hashed, the session's offset
//!   advanced). A segment ends after 64 MiB or a second (and no less than the store's
//!   smallest composable chunk), so followers trail the upstream by about a second;
//! - the lease is renewed after segments and by a heartbeat; an owner that finds
//!   its lease taken (it stalled past the expiry) stops;
//! - at the end `Registry::finish_fill_upload` verifies the digest from the session's
//!   hash and commits the blob; on a mismatch nothing becomes visible;
//! - an upstream stream that breaks is resumed from the committed offset with a
//!   `Range` request (an upstream that ignores `Range` is read from the start and
//!   the bytes already stored are skipped), three times at most.
//!
//! Every other request for the digest — on this instance or any other — follows:
//! it reads what the session has committed from the store, waits for more (woken by
//! the local fill's progress, or polling the session every 200 ms), and reads the rest
//! from the blob once it is committed. A `Range` is served the same way. A follower
//! that finds the lease expired (its owner died) takes it over and resumes the
//! session from its committed offset.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};

use super::upstream::{BlobBody, Failure, UpstreamClient};
use super::{metrics, Proxy, Route};
use crate::blobs::{BlobError, ByteStream};
use crate::clock::now_ms;
use crate::metadata::mirror::{CachedContent, FillLease};
use crate::registry::blobs::BlobContent;
use crate::registry::{Registry, RegistryError, Result};
use crate::types::{BlobRecord, ByteRange, ChunkRecord, Digest, RepoName};

/// How long a lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(30);
/// How often the owner renews it while the upstream is slow.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How often a follower without a local fill looks at the session.
const POLL: Duration = Duration::from_millis(200);
/// A segment (one chunk of the session) ends after this many bytes…
const SEGMENT_BYTES: u64 = 64 << 20;
/// …or after this long.
const SEGMENT_TIME: Duration = Duration::from_secs(1);
/// How long a request waits for a fill's owner to learn the blob's size.
const WAIT_FOR_START: Duration = Duration::from_secs(60);
/// A follower that sees no new byte for this long gives up.
const STALL: Duration = Duration::from_secs(120);
/// Pieces the direct channel to the first client holds.
const DIRECT_CAPACITY: usize = 64;
/// Pieces read from the upstream ahead of the store (while a segment is synced).
const READ_AHEAD: usize = 256;
/// The lease is renewed after a segment only if this long has passed since it was.
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// Times a broken upstream stream is resumed.
const RESUMES: u32 = 3;

fn lease_ms() -> i64 {
    LEASE.as_millis() as i64
}

/// The fills this instance knows of: a local entry exists while a request here is
/// claiming or running a fill, so other requests here wait for it instead of racing
/// for the lease, and are woken by its progress.
#[derive(Default, Clone)]
pub(super) struct Fills {
    local: Arc<Mutex<HashMap<Digest, watch::Sender<u64>>>>,
}

/// The local entry of a fill; removed (waking its followers) when dropped.
struct LocalGuard {
    fills: Fills,
    digest: Digest,
    progress: watch::Sender<u64>,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        if let Ok(mut local) = self.fills.local.lock() {
            local.remove(&self.digest);
        }
        self.progress.send_modify(|p| *p = p.wrapping_add(1));
    }
}

impl Fills {
    /// A new local entry for `digest`, unless there is one.
    fn begin(&self, digest: &Digest) -> Option<LocalGuard> {
        let mut local = self.local.lock().ok()?;
        if local.contains_key(digest) {
            return None;
        }
        let (tx, _) = watch::channel(0);
        local.insert(digest.clone(), tx.clone());
        Some(LocalGuard {
            fills: self.clone(),
            digest: digest.clone(),
            progress: tx,
        })
    }

    /// Progress notifications of the local fill of `digest`, if there is one.
    fn subscribe(&self, digest: &Digest) -> Option<watch::Receiver<u64>> {
        let local = self.local.lock().ok()?;
        local.get(digest).map(|tx| tx.subscribe())
    }
}

fn upstream_failure(f: Failure, digest: &Digest) -> RegistryError {
    match f {
        Failure::NotFound => RegistryError::BlobUnknown(digest.clone()),
        Failure::Upstream(e) => e.into(),
    }
}

/// `HEAD` of a blob the store lacks: a fill's size, or the upstream's answer.
pub(super) async fn stat(
    _proxy: &Proxy,
    registry: &Registry,
    repo: &RepoName,
    route: &Route,
    digest: &Digest,
) -> Result<BlobRecord> {
    let meta = registry.metadata();
    let record = |size| BlobRecord {
        digest: digest.clone(),
        size,
        storage_key: String::new(),
    };
    if let Some(size) = meta.mirror.fill(digest).await?.and_then(|f| f.size) {
        return Ok(record(size));
    }
    if let Some(b) = meta.blobs.any_blob(digest).await? {
        if meta.mirror.is_referenced(repo, digest).await? {
            return Ok(record(b.size));
        }
    }
    route
        .upstream
        .head_blob(&route.remote, digest)
        .await
        .map(record)
        .map_err(|f| upstream_failure(f, digest))
}

/// The blob's content from the store (it is committed).
async fn from_store(
    registry: &Registry,
    blob: BlobRecord,
    range: Option<ByteRange>,
) -> Result<BlobContent> {
    let resolved = range.map(|r| r.resolve(blob.size)).transpose()?;
    let stream: ByteStream = if blob.size == 0 {
        Box::pin(futures_util::stream::empty())
    } else {
        let selected = resolved.clone().unwrap_or(0..blob.size);
        registry
            .blob_backend()
            .get(&blob.storage_key, Some(selected))
            .await?
    };
    Ok(BlobContent {
        blob,
        range: resolved,
        stream,
    })
}

/// A blob of a mirrored repository that the store lacks: started, joined or followed.
pub(super) async fn open(
    proxy: &Proxy,
    registry: &Registry,
    repo: &RepoName,
    route: &Route,
    digest: &Digest,
    range: Option<ByteRange>,
) -> Result<BlobContent> {
    let meta = registry.metadata();
    let up = route.upstream.name();
    let deadline = Instant::now() + WAIT_FOR_START;
    loop {
        if let Some(b) = meta.blobs.repo_blob(repo, digest).await? {
            metrics::hit(up, "blob");
            return from_store(registry, b, range).await;
        }
        let fill = meta.mirror.fill(digest).await?;
        if fill.is_none() {
            // Held under another repository of the cache, and this one's manifest
            // names it: link it here rather than fetch it again.
            if let Some(b) = meta.blobs.any_blob(digest).await? {
                if meta.mirror.is_referenced(repo, digest).await?
                    && meta.blobs.link_blob(repo, digest, &[]).await?
                {
                    metrics::hit(up, "blob");
                    return from_store(registry, b, range).await;
                }
            }
        }
        match fill {
            Some(f) if f.expires_at < now_ms() => {
                take_over(proxy, registry, route, &f).await;
            }
            Some(f) => {
                if let Some(size) = f.size {
                    metrics::coalesced(up);
                    return follow(proxy, registry, repo, route, f, size, range);
                }
            }
            None => {
                if let Some(guard) = proxy.fills.begin(digest) {
                    if let Some(content) =
                        start(proxy, registry, repo, route, digest, range, guard).await?
                    {
                        return Ok(content);
                    }
                    continue;
                }
            }
        }
        if Instant::now() > deadline {
            return Err(RegistryError::Upstream(
                crate::registry::mirror::UpstreamError::Unavailable {
                    upstream: up.to_string(),
                    message: format!("the fill of {digest} did not start in time"),
                },
            ));
        }
        wait(proxy.fills.subscribe(digest).as_mut()).await;
    }
}

async fn wait(progress: Option<&mut watch::Receiver<u64>>) {
    match progress {
        Some(rx) => {
            let _ = tokio::time::timeout(POLL, rx.changed()).await;
        }
        None => tokio::time::sleep(POLL).await,
    }
}

/// Claims the fill of `digest` and starts it; `None` if another request won it.
async fn start(
    proxy: &Proxy,
    registry: &Registry,
    repo: &RepoName,
    route: &Route,
    digest: &Digest,
    range: Option<ByteRange>,
    local: LocalGuard,
) -> Result<Option<BlobContent>> {
    let meta = registry.metadata();
    let up = route.upstream.name().to_string();
    let upload = registry.start_upload(repo, digest.algorithm()).await?;
    let now = now_ms();
    let lease = FillLease {
        digest: digest.clone(),
        repository: repo.clone(),
        upstream: up.clone(),
        upstream_repository: route.remote.clone(),
        upload_id: upload.id.clone(),
        owner: proxy.instance.clone(),
        token: uuid::Uuid::new_v4().simple().to_string(),
        size: None,
        committed: 0,
        expires_at: now + lease_ms(),
        created_at: now,
    };
    let abandon = |token: String, id: String| async move {
        let _ = meta.mirror.release_fill(digest, &token).await;
        if let Err(e) = registry.cancel_upload(repo, &id).await {
            tracing::debug!(upload = %id, error = %e, "could not cancel a fill's upload");
        }
    };
    if !meta.mirror.claim_fill(&lease).await? {
        if let Err(e) = registry.cancel_upload(repo, &upload.id).await {
            tracing::debug!(error = %e, "could not cancel an unused upload");
        }
        return Ok(None);
    }
    // A fill that committed between our look and our claim.
    if meta.blobs.repo_blob(repo, digest).await?.is_some() {
        abandon(lease.token.clone(), upload.id.clone()).await;
        return Ok(None);
    }
    metrics::miss(&up, "blob");
    let body = match route.upstream.get_blob(&route.remote, digest, 0).await {
        Ok(b) => b,
        Err(f) => {
            abandon(lease.token.clone(), upload.id.clone()).await;
            return Err(upstream_failure(f, digest));
        }
    };
    let size = body.size;
    meta.mirror
        .renew_fill(digest, &lease.token, 0, Some(size), now_ms() + lease_ms())
        .await?;
    let resolved = range.map(|r| r.resolve(size)).transpose();
    let (tx, rx) = mpsc::channel(DIRECT_CAPACITY);
    let progress = local.progress.subscribe();
    let task = FillTask {
        registry: registry.clone(),
        upstream: route.upstream.clone(),
        remote: route.remote.clone(),
        repo: repo.clone(),
        digest: digest.clone(),
        upload_id: upload.id.clone(),
        token: lease.token.clone(),
        size,
        offset: 0,
        local: Some(local),
    };
    tokio::spawn(task.run(body, Some(tx)));
    let resolved = resolved?;
    let bounds = resolved.clone().unwrap_or(0..size);
    let reader = FillReader {
        registry: registry.clone(),
        repo: repo.clone(),
        digest: digest.clone(),
        upload_id: upload.id,
        pos: bounds.start,
        end: bounds.end,
        direct: Some(rx),
        current: None,
        progress: Some(progress),
        last_byte: Instant::now(),
        takeover: None,
    };
    Ok(Some(BlobContent {
        blob: BlobRecord {
            digest: digest.clone(),
            size,
            storage_key: String::new(),
        },
        range: resolved,
        stream: reader.into_stream(),
    }))
}

/// What a follower needs to take over a fill whose owner died.
struct Takeover {
    instance: String,
    upstream: Arc<UpstreamClient>,
    fills: Fills,
    last_try: Instant,
}

/// Follows the fill `f` (of `size` bytes) from the store.
fn follow(
    proxy: &Proxy,
    registry: &Registry,
    repo: &RepoName,
    route: &Route,
    f: FillLease,
    size: u64,
    range: Option<ByteRange>,
) -> Result<BlobContent> {
    let resolved = range.map(|r| r.resolve(size)).transpose()?;
    let bounds = resolved.clone().unwrap_or(0..size);
    let reader = FillReader {
        registry: registry.clone(),
        repo: repo.clone(),
        digest: f.digest.clone(),
        upload_id: f.upload_id.clone(),
        pos: bounds.start,
        end: bounds.end,
        direct: None,
        current: None,
        progress: proxy.fills.subscribe(&f.digest),
        last_byte: Instant::now(),
        takeover: Some(Takeover {
            instance: proxy.instance.clone(),
            upstream: route.upstream.clone(),
            fills: proxy.fills.clone(),
            last_try: Instant::now(),
        }),
    };
    Ok(BlobContent {
        blob: BlobRecord {
            digest: f.digest,
            size,
            storage_key: String::new(),
        },
        range: resolved,
        stream: reader.into_stream(),
    })
}

/// Takes over the expired fill `f`, resuming its session from what it committed; a
/// fill of another upstream's (or without a session) is released for a fresh claim.
async fn take_over(proxy: &Proxy, registry: &Registry, route: &Route, f: &FillLease) {
    take_over_with(&proxy.instance, &route.upstream, &proxy.fills, registry, f).await;
}

async fn take_over_with(
    instance: &str,
    upstream: &Arc<UpstreamClient>,
    fills: &Fills,
    registry: &Registry,
    f: &FillLease,
) {
    let meta = registry.metadata();
    if f.upstream != upstream.name() {
        let _ = meta.mirror.release_fill(&f.digest, &f.token).await;
        return;
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let now = now_ms();
    match meta
        .mirror
        .take_over_fill(&f.digest, &f.token, instance, &token, now + lease_ms(), now)
        .await
    {
        Ok(true) => {}
        _ => return,
    }
    tracing::info!(digest = %f.digest, previous_owner = %f.owner, "taking over an abandoned fill");
    let session = meta.uploads.get_upload(&f.upload_id).await.ok().flatten();
    let Some(session) = session.filter(|s| s.repository == f.repository) else {
        let _ = meta.mirror.release_fill(&f.digest, &token).await;
        return;
    };
    let body = match upstream
        .get_blob(&f.upstream_repository, &f.digest, session.offset)
        .await
    {
        Ok(b) => b,
        Err(_) => {
            let _ = meta.mirror.release_fill(&f.digest, &token).await;
            let _ = registry.cancel_upload(&f.repository, &f.upload_id).await;
            return;
        }
    };
    let task = FillTask {
        registry: registry.clone(),
        upstream: upstream.clone(),
        remote: f.upstream_repository.clone(),
        repo: f.repository.clone(),
        digest: f.digest.clone(),
        upload_id: f.upload_id.clone(),
        token,
        size: body.size,
        offset: session.offset,
        local: fills.begin(&f.digest),
    };
    tokio::spawn(task.run(body, None));
}

/// The fill itself, owned by the instance holding the lease.
struct FillTask {
    registry: Registry,
    upstream: Arc<UpstreamClient>,
    remote: String,
    repo: RepoName,
    digest: Digest,
    upload_id: String,
    token: String,
    size: u64,
    /// Bytes the session holds.
    offset: u64,
    local: Option<LocalGuard>,
}

type Direct = mpsc::Sender<(u64, Bytes)>;

impl FillTask {
    async fn run(mut self, body: BlobBody, direct: Option<Direct>) {
        let up = self.upstream.name().to_string();
        let _in_flight = metrics::InFlight::start(&up);
        let started = Instant::now();
        let committed = Arc::new(AtomicU64::new(self.offset));
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (meta, digest, token) = (
                self.registry.metadata().clone(),
                self.digest.clone(),
                self.token.clone(),
            );
            let (committed, lost, size) = (committed.clone(), lost.clone(), self.size);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    let at = committed.load(Ordering::Relaxed);
                    match meta
                        .mirror
                        .renew_fill(&digest, &token, at, Some(size), now_ms() + lease_ms())
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "could not renew a fill's lease"),
                    }
                }
            })
        };
        let outcome = self.pump(body, direct, &committed, &lost).await;
        heartbeat.abort();
        let meta = self.registry.metadata();
        match outcome {
            Ok(()) => match self.commit().await {
                Ok(blob) => {
                    let now = now_ms();
                    let content = CachedContent {
                        repository: self.repo.clone(),
                        digest: blob.digest.clone(),
                        upstream: up.clone(),
                        is_manifest: false,
                        size: blob.size,
                        fetched_at: now,
                        last_pulled: now,
                    };
                    if let Err(e) = meta.mirror.record_content(&content).await {
                        tracing::warn!(error = %e, "could not record a cached blob");
                    }
                    crate::telemetry::metrics().blobs_committed.inc();
                    tracing::info!(
                        repo = %self.repo, digest = %self.digest, size = self.size,
                        secs = started.elapsed().as_secs_f64(), "blob cached from upstream"
                    );
                }
                Err(e) => {
                    metrics::upstream_error(&up);
                    tracing::error!(repo = %self.repo, digest = %self.digest, error = %e, "a fill did not commit");
                    let _ = self
                        .registry
                        .cancel_upload(&self.repo, &self.upload_id)
                        .await;
                }
            },
            Err(e) => {
                tracing::warn!(repo = %self.repo, digest = %self.digest, error = %e, "a fill failed");
                if !lost.load(Ordering::Relaxed) {
                    let _ = self
                        .registry
                        .cancel_upload(&self.repo, &self.upload_id)
                        .await;
                }
            }
        }
        if !lost.load(Ordering::Relaxed) {
            if let Err(e) = meta.mirror.release_fill(&self.digest, &self.token).await {
                tracing::warn!(error = %e, "could not release a fill's lease");
            }
        }
        drop(self.local.take());
    }

    /// Streams the upstream into the session, segment by segment.
    async fn pump(
        &mut self,
        body: BlobBody,
        direct: Option<Direct>,
        committed: &AtomicU64,
        lost: &AtomicBool,
    ) -> std::result::Result<(), String> {
        let min_chunk = self.registry.min_chunk_len();
        let meta = self.registry.metadata().clone();
        let mut resumes = 0;
        let direct = Arc::new(Mutex::new(direct));
        let mut body = read_ahead(body, &direct);
        let mut renewed = Instant::now();
        while self.offset < self.size {
            if lost.load(Ordering::Relaxed) {
                return Err("the fill's lease was lost".into());
            }
            let mut segment = Segment {
                stream: &mut body.stream,
                at: &mut body.start,
                skip_to: self.offset,
                limit: self.size,
                len: 0,
                min_len: min_chunk.max(1),
                started: Instant::now(),
                error: None,
                ended: false,
                done: false,
            };
            let appended = self
                .registry
                .append_chunk(&self.repo, &self.upload_id, None, None, &mut segment)
                .await;
            let (error, ended) = (segment.error.take(), segment.ended);
            match appended {
                Ok(status) => {
                    self.offset = status.offset;
                    committed.store(self.offset, Ordering::Relaxed);
                    if let Some(local) = &self.local {
                        local.progress.send_modify(|p| *p = self.offset);
                    }
                    let renew = renewed.elapsed() >= RENEW_EVERY || self.offset >= self.size;
                    if renew {
                        renewed = Instant::now();
                    }
                    let renewal = if renew {
                        meta.mirror
                            .renew_fill(
                                &self.digest,
                                &self.token,
                                self.offset,
                                Some(self.size),
                                now_ms() + lease_ms(),
                            )
                            .await
                    } else {
                        Ok(true)
                    };
                    match renewal {
                        Ok(false) => {
                            lost.store(true, Ordering::Relaxed);
                            return Err("the fill's lease was taken over".into());
                        }
                        Ok(true) => {}
                        Err(e) => tracing::warn!(error = %e, "could not renew a fill's lease"),
                    }
                    if ended && self.offset < self.size {
                        // The upstream closed early: resume below.
                    } else {
                        continue;
                    }
                }
                Err(e) if error.is_none() => return Err(format!("storing the blob: {e}")),
                Err(_) => {}
            }
            resumes += 1;
            let why = error.unwrap_or_else(|| "the upstream ended the body early".into());
            if resumes > RESUMES {
                return Err(format!("upstream: {why}"));
            }
            tracing::info!(digest = %self.digest, offset = self.offset, error = %why, "resuming a fill");
            tokio::time::sleep(Duration::from_millis(200 * u64::from(resumes))).await;
            let fresh = self
                .upstream
                .get_blob(&self.remote, &self.digest, self.offset)
                .await
                .map_err(|f| match f {
                    Failure::NotFound => "the upstream no longer has the blob".to_string(),
                    Failure::Upstream(e) => e.to_string(),
                })?;
            body = read_ahead(fresh, &direct);
        }
        Ok(())
    }

    /// Verifies the digest and commits the blob.
    async fn commit(&self) -> Result<BlobRecord> {
        // No client asked for this commit: the fill's own work, announced by no
        // notification event (as mirrored manifests are not).
        self.registry
            .finish_fill_upload(&self.repo, &self.upload_id, &self.digest)
            .await
    }
}

/// Reads the upstream's body in a task of its own, ahead of the store (so the body keeps
/// flowing while a segment is synced), offering every piece to the direct client as it
/// arrives: that client gets the upstream's pace, not the store's.
fn read_ahead(body: BlobBody, direct: &Arc<Mutex<Option<Direct>>>) -> BlobBody {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let direct = direct.clone();
    let BlobBody {
        start,
        size,
        mut stream,
    } = body;
    tokio::spawn(async move {
        let mut at = start;
        while let Some(item) = stream.next().await {
            if let Ok(b) = &item {
                if let Ok(mut d) = direct.lock() {
                    if let Some(client) = d.as_ref() {
                        if client.try_send((at, b.clone())).is_err() {
                            // Full (a slow client) or closed (gone): it follows the store.
                            *d = None;
                        }
                    }
                }
                at += b.len() as u64;
            }
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    BlobBody {
        start,
        size,
        stream: futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed(),
    }
}

/// One segment of the upstream's body: the bytes from `skip_to` on, until the segment
/// is long enough.
struct Segment<'a> {
    stream: &'a mut BoxStream<'static, std::result::Result<Bytes, String>>,
    /// Offset in the blob of the stream's next byte.
    at: &'a mut u64,
    /// Bytes before this are in the session already.
    skip_to: u64,
    /// The blob's size: nothing beyond it is accepted.
    limit: u64,
    len: u64,
    min_len: u64,
    started: Instant,
    error: Option<String>,
    ended: bool,
    done: bool,
}

impl Stream for Segment<'_> {
    type Item = std::result::Result<Bytes, String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let long_enough = this.len >= SEGMENT_BYTES
                || (this.len >= this.min_len && this.started.elapsed() >= SEGMENT_TIME);
            if long_enough {
                this.done = true;
                return Poll::Ready(None);
            }
            let piece = match this.stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.ended = true;
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.error = Some(e.clone());
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(b))) => b,
            };
            let start = *this.at;
            let end = start + piece.len() as u64;
            *this.at = end;
            if end > this.limit {
                let e = "the upstream sent more bytes than the blob's length".to_string();
                this.error = Some(e.clone());
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
            let position = this.skip_to + this.len;
            if end <= position {
                continue;
            }
            let piece = if start < position {
                piece.slice((position - start) as usize..)
            } else {
                piece
            };
            this.len += piece.len() as u64;
            return Poll::Ready(Some(Ok(piece)));
        }
    }
}

/// A request's view of a fill: the direct channel while it has one, then the store.
struct FillReader {
    registry: Registry,
    repo: RepoName,
    digest: Digest,
    upload_id: String,
    /// Next byte to send, and the end of what is sent.
    pos: u64,
    end: u64,
    direct: Option<mpsc::Receiver<(u64, Bytes)>>,
    current: Option<ByteStream>,
    progress: Option<watch::Receiver<u64>>,
    last_byte: Instant,
    takeover: Option<Takeover>,
}

impl FillReader {
    fn into_stream(self) -> ByteStream {
        futures_util::stream::unfold(self, |mut r| async move {
            r.next_piece().await.map(|item| (item, r))
        })
        .boxed()
    }

    async fn next_piece(&mut self) -> Option<std::result::Result<Bytes, BlobError>> {
        loop {
            if self.pos >= self.end {
                return None;
            }
            if let Some(current) = &mut self.current {
                match current.next().await {
                    Some(Ok(b)) => {
                        let keep = (self.end - self.pos).min(b.len() as u64) as usize;
                        let b = b.slice(..keep);
                        self.pos += b.len() as u64;
                        self.last_byte = Instant::now();
                        return Some(Ok(b));
                    }
                    Some(Err(e)) => return Some(Err(e)),
                    None => {
                        self.current = None;
                        continue;
                    }
                }
            }
            if let Some(rx) = &mut self.direct {
                match rx.recv().await {
                    Some((at, bytes)) => {
                        let piece_end = at + bytes.len() as u64;
                        if at > self.pos {
                            // A gap (cannot happen while connected): read the store.
                            self.direct = None;
                        } else if piece_end > self.pos {
                            let from = (self.pos - at) as usize;
                            let to = (piece_end.min(self.end) - at) as usize;
                            let piece = bytes.slice(from..to);
                            self.pos += piece.len() as u64;
                            self.last_byte = Instant::now();
                            return Some(Ok(piece));
                        }
                        continue;
                    }
                    None => {
                        self.direct = None;
                        continue;
                    }
                }
            }
            match self.read_store().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Some(Err(e)),
            }
            if self.last_byte.elapsed() > STALL {
                return Some(Err(BlobError::Unavailable(
                    format!("the fill of {} made no progress for {STALL:?}", self.digest).into(),
                )));
            }
            wait(self.progress.as_mut()).await;
        }
    }

    /// Opens the next readable bytes from the store; false if there are none yet.
    async fn read_store(&mut self) -> std::result::Result<bool, BlobError> {
        let meta = self.registry.metadata().clone();
        let backend = self.registry.blob_backend().clone();
        let session = meta
            .uploads
            .get_upload(&self.upload_id)
            .await
            .map_err(store)?;
        if let Some(session) = session {
            if session.offset > self.pos {
                let upto = session.offset.min(self.end);
                let Some((key, range)) =
                    chunk_range(&session.chunks, self.pos, upto, backend.writes_in_place())
                else {
                    return Err(BlobError::Unavailable(
                        "a fill's chunk list does not cover its offset".into(),
                    ));
                };
                self.current = Some(backend.get(&key, Some(range)).await?);
                return Ok(true);
            }
            self.maybe_take_over().await;
            return Ok(false);
        }
        if let Some(blob) = meta.blobs.any_blob(&self.digest).await.map_err(store)? {
            if meta
                .blobs
                .repo_blob(&self.repo, &self.digest)
                .await
                .map_err(store)?
                .is_none()
            {
                let _ = meta.blobs.link_blob(&self.repo, &self.digest, &[]).await;
            }
            self.current = Some(
                backend
                    .get(&blob.storage_key, Some(self.pos..self.end))
                    .await?,
            );
            return Ok(true);
        }
        match meta.mirror.fill(&self.digest).await.map_err(store)? {
            // Restarted in another session (an owner took over without one).
            Some(f) if f.upload_id != self.upload_id => {
                self.upload_id = f.upload_id;
                Ok(false)
            }
            _ => Err(BlobError::Unavailable(
                format!("the fill of {} from the upstream failed", self.digest).into(),
            )),
        }
    }

    /// Takes the fill over if its owner has stopped renewing its lease.
    async fn maybe_take_over(&mut self) {
        let Some(t) = &mut self.takeover else {
            return;
        };
        if t.last_try.elapsed() < LEASE / 2 {
            return;
        }
        t.last_try = Instant::now();
        let meta = self.registry.metadata();
        if let Ok(Some(f)) = meta.mirror.fill(&self.digest).await {
            if f.expires_at < now_ms() {
                take_over_with(&t.instance, &t.upstream, &t.fills, &self.registry, &f).await;
                if self.progress.is_none() {
                    self.progress = t.fills.subscribe(&self.digest);
                }
            }
        }
    }
}

fn store(e: crate::metadata::MetadataError) -> BlobError {
    BlobError::Unavailable(Box::new(e))
}

/// Where bytes `pos..upto` of an upload start: the chunk holding `pos`, and the range
/// to read from its object (absolute offsets when every chunk is written into one
/// object, relative to the chunk otherwise).
fn chunk_range(
    chunks: &[ChunkRecord],
    pos: u64,
    upto: u64,
    in_place: bool,
) -> Option<(String, Range<u64>)> {
    let c = chunks
        .iter()
        .find(|c| c.offset <= pos && pos < c.offset + c.len)?;
    let end = upto.min(c.offset + c.len);
    if in_place {
        Some((c.key.clone(), pos..end))
    } else {
        Some((c.key.clone(), pos - c.offset..end - c.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges() {
        let chunks = vec![
            ChunkRecord {
                key: "a".into(),
                offset: 0,
                len: 10,
            },
            ChunkRecord {
                key: "b".into(),
                offset: 10,
                len: 5,
            },
        ];
        assert_eq!(
            chunk_range(&chunks, 3, 15, false),
            Some(("a".into(), 3..10))
        );
        assert_eq!(
            chunk_range(&chunks, 12, 14, false),
            Some(("b".into(), 2..4))
        );
        assert_eq!(
            chunk_range(&chunks, 12, 14, true),
            Some(("b".into(), 12..14))
        );
        assert_eq!(chunk_range(&chunks, 15, 20, false), None);
    }
}
