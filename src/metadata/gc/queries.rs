//! The garbage collector's statements ([`super::GcStore`]), written once for both
//! engines as [`gc_queries!`] stamps them out: the review transactions and their
//! re-checks of liveness (the rules in `super`'s doc), tombstones, and the reads of the
//! orphan sweep and retention.

/// Defines, in the module it is invoked in, the GC statements for one engine. They
/// differ between engines only in the clock, `GREATEST`, and the row locks (SQLite's
/// one writer needs none); `$now` is the engine's "now, Unix ms" expression, `$max` its
/// two-argument maximum, `$for_update` / `$skip_locked` the locking clauses or `""`.
macro_rules! gc_queries {
    ($db:ty, $conn:ty, $now:literal, $max:literal, $for_update:literal, $skip_locked:literal) => {
        use std::collections::HashSet;

        use $crate::metadata::gc::{
            ManifestInfo, QueueDepth, RepoSnapshot, ReviewBatch, ReviewPreview, TagInfo,
            Tombstone,
        };
        use $crate::metadata::rows::parse_digest;
        use $crate::metadata::Result;
        use $crate::types::{ChunkRecord, Digest, RepoName, Tag};

        /// The SQL that says whether manifest ($1 repository id, $2 digest) is reachable.
        const REACHABLE: &str = "(EXISTS (SELECT 1 FROM tags t
                 WHERE t.repository_id = $1 AND t.manifest_digest = $2)
             OR EXISTS (SELECT 1 FROM manifest_references r
                 WHERE r.repository_id = $1 AND r.child_digest = $2)
             OR EXISTS (SELECT 1 FROM manifests m
                 JOIN manifests s ON s.repository_id = m.repository_id AND s.digest = m.subject_digest
                 WHERE m.repository_id = $1 AND m.digest = $2))";

        fn repo_name(name: &str) -> Result<RepoName> {
            RepoName::parse(name).map_err(|e| {
                $crate::metadata::MetadataError::Corrupt(format!("repository {name:?}: {e}"))
            })
        }

        /// Due manifest reviews, oldest first, claimed (locked, skipping those another
        /// transaction holds) where the engine has row locks.
        pub(super) async fn claim_manifest_reviews(
            conn: &mut $conn,
            delay_ms: i64,
            limit: u32,
        ) -> Result<Vec<(i64, String)>> {
            let mut rows: Vec<(i64, String)> = sqlx::query_as(concat!(
                "SELECT repository_id, digest FROM gc_manifest_reviews
                 WHERE event_at <= ", $now, " - $1 ORDER BY event_at LIMIT $2", $skip_locked
            ))
            .bind(delay_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            // One lock order for every transaction: no deadlocks among GC batches.
            rows.sort();
            Ok(rows)
        }

        pub(super) async fn claim_blob_reviews(
            conn: &mut $conn,
            delay_ms: i64,
            limit: u32,
        ) -> Result<Vec<String>> {
            let mut rows: Vec<String> = sqlx::query_scalar(concat!(
                "SELECT digest FROM gc_blob_reviews
                 WHERE event_at <= ", $now, " - $1 ORDER BY event_at LIMIT $2", $skip_locked
            ))
            .bind(delay_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
            rows.sort();
            Ok(rows)
        }

        /// Re-checks and (if unreachable) deletes one manifest; true if deleted. The row
        /// lock comes first, so every check after it sees what committed before it and
        /// nothing can add a reference until this transaction ends.
        pub(super) async fn collect_manifest(
            conn: &mut $conn,
            repo_id: i64,
            digest: &str,
        ) -> Result<bool> {
            let present: Option<i32> = sqlx::query_scalar(concat!(
                "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2",
                $for_update
            ))
            .bind(repo_id)
            .bind(digest)
            .fetch_optional(&mut *conn)
            .await?;
            if present.is_none() {
                return Ok(false);
            }
            let reachable: bool = sqlx::query_scalar(&format!("SELECT {REACHABLE}"))
                .bind(repo_id)
                .bind(digest)
                .fetch_one(&mut *conn)
                .await?;
            if reachable {
                return Ok(false);
            }
            $crate::clock::race_point("gc.manifest.decided", digest).await;
            sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
                .bind(repo_id)
                .bind(digest)
                .execute(&mut *conn)
                .await?;
            Ok(true)
        }

        /// Whether manifest (`repo_id`, `digest`) is reachable now (PostgreSQL locks the
        /// manifests it reviews first, then asks; see `postgres::gc`).
        #[allow(dead_code)] // PostgreSQL's lock ordering only.
        pub(super) async fn is_reachable(conn: &mut $conn, repo_id: i64, digest: &str) -> Result<bool> {
            Ok(sqlx::query_scalar(&format!("SELECT {REACHABLE}"))
                .bind(repo_id)
                .bind(digest)
                .fetch_one(&mut *conn)
                .await?)
        }

        /// The repository's name.
        pub(super) async fn repository_name(conn: &mut $conn, repo_id: i64) -> Result<RepoName> {
            let name: String = sqlx::query_scalar("SELECT name FROM repositories WHERE id = $1")
                .bind(repo_id)
                .fetch_one(&mut *conn)
                .await?;
            repo_name(&name)
        }

        /// Settles one manifest review (claimed by the caller).
        pub(super) async fn review_manifest(
            conn: &mut $conn,
            repo_id: i64,
            digest: &str,
            batch: &mut ReviewBatch,
        ) -> Result<()> {
            let deleted = collect_manifest(conn, repo_id, digest).await?;
            sqlx::query("DELETE FROM gc_manifest_reviews WHERE repository_id = $1 AND digest = $2")
                .bind(repo_id)
                .bind(digest)
                .execute(&mut *conn)
                .await?;
            batch.reviewed += 1;
            if deleted {
                let repo = repository_name(conn, repo_id).await?;
                batch.manifests.push((repo, parse_digest(digest)?));
            } else {
                batch.kept += 1;
            }
            Ok(())
        }

        /// Settles one blob review (claimed by the caller): see [`GcStore::review_blobs`].
        pub(super) async fn review_blob(
            conn: &mut $conn,
            digest: &str,
            batch: &mut ReviewBatch,
        ) -> Result<()> {
            batch.reviewed += 1;
            // The blob's row first: while it is locked no link to it can be added (a
            // link's foreign key takes a KEY SHARE lock on it).
            let blob: Option<(i64, String)> = sqlx::query_as(concat!(
                "SELECT size, storage_key FROM blobs WHERE digest = $1",
                $for_update
            ))
            .bind(digest)
            .fetch_optional(&mut *conn)
            .await?;
            let mut kept = true;
            if let Some((size, storage_key)) = blob {
                // Then its links, in repository order (a manifest put holding one FOR
                // SHARE makes this wait for its commit; see registry::gc).
                let _: Vec<i64> = sqlx::query_scalar(concat!(
                    "SELECT repository_id FROM repository_blobs WHERE digest = $1
                     ORDER BY repository_id",
                    $for_update
                ))
                .bind(digest)
                .fetch_all(&mut *conn)
                .await?;
                // A new statement: it sees every reference committed before the locks.
                let unlinked: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM repository_blobs WHERE digest = $1
                     AND NOT EXISTS (SELECT 1 FROM manifest_references mr
                         WHERE mr.repository_id = repository_blobs.repository_id
                           AND mr.child_digest = repository_blobs.digest)
                     RETURNING (SELECT name FROM repositories r
                                WHERE r.id = repository_blobs.repository_id)",
                )
                .bind(digest)
                .fetch_all(&mut *conn)
                .await?;
                let d = parse_digest(digest)?;
                for name in &unlinked {
                    batch.unlinked.push((repo_name(name)?, d.clone()));
                }
                let left: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM repository_blobs WHERE digest = $1 LIMIT 1")
                        .bind(digest)
                        .fetch_optional(&mut *conn)
                        .await?;
                if left.is_none() {
                    sqlx::query(concat!(
                        "INSERT INTO gc_tombstones (storage_key, digest, size, created_at)
                         VALUES ($1, $2, $3, ", $now, ") ON CONFLICT DO NOTHING"
                    ))
                    .bind(&storage_key)
                    .bind(digest)
                    .bind(size)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query("DELETE FROM blobs WHERE digest = $1")
                        .bind(digest)
                        .execute(&mut *conn)
                        .await?;
                    $crate::clock::race_point("gc.blob.decided", digest).await;
                    batch.tombstones.push(Tombstone {
                        storage_key,
                        digest: d,
                        size: size as u64,
                    });
                    kept = false;
                } else if !unlinked.is_empty() {
                    kept = false;
                }
            }
            // Last: the unlinks above queued this digest again (a trigger).
            sqlx::query("DELETE FROM gc_blob_reviews WHERE digest = $1")
                .bind(digest)
                .execute(&mut *conn)
                .await?;
            if kept {
                batch.kept += 1;
            }
            Ok(())
        }

        /// Pushes back the pending review of one blob. As the first statement of a
        /// commit or mount it also waits for a GC transaction that has claimed this
        /// blob's review, so the statements after it see that transaction's outcome.
        pub(super) async fn touch_blob(conn: &mut $conn, digest: &Digest) -> Result<()> {
            sqlx::query(concat!(
                "UPDATE gc_blob_reviews SET event_at = ", $max, "(event_at, ", $now, ")
                 WHERE digest = $1"
            ))
            .bind(digest.to_string())
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        pub(super) async fn preview_reviews(
            pool: &sqlx::Pool<$db>,
            delay_ms: i64,
            limit: u32,
        ) -> Result<ReviewPreview> {
            let mut preview = ReviewPreview::default();
            let manifests: Vec<(i64, String, String, i64)> = sqlx::query_as(&format!(
                "SELECT g.repository_id, g.digest, r.name, CAST(length(m.payload) AS BIGINT)
                 FROM gc_manifest_reviews g
                 JOIN repositories r ON r.id = g.repository_id
                 JOIN manifests m ON m.repository_id = g.repository_id AND m.digest = g.digest
                 WHERE g.event_at <= {} - $1 ORDER BY g.event_at LIMIT $2",
                $now
            ))
            .bind(delay_ms)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            for (repo_id, digest, name, size) in manifests {
                let reachable: bool = sqlx::query_scalar(&format!("SELECT {REACHABLE}"))
                    .bind(repo_id)
                    .bind(&digest)
                    .fetch_one(pool)
                    .await?;
                if reachable {
                    preview.kept += 1;
                } else {
                    preview
                        .manifests
                        .push((repo_name(&name)?, parse_digest(&digest)?, size as u64));
                }
            }
            let blobs: Vec<(String, i64)> = sqlx::query_as(&format!(
                "SELECT g.digest, b.size FROM gc_blob_reviews g JOIN blobs b ON b.digest = g.digest
                 WHERE g.event_at <= {} - $1 ORDER BY g.event_at LIMIT $2",
                $now
            ))
            .bind(delay_ms)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            for (digest, size) in blobs {
                let links: Vec<(String, bool)> = sqlx::query_as(
                    "SELECT r.name, EXISTS (SELECT 1 FROM manifest_references mr
                         WHERE mr.repository_id = rb.repository_id AND mr.child_digest = rb.digest)
                     FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
                     WHERE rb.digest = $1 ORDER BY r.name",
                )
                .bind(&digest)
                .fetch_all(pool)
                .await?;
                let d = parse_digest(&digest)?;
                let mut referenced = false;
                for (name, used) in links {
                    if used {
                        referenced = true;
                    } else {
                        preview.unlinked.push((repo_name(&name)?, d.clone()));
                    }
                }
                if !referenced {
                    preview.blobs.push((d, size as u64));
                } else {
                    preview.kept += 1;
                }
            }
            Ok(preview)
        }

        pub(super) async fn tombstones<'e, E>(
            e: E,
            older_than_ms: i64,
            limit: u32,
        ) -> Result<Vec<Tombstone>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(concat!(
                "SELECT storage_key, digest, size FROM gc_tombstones
                 WHERE created_at <= ", $now, " - $1 ORDER BY created_at LIMIT $2"
            ))
            .bind(older_than_ms)
            .bind(i64::from(limit))
            .fetch_all(e)
            .await?;
            rows.into_iter()
                .map(|(storage_key, digest, size)| {
                    Ok(Tombstone {
                        storage_key,
                        digest: parse_digest(&digest)?,
                        size: size as u64,
                    })
                })
                .collect()
        }

        pub(super) async fn is_tombstoned<'e, E>(e: E, digest: &Digest) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let hit: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM gc_tombstones WHERE digest = $1 LIMIT 1")
                    .bind(digest.to_string())
                    .fetch_optional(e)
                    .await?;
            Ok(hit.is_some())
        }

        pub(super) async fn referenced_keys<'e, E>(e: E) -> Result<HashSet<String>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT storage_key, CAST(NULL AS TEXT) FROM blobs
                 UNION ALL SELECT storage_key, chunks FROM upload_sessions
                 UNION ALL SELECT storage_key, CAST(NULL AS TEXT) FROM gc_tombstones",
            )
            .fetch_all(e)
            .await?;
            let mut keys = HashSet::with_capacity(rows.len());
            for (key, chunks) in rows {
                if let Some(chunks) = chunks {
                    let chunks: Vec<ChunkRecord> = serde_json::from_str(&chunks).map_err(|e| {
                        $crate::metadata::MetadataError::Corrupt(format!("upload chunks: {e}"))
                    })?;
                    keys.extend(chunks.into_iter().map(|c| c.key));
                }
                keys.insert(key);
            }
            Ok(keys)
        }

        pub(super) async fn queue_depth<'e, E>(e: E, delay_ms: i64) -> Result<QueueDepth>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let (b, bd, m, md, t): (i64, i64, i64, i64, i64) = sqlx::query_as(concat!(
                "SELECT (SELECT COUNT(*) FROM gc_blob_reviews),
                        (SELECT COUNT(*) FROM gc_blob_reviews WHERE event_at <= ", $now, " - $1),
                        (SELECT COUNT(*) FROM gc_manifest_reviews),
                        (SELECT COUNT(*) FROM gc_manifest_reviews WHERE event_at <= ", $now, " - $1),
                        (SELECT COUNT(*) FROM gc_tombstones)"
            ))
            .bind(delay_ms)
            .fetch_one(e)
            .await?;
            Ok(QueueDepth {
                blob_reviews: b as u64,
                blob_reviews_due: bd as u64,
                manifest_reviews: m as u64,
                manifest_reviews_due: md as u64,
                tombstones: t as u64,
            })
        }

        pub(super) async fn repository_snapshot(
            pool: &sqlx::Pool<$db>,
            repo: &RepoName,
        ) -> Result<Option<RepoSnapshot>> {
            let Some(repo_id) = super::queries::repository_id(pool, repo.as_str()).await? else {
                return Ok(None);
            };
            let tags: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT name, manifest_digest, updated_at FROM tags WHERE repository_id = $1",
            )
            .bind(repo_id)
            .fetch_all(pool)
            .await?;
            let manifests: Vec<(String, i64, i64, Option<String>, Option<i64>)> = sqlx::query_as(
                "SELECT digest, CAST(length(payload) AS BIGINT), created_at, subject_digest,
                        last_pulled_at
                 FROM manifests WHERE repository_id = $1",
            )
            .bind(repo_id)
            .fetch_all(pool)
            .await?;
            let children: Vec<(String, String)> = sqlx::query_as(
                "SELECT manifest_digest, child_digest FROM manifest_references
                 WHERE repository_id = $1 AND child_is_manifest",
            )
            .bind(repo_id)
            .fetch_all(pool)
            .await?;
            let mut snapshot = RepoSnapshot::default();
            for (name, digest, updated_at) in tags {
                snapshot.tags.push(TagInfo {
                    name: Tag::parse(&name).map_err(|e| {
                        $crate::metadata::MetadataError::Corrupt(format!("tag {name:?}: {e}"))
                    })?,
                    digest: parse_digest(&digest)?,
                    updated_at,
                });
            }
            for (digest, size, created_at, subject, last_pulled_at) in manifests {
                snapshot.manifests.push(ManifestInfo {
                    digest: parse_digest(&digest)?,
                    size: size as u64,
                    created_at,
                    subject: subject.as_deref().map(parse_digest).transpose()?,
                    last_pulled_at,
                });
            }
            for (parent, child) in children {
                snapshot
                    .children
                    .push((parse_digest(&parent)?, parse_digest(&child)?));
            }
            Ok(Some(snapshot))
        }

        pub(super) async fn delete_tag_if<'e, E>(
            e: E,
            repo: &RepoName,
            tag: &Tag,
            digest: &Digest,
        ) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "DELETE FROM tags WHERE name = $1 AND manifest_digest = $2
                 AND repository_id = (SELECT id FROM repositories WHERE name = $3)",
            )
            .bind(tag.as_str())
            .bind(digest.to_string())
            .bind(repo.as_str())
            .execute(e)
            .await?;
            Ok(done.rows_affected() > 0)
        }
    };
}

pub(in crate::metadata) use gc_queries;
