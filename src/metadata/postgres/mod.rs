//! PostgreSQL metadata store: the one for several instances behind a load balancer.
//!
//! Owns the connection pool (`database.url`, `database.maxconnections`), the schema
//! (`migrations/postgres`, applied on open under sqlx's advisory lock, so instances
//! starting together migrate once) and the queries; the write transactions are in
//! `writes`.
//!
//! Concurrency model: every transaction runs at READ COMMITTED, asked for explicitly
//! (`BEGIN ISOLATION LEVEL READ COMMITTED`) so a server-wide default cannot change it.
//! Races between instances are settled by the database, not by reading first:
//! - inserts that may collide (`blobs`, `repositories`, links, manifests) are
//!   `INSERT … ON CONFLICT DO NOTHING` followed by a read in a *separate* statement
//!   (a new snapshot, so it sees the row the other transaction committed);
//! - tags are one upsert, so the last of two racing pushes wins and neither fails;
//! - `advance_upload` is an `UPDATE … WHERE received = $expected` (after a row-lock
//!   wait PostgreSQL re-checks the condition on the new row version, so of several
//!   racing updates exactly one matches), `delete_upload` is `DELETE … RETURNING`;
//! - `put_manifest` locks the rows that prove its children present (see `writes`).
//!
//! Deadlocks, serialization failures and the unique/foreign-key violations a race can
//! still produce are retried a few times (`retry`) so a client never sees a 500 for a
//! race it caused.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};

use super::*;
pub(super) use crate::clock::now_ms;
use crate::registry::digest::Digest;

mod writes;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a pooled connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Server-side limits for every pooled connection: no statement runs longer than
/// `statement_timeout`, none waits for a row lock longer than `lock_timeout`, and a
/// session that stops mid-transaction (a stuck instance) loses its locks after
/// `idle_in_transaction_session_timeout`.
const SESSION_LIMITS: [(&str, &str); 3] = [
    ("statement_timeout", "30s"),
    ("lock_timeout", "10s"),
    ("idle_in_transaction_session_timeout", "60s"),
];
/// Attempts of a write transaction that keeps losing races before the error is returned.
const MAX_ATTEMPTS: u32 = 6;

pub struct PostgresStore {
    pool: PgPool,
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e| MetadataError::Corrupt(format!("digest {s:?}: {e}")))
}

fn manifest_from_row(row: &PgRow) -> Result<ManifestRecord> {
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

fn upload_from_row(row: &PgRow) -> Result<UploadRecord> {
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

fn blob_from_row(digest: &Digest, row: &PgRow) -> Result<BlobRecord> {
    Ok(BlobRecord {
        digest: digest.clone(),
        size: row.try_get::<i64, _>("size")? as u64,
        storage_key: row.try_get("storage_key")?,
    })
}

fn chunks_json(chunks: &[ChunkRecord]) -> String {
    serde_json::to_string(chunks).unwrap_or_else(|_| "[]".into())
}

/// PostgreSQL text cannot hold NUL. Strings that reach the store from a client
/// unvalidated (upload ids from the URL, `last=`, `artifactType=`) would make the
/// query fail with an encoding error (a 500); no stored value contains NUL, so the
/// answer is known without asking.
fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// `last=` for a `name > last` comparison: stored names have no NUL (the smallest
/// byte), so comparing with the part before the first NUL gives the same answer.
fn last_bound(last: Option<&str>) -> &str {
    let last = last.unwrap_or("");
    last.split('\0').next().unwrap_or("")
}

/// True for the errors a race between transactions produces and a fresh attempt
/// resolves: serialization failure, deadlock, and unique or foreign-key violations
/// (a row another transaction inserted or deleted between our check and our write).
fn is_race(e: &MetadataError) -> bool {
    match e {
        MetadataError::Database(sqlx::Error::Database(db)) => matches!(
            db.code().as_deref(),
            Some("40001" | "40P01" | "23505" | "23503")
        ),
        _ => false,
    }
}

/// A short pause before attempt `attempt + 1`: exponential, with jitter so that the
/// transactions that collided do not collide again.
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = 2u64 << attempt.min(6);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    Duration::from_millis(base + h.finish() % base)
}

/// Runs `attempt` until it succeeds, fails with something other than a race, or has
/// lost `MAX_ATTEMPTS` races.
async fn retry<T, F, Fut>(op: &'static str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if n < MAX_ATTEMPTS && is_race(&e) => {
                tracing::debug!(op, attempt = n, error = %e, "transaction lost a race; retrying");
                tokio::time::sleep(backoff(n)).await;
                n += 1;
            }
            other => return other,
        }
    }
}

