//! [`MirrorStore`] on PostgreSQL: single statements on the pool. A lease is one
//! conditional statement (`INSERT … ON CONFLICT DO NOTHING`, `UPDATE … WHERE token =`),
//! so of several instances racing for it exactly one wins.

use async_trait::async_trait;

use super::PostgresStore;
use crate::metadata::mirror::{CachedContent, CachedTag, FillLease, MirrorStore};
use crate::metadata::Result;
use crate::types::{Digest, RepoName, Tag};

mod q {
    crate::metadata::mirror_queries::mirror_queries!(sqlx::Postgres);
}

#[async_trait]
impl MirrorStore for PostgresStore {
    async fn fill(&self, digest: &Digest) -> Result<Option<FillLease>> {
        q::fill(&self.pool, digest).await
    }

    async fn claim_fill(&self, lease: &FillLease) -> Result<bool> {
        q::claim_fill(&self.pool, lease).await
    }

    async fn take_over_fill(
        &self,
        digest: &Digest,
        old_token: &str,
        owner: &str,
        token: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        q::take_over_fill(&self.pool, digest, old_token, owner, token, expires_at, now).await
    }

    async fn renew_fill(
        &self,
        digest: &Digest,
        token: &str,
        committed: u64,
        size: Option<u64>,
        expires_at: i64,
    ) -> Result<bool> {
        q::renew_fill(&self.pool, digest, token, committed, size, expires_at).await
    }

    async fn release_fill(&self, digest: &Digest, token: &str) -> Result<()> {
        q::release_fill(&self.pool, digest, token).await
    }

    async fn cached_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<CachedTag>> {
        q::cached_tag(&self.pool, repo, tag).await
    }

    async fn put_cached_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        fetched_at: i64,
    ) -> Result<()> {
        q::put_cached_tag(&self.pool, repo, tag, digest, fetched_at).await
    }

    async fn record_content(&self, content: &CachedContent) -> Result<()> {
        q::record_content(&self.pool, content).await
    }

    async fn touch_content(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()> {
        for (repo, digest, when) in pulls {
            q::touch_content(&self.pool, repo, digest, *when).await?;
        }
        Ok(())
    }

    async fn expired_content(
        &self,
        upstream: &str,
        before: i64,
        limit: u32,
    ) -> Result<Vec<CachedContent>> {
        q::expired_content(&self.pool, upstream, before, limit).await
    }

    async fn least_recently_pulled(&self, limit: u32) -> Result<Vec<CachedContent>> {
        q::least_recently_pulled(&self.pool, limit).await
    }

    async fn cached_blob_bytes(&self) -> Result<u64> {
        q::cached_blob_bytes(&self.pool).await
    }

    async fn forget_content(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        q::forget_content(&self.pool, repo, digest).await
    }

    async fn is_referenced(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        q::is_referenced(&self.pool, repo, digest).await
    }

    async fn claim_sweep(
        &self,
        name: &str,
        owner: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        q::claim_sweep(&self.pool, name, owner, expires_at, now).await
    }
}
