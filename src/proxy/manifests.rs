//! Manifests of mirrored repositories: fetched when absent, tags revalidated.
//!
//! By digest: content-addressed, so once stored it is served for ever (until expiry).
//! By tag: the tag's digest upstream is recorded with when it was fetched
//! (`proxy_tags`); within the upstream's `tagttl` the stored manifest is served as it
//! is, after it a `HEAD` (which Docker Hub does not count against its pull limit)
//! tells whether the tag moved, and only a moved tag is fetched again. Whenever the
//! upstream fails (unreachable, timeout, 5xx, 429, refused) and a manifest is stored
//! for the reference, that one is served: the failure is counted, not passed on.

use super::upstream::Failure;
use super::{metrics, Proxy, Route};
use crate::clock::now_ms;
use crate::metadata::mirror::CachedContent;
use crate::registry::mirror::UpstreamError;
use crate::registry::{Registry, RegistryError, Result};
use crate::types::{Digest, ManifestRecord, Reference, RepoName, Tag};

pub(super) async fn refresh(
    proxy: &Proxy,
    registry: &Registry,
    repo: &RepoName,
    route: &Route,
    reference: &Reference,
) -> Result<()> {
    let up = route.upstream.name().to_string();
    let meta = registry.metadata();
    match reference {
        Reference::Digest(d) => {
            if meta.manifests.manifest_by_digest(repo, d).await?.is_some() {
                metrics::hit(&up, "manifest");
                return Ok(());
            }
            let _one = proxy.lock(format!("{repo}@{d}")).await;
            if meta.manifests.manifest_by_digest(repo, d).await?.is_some() {
                metrics::hit(&up, "manifest");
                return Ok(());
            }
            metrics::miss(&up, "manifest");
            match fetch(registry, repo, route, &d.to_string(), Some(d), None).await {
                Ok(_) => Ok(()),
                // The store's lookup answers MANIFEST_UNKNOWN.
                Err(Failure::NotFound) => Ok(()),
                Err(Failure::Upstream(e)) => Err(e.into()),
            }
        }
        Reference::Tag(t) => refresh_tag(proxy, registry, repo, route, t).await,
    }
}

async fn refresh_tag(
    proxy: &Proxy,
    registry: &Registry,
    repo: &RepoName,
    route: &Route,
    tag: &Tag,
) -> Result<()> {
    let cfg = &route.upstream.config;
    let up = cfg.name.as_str();
    let meta = registry.metadata();
    let tag_ttl_ms = i64::try_from(cfg.tag_ttl.as_millis()).unwrap_or(i64::MAX);
    let fresh = |cached: &Option<crate::metadata::mirror::CachedTag>,
                 local: &Option<ManifestRecord>| {
        match (cached, local) {
            (Some(c), Some(l)) => {
                !cfg.revalidate_tags
                    && c.digest == l.digest
                    && now_ms().saturating_sub(c.fetched_at) < tag_ttl_ms
            }
            _ => false,
        }
    };
    let cached = meta.mirror.cached_tag(repo, tag).await?;
    let local = meta.manifests.manifest_by_tag(repo, tag).await?;
    if fresh(&cached, &local) {
        metrics::hit(up, "manifest");
        return Ok(());
    }
    // One revalidation per tag at a time here; the others then find it fresh.
    let _one = proxy.lock(format!("{repo}:{tag}")).await;
    let cached = meta.mirror.cached_tag(repo, tag).await?;
    let local = meta.manifests.manifest_by_tag(repo, tag).await?;
    if fresh(&cached, &local) {
        metrics::hit(up, "manifest");
        return Ok(());
    }
    let stale_ok = |e: UpstreamError| -> Result<()> {
        if local.is_some() {
            metrics::stale_served(up);
            tracing::info!(repo = %repo, tag = %tag, error = %e, "upstream failed: serving the cached manifest");
            Ok(())
        } else {
            Err(e.into())
        }
    };
    let head = route
        .upstream
        .head_manifest(&route.remote, tag.as_str())
        .await;
    let upstream_digest = match head {
        Ok(d) => d,
        Err(Failure::NotFound) => {
            // The tag is gone upstream: what was cached is still served (a mirror
            // keeps serving what it has); nothing cached, MANIFEST_UNKNOWN.
            if local.is_some() {
                metrics::hit(up, "manifest");
            }
            return Ok(());
        }
        Err(Failure::Upstream(e)) => return stale_ok(e),
    };
    if let (Some(d), Some(l)) = (&upstream_digest, &local) {
        if d == &l.digest {
            meta.mirror.put_cached_tag(repo, tag, d, now_ms()).await?;
            metrics::hit(up, "manifest");
            return Ok(());
        }
    }
    metrics::miss(up, "manifest");
    // Moved or new: fetch it by digest when the HEAD gave one (what the tag points
    // at now), else by tag.
    let reference = upstream_digest
        .as_ref()
        .map_or_else(|| tag.as_str().to_string(), Digest::to_string);
    match fetch(
        registry,
        repo,
        route,
        &reference,
        upstream_digest.as_ref(),
        Some(tag),
    )
    .await
    {
        Ok(record) => {
            meta.mirror
                .put_cached_tag(repo, tag, &record.digest, now_ms())
                .await?;
            Ok(())
        }
        Err(Failure::NotFound) => Ok(()),
        Err(Failure::Upstream(e)) => stale_ok(e),
    }
}

/// Fetches a manifest and stores it (pointing `tag` at it), checking its digest.
async fn fetch(
    registry: &Registry,
    repo: &RepoName,
    route: &Route,
    reference: &str,
    expected: Option<&Digest>,
    tag: Option<&Tag>,
) -> std::result::Result<ManifestRecord, Failure> {
    let up = route.upstream.name();
    let fetched = route
        .upstream
        .get_manifest(&route.remote, reference)
        .await?;
    let invalid = |message: String| {
        Failure::Upstream(UpstreamError::Invalid {
            upstream: up.to_string(),
            message,
        })
    };
    let size = fetched.body.len() as u64;
    let record = registry
        .put_mirrored_manifest(
            repo,
            expected,
            tag,
            fetched.content_type.as_deref(),
            fetched.body,
        )
        .await
        .map_err(|e| match e {
            RegistryError::Metadata(m) => Failure::Upstream(UpstreamError::Unavailable {
                upstream: up.to_string(),
                message: format!("storing the manifest: {m}"),
            }),
            other => invalid(format!("manifest {reference} of {}: {other}", route.remote)),
        })?;
    let now = now_ms();
    let content = CachedContent {
        repository: repo.clone(),
        digest: record.digest.clone(),
        upstream: up.to_string(),
        is_manifest: true,
        size,
        fetched_at: now,
        last_pulled: now,
    };
    if let Err(e) = registry.metadata().mirror.record_content(&content).await {
        tracing::warn!(error = %e, "could not record cached manifest");
    }
    tracing::debug!(repo = %repo, reference, digest = %record.digest, "manifest cached from upstream");
    Ok(record)
}
