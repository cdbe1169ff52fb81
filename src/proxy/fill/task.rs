//! The fill itself, run by the instance holding the lease: the upstream's body read
//! ahead of the store and offered to the first client, appended to the upload session
//! segment by segment, the lease renewed (after segments and by a heartbeat), a broken
//! upstream stream resumed from the committed offset, and the blob committed once its
//! digest is verified.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::lease_ms;
use super::local::LocalGuard;
use super::segment::Segment;
use crate::clock::now_ms;
use crate::metadata::mirror::CachedContent;
use crate::proxy::metrics;
use crate::proxy::upstream::{BlobBody, Failure, UpstreamClient};
use crate::registry::{Registry, Result};
use crate::types::{BlobRecord, Digest, RepoName};

/// How often the owner renews its lease while the upstream is slow.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Pieces read from the upstream ahead of the store (while a segment is synced).
const READ_AHEAD: usize = 256;
/// The lease is renewed after a segment only if this long has passed since it was.
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// Times a broken upstream stream is resumed.
const RESUMES: u32 = 3;

/// The fill itself, owned by the instance holding the lease.
pub(super) struct FillTask {
    pub(super) registry: Registry,
    pub(super) upstream: Arc<UpstreamClient>,
    pub(super) remote: String,
    pub(super) repo: RepoName,
    pub(super) digest: Digest,
    pub(super) upload_id: String,
    pub(super) token: String,
    pub(super) size: u64,
    /// Bytes the session holds.
    pub(super) offset: u64,
    pub(super) local: Option<LocalGuard>,
}

type Direct = mpsc::Sender<(u64, Bytes)>;

impl FillTask {
    pub(super) async fn run(mut self, body: BlobBody, direct: Option<Direct>) {
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
