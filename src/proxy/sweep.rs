//! The cache's background work, on every instance: `last_pulled` written from memory
//! every few seconds (one write per item pulled, not per pull), and a sweep every
//! `proxy.sweepinterval` that one instance at a time runs (a lease in
//! `proxy_sweeps`): content of each upstream not pulled for its `ttl` is removed,
//! then, beyond `proxy.maxsize`, the least recently pulled blobs.
//!
//! Removal goes through the metadata store's delete paths (unlink a blob from the
//! repository, delete a manifest with its tags), the same the API's deletes take, so
//! the metadata cache is invalidated; the bytes of a blob no repository links any
//! more are garbage collection's to delete.

use std::sync::Arc;
use std::time::Duration;

use super::{metrics, Proxy};
use crate::clock::now_ms;
use crate::metadata::mirror::CachedContent;
use crate::registry::Registry;

/// How often pulls are written to `last_pulled`.
const FLUSH: Duration = Duration::from_secs(5);
/// The first sweep after start-up.
const FIRST_SWEEP: Duration = Duration::from_secs(10);
const BATCH: u32 = 500;
const SWEEP: &str = "proxy-expiry";

pub(super) fn spawn(proxy: Arc<Proxy>, registry: Registry) {
    let p = proxy.clone();
    let r = registry.clone();
    // Both stop at SIGTERM (`lifecycle`); the pulls noted so far are written first.
    tokio::spawn(async move {
        let _running = crate::lifecycle::worker();
        while crate::lifecycle::pause(FLUSH).await {
            flush_pulls(&p, &r).await;
        }
        flush_pulls(&p, &r).await;
    });
    tokio::spawn(async move {
        let _running = crate::lifecycle::worker();
        let mut wait = FIRST_SWEEP.min(proxy.sweep_interval);
        while crate::lifecycle::pause(wait).await {
            wait = proxy.sweep_interval;
            if let Err(e) = sweep(&proxy, &registry).await {
                tracing::warn!(error = %e, "cache sweep failed");
            }
        }
    });
}

/// Writes the pulls noted since the last flush.
pub(super) async fn flush_pulls(proxy: &Proxy, registry: &Registry) {
    let pulls: Vec<_> = match proxy.pulls.lock() {
        Ok(mut p) => p.drain().map(|((r, d), t)| (r, d, t)).collect(),
        Err(_) => return,
    };
    if pulls.is_empty() {
        return;
    }
    if let Err(e) = registry.metadata().mirror.touch_content(&pulls).await {
        tracing::warn!(error = %e, "could not record pulls of cached content");
    }
}

/// One sweep, if this instance wins its lease; returns what it removed.
pub(super) async fn sweep(
    proxy: &Proxy,
    registry: &Registry,
) -> Result<usize, crate::metadata::MetadataError> {
    let meta = registry.metadata();
    let now = now_ms();
    let hold = i64::try_from(proxy.sweep_interval.as_millis() / 2).unwrap_or(i64::MAX);
    if !meta
        .mirror
        .claim_sweep(
            SWEEP,
            &proxy.instance,
            now.saturating_add(hold.max(1000)),
            now,
        )
        .await?
    {
        return Ok(0);
    }
    flush_pulls(proxy, registry).await;
    let mut removed = 0;
    for up in &proxy.upstreams {
        let ttl = up.config.ttl;
        if ttl.is_zero() {
            continue;
        }
        let before = now - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        loop {
            let expired = meta
                .mirror
                .expired_content(&up.config.name, before, BATCH)
                .await?;
            let n = expired.len();
            for c in &expired {
                remove(registry, c).await?;
            }
            removed += n;
            metrics::evicted(&up.config.name, "expired", n as u64);
            if n < BATCH as usize {
                break;
            }
        }
    }
    if let Some(max) = proxy.max_size {
        let mut total = meta.mirror.cached_blob_bytes().await?;
        'evict: while total > max {
            let oldest = meta.mirror.least_recently_pulled(BATCH).await?;
            if oldest.is_empty() {
                break;
            }
            let mut progress = false;
            for c in oldest.iter() {
                if total <= max {
                    break 'evict;
                }
                remove(registry, c).await?;
                progress = true;
                metrics::evicted(&c.upstream, "size", 1);
                removed += 1;
                if !c.is_manifest {
                    total = total.saturating_sub(c.size);
                }
            }
            if !progress {
                break;
            }
            total = meta.mirror.cached_blob_bytes().await?;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "cache sweep removed content");
    }
    Ok(removed)
}

/// Removes one item of cached content from its repository.
async fn remove(
    registry: &Registry,
    c: &CachedContent,
) -> Result<(), crate::metadata::MetadataError> {
    let meta = registry.metadata();
    if c.is_manifest {
        meta.manifests
            .delete_manifest(&c.repository, &c.digest, &[])
            .await?;
    } else {
        meta.blobs
            .unlink_blob(&c.repository, &c.digest, &[])
            .await?;
    }
    meta.mirror.forget_content(&c.repository, &c.digest).await
}
