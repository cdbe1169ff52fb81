//! [`GcStore`] on PostgreSQL: reviews claimed with `FOR UPDATE SKIP LOCKED` (instances
//! share the queues without waiting on each other), each batch one READ COMMITTED
//! transaction of the shared statements (`gc_sql`), retried when it loses a race
//! (a deadlock with a push) like every other write.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::{gc_sql, retry, writes::begin, PostgresStore};
use crate::metadata::gc::{
    GcStore, PullRecord, QueueDepth, RepoSnapshot, ReviewBatch, ReviewPreview, Tombstone,
};
use crate::metadata::Result;
use crate::types::{Digest, RepoName, Tag};

/// Lock order, the same in every PostgreSQL transaction that deletes manifests (GC
/// reviews, retention, a client's manifest DELETE): the manifests' rows `FOR UPDATE`
/// in (repository id, digest) order, then the review rows of the blobs the deletions
/// will drop, queued here in digest order (`COLLATE "C"`, Rust's byte order), and only
/// then the deletes, whose triggers find those review rows already held. Left to the
/// triggers, the reviews were locked in cascade order, one manifest at a time: two
/// batches deleting manifests that share layers (and a batch against a HEAD's
/// `touch_blobs`, which locks in digest order too) deadlocked.
pub(super) async fn queue_blob_reviews_of(
    tx: &mut Transaction<'static, Postgres>,
    manifests: &[(i64, String)],
) -> Result<()> {
    if manifests.is_empty() {
        return Ok(());
    }
    let (repos, digests): (Vec<i64>, Vec<String>) = manifests.iter().cloned().unzip();
    let children: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT mr.child_digest COLLATE \"C\" FROM manifest_references mr
         JOIN UNNEST($1::BIGINT[], $2::TEXT[]) AS m (repository_id, digest)
           ON mr.repository_id = m.repository_id AND mr.manifest_digest = m.digest
         WHERE NOT mr.child_is_manifest
         ORDER BY 1",
    )
    .bind(&repos)
    .bind(&digests)
    .fetch_all(&mut **tx)
    .await?;
    for child in children {
        sqlx::query("SELECT gc_queue_blob($1)")
            .bind(child)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Locks the rows of `manifests` (sorted) `FOR UPDATE`, then queues the blob reviews
/// of those that are unreachable (see [`queue_blob_reviews_of`]).
async fn lock_manifests_for_review(
    tx: &mut Transaction<'static, Postgres>,
    manifests: &[(i64, String)],
) -> Result<()> {
    let mut doomed = Vec::new();
    for (repo_id, digest) in manifests {
        let present: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2 FOR UPDATE",
        )
        .bind(repo_id)
        .bind(digest)
        .fetch_optional(&mut **tx)
        .await?;
        if present.is_some() && !gc_sql::is_reachable(tx, *repo_id, digest).await? {
            doomed.push((*repo_id, digest.clone()));
        }
    }
    queue_blob_reviews_of(tx, &doomed).await
}

async fn review_manifests(pool: &sqlx::PgPool, delay_ms: i64, limit: u32) -> Result<ReviewBatch> {
    let mut tx = begin(pool).await?;
    let mut batch = ReviewBatch::default();
    // Sorted by the claim.
    let claimed = gc_sql::claim_manifest_reviews(&mut tx, delay_ms, limit).await?;
    lock_manifests_for_review(&mut tx, &claimed).await?;
    for (repo_id, digest) in claimed {
        gc_sql::review_manifest(&mut tx, repo_id, &digest, &mut batch).await?;
    }
    tx.commit().await?;
    Ok(batch)
}

async fn review_blobs(pool: &sqlx::PgPool, delay_ms: i64, limit: u32) -> Result<ReviewBatch> {
    let mut tx = begin(pool).await?;
    let mut batch = ReviewBatch::default();
    for digest in gc_sql::claim_blob_reviews(&mut tx, delay_ms, limit).await? {
        gc_sql::review_blob(&mut tx, &digest, &mut batch).await?;
    }
    tx.commit().await?;
    Ok(batch)
}

async fn delete_manifest_if_unreachable(
    pool: &sqlx::PgPool,
    repo: &RepoName,
    digest: &Digest,
) -> Result<bool> {
    let mut tx = begin(pool).await?;
    let Some(repo_id) = super::queries::repository_id(&mut *tx, repo.as_str()).await? else {
        return Ok(false);
    };
    let target = [(repo_id, digest.to_string())];
    lock_manifests_for_review(&mut tx, &target).await?;
    let deleted = gc_sql::collect_manifest(&mut tx, repo_id, &target[0].1).await?;
    tx.commit().await?;
    Ok(deleted)
}