impl PostgresStore {
    /// Connects, applies pending migrations, and opens a pool of `pool_size` connections.
    pub async fn open(url: &str, pool_size: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("wharf");
        // Migrations run on a connection of their own, without the statement timeout
        // (a future migration may build an index on a large table). Closing it also
        // releases sqlx's advisory lock should a migration fail half-way.
        let mut conn = PgConnection::connect_with(&options).await?;
        let migrated = MIGRATOR.run(&mut conn).await;
        let _ = conn.close().await;
        migrated?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(300))
            .max_lifetime(Duration::from_secs(1800))
            .connect_with(options.options(SESSION_LIMITS))
            .await?;
        Ok(PostgresStore { pool })
    }

    /// The pool, for callers that need their own queries (tests, maintenance).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?)
    }
}

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_upload(&self, u: &UploadRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO upload_sessions (id, repository, received, storage_key, chunks, hash_state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&u.id)
        .bind(u.repository.as_str())
        .bind(u.offset as i64)
        .bind(&u.storage_key)
        .bind(chunks_json(&u.chunks))
        .bind(&u.hash_state)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        if has_nul(id) {
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM upload_sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
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
        if has_nul(id) {
            return Ok(false);
        }
        let chunks = chunks_json(chunks);
        // One statement: of several racing updates from the same offset, the first
        // to lock the row wins; the others re-check `received` after waiting and
        // match nothing. No retry: losing is the answer the caller needs.
        let done = sqlx::query(
            "UPDATE upload_sessions SET received = $1, chunks = $2, hash_state = $3, updated_at = $4
             WHERE id = $5 AND received = $6",
        )
        .bind(new_offset as i64)
        .bind(&chunks)
        .bind(hash_state)
        .bind(now)
        .bind(id)
        .bind(expected_offset as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        if has_nul(id) {
            return Ok(None);
        }
        // Only the instance whose DELETE returns the row purges the session's data.
        let row = sqlx::query("DELETE FROM upload_sessions WHERE id = $1 RETURNING *")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM upload_sessions WHERE updated_at < $1 ORDER BY updated_at LIMIT $2",
        )
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(upload_from_row).collect()
    }

    async fn commit_blob(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
    ) -> Result<BlobCommit> {
        retry("commit_blob", || self.tx_commit_blob(repo, blob, upload_id)).await
    }

    async fn repo_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobRecord>> {
        let row = sqlx::query(
            "SELECT b.size, b.storage_key FROM blobs b
             JOIN repository_blobs rb ON rb.digest = b.digest
             JOIN repositories r ON r.id = rb.repository_id
             WHERE r.name = $1 AND b.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| blob_from_row(digest, &r)).transpose()
    }

    async fn any_blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let row = sqlx::query(
            "SELECT size, storage_key FROM blobs b WHERE digest = $1
             AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)",
        )
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| blob_from_row(digest, &r)).transpose()
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        retry("link_blob", || self.tx_link_blob(repo, digest)).await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        retry("unlink_blob", || async {
            let done = sqlx::query(
                "DELETE FROM repository_blobs WHERE digest = $1
                 AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
            )
            .bind(digest.to_string())
            .bind(repo.as_str())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn put_manifest(&self, repo: &RepoName, m: &NewManifest) -> Result<PutManifestOutcome> {
        retry("put_manifest", || self.tx_put_manifest(repo, m)).await
    }

    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.* FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.* FROM tags t
             JOIN repositories r ON r.id = t.repository_id
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        // Tags and references go with it (ON DELETE CASCADE). The cascade locks tag
        // rows a concurrent push may hold: a deadlock is retried.
        retry("delete_manifest", || async {
            let done = sqlx::query(
                "DELETE FROM manifests WHERE digest = $1
                 AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
            )
            .bind(digest.to_string())
            .bind(repo.as_str())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        retry("delete_tag", || async {
            let done = sqlx::query(
                "DELETE FROM tags WHERE name = $1
                 AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
            )
            .bind(tag.as_str())
            .bind(repo.as_str())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<String>>> {
        let repo_id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
                .bind(repo.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let Some(repo_id) = repo_id else {
            return Ok(None);
        };
        // `name` is COLLATE "C": byte order, as the spec and SQLite have it.
        let tags = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(repo_id)
        .bind(last_bound(last))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(tags))
    }

    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(last_bound(last))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>> {
        if artifact_type.is_some_and(has_nul) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, octet_length(m.payload)::BIGINT AS size,
                    m.artifact_type, m.annotations
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = $1 AND m.subject_digest = $2
               AND ($3::TEXT IS NULL OR m.artifact_type = $3)
             ORDER BY m.created_at, m.digest COLLATE \"C\"",
        )
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .fetch_all(&self.pool)
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
