//! The pull-through cache's statements ([`super::mirror::MirrorStore`]), written once
//! for both engines as [`mirror_queries!`] stamps them out (the same way
//! `queries::engine_queries!` does for the other aggregates).

use super::mirror::{CachedContent, FillLease};
use super::rows::parse_digest;
use super::{MetadataError, Result};
use crate::types::RepoName;

/// `proxy_fills`.
#[derive(sqlx::FromRow)]
pub(super) struct FillRow {
    digest: String,
    repository: String,
    upstream: String,
    upstream_repository: String,
    upload_id: String,
    owner: String,
    token: String,
    size: Option<i64>,
    committed: i64,
    expires_at: i64,
    created_at: i64,
}

impl TryFrom<FillRow> for FillLease {
    type Error = MetadataError;

    fn try_from(r: FillRow) -> Result<FillLease> {
        Ok(FillLease {
            digest: parse_digest(&r.digest)?,
            repository: RepoName::parse(&r.repository)
                .map_err(|e| MetadataError::Corrupt(format!("proxy fill {}: {e}", r.digest)))?,
            upstream: r.upstream,
            upstream_repository: r.upstream_repository,
            upload_id: r.upload_id,
            owner: r.owner,
            token: r.token,
            size: r.size.map(|s| s as u64),
            committed: r.committed as u64,
            expires_at: r.expires_at,
            created_at: r.created_at,
        })
    }
}

/// `proxy_content`.
#[derive(sqlx::FromRow)]
pub(super) struct ContentRow {
    repository: String,
    digest: String,
    upstream: String,
    is_manifest: bool,
    size: i64,
    fetched_at: i64,
    last_pulled: i64,
}

impl TryFrom<ContentRow> for CachedContent {
    type Error = MetadataError;

    fn try_from(r: ContentRow) -> Result<CachedContent> {
        Ok(CachedContent {
            repository: RepoName::parse(&r.repository)
                .map_err(|e| MetadataError::Corrupt(format!("proxy content: {e}")))?,
            digest: parse_digest(&r.digest)?,
            upstream: r.upstream,
            is_manifest: r.is_manifest,
            size: r.size as u64,
            fetched_at: r.fetched_at,
            last_pulled: r.last_pulled,
        })
    }
}

