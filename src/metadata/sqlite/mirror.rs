//! [`MirrorStore`] on SQLite: reads from the read pool, writes as group-commit jobs.

use async_trait::async_trait;

use super::SqliteStore;
use crate::metadata::mirror::{CachedContent, CachedTag, FillLease, MirrorStore};
use crate::metadata::Result;
use crate::types::{Digest, RepoName, Tag};

mod q {
    crate::metadata::mirror_queries::mirror_queries!(sqlx::Sqlite);
}

/// Runs one statement of `q` as a write job: `write!(self, |conn| q::f(conn, &a, &b), a, b)`
/// clones the named arguments into the job.
macro_rules! write {
    ($store:expr, |$conn:ident| $call:expr, $($arg:ident),*) => {{
        $(let $arg = $arg.to_owned();)*
        $store
            .writer
            .write(move |$conn| Box::pin(async move { $call.await }))
            .await
    }};
}

#[async_trait]
impl MirrorStore for SqliteStore {
    async fn fill(&self, digest: &Digest) -> Result<Option<FillLease>> {
        q::fill(&self.reader, digest).await
    }

    async fn claim_fill(&self, lease: &FillLease) -> Result<bool> {
        write!(self, |conn| q::claim_fill(conn, &lease), lease)
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
        write!(
            self,
            |conn| q::take_over_fill(conn, &digest, &old_token, &owner, &token, expires_at, now),
            digest, old_token, owner, token
        )
    }

    async fn renew_fill(
        &self,
        digest: &Digest,
        token: &str,
        committed: u64,
        size: Option<u64>,
        expires_at: i64,
    ) -> Result<bool> {
        write!(
            self,
            |conn| q::renew_fill(conn, &digest, &token, committed, size, expires_at),
            digest, token
        )
    }

    async fn release_fill(&self, digest: &Digest, token: &str) -> Result<()> {
        write!(
            self,
            |conn| q::release_fill(conn, &digest, &token),
            digest, token
        )
    }

    async fn cached_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<CachedTag>> {
        q::cached_tag(&self.reader, repo, tag).await
    }

    async fn put_cached_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        fetched_at: i64,
    ) -> Result<()> {
        write!(
            self,
            |conn| q::put_cached_tag(conn, &repo, &tag, &digest, fetched_at),
            repo, tag, digest
        )
    }

    async fn record_content(&self, content: &CachedContent) -> Result<()> {
        write!(self, |conn| q::record_content(conn, &content), content)
    }

    async fn touch_content(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()> {
        let pulls = pulls.to_vec();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    for (repo, digest, when) in &pulls {
                        q::touch_content(&mut *conn, repo, digest, *when).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn expired_content(
        &self,
        upstream: &str,
        before: i64,
        limit: u32,
    ) -> Result<Vec<CachedContent>> {
        q::expired_content(&self.reader, upstream, before, limit).await
    }

    async fn least_recently_pulled(&self, limit: u32) -> Result<Vec<CachedContent>> {
        q::least_recently_pulled(&self.reader, limit).await
    }

    async fn cached_blob_bytes(&self) -> Result<u64> {
        q::cached_blob_bytes(&self.reader).await
    }

    async fn forget_content(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        write!(
            self,
            |conn| q::forget_content(conn, &repo, &digest),
            repo, digest
        )
    }

    async fn is_referenced(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        q::is_referenced(&self.reader, repo, digest).await
    }

    async fn claim_sweep(
        &self,
        name: &str,
        owner: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        write!(
            self,
            |conn| q::claim_sweep(conn, &name, &owner, expires_at, now),
            name, owner
        )
    }
}