#[async_trait]
impl GcStore for PostgresStore {
    async fn review_manifests(&self, delay_ms: i64, limit: u32) -> Result<ReviewBatch> {
        retry("gc_review_manifests", || {
            review_manifests(&self.pool, delay_ms, limit)
        })
        .await
    }

    async fn review_blobs(&self, delay_ms: i64, limit: u32) -> Result<ReviewBatch> {
        retry("gc_review_blobs", || {
            review_blobs(&self.pool, delay_ms, limit)
        })
        .await
    }

    async fn preview_reviews(&self, delay_ms: i64, limit: u32) -> Result<ReviewPreview> {
        gc_sql::preview_reviews(&self.pool, delay_ms, limit).await
    }

    async fn tombstones(&self, older_than_ms: i64, limit: u32) -> Result<Vec<Tombstone>> {
        gc_sql::tombstones(&self.pool, older_than_ms, limit).await
    }

    async fn clear_tombstones(&self, storage_keys: &[String]) -> Result<()> {
        if storage_keys.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM gc_tombstones WHERE storage_key = ANY($1)")
            .bind(storage_keys)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn is_tombstoned(&self, digest: &Digest) -> Result<bool> {
        gc_sql::is_tombstoned(&self.pool, digest).await
    }

    /// One statement for the whole batch; rows a GC pass holds are waited for briefly
    /// (its transaction is short), rows without a review are not touched.
    async fn touch_blobs(&self, digests: &[Digest]) -> Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        let mut wanted: Vec<String> = digests.iter().map(Digest::to_string).collect();
        wanted.sort();
        wanted.dedup();
        retry("gc_touch_blobs", || async {
            // Locked in digest order, as GC's manifest deletions queue them (see
            // `queue_blob_reviews_of`): an update in scan order deadlocked with them.
            sqlx::query(
                "UPDATE gc_blob_reviews g SET event_at = GREATEST(g.event_at, gc_now())
                 FROM (SELECT digest FROM gc_blob_reviews WHERE digest = ANY($1)
                       ORDER BY digest COLLATE \"C\" FOR UPDATE) s
                 WHERE g.digest = s.digest",
            )
            .bind(&wanted)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn record_pulls(&self, pulls: &[PullRecord]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        let mut sorted = pulls.to_vec();
        sorted.sort_by(|a, b| (&a.repo, &a.digest).cmp(&(&b.repo, &b.digest)));
        let repos: Vec<String> = sorted.iter().map(|p| p.repo.to_string()).collect();
        let digests: Vec<String> = sorted.iter().map(|p| p.digest.to_string()).collect();
        let times: Vec<i64> = sorted.iter().map(|p| p.at).collect();
        retry("gc_record_pulls", || async {
            sqlx::query(
                // The rows locked in (repository id, digest) order, as GC's reviews lock
                // them: an update in join order deadlocked with a review.
                "UPDATE manifests m SET last_pulled_at = GREATEST(COALESCE(m.last_pulled_at, 0), s.at)
                 FROM (SELECT l.repository_id, l.digest, v.at
                       FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[]) AS v (repo, digest, at)
                       JOIN repositories r ON r.name = v.repo
                       JOIN manifests l ON l.repository_id = r.id AND l.digest = v.digest
                       ORDER BY l.repository_id, l.digest COLLATE \"C\"
                       FOR NO KEY UPDATE OF l) s
                 WHERE m.repository_id = s.repository_id AND m.digest = s.digest",
            )
            .bind(&repos)
            .bind(&digests)
            .bind(&times)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn referenced_keys(&self) -> Result<HashSet<String>> {
        gc_sql::referenced_keys(&self.pool).await
    }

    async fn queue_depth(&self, delay_ms: i64) -> Result<QueueDepth> {
        gc_sql::queue_depth(&self.pool, delay_ms).await
    }

    async fn repository_snapshot(&self, repo: &RepoName) -> Result<Option<RepoSnapshot>> {
        gc_sql::repository_snapshot(&self.pool, repo).await
    }

    async fn delete_tag_if(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<bool> {
        retry("gc_delete_tag_if", || {
            gc_sql::delete_tag_if(&self.pool, repo, tag, digest)
        })
        .await
    }

    async fn delete_manifest_if_unreachable(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool> {
        retry("gc_delete_manifest_if_unreachable", || {
            delete_manifest_if_unreachable(&self.pool, repo, digest)
        })
        .await
    }
}
