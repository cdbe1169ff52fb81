//! SQLite metadata store: the embedded default, for a single instance.
//!
//! Reads go to a pool of read-only connections over WAL; every write goes through one
//! writer connection with group commit (`group_commit`; SQLite has one writer at a time,
//! so serializing in-process avoids busy-retry storms and lets one fsync cover a batch).
//! `synchronous = FULL`: every acknowledged write is on disk. Several processes on one
//! database file are not a supported deployment (use PostgreSQL for that), so the store
//! holds an exclusive lock on `<database>.lock` while it is open (`lock`): a second
//! process is refused before it touches the database.
//!
//! The statements are the shared ones (`metadata::queries`); `writes` composes the
//! multi-statement writes as group-commit jobs.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions as _;

use super::{
    BlobCommit, BlobIndex, ManifestStore, MetadataError, NewManifest, PutManifestOutcome, Result,
    UploadStore,
};
use crate::types::{
    BlobRecord, ChunkRecord, Digest, EventRecord, ManifestRecord, ReferrerRecord, RepoName, Tag,
    UploadRecord,
};

mod events;
mod gc;
mod group_commit;
mod handoff;
mod import;
mod lock;
mod mirror;
mod outbox;
mod quota;
mod signatures;
mod writes;

/// The shared statements, for SQLite.
mod queries {
    crate::metadata::queries::engine_queries!(
        sqlx::Sqlite,
        sqlx::SqliteConnection,
        "m.created_at, m.digest"
    );
}

/// The quota statements, for SQLite.
mod quota_sql {
    crate::metadata::quota_queries::quota_queries!(
        sqlx::Sqlite,
        sqlx::SqliteConnection,
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        ""
    );
}

/// The garbage collector's statements, for SQLite (one writer: no row locks).
mod gc_sql {
    crate::metadata::gc::gc_queries!(
        sqlx::Sqlite,
        sqlx::SqliteConnection,
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        "max",
        "",
        ""
    );
}

use group_commit::GroupCommitter;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    writer: GroupCommitter,
    reader: SqlitePool,
    /// Held until the store is dropped (or the process ends).
    _lock: Option<lock::DatabaseLock>,
}

/// The database file `url` names, unless it is an in-memory database.
pub(crate) fn database_path(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let in_memory =
        path.as_os_str().is_empty() || url.contains(":memory:") || url.contains("mode=memory");
    (!in_memory).then(|| path.to_path_buf())
}

impl SqliteStore {
    pub async fn open(url: &str, pool_size: u32, acquire_timeout: Duration) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // As on PostgreSQL: statements logged only when slow.
            .log_statements(log::LevelFilter::Off);
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| MetadataError::Database(Box::new(e)))?;
            }
        }
        let lock = match database_path(url) {
            Some(path) => Some(lock::DatabaseLock::acquire(&path)?),
            None => None,
        };
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
            .acquire_timeout(acquire_timeout)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            _lock: lock,
        })
    }
}

#[async_trait]
impl UploadStore for SqliteStore {
    async fn create_upload(&self, u: &UploadRecord) -> Result<()> {
        let u = u.clone();
        self.writer
            .write(move |conn| Box::pin(async move { queries::insert_upload(conn, &u).await }))
            .await
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        queries::get_upload(&self.reader, id).await
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
        let (id, chunks, hash_state) = (id.to_string(), chunks.to_vec(), hash_state.to_vec());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    queries::advance_upload(
                        conn,
                        &id,
                        expected_offset,
                        new_offset,
                        &chunks,
                        &hash_state,
                        now,
                    )
                    .await
                })
            })
            .await
    }

    async fn delete_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        let id = id.to_string();
        self.writer
            .write(move |conn| Box::pin(async move { queries::take_upload(conn, &id).await }))
            .await
    }

    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>> {
        queries::stale_uploads(&self.reader, before, limit).await
    }
}

#[async_trait]
impl BlobIndex for SqliteStore {
    async fn commit_blob(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
        events: &[EventRecord],
    ) -> Result<BlobCommit> {
        writes::commit_blob(&self.writer, repo, blob, upload_id, events).await
    }

    async fn repo_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobRecord>> {
        queries::repo_blob(&self.reader, repo, digest).await
    }

    async fn any_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        queries::any_blob(&self.reader, digest).await
    }

    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        writes::link_blob(&self.writer, repo, digest, events).await
    }

    async fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        let (repo, digest, events) = (repo.clone(), digest.clone(), events.to_vec());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = queries::unlink(&mut *conn, &repo, &digest).await?;
                    writes::append_events_if(conn, done, &events).await?;
                    Ok(done)
                })
            })
            .await
    }
}

#[async_trait]
impl ManifestStore for SqliteStore {
    async fn put_manifest(
        &self,
        repo: &RepoName,
        m: &NewManifest,
        events: &[EventRecord],
    ) -> Result<PutManifestOutcome> {
        writes::put_manifest(&self.writer, repo, m, events).await
    }

    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        queries::manifest_by_digest(&self.reader, repo, digest).await
    }

    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>> {
        queries::manifest_by_tag(&self.reader, repo, tag).await
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventRecord],
    ) -> Result<bool> {
        let (repo, digest, events) = (repo.clone(), digest.clone(), events.to_vec());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = queries::delete_manifest(&mut *conn, &repo, &digest).await?;
                    writes::append_events_if(conn, done, &events).await?;
                    Ok(done)
                })
            })
            .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[EventRecord]) -> Result<bool> {
        let (repo, tag, events) = (repo.clone(), tag.clone(), events.to_vec());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = queries::delete_tag(&mut *conn, &repo, &tag).await?;
                    writes::append_events_if(conn, done, &events).await?;
                    Ok(done)
                })
            })
            .await
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<String>>> {
        queries::list_tags(&self.reader, repo, last, limit).await
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>> {
        queries::referrers(&self.reader, repo, subject, artifact_type).await
    }
}

crate::metadata::queries::repository_store_impl!(SqliteStore, reader);
