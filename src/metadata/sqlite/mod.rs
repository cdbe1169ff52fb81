//! SQLite metadata store: the embedded default, for a single instance.
//!
//! Reads go to a pool of read-only connections over WAL; every write goes through one
//! writer connection with group commit (`group_commit`; SQLite has one writer at a time,
//! so serializing in-process avoids busy-retry storms and lets one fsync cover a batch).
//! `synchronous = FULL`: every acknowledged write is on disk. Several processes on one database file are not a
//! supported deployment; use PostgreSQL for that.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use super::*;
use crate::registry::digest::Digest;

mod group_commit;
mod writes;

pub(super) use crate::clock::now_ms;
use group_commit::GroupCommitter;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    writer: GroupCommitter,
    reader: SqlitePool,
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

pub(super) fn upload_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<UploadRecord> {
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

pub(super) fn chunks_json(chunks: &[ChunkRecord]) -> String {
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
        // Migrations run on their own connection before the writer starts.
        let migrations = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&migrations).await?;
        migrations.close().await;
        let writer = GroupCommitter::start(options.clone()).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(pool_size.max(1))
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    async fn repository_id(pool: &SqlitePool, repo: &RepoName) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
                .bind(repo.as_str())
                .fetch_optional(pool)
                .await?,
        )
    }
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_upload(&self, u: &UploadRecord) -> Result<()> {
        self.write_create_upload(u).await
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
        self.write_advance_upload(id, expected_offset, new_offset, chunks, hash_state, now)
            .await
    }

    async fn delete_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        self.write_delete_upload(id).await
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
        self.write_commit_blob(repo, blob, upload_id).await
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
        self.write_link_blob(repo, digest).await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.write_unlink_blob(repo, digest).await
    }

    async fn put_manifest(&self, repo: &RepoName, m: &NewManifest) -> Result<PutManifestOutcome> {
        self.write_put_manifest(repo, m).await
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
        self.write_delete_manifest(repo, digest).await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        self.write_delete_tag(repo, tag).await
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
        Ok(
            sqlx::query_scalar(
                "SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?",
            )
            .bind(last.unwrap_or(""))
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await?,
        )
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
