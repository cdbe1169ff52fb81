//! The statements both engines run the same way, written once.
//!
//! SQLite and PostgreSQL share the schema and, through sqlx, the `$n` placeholders, so
//! most statements have one text. sqlx's traits do not let one generic function run
//! on either engine without a wall of higher-ranked bounds, so [`engine_queries!`]
//! stamps the same functions out for each engine's `Database` and connection types
//! (`sqlite::queries`, `postgres::queries`). What differs between the engines —
//! SQLite's per-row child checks inside its group commit, PostgreSQL's `FOR SHARE`
//! locks, `ANY`/`UNNEST` arrays and retries — stays in their own `writes` modules.

/// PostgreSQL text cannot hold NUL. Strings that reach the store from a client
/// unvalidated (upload ids from the URL, `last=`, `artifactType=`) would make such a
/// query fail with an encoding error (a 500); no stored value contains NUL, so the
/// answer is known without asking. SQLite is given the same answer.
pub(super) fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// `last=` for a `name > last` comparison: stored names have no NUL (the smallest
/// byte), so comparing with the part before the first NUL gives the same answer.
pub(super) fn last_bound(last: Option<&str>) -> &str {
    let last = last.unwrap_or("");
    last.split('\0').next().unwrap_or("")
}

/// Defines, in the module it is invoked in, the shared statements for one engine:
/// `$db` its `sqlx::Database`, `$conn` its connection type, `$referrers_order` the
/// `ORDER BY` of the referrers query (digests compare bytewise: `COLLATE "C"` on
/// PostgreSQL, SQLite's default elsewhere).
macro_rules! engine_queries {
    ($db:ty, $conn:ty, $referrers_order:literal) => {
        use $crate::metadata::queries::{has_nul, last_bound};
        use $crate::metadata::rows::{
            chunks_json, records, BlobRow, ManifestRow, ReferrerRow, UploadRow,
        };
        use $crate::metadata::Result;
        use $crate::types::{
            BlobRecord, ChunkRecord, Digest, ManifestRecord, ReferrerRecord, RepoName, Tag,
            UploadRecord,
        };

        pub(super) async fn get_upload<'e, E>(e: E, id: &str) -> Result<Option<UploadRecord>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            if has_nul(id) {
                return Ok(None);
            }
            let row: Option<UploadRow> =
                sqlx::query_as("SELECT * FROM upload_sessions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(e)
                    .await?;
            row.map(UploadRecord::try_from).transpose()
        }

        pub(super) async fn stale_uploads<'e, E>(
            e: E,
            before: i64,
            limit: u32,
        ) -> Result<Vec<UploadRecord>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<UploadRow> = sqlx::query_as(
                "SELECT * FROM upload_sessions WHERE updated_at < $1 ORDER BY updated_at LIMIT $2",
            )
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(e)
            .await?;
            records(rows)
        }

        pub(super) async fn insert_upload<'e, E>(e: E, u: &UploadRecord) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query(
                "INSERT INTO upload_sessions (id, repository, received, storage_key, chunks, hash_state, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&u.id)
            .bind(u.repository.as_str())
            .bind(u.offset as i64)
            .bind(&u.storage_key)
            .bind(chunks_json(&u.chunks)?)
            .bind(&u.hash_state)
            .bind(u.created_at)
            .bind(u.updated_at)
            .execute(e)
            .await?;
            Ok(())
        }

        /// One statement: of several racing updates from the same offset exactly one
        /// matches (PostgreSQL re-checks `received` on the new row version after a
        /// row-lock wait; SQLite has one writer).
        pub(super) async fn advance_upload<'e, E>(
            e: E,
            id: &str,
            expected_offset: u64,
            new_offset: u64,
            chunks: &[ChunkRecord],
            hash_state: &[u8],
            now: i64,
        ) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            if has_nul(id) {
                return Ok(false);
            }
            let done = sqlx::query(
                "UPDATE upload_sessions SET received = $1, chunks = $2, hash_state = $3, updated_at = $4
                 WHERE id = $5 AND received = $6",
            )
            .bind(new_offset as i64)
            .bind(chunks_json(chunks)?)
            .bind(hash_state)
            .bind(now)
            .bind(id)
            .bind(expected_offset as i64)
            .execute(e)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// Deletes the session and returns it: only the caller that gets it back
        /// frees the session's data.
        pub(super) async fn take_upload<'e, E>(e: E, id: &str) -> Result<Option<UploadRecord>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            if has_nul(id) {
                return Ok(None);
            }
            let row: Option<UploadRow> =
                sqlx::query_as("DELETE FROM upload_sessions WHERE id = $1 RETURNING *")
                    .bind(id)
                    .fetch_optional(e)
                    .await?;
            row.map(UploadRecord::try_from).transpose()
        }

        /// Deletes the session; true if it was there.
        pub(super) async fn close_upload<'e, E>(e: E, id: &str) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            if has_nul(id) {
                return Ok(false);
            }
            let done = sqlx::query("DELETE FROM upload_sessions WHERE id = $1")
                .bind(id)
                .execute(e)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        pub(super) async fn repository_id<'e, E>(e: E, repo: &str) -> Result<Option<i64>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            Ok(
                sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
                    .bind(repo)
                    .fetch_optional(e)
                    .await?,
            )
        }

        /// The repository's id, creating the repository if needed. Two writers creating
        /// it at once: the second INSERT waits for the first and does nothing; the
        /// SELECT after it is a new statement, so it sees the row the first committed.
        pub(super) async fn ensure_repository(conn: &mut $conn, repo: &str) -> Result<i64> {
            if let Some(id) = repository_id(&mut *conn, repo).await? {
                return Ok(id);
            }
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO repositories (name, created_at) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(repo)
            .bind($crate::clock::now_ms())
            .fetch_optional(&mut *conn)
            .await?;
            match inserted {
                Some(id) => Ok(id),
                None => repository_id(&mut *conn, repo).await?.ok_or_else(|| {
                    $crate::metadata::MetadataError::Corrupt(format!(
                        "repository {repo:?} vanished"
                    ))
                }),
            }
        }

        pub(super) async fn list_repositories<'e, E>(
            e: E,
            last: Option<&str>,
            limit: u32,
        ) -> Result<Vec<String>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            Ok(sqlx::query_scalar(
                "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
            )
            .bind(last_bound(last))
            .bind(i64::from(limit))
            .fetch_all(e)
            .await?)
        }

        /// The record of `digest`, linked to a repository or not.
        pub(super) async fn blob<'e, E>(e: E, digest: &Digest) -> Result<Option<BlobRecord>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let row: Option<BlobRow> =
                sqlx::query_as("SELECT size, storage_key FROM blobs WHERE digest = $1")
                    .bind(digest.to_string())
                    .fetch_optional(e)
                    .await?;
            Ok(row.map(|r| r.into_record(digest)))
        }

        pub(super) async fn repo_blob<'e, E>(
            e: E,
            repo: &RepoName,
            digest: &Digest,
        ) -> Result<Option<BlobRecord>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let row: Option<BlobRow> = sqlx::query_as(
                "SELECT b.size, b.storage_key FROM blobs b
                 JOIN repository_blobs rb ON rb.digest = b.digest
                 JOIN repositories r ON r.id = rb.repository_id
                 WHERE r.name = $1 AND b.digest = $2",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(e)
            .await?;
            Ok(row.map(|r| r.into_record(digest)))
        }

        pub(super) async fn any_blob<'e, E>(e: E, digest: &Digest) -> Result<Option<BlobRecord>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let row: Option<BlobRow> = sqlx::query_as(
                "SELECT size, storage_key FROM blobs b WHERE digest = $1
                 AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)",
            )
            .bind(digest.to_string())
            .fetch_optional(e)
            .await?;
            Ok(row.map(|r| r.into_record(digest)))
        }

        /// Records the blob unless its digest is stored; true if this call stored it.
        pub(super) async fn insert_blob<'e, E>(e: E, blob: &BlobRecord) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(blob.digest.to_string())
            .bind(blob.size as i64)
            .bind(&blob.storage_key)
            .bind($crate::clock::now_ms())
            .execute(e)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// Links the blob to the repository; true if the link is new.
        pub(super) async fn link<'e, E>(e: E, repo_id: i64, digest: &Digest) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(digest.to_string())
            .bind($crate::clock::now_ms())
            .execute(e)
            .await?;
            Ok(done.rows_affected() > 0)
        }

        pub(super) async fn unlink<'e, E>(e: E, repo: &RepoName, digest: &Digest) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "DELETE FROM repository_blobs WHERE digest = $1
                 AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
            )
            .bind(digest.to_string())
            .bind(repo.as_str())
            .execute(e)
            .await?;
            Ok(done.rows_affected() > 0)
        }

        /// Stores the manifest unless it is there; true if this call stored it.
        pub(super) async fn insert_manifest<'e, E>(
            e: E,
            repo_id: i64,
            r: &ManifestRecord,
            now: i64,
        ) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "INSERT INTO manifests (repository_id, digest, media_type, payload, subject_digest, artifact_type, annotations, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(r.digest.to_string())
            .bind(&r.media_type)
            .bind(&r.payload)
            .bind(r.subject.as_ref().map(|s| s.to_string()))
            .bind(&r.artifact_type)
            .bind(&r.annotations)
            .bind(now)
            .execute(e)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// Points `tag` at `digest`. One upsert: two pushes of the same tag serialize
        /// on its row; the later one moves it, neither fails.
        pub(super) async fn upsert_tag<'e, E>(
            e: E,
            repo_id: i64,
            tag: &Tag,
            digest: &Digest,
            now: i64,
        ) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repository_id, name) DO UPDATE
                 SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
            )
            .bind(repo_id)
            .bind(tag.as_str())
            .bind(digest.to_string())
            .bind(now)
            .execute(e)
            .await?;
            Ok(())
        }

        pub(super) async fn manifest_by_digest<'e, E>(
            e: E,
            repo: &RepoName,
            digest: &Digest,
        ) -> Result<Option<ManifestRecord>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let row: Option<ManifestRow> = sqlx::query_as(
                "SELECT m.* FROM manifests m JOIN repositories r ON r.id = m.repository_id
                 WHERE r.name = $1 AND m.digest = $2",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(e)
            .await?;
            row.map(ManifestRecord::try_from).transpose()
        }

        pub(super) async fn manifest_by_tag<'e, E>(
            e: E,
            repo: &RepoName,
            tag: &Tag,
        ) -> Result<Option<ManifestRecord>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let row: Option<ManifestRow> = sqlx::query_as(
                "SELECT m.* FROM tags t
                 JOIN repositories r ON r.id = t.repository_id
                 JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
                 WHERE r.name = $1 AND t.name = $2",
            )
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_optional(e)
            .await?;
            row.map(ManifestRecord::try_from).transpose()
        }

        /// Deletes the manifest; its tags and references go with it (ON DELETE CASCADE).
        pub(super) async fn delete_manifest<'e, E>(
            e: E,
            repo: &RepoName,
            digest: &Digest,
        ) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "DELETE FROM manifests WHERE digest = $1
                 AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
            )
            .bind(digest.to_string())
            .bind(repo.as_str())
            .execute(e)
            .await?;
            Ok(done.rows_affected() > 0)
        }

        pub(super) async fn delete_tag<'e, E>(e: E, repo: &RepoName, tag: &Tag) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "DELETE FROM tags WHERE name = $1
                 AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
            )
            .bind(tag.as_str())
            .bind(repo.as_str())
            .execute(e)
            .await?;
            Ok(done.rows_affected() > 0)
        }

        /// Tags of `repo` after `last`, in byte order (`name` is `COLLATE "C"` on
        /// PostgreSQL, BINARY on SQLite); `None` if the repository does not exist.
        pub(super) async fn list_tags(
            pool: &sqlx::Pool<$db>,
            repo: &RepoName,
            last: Option<&str>,
            limit: u32,
        ) -> Result<Option<Vec<String>>> {
            let Some(repo_id) = repository_id(pool, repo.as_str()).await? else {
                return Ok(None);
            };
            let tags = sqlx::query_scalar(
                "SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3",
            )
            .bind(repo_id)
            .bind(last_bound(last))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            Ok(Some(tags))
        }

        pub(super) async fn referrers<'e, E>(
            e: E,
            repo: &RepoName,
            subject: &Digest,
            artifact_type: Option<&str>,
        ) -> Result<Vec<ReferrerRecord>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            if artifact_type.is_some_and(has_nul) {
                return Ok(Vec::new());
            }
            let rows: Vec<ReferrerRow> = sqlx::query_as(concat!(
                "SELECT m.digest, m.media_type, CAST(length(m.payload) AS BIGINT) AS size,
                        m.artifact_type, m.annotations
                 FROM manifests m JOIN repositories r ON r.id = m.repository_id
                 WHERE r.name = $1 AND m.subject_digest = $2
                   AND (CAST($3 AS TEXT) IS NULL OR m.artifact_type = $3)
                 ORDER BY ",
                $referrers_order
            ))
            .bind(repo.as_str())
            .bind(subject.to_string())
            .bind(artifact_type)
            .fetch_all(e)
            .await?;
            records(rows)
        }
    };
}

pub(super) use engine_queries;

/// `impl RepositoryStore for $store`, whose reads are the same on both engines:
/// `$pool` is the field holding the pool reads go to.
macro_rules! repository_store_impl {
    ($store:ty, $pool:ident) => {
        #[async_trait::async_trait]
        impl $crate::metadata::RepositoryStore for $store {
            async fn ping(&self) -> $crate::metadata::Result<()> {
                sqlx::query("SELECT 1").execute(&self.$pool).await?;
                Ok(())
            }

            async fn list_repositories(
                &self,
                last: Option<&str>,
                limit: u32,
            ) -> $crate::metadata::Result<Vec<String>> {
                queries::list_repositories(&self.$pool, last, limit).await
            }
        }
    };
}

pub(super) use repository_store_impl;
