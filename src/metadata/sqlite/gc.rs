//! [`GcStore`] on SQLite: each batch of reviews is one job of the group committer, so
//! it runs between other writes, never among them (one writer: no locks needed); the
//! statements are the shared ones (`gc_sql`).

use std::collections::HashSet;

use async_trait::async_trait;

use super::{gc_sql, queries, SqliteStore};
use crate::metadata::gc::{
    GcStore, PullRecord, QueueDepth, RepoSnapshot, ReviewBatch, ReviewPreview, Tombstone,
};
use crate::metadata::Result;
use crate::types::{Digest, RepoName, Tag};

#[async_trait]
impl GcStore for SqliteStore {
    async fn review_manifests(&self, delay_ms: i64, limit: u32) -> Result<ReviewBatch> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let mut batch = ReviewBatch::default();
                    for (repo_id, digest) in
                        gc_sql::claim_manifest_reviews(conn, delay_ms, limit).await?
                    {
                        gc_sql::review_manifest(conn, repo_id, &digest, &mut batch).await?;
                    }
                    Ok(batch)
                })
            })
            .await
    }

    async fn review_blobs(&self, delay_ms: i64, limit: u32) -> Result<ReviewBatch> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let mut batch = ReviewBatch::default();
                    for digest in gc_sql::claim_blob_reviews(conn, delay_ms, limit).await? {
                        gc_sql::review_blob(conn, &digest, &mut batch).await?;
                    }
                    Ok(batch)
                })
            })
            .await
    }

    async fn preview_reviews(&self, delay_ms: i64, limit: u32) -> Result<ReviewPreview> {
        gc_sql::preview_reviews(&self.reader, delay_ms, limit).await
    }

    async fn tombstones(&self, older_than_ms: i64, limit: u32) -> Result<Vec<Tombstone>> {
        gc_sql::tombstones(&self.reader, older_than_ms, limit).await
    }

    async fn clear_tombstones(&self, storage_keys: &[String]) -> Result<()> {
        if storage_keys.is_empty() {
            return Ok(());
        }
        let keys = storage_keys.to_vec();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    for key in &keys {
                        sqlx::query("DELETE FROM gc_tombstones WHERE storage_key = $1")
                            .bind(key)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn is_tombstoned(&self, digest: &Digest) -> Result<bool> {
        gc_sql::is_tombstoned(&self.reader, digest).await
    }

    async fn touch_blobs(&self, digests: &[Digest]) -> Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        let digests = digests.to_vec();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    for d in &digests {
                        gc_sql::touch_blob(conn, d).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn record_pulls(&self, pulls: &[PullRecord]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        let pulls = pulls.to_vec();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    for p in &pulls {
                        sqlx::query(
                            "UPDATE manifests SET last_pulled_at = max(COALESCE(last_pulled_at, 0), $1)
                             WHERE digest = $2
                             AND repository_id = (SELECT id FROM repositories WHERE name = $3)",
                        )
                        .bind(p.at)
                        .bind(p.digest.to_string())
                        .bind(p.repo.as_str())
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn referenced_keys(&self) -> Result<HashSet<String>> {
        gc_sql::referenced_keys(&self.reader).await
    }

    async fn queue_depth(&self, delay_ms: i64) -> Result<QueueDepth> {
        gc_sql::queue_depth(&self.reader, delay_ms).await
    }

    async fn repository_snapshot(&self, repo: &RepoName) -> Result<Option<RepoSnapshot>> {
        gc_sql::repository_snapshot(&self.reader, repo).await
    }

    async fn delete_tag_if(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<bool> {
        let (repo, tag, digest) = (repo.clone(), tag.clone(), digest.clone());
        self.writer
            .write(move |conn| {
                Box::pin(async move { gc_sql::delete_tag_if(conn, &repo, &tag, &digest).await })
            })
            .await
    }

    async fn delete_manifest_if_unreachable(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let Some(repo_id) = queries::repository_id(&mut *conn, repo.as_str()).await?
                    else {
                        return Ok(false);
                    };
                    gc_sql::collect_manifest(conn, repo_id, &digest).await
                })
            })
            .await
    }
}
