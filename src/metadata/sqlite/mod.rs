//! SQLite metadata store: the embedded default, for a single instance.
//!
//! One writer connection (SQLite has one writer at a time; serializing in-process avoids
//! busy-retry storms) and a pool of readers over WAL. `synchronous = FULL`: every
//! acknowledged write is on disk. Several processes on one database file are not a
//! supported deployment; use PostgreSQL for that.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::*;
use crate::registry::digest::Digest;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e| MetadataError::Corrupt(format!("digest {s:?}: {e}")))
}

fn manifest_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ManifestRecord> {
    let subject: Option<String> = row.try_get("subject_digest")?;
    Ok(ManifestRecord {
        digest: parse_digest(row.try_get("digest")?)?,
        media_type: row.try_get("media_type")?,
        payload: row.try_get("payload")?,
        subject: subject.as_deref().map(parse_digest).transpose()?,
        artifact_type: row.try_get("artifact_type")?,
        annotations: row.try_get("annotations")?,
    })
}

fn upload_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<UploadRecord> {
    let repository: String = row.try_get("repository")?;
    let chunks: String = row.try_get("chunks")?;
    Ok(UploadRecord {
        id: row.try_get("id")?,
        repository: RepoName::parse(&repository)
            .map_err(|e| MetadataError::Corrupt(e.to_string()))?,
        offset: row.try_get::<i64, _>("received")? as u64,
        storage_key: row.try_get("storage_key")?,
        chunks: serde_json::from_str(&chunks)
            .map_err(|e| MetadataError::Corrupt(format!("upload chunks: {e}")))?,
        hash_state: row.try_get("hash_state")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn chunks_json(chunks: &[ChunkRecord]) -> String {
    serde_json::to_string(chunks).unwrap_or_else(|_| "[]".into())
}

impl SqliteStore {
    pub async fn open(url: &str, pool_size: u32) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
            }
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(pool_size.max(1))
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn ensure_repository(tx: &mut Transaction<'_, Sqlite>, repo: &RepoName) -> Result<i64> {
        sqlx::query("INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(repo.as_str())
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repo.as_str())
            .fetch_one(&mut **tx)
            .await?;
        Ok(id)
    }

    async fn repository_id(pool: &SqlitePool, repo: &RepoName) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repo.as_str())
            .fetch_optional(pool)
            .await?)
    }
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_upload(&self, u: &UploadRecord) -> Result<()> {
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
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        let row = sqlx::query("SELECT * FROM upload_sessions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn advance_upload(
        &self,
        id: &str,
        expected_offset: u64,
        new_offset: u64,
        chunks: &[ChunkRecord],
        hash_state: &[u8],
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE upload_sessions SET received = ?, chunks = ?, hash_state = ?, updated_at = ?
             WHERE id = ? AND received = ?",
        )
        .bind(new_offset as i64)
        .bind(chunks_json(chunks))
        .bind(hash_state)
        .bind(now)
        .bind(id)
        .bind(expected_offset as i64)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        let row = sqlx::query("DELETE FROM upload_sessions WHERE id = ? RETURNING *")
            .bind(id)
            .fetch_optional(&self.writer)
            .await?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM upload_sessions WHERE updated_at < ? ORDER BY updated_at LIMIT ?",
        )
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(upload_from_row).collect()
    }

    async fn commit_blob(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
    ) -> Result<BlobCommit> {
        let mut tx = self.writer.begin().await?;
        let repo_id = Self::ensure_repository(&mut tx, repo).await?;
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(blob.digest.to_string())
        .bind(blob.size as i64)
        .bind(&blob.storage_key)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let stored = if inserted {
            blob.clone()
        } else {
            let row = sqlx::query("SELECT size, storage_key FROM blobs WHERE digest = ?")
                .bind(blob.digest.to_string())
                .fetch_one(&mut *tx)
                .await?;
            BlobRecord {
                digest: blob.digest.clone(),
                size: row.try_get::<i64, _>("size")? as u64,
                storage_key: row.try_get("storage_key")?,
            }
        };
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(repo_id)
        .bind(blob.digest.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(id) = upload_id {
            sqlx::query("DELETE FROM upload_sessions WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(BlobCommit {
            blob: stored,
            stored_new: inserted,
        })
    }

    async fn repo_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobRecord>> {
        let row = sqlx::query(
            "SELECT b.size, b.storage_key FROM blobs b
             JOIN repository_blobs rb ON rb.digest = b.digest
             JOIN repositories r ON r.id = rb.repository_id
             WHERE r.name = ? AND b.digest = ?",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok(BlobRecord {
                digest: digest.clone(),
                size: r.try_get::<i64, _>("size")? as u64,
                storage_key: r.try_get("storage_key")?,
            })
        })
        .transpose()
    }

    async fn any_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let row = sqlx::query(
            "SELECT size, storage_key FROM blobs b WHERE digest = ?
             AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)",
        )
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| {
            Ok(BlobRecord {
                digest: digest.clone(),
                size: r.try_get::<i64, _>("size")? as u64,
                storage_key: r.try_get("storage_key")?,
            })
        })
        .transpose()
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = ?")
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let repo_id = Self::ensure_repository(&mut tx, repo).await?;
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(repo_id)
        .bind(digest.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = ?
             AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(digest.to_string())
        .bind(repo.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        m: &NewManifest,
    ) -> Result<PutManifestOutcome> {
        let mut tx = self.writer.begin().await?;
        let repo_id = Self::ensure_repository(&mut tx, repo).await?;
        for d in &m.required_blobs {
            let present: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM repository_blobs WHERE repository_id = ? AND digest = ?",
            )
            .bind(repo_id)
            .bind(d.to_string())
            .fetch_optional(&mut *tx)
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
            .fetch_optional(&mut *tx)
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
        .execute(&mut *tx)
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
                .execute(&mut *tx)
                .await?;
            }
        }
        if let Some(tag) = &m.tag {
            sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (repository_id, name) DO UPDATE SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
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

    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.* FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ? AND m.digest = ?",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.* FROM tags t
             JOIN repositories r ON r.id = t.repository_id
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
             WHERE r.name = ? AND t.name = ?",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let Some(repo_id) = Self::repository_id(&self.writer, repo).await? else {
            return Ok(false);
        };
        // Tags and references go with it (ON DELETE CASCADE).
        let done = sqlx::query("DELETE FROM manifests WHERE repository_id = ? AND digest = ?")
            .bind(repo_id)
            .bind(digest.to_string())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM tags WHERE name = ?
             AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(tag.as_str())
        .bind(repo.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<String>>> {
        let Some(repo_id) = Self::repository_id(&self.reader, repo).await? else {
            return Ok(None);
        };
        let tags = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?",
        )
        .bind(repo_id)
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        Ok(Some(tags))
    }

    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?",
        )
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, length(m.payload) AS size, m.artifact_type, m.annotations
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ? AND m.subject_digest = ? AND (? IS NULL OR m.artifact_type = ?)
             ORDER BY m.created_at, m.digest",
        )
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .bind(artifact_type)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReferrerRecord {
                    digest: parse_digest(r.try_get("digest")?)?,
                    media_type: r.try_get("media_type")?,
                    size: r.try_get::<i64, _>("size")? as u64,
                    artifact_type: r.try_get("artifact_type")?,
                    annotations: r.try_get("annotations")?,
                })
            })
            .collect()
    }
}
