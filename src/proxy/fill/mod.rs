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
//!
//! This module claims, follows and takes over fills; the parts live in `local` (the
//! fills this instance runs), `task` (the owner's fill, cut into chunks by `segment`)
//! and `reader` (a request's view of a fill).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::upstream::{Failure, UpstreamClient};
use super::{metrics, Proxy, Route};
use crate::blobs::ByteStream;
use crate::clock::now_ms;
use crate::metadata::mirror::FillLease;
use crate::registry::blobs::BlobContent;
use crate::registry::{Registry, RegistryError, Result};
use crate::types::{BlobRecord, ByteRange, Digest, RepoName};

mod local;
mod reader;
mod segment;
mod task;

pub(super) use local::Fills;
use local::LocalGuard;
use reader::{FillReader, Takeover};
use task::FillTask;

/// How long a lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(30);
/// How often a follower without a local fill looks at the session.
const POLL: Duration = Duration::from_millis(200);
/// How long a request waits for a fill's owner to learn the blob's size.
const WAIT_FOR_START: Duration = Duration::from_secs(60);
/// Pieces the direct channel to the first client holds.
const DIRECT_CAPACITY: usize = 64;

fn lease_ms() -> i64 {
    LEASE.as_millis() as i64
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
