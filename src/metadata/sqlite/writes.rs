//! The SQLite store's write operations, each one job for the group committer (see
//! `group_commit`): statements on the writer connection, committed with their batch.

use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

use super::{chunks_json, now_ms, SqliteStore};
use crate::metadata::*;
use crate::registry::digest::Digest;
use crate::registry::name::{RepoName, Tag};

async fn ensure_repository(conn: &mut SqliteConnection, repo: &str) -> Result<i64> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
    )
    .bind(repo)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repo)
            .fetch_one(&mut *conn)
            .await?,
    )
}

async fn link(conn: &mut SqliteConnection, repo_id: i64, digest: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)
         ON CONFLICT DO NOTHING",
    )
    .bind(repo_id)
    .bind(digest)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl SqliteStore {
    pub(super) async fn write_create_upload(&self, u: &UploadRecord) -> Result<()> {
        let u = u.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO upload_sessions (id, repository, received, storage_key, chunks, hash_state, created_at, updated_at)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(&u.id)
                    .bind(u.repository.as_str())
                    .bind(u.offset as i64)
                    .bind(&u.storage_key)
                    .bind(chunks_json(&u.chunks))
                    .bind(&u.hash_state)
                    .bind(u.created_at)
                    .bind(u.updated_at)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    pub(super) async fn write_advance_upload(
        &self,
        id: &str,
        expected_offset: u64,
        new_offset: u64,
        chunks: &[ChunkRecord],
        hash_state: &[u8],
        now: i64,
    ) -> Result<bool> {
        let (id, chunks, hash_state) = (id.to_string(), chunks_json(chunks), hash_state.to_vec());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "UPDATE upload_sessions SET received = ?, chunks = ?, hash_state = ?, updated_at = ?
                         WHERE id = ? AND received = ?",
                    )
                    .bind(new_offset as i64)
                    .bind(chunks)
                    .bind(hash_state)
                    .bind(now)
                    .bind(id)
                    .bind(expected_offset as i64)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected() == 1)
                })
            })
            .await
    }

    pub(super) async fn write_delete_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        let id = id.to_string();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let row = sqlx::query("DELETE FROM upload_sessions WHERE id = ? RETURNING *")
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                    row.as_ref().map(super::upload_from_row).transpose()
                })
            })
            .await
    }

    pub(super) async fn write_commit_blob(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
    ) -> Result<BlobCommit> {
        let (repo, blob, upload_id) = (
            repo.to_string(),
            blob.clone(),
            upload_id.map(str::to_string),
        );
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    if let Some(id) = upload_id {
                        let closed = sqlx::query("DELETE FROM upload_sessions WHERE id = ?")
                            .bind(id)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                        if closed == 0 {
                            return Err(MetadataError::UploadGone);
                        }
                    }
                    let repo_id = ensure_repository(conn, &repo).await?;
                    let digest = blob.digest.to_string();
                    let inserted = sqlx::query(
                        "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES (?, ?, ?, ?)
                         ON CONFLICT (digest) DO NOTHING",
                    )
                    .bind(&digest)
                    .bind(blob.size as i64)
                    .bind(&blob.storage_key)
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                        == 1;
                    let stored = if inserted {
                        blob.clone()
                    } else {
                        let row = sqlx::query("SELECT size, storage_key FROM blobs WHERE digest = ?")
                            .bind(&digest)
                            .fetch_one(&mut *conn)
                            .await?;
                        BlobRecord {
                            digest: blob.digest.clone(),
                            size: row.try_get::<i64, _>("size")? as u64,
                            storage_key: row.try_get("storage_key")?,
                        }
                    };
                    link(conn, repo_id, &digest).await?;
                    Ok(BlobCommit {
                        blob: stored,
                        stored_new: inserted,
                    })
                })
            })
            .await
    }

    pub(super) async fn write_link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let exists: Option<i64> =
                        sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = ?")
                            .bind(&digest)
                            .fetch_optional(&mut *conn)
                            .await?;
                    if exists.is_none() {
                        return Ok(false);
                    }
                    let repo_id = ensure_repository(conn, &repo).await?;
                    link(conn, repo_id, &digest).await?;
                    Ok(true)
                })
            })
            .await
    }

    pub(super) async fn write_unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.delete_in_repo("repository_blobs", "digest", digest.to_string(), repo)
            .await
    }

    pub(super) async fn write_put_manifest(
        &self,
        repo: &RepoName,
        m: &NewManifest,
    ) -> Result<PutManifestOutcome> {
        let (repo, m) = (repo.to_string(), m.clone());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    // Children are checked before the repository is created, so a refused
                    // manifest leaves no trace (not even a new, empty repository).
                    let existing: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
                            .bind(&repo)
                            .fetch_optional(&mut *conn)
                            .await?;
                    let repo_id = match existing {
                        Some(id) => id,
                        None => {
                            let first_missing =
                                m.required_blobs.iter().chain(&m.required_manifests).next();
                            if let Some(d) = first_missing {
                                return Ok(PutManifestOutcome::MissingChild(d.clone()));
                            }
                            ensure_repository(conn, &repo).await?
                        }
                    };
                    for d in &m.required_blobs {
                        let present: Option<i64> = sqlx::query_scalar(
                            "SELECT 1 FROM repository_blobs WHERE repository_id = ? AND digest = ?",
                        )
                        .bind(repo_id)
                        .bind(d.to_string())
                        .fetch_optional(&mut *conn)
                        .await?;
                        if present.is_none() {
                            return Ok(PutManifestOutcome::MissingChild(d.clone()));
                        }
                    }
                    for d in &m.required_manifests {
                        let present: Option<i64> = sqlx::query_scalar(
                            "SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?",
                        )
                        .bind(repo_id)
                        .bind(d.to_string())
                        .fetch_optional(&mut *conn)
                        .await?;
                        if present.is_none() {
                            return Ok(PutManifestOutcome::MissingChild(d.clone()));
                        }
                    }
                    let now = now_ms();
                    let r = &m.record;
                    let digest = r.digest.to_string();
                    let inserted = sqlx::query(
                        "INSERT INTO manifests (repository_id, digest, media_type, payload, subject_digest, artifact_type, annotations, created_at)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    )
                    .bind(repo_id)
                    .bind(&digest)
                    .bind(&r.media_type)
                    .bind(&r.payload)
                    .bind(r.subject.as_ref().map(|s| s.to_string()))
                    .bind(&r.artifact_type)
                    .bind(&r.annotations)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                        == 1;
                    if inserted {
                        let children = m
                            .required_blobs
                            .iter()
                            .map(|d| (d, false))
                            .chain(m.required_manifests.iter().map(|d| (d, true)));
                        for (child, is_manifest) in children {
                            sqlx::query(
                                "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_is_manifest)
                                 VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                            )
                            .bind(repo_id)
                            .bind(&digest)
                            .bind(child.to_string())
                            .bind(is_manifest)
                            .execute(&mut *conn)
                            .await?;
                        }
                    }
                    if let Some(tag) = &m.tag {
                        sqlx::query(
                            "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?)
                             ON CONFLICT (repository_id, name) DO UPDATE
                             SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
                        )
                        .bind(repo_id)
                        .bind(tag.as_str())
                        .bind(&digest)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(PutManifestOutcome::Stored)
                })
            })
            .await
    }

    pub(super) async fn write_delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool> {
        // Tags and references go with it (ON DELETE CASCADE).
        self.delete_in_repo("manifests", "digest", digest.to_string(), repo)
            .await
    }

    pub(super) async fn write_delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        self.delete_in_repo("tags", "name", tag.to_string(), repo)
            .await
    }

    /// Deletes the row of `table` whose `column` is `key` in repository `repo`; true if
    /// one was there. `table` and `column` are always literals of this file.
    async fn delete_in_repo(
        &self,
        table: &'static str,
        column: &'static str,
        key: String,
        repo: &RepoName,
    ) -> Result<bool> {
        let repo = repo.to_string();
        let sql = format!(
            "DELETE FROM {table} WHERE {column} = ?
             AND repository_id = (SELECT id FROM repositories WHERE name = ?)"
        );
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query(&sql)
                        .bind(key)
                        .bind(repo)
                        .execute(&mut *conn)
                        .await?;
                    Ok(done.rows_affected() > 0)
                })
            })
            .await
    }
}