/// Defines the cache's statements for one engine (`$db`, its `sqlx::Database`).
macro_rules! mirror_queries {
    ($db:ty) => {
        use $crate::metadata::mirror::{CachedContent, CachedTag, FillLease};
        use $crate::metadata::mirror_queries::{ContentRow, FillRow};
        use $crate::metadata::rows::{parse_digest, records};
        use $crate::metadata::Result;
        use $crate::types::{Digest, RepoName, Tag};

        pub(crate) async fn fill<'e, E>(
            e: E,
            digest: &Digest,
        ) -> Result<Option<FillLease>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let row: Option<FillRow> =
                sqlx::query_as("SELECT * FROM proxy_fills WHERE digest = $1")
                    .bind(digest.to_string())
                    .fetch_optional(e)
                    .await?;
            row.map(FillLease::try_from).transpose()
        }

        pub(crate) async fn claim_fill<'e, E>(e: E, l: &FillLease) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "INSERT INTO proxy_fills (digest, repository, upstream, upstream_repository, upload_id,
                     owner, token, size, committed, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(l.digest.to_string())
            .bind(l.repository.as_str())
            .bind(&l.upstream)
            .bind(&l.upstream_repository)
            .bind(&l.upload_id)
            .bind(&l.owner)
            .bind(&l.token)
            .bind(l.size.map(|s| s as i64))
            .bind(l.committed as i64)
            .bind(l.expires_at)
            .bind(l.created_at)
            .execute(e)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn take_over_fill<'e, E>(
            e: E,
            digest: &Digest,
            old_token: &str,
            owner: &str,
            token: &str,
            expires_at: i64,
            now: i64,
        ) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "UPDATE proxy_fills SET owner = $1, token = $2, expires_at = $3
                 WHERE digest = $4 AND token = $5 AND expires_at < $6",
            )
            .bind(owner)
            .bind(token)
            .bind(expires_at)
            .bind(digest.to_string())
            .bind(old_token)
            .bind(now)
            .execute(e)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn renew_fill<'e, E>(
            e: E,
            digest: &Digest,
            token: &str,
            committed: u64,
            size: Option<u64>,
            expires_at: i64,
        ) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "UPDATE proxy_fills SET committed = $1, size = COALESCE($2, size), expires_at = $3
                 WHERE digest = $4 AND token = $5",
            )
            .bind(committed as i64)
            .bind(size.map(|s| s as i64))
            .bind(expires_at)
            .bind(digest.to_string())
            .bind(token)
            .execute(e)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn release_fill<'e, E>(
            e: E,
            digest: &Digest,
            token: &str,
        ) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query("DELETE FROM proxy_fills WHERE digest = $1 AND token = $2")
                .bind(digest.to_string())
                .bind(token)
                .execute(e)
                .await?;
            Ok(())
        }

        pub(crate) async fn cached_tag<'e, E>(
            e: E,
            repo: &RepoName,
            tag: &Tag,
        ) -> Result<Option<CachedTag>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let row: Option<(String, i64)> = sqlx::query_as(
                "SELECT digest, fetched_at FROM proxy_tags WHERE repository = $1 AND tag = $2",
            )
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_optional(e)
            .await?;
            row.map(|(d, fetched_at)| {
                Ok(CachedTag {
                    digest: parse_digest(&d)?,
                    fetched_at,
                })
            })
            .transpose()
        }

        pub(crate) async fn put_cached_tag<'e, E>(
            e: E,
            repo: &RepoName,
            tag: &Tag,
            digest: &Digest,
            fetched_at: i64,
        ) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query(
                "INSERT INTO proxy_tags (repository, tag, digest, fetched_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repository, tag) DO UPDATE
                 SET digest = excluded.digest, fetched_at = excluded.fetched_at",
            )
            .bind(repo.as_str())
            .bind(tag.as_str())
            .bind(digest.to_string())
            .bind(fetched_at)
            .execute(e)
            .await?;
            Ok(())
        }

        pub(crate) async fn record_content<'e, E>(
            e: E,
            c: &CachedContent,
        ) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query(
                "INSERT INTO proxy_content (repository, digest, upstream, is_manifest, size, fetched_at, last_pulled)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (repository, digest) DO UPDATE
                 SET size = excluded.size, fetched_at = excluded.fetched_at,
                     last_pulled = excluded.last_pulled",
            )
            .bind(c.repository.as_str())
            .bind(c.digest.to_string())
            .bind(&c.upstream)
            .bind(c.is_manifest)
            .bind(c.size as i64)
            .bind(c.fetched_at)
            .bind(c.last_pulled)
            .execute(e)
            .await?;
            Ok(())
        }

        pub(crate) async fn touch_content<'e, E>(
            e: E,
            repo: &RepoName,
            digest: &Digest,
            when: i64,
        ) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query(
                "UPDATE proxy_content SET last_pulled = $1
                 WHERE repository = $2 AND digest = $3 AND last_pulled < $1",
            )
            .bind(when)
            .bind(repo.as_str())
            .bind(digest.to_string())
            .execute(e)
            .await?;
            Ok(())
        }

        pub(crate) async fn expired_content<'e, E>(
            e: E,
            upstream: &str,
            before: i64,
            limit: u32,
        ) -> Result<Vec<CachedContent>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<ContentRow> = sqlx::query_as(
                "SELECT * FROM proxy_content WHERE upstream = $1 AND last_pulled < $2
                 ORDER BY last_pulled LIMIT $3",
            )
            .bind(upstream)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(e)
            .await?;
            records(rows)
        }

        pub(crate) async fn least_recently_pulled<'e, E>(
            e: E,
            limit: u32,
        ) -> Result<Vec<CachedContent>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<ContentRow> =
                sqlx::query_as("SELECT * FROM proxy_content ORDER BY last_pulled LIMIT $1")
                    .bind(i64::from(limit))
                    .fetch_all(e)
                    .await?;
            records(rows)
        }

        pub(crate) async fn cached_blob_bytes<'e, E>(e: E) -> Result<u64>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let total: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(SUM(size) AS BIGINT) FROM
                   (SELECT digest, MAX(size) AS size FROM proxy_content
                    WHERE is_manifest = $1 GROUP BY digest) AS d",
            )
            .bind(false)
            .fetch_one(e)
            .await?;
            Ok(total.unwrap_or(0).max(0) as u64)
        }

        pub(crate) async fn forget_content<'e, E>(
            e: E,
            repo: &RepoName,
            digest: &Digest,
        ) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query("DELETE FROM proxy_content WHERE repository = $1 AND digest = $2")
                .bind(repo.as_str())
                .bind(digest.to_string())
                .execute(e)
                .await?;
            Ok(())
        }

        pub(crate) async fn is_referenced<'e, E>(
            e: E,
            repo: &RepoName,
            digest: &Digest,
        ) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            // `SELECT 1` is an INT4 on PostgreSQL: decoded as i32 (as in `gc`).
            let found: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
                 WHERE r.name = $1 AND mr.child_digest = $2 LIMIT 1",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(e)
            .await?;
            Ok(found.is_some())
        }

        pub(crate) async fn claim_sweep<'e, E>(
            e: E,
            name: &str,
            owner: &str,
            expires_at: i64,
            now: i64,
        ) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "INSERT INTO proxy_sweeps (name, owner, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                 WHERE proxy_sweeps.expires_at < $4 OR proxy_sweeps.owner = excluded.owner",
            )
            .bind(name)
            .bind(owner)
            .bind(expires_at)
            .bind(now)
            .execute(e)
            .await?;
            Ok(done.rows_affected() == 1)
        }
    };
}

pub(super) use mirror_queries;
