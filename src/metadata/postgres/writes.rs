//! The PostgreSQL store's multi-statement writes, each one READ COMMITTED transaction.
//! One call is one attempt; `retry` (in `mod.rs`) runs it again when it loses a race.
//!
//! Why row locks and not SERIALIZABLE for `put_manifest`: the only thing a manifest put
//! reads and depends on is "these children are in the repository". Locking exactly
//! those rows (`SELECT … FOR SHARE`) makes a concurrent unlink of a child (or delete of
//! a child manifest) wait until the put has committed, or — if the unlink went first —
//! the put sees the row gone and answers `MissingChild` cleanly. SERIALIZABLE would
//! give the same guarantee with predicate locks on every table the transaction reads,
//! aborting unrelated pushes to the same repository on page-level conflicts under load
//! and forcing every write to be retried; shared row locks never conflict with each
//! other, so concurrent pushes that share layers do not wait on each other at all.

use std::collections::HashSet;

use sqlx::postgres::PgConnection;

use super::{blob_from_row, now_ms, PostgresStore};
use crate::metadata::*;
use crate::registry::digest::Digest;
use crate::registry::name::RepoName;

/// The repository's id, if it exists.
async fn repository_id(conn: &mut PgConnection, repo: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repo)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// The repository's id, creating the repository if needed. Two instances creating it
/// at once: the second INSERT waits for the first and does nothing; the SELECT after
/// it is a new statement, so it sees the row the first committed.
async fn ensure_repository(conn: &mut PgConnection, repo: &str) -> Result<i64> {
    if let Some(id) = repository_id(conn, repo).await? {
        return Ok(id);
    }
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2)
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(repo)
    .bind(now_ms())
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => repository_id(conn, repo)
            .await?
            .ok_or_else(|| MetadataError::Corrupt(format!("repository {repo:?} vanished"))),
    }
}

async fn link(conn: &mut PgConnection, repo_id: i64, digest: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(repo_id)
    .bind(digest)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The first of `required` (in its order) that is not among `present`.
fn first_missing(required: &[Digest], present: Vec<String>) -> Option<Digest> {
    let present: HashSet<String> = present.into_iter().collect();
    required
        .iter()
        .find(|d| !present.contains(&d.to_string()))
        .cloned()
}

impl PostgresStore {
    pub(super) async fn tx_commit_blob(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
    ) -> Result<BlobCommit> {
        let mut tx = self.begin().await?;
        if let Some(id) = upload_id {
            let closed = if super::has_nul(id) {
                0
            } else {
                sqlx::query("DELETE FROM upload_sessions WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            };
            if closed == 0 {
                return Err(MetadataError::UploadGone);
            }
        }
        let repo_id = ensure_repository(&mut tx, repo.as_str()).await?;
        let digest = blob.digest.to_string();
        // Two commits of the same digest: the second INSERT waits for the first
        // transaction, then does nothing; the read-back (a new statement) sees the
        // record the first one stored. Exactly one caller gets `stored_new`.
        let inserted = sqlx::query(
            "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&digest)
        .bind(blob.size as i64)
        .bind(&blob.storage_key)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let stored = if inserted {
            blob.clone()
        } else {
            let row = sqlx::query("SELECT size, storage_key FROM blobs WHERE digest = $1")
                .bind(&digest)
                .fetch_one(&mut *tx)
                .await?;
            blob_from_row(&blob.digest, &row)?
        };
        link(&mut tx, repo_id, &digest).await?;
        tx.commit().await?;
        Ok(BlobCommit {
            blob: stored,
            stored_new: inserted,
        })
    }

    pub(super) async fn tx_link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let digest = digest.to_string();
        let mut tx = self.begin().await?;
        // Blob records are never deleted while linked; the link's foreign key checks
        // it again at insert time.
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1")
            .bind(&digest)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let repo_id = ensure_repository(&mut tx, repo.as_str()).await?;
        link(&mut tx, repo_id, &digest).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn tx_put_manifest(
        &self,
        repo: &RepoName,
        m: &NewManifest,
    ) -> Result<PutManifestOutcome> {
        let mut tx = self.begin().await?;
        let has_children = !(m.required_blobs.is_empty() && m.required_manifests.is_empty());
        // A refused put writes nothing, not even the repository: a repository that
        // does not exist yet holds no children.
        let repo_id = match repository_id(&mut tx, repo.as_str()).await? {
            Some(id) => id,
            None => {
                if let Some(first) = m.required_blobs.iter().chain(&m.required_manifests).next() {
                    return Ok(PutManifestOutcome::MissingChild(first.clone()));
                }
                ensure_repository(&mut tx, repo.as_str()).await?
            }
        };

        // The children must be in the repository when this commits: lock the rows that
        // say so (in digest order, the same order in every transaction). An unlink that
        // got there first has already removed its row and we answer MissingChild; one
        // that comes later waits for our commit. See the module doc.
        if !m.required_blobs.is_empty() {
            let wanted: Vec<String> = m.required_blobs.iter().map(Digest::to_string).collect();
            let present: Vec<String> = sqlx::query_scalar(
                "SELECT digest FROM repository_blobs
                 WHERE repository_id = $1 AND digest = ANY($2)
                 ORDER BY digest FOR SHARE",
            )
            .bind(repo_id)
            .bind(&wanted)
            .fetch_all(&mut *tx)
            .await?;
            if let Some(missing) = first_missing(&m.required_blobs, present) {
                return Ok(PutManifestOutcome::MissingChild(missing));
            }
        }
        if !m.required_manifests.is_empty() {
            let wanted: Vec<String> = m.required_manifests.iter().map(Digest::to_string).collect();
            let present: Vec<String> = sqlx::query_scalar(
                "SELECT digest FROM manifests
                 WHERE repository_id = $1 AND digest = ANY($2)
                 ORDER BY digest FOR SHARE",
            )
            .bind(repo_id)
            .bind(&wanted)
            .fetch_all(&mut *tx)
            .await?;
            if let Some(missing) = first_missing(&m.required_manifests, present) {
                return Ok(PutManifestOutcome::MissingChild(missing));
            }
        }

        let now = now_ms();
        let r = &m.record;
        let digest = r.digest.to_string();
        // The same manifest pushed twice at once: the second insert waits, then does
        // nothing. If a delete of this manifest commits between this insert and the tag
        // upsert below, the tag's foreign key fails and the whole put is retried.
        let inserted = sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, payload, subject_digest, artifact_type, annotations, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(repo_id)
        .bind(&digest)
        .bind(&r.media_type)
        .bind(&r.payload)
        .bind(r.subject.as_ref().map(|s| s.to_string()))
        .bind(&r.artifact_type)
        .bind(&r.annotations)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted && has_children {
            let (children, is_manifest): (Vec<String>, Vec<bool>) = m
                .required_blobs
                .iter()
                .map(|d| (d.to_string(), false))
                .chain(m.required_manifests.iter().map(|d| (d.to_string(), true)))
                .unzip();
            sqlx::query(
                "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_is_manifest)
                 SELECT $1, $2, c.digest, c.is_manifest FROM UNNEST($3::TEXT[], $4::BOOLEAN[]) AS c (digest, is_manifest)
                 ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(&digest)
            .bind(&children)
            .bind(&is_manifest)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(tag) = &m.tag {
            // One upsert: two pushes of the same tag serialize on its row; the later
            // one moves it. Neither fails.
            sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repository_id, name) DO UPDATE
                 SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
            )
            .bind(repo_id)
            .bind(tag.as_str())
            .bind(&digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(PutManifestOutcome::Stored)
    }
}
