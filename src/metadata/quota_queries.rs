//! The statements of [`QuotaStore`](super::quota::QuotaStore), shared by both engines:
//! instantiated once per engine with its connection type, the database clock's
//! expression and its row lock (`FOR UPDATE` on PostgreSQL; nothing on SQLite, whose
//! one writer already runs every write alone).

macro_rules! quota_queries {
    ($db:ty, $conn:ty, $now:literal, $for_update:literal) => {
        use std::collections::{BTreeMap, BTreeSet};

        use $crate::metadata::quota::{
            Drift, QuotaLimit, QuotaOutcome, Reservation, RoomCheck, ScopeUsage,
        };
        use $crate::metadata::Result;
        use $crate::types::{Digest, RepoName};

        /// The live quota slices' room in scope `$1` (PostgreSQL's per-connection
        /// slices, migration `0011_quota_slices`; SQLite has none): counted against the
        /// quota as reservations are, by the checks that lock.
        const SLICED: &str = concat!(
            "SELECT CAST(coalesce(sum(room), 0) AS BIGINT) FROM quota_slices
             WHERE scope = $1 AND expires_at > ", $now
        );

        /// Live reservations in `$1` (a repository, or a prefix ending in `/`), except `$2`'s.
        const RESERVED: &str = concat!(
            "SELECT CAST(coalesce(sum(bytes), 0) AS BIGINT) FROM quota_reservations
             WHERE id <> $2 AND expires_at > ", $now, "
               AND (repository = $1 OR (substr($1, length($1), 1) = '/'
                    AND substr(repository, 1, length($1)) = $1))"
        );

        fn to_u64(v: i64) -> u64 {
            u64::try_from(v).unwrap_or(0)
        }

        fn to_i64(v: u64) -> i64 {
            i64::try_from(v).unwrap_or(i64::MAX)
        }

        pub(super) async fn limits<'e, E>(e: E) -> Result<Vec<QuotaLimit>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<(String, i64, String)> =
                sqlx::query_as("SELECT scope, bytes, source FROM quota_limits ORDER BY scope")
                    .fetch_all(e)
                    .await?;
            Ok(rows
                .into_iter()
                .map(|(scope, bytes, source)| QuotaLimit {
                    scope,
                    bytes: to_u64(bytes),
                    source,
                })
                .collect())
        }

        pub(super) async fn set_limit<'e, E>(e: E, l: &QuotaLimit) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query(
                "INSERT INTO quota_limits (scope, bytes, source, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (scope) DO UPDATE SET bytes = excluded.bytes,
                     source = excluded.source, updated_at = excluded.updated_at",
            )
            .bind(&l.scope)
            .bind(to_i64(l.bytes))
            .bind(&l.source)
            .bind($crate::clock::now_ms())
            .execute(e)
            .await?;
            Ok(())
        }

        pub(super) async fn delete_limit<'e, E>(e: E, scope: &str) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query("DELETE FROM quota_limits WHERE scope = $1")
                .bind(scope)
                .execute(e)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        pub(super) async fn seed_limits(conn: &mut $conn, limits: &[QuotaLimit]) -> Result<()> {
            let configured: BTreeSet<&str> = limits.iter().map(|l| l.scope.as_str()).collect();
            let existing = self::limits(&mut *conn).await?;
            for old in existing.iter().filter(|l| l.source == "config") {
                if !configured.contains(old.scope.as_str()) {
                    delete_limit(&mut *conn, &old.scope).await?;
                }
            }
            for l in limits {
                let api = existing.iter().any(|o| o.scope == l.scope && o.source == "api");
                if !api {
                    set_limit(&mut *conn, l).await?;
                }
            }
            Ok(())
        }

        pub(super) async fn usage<'e, E>(e: E, scope: &str) -> Result<ScopeUsage>
        where
            E: sqlx::Executor<'e, Database = $db> + Copy,
        {
            let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT logical_bytes, stored_bytes, blobs, manifests FROM quota_usage_totals
                 WHERE scope = $1",
            )
            .bind(scope)
            .fetch_optional(e)
            .await?;
            let (logical, stored, blobs, manifests) = row.unwrap_or_default();
            let repositories: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM quota_repository_scopes WHERE scope = $1",
            )
            .bind(scope)
            .fetch_one(e)
            .await?;
            let reserved: i64 = sqlx::query_scalar(RESERVED)
                .bind(scope)
                .bind("")
                .fetch_one(e)
                .await?;
            Ok(ScopeUsage {
                scope: scope.to_string(),
                logical_bytes: to_u64(logical),
                stored_bytes: to_u64(stored),
                blobs: to_u64(blobs),
                manifests: to_u64(manifests),
                repositories: to_u64(repositories),
                reserved_bytes: to_u64(reserved),
            })
        }

        /// Locks the scope's usage row (created if missing, so that there is a row to
        /// lock): reservations of the scope then run one at a time. The counting
        /// triggers never take it (see `migrations/postgres/0006_quotas.sql`).
        async fn lock_scope(conn: &mut $conn, scope: &str) -> Result<()> {
            sqlx::query("INSERT INTO quota_usage (scope) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(scope)
                .execute(&mut *conn)
                .await?;
            let _: Option<i32> = sqlx::query_scalar(concat!(
                "SELECT 1 FROM quota_usage WHERE scope = $1",
                $for_update
            ))
            .bind(scope)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(())
        }

        /// The scope's stored bytes (0 for a scope nothing counts in yet), unlocked.
        async fn stored_of(conn: &mut $conn, scope: &str) -> Result<i64> {
            let v: Option<i64> =
                sqlx::query_scalar("SELECT stored_bytes FROM quota_usage_totals WHERE scope = $1")
                    .bind(scope)
                    .fetch_optional(&mut *conn)
                    .await?;
            Ok(v.unwrap_or(0))
        }

        fn sorted(limits: &[(String, u64)]) -> Vec<(String, u64)> {
            let mut l = limits.to_vec();
            l.sort();
            l.dedup_by(|a, b| a.0 == b.0);
            l
        }

        /// Whether `total` more bytes fit in every scope of `limits` that does not hold
        /// `digest` (when given) yet: stored bytes, live reservations other than `id`'s
        /// and `total` together at most the quota. With `lock`, each scope's usage row is locked
        /// first (created if missing), in scope order; without, a plain read.
        async fn room(
            conn: &mut $conn,
            id: &str,
            digest: Option<&Digest>,
            total: i64,
            limits: &[(String, u64)],
            lock: bool,
        ) -> Result<QuotaOutcome> {
            Ok(room_read(conn, id, digest, total, limits, lock).await?.outcome)
        }

        /// `room`, with the usage it read in each scope.
        async fn room_read(
            conn: &mut $conn,
            id: &str,
            digest: Option<&Digest>,
            total: i64,
            limits: &[(String, u64)],
            lock: bool,
        ) -> Result<RoomCheck> {
            let digest = digest.map(|d| d.to_string()).unwrap_or_default();
            let mut used = Vec::with_capacity(limits.len());
            for (scope, quota) in sorted(limits) {
                // SQLite (no row lock): its one writer already runs this alone.
                if lock && !$for_update.is_empty() {
                    lock_scope(conn, &scope).await?;
                }
                // One statement, one snapshot: a commit that turns a reservation (or
                // slice room) into stored bytes is seen either wholly before or wholly
                // after. Slices count only for a check that locks (what a read sees
                // of them may be taken back by the next top-up).
                let sliced = if lock { SLICED } else { "SELECT CAST(0 AS BIGINT)" };
                let read = format!(
                    "SELECT EXISTS (SELECT 1 FROM quota_scope_blobs WHERE scope = $1 AND digest = $3),
                            coalesce((SELECT stored_bytes FROM quota_usage_totals WHERE scope = $1), 0),
                            ({RESERVED}), ({sliced})"
                );
                let (held, mut stored, mut others, slices): (bool, i64, i64, i64) =
                    sqlx::query_as(&read)
                        .bind(&scope)
                        .bind(id)
                        .bind(&digest)
                        .fetch_one(&mut *conn)
                        .await?;
                others += slices;
                if !held && lock && slices > 0 && stored + others + total > to_i64(quota) {
                    // The connections' unused slices must not refuse what fits: take
                    // them back (the usage row is held: lock order usage, then slices),
                    // and look again.
                    sqlx::query("UPDATE quota_slices SET room = 0 WHERE scope = $1 AND room > 0")
                        .bind(&scope)
                        .execute(&mut *conn)
                        .await?;
                    let (_, s, o, sl): (bool, i64, i64, i64) = sqlx::query_as(&read)
                        .bind(&scope)
                        .bind(id)
                        .bind(&digest)
                        .fetch_one(&mut *conn)
                        .await?;
                    (stored, others) = (s, o + sl);
                    used.push((scope.clone(), to_u64(stored + others)));
                    if stored + others + total > to_i64(quota) {
                        let outcome = QuotaOutcome::Exceeded {
                            scope,
                            quota,
                            usage: to_u64(stored + others),
                            requested: to_u64(total),
                        };
                        return Ok(RoomCheck { outcome, used });
                    }
                    continue;
                }
                used.push((scope.clone(), to_u64(stored + others)));
                if held {
                    continue;
                }
                if stored + others + total > to_i64(quota) {
                    let outcome = QuotaOutcome::Exceeded {
                        scope,
                        quota,
                        usage: to_u64(stored + others),
                        requested: to_u64(total),
                    };
                    return Ok(RoomCheck { outcome, used });
                }
            }
            Ok(RoomCheck {
                outcome: QuotaOutcome::Allowed,
                used,
            })
        }

        pub(super) async fn reserve(
            conn: &mut $conn,
            r: &Reservation,
            limits: &[(String, u64)],
        ) -> Result<QuotaOutcome> {
            let held: Option<i64> =
                sqlx::query_scalar("SELECT bytes FROM quota_reservations WHERE id = $1")
                    .bind(&r.id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let total = to_i64(r.bytes).max(held.unwrap_or(0));
            let outcome = room(conn, &r.id, r.digest.as_ref(), total, limits, true).await?;
            if outcome != QuotaOutcome::Allowed {
                return Ok(outcome);
            }
            sqlx::query(
                "INSERT INTO quota_reservations (id, repository, bytes, expires_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET bytes = excluded.bytes,
                     expires_at = excluded.expires_at",
            )
            .bind(&r.id)
            .bind(r.repository.as_str())
            .bind(total)
            .bind(r.expires_at)
            .execute(&mut *conn)
            .await?;
            Ok(QuotaOutcome::Allowed)
        }

        /// `reserve`'s check alone, unlocked and unrecorded (a read connection will do).
        pub(super) async fn check_room(
            conn: &mut $conn,
            r: &Reservation,
            limits: &[(String, u64)],
        ) -> Result<RoomCheck> {
            room_read(conn, &r.id, r.digest.as_ref(), to_i64(r.bytes), limits, false).await
        }

        /// A commit's charge, first in its transaction: the scopes locked and the blob
        /// checked against them, the push's own reservation (`own`) not counted.
        #[allow(dead_code)] // SQLite's (PostgreSQL charges last, in `quota_charge`)
        pub(super) async fn charge(
            conn: &mut $conn,
            blob: &$crate::types::BlobRecord,
            own: &str,
            limits: &[(String, u64)],
        ) -> Result<QuotaOutcome> {
            room(conn, own, Some(&blob.digest), to_i64(blob.size), limits, true).await
        }

        pub(super) async fn release<'e, E>(e: E, id: &str) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query("DELETE FROM quota_reservations WHERE id = $1")
                .bind(id)
                .execute(e)
                .await?;
            Ok(())
        }

        pub(super) async fn check_blobs(
            conn: &mut $conn,
            repo: &RepoName,
            digests: &[Digest],
            limits: &[(String, u64)],
        ) -> Result<QuotaOutcome> {
            let _ = repo;
            for (scope, quota) in sorted(limits) {
                let stored = stored_of(conn, &scope).await?;
                let mut new = 0i64;
                let mut seen = BTreeSet::new();
                for d in digests {
                    if !seen.insert(d.to_string()) {
                        continue;
                    }
                    let size: Option<i64> = sqlx::query_scalar(
                        "SELECT b.size FROM blobs b WHERE b.digest = $1
                         AND NOT EXISTS (SELECT 1 FROM quota_scope_blobs q
                                         WHERE q.scope = $2 AND q.digest = b.digest)",
                    )
                    .bind(d.to_string())
                    .bind(&scope)
                    .fetch_optional(&mut *conn)
                    .await?;
                    new += size.unwrap_or(0);
                }
                if stored + new > to_i64(quota) {
                    return Ok(QuotaOutcome::Exceeded {
                        scope,
                        quota,
                        usage: to_u64(stored),
                        requested: to_u64(new),
                    });
                }
            }
            Ok(QuotaOutcome::Allowed)
        }

        type Counters = (i64, i64, i64, i64);

        /// (logical, stored, blobs, manifests) per scope, from the rows.
        async fn actual(conn: &mut $conn) -> Result<BTreeMap<String, Counters>> {
            let mut out: BTreeMap<String, Counters> = BTreeMap::new();
            let scopes: Vec<String> =
                sqlx::query_scalar("SELECT DISTINCT scope FROM quota_repository_scopes")
                    .fetch_all(&mut *conn)
                    .await?;
            for s in scopes {
                out.insert(s, (0, 0, 0, 0));
            }
            let stored: Vec<(String, i64, i64)> = sqlx::query_as(
                "SELECT x.scope, CAST(coalesce(sum(b.size), 0) AS BIGINT), count(*)
                 FROM (SELECT DISTINCT s.scope, rb.digest FROM repository_blobs rb
                       JOIN quota_repository_scopes s ON s.repository_id = rb.repository_id) x
                 JOIN blobs b ON b.digest = x.digest GROUP BY x.scope",
            )
            .fetch_all(&mut *conn)
            .await?;
            for (s, bytes, n) in stored {
                let c = out.entry(s).or_default();
                c.1 = bytes;
                c.2 = n;
            }
            let logical: Vec<(String, i64)> = sqlx::query_as(
                "SELECT s.scope, CAST(coalesce(sum(b.size), 0) AS BIGINT)
                 FROM manifest_references mr
                 JOIN quota_repository_scopes s ON s.repository_id = mr.repository_id
                 JOIN blobs b ON b.digest = mr.child_digest
                 WHERE NOT mr.child_is_manifest GROUP BY s.scope",
            )
            .fetch_all(&mut *conn)
            .await?;
            for (s, bytes) in logical {
                out.entry(s).or_default().0 = bytes;
            }
            let manifests: Vec<(String, i64)> = sqlx::query_as(
                "SELECT s.scope, count(*) FROM manifests m
                 JOIN quota_repository_scopes s ON s.repository_id = m.repository_id
                 GROUP BY s.scope",
            )
            .fetch_all(&mut *conn)
            .await?;
            for (s, n) in manifests {
                out.entry(s).or_default().3 = n;
            }
            Ok(out)
        }

        pub(super) async fn recompute(conn: &mut $conn, fix: bool) -> Result<Vec<Drift>> {
            let actual = actual(conn).await?;
            let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT scope, logical_bytes, stored_bytes, blobs, manifests FROM quota_usage",
            )
            .fetch_all(&mut *conn)
            .await?;
            let counted: BTreeMap<String, Counters> =
                rows.into_iter().map(|(s, a, b, c, d)| (s, (a, b, c, d))).collect();
            let mut drifts = Vec::new();
            let scopes: BTreeSet<&String> = actual.keys().chain(counted.keys()).collect();
            for scope in scopes {
                let a = actual.get(scope).copied().unwrap_or_default();
                let c = counted.get(scope).copied().unwrap_or_default();
                let names = ["logical_bytes", "stored_bytes", "blobs", "manifests"];
                let pairs = [(c.0, a.0), (c.1, a.1), (c.2, a.2), (c.3, a.3)];
                let mut differs = false;
                for (name, (counted, actual)) in names.iter().zip(pairs) {
                    if counted != actual {
                        differs = true;
                        drifts.push(Drift {
                            scope: scope.clone(),
                            counter: name.to_string(),
                            counted,
                            actual,
                        });
                    }
                }
                if fix && differs {
                    sqlx::query(
                        "INSERT INTO quota_usage (scope, logical_bytes, stored_bytes, blobs, manifests)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (scope) DO UPDATE SET logical_bytes = excluded.logical_bytes,
                             stored_bytes = excluded.stored_bytes, blobs = excluded.blobs,
                             manifests = excluded.manifests",
                    )
                    .bind(scope)
                    .bind(a.0)
                    .bind(a.1)
                    .bind(a.2)
                    .bind(a.3)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            // The per-scope link counts that decide when a blob leaves a scope.
            let actual_refs: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT s.scope, rb.digest, count(*) FROM repository_blobs rb
                 JOIN quota_repository_scopes s ON s.repository_id = rb.repository_id
                 GROUP BY s.scope, rb.digest",
            )
            .fetch_all(&mut *conn)
            .await?;
            let counted_refs: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT scope, digest, refs FROM quota_scope_blobs")
                    .fetch_all(&mut *conn)
                    .await?;
            let actual_refs: BTreeMap<(String, String), i64> =
                actual_refs.into_iter().map(|(s, d, n)| ((s, d), n)).collect();
            let counted_refs: BTreeMap<(String, String), i64> =
                counted_refs.into_iter().map(|(s, d, n)| ((s, d), n)).collect();
            let keys: BTreeSet<&(String, String)> =
                actual_refs.keys().chain(counted_refs.keys()).collect();
            for key in keys {
                let a = actual_refs.get(key).copied().unwrap_or(0);
                let c = counted_refs.get(key).copied().unwrap_or(0);
                if a == c {
                    continue;
                }
                drifts.push(Drift {
                    scope: key.0.clone(),
                    counter: format!("refs {}", key.1),
                    counted: c,
                    actual: a,
                });
                if fix {
                    if a == 0 {
                        sqlx::query("DELETE FROM quota_scope_blobs WHERE scope = $1 AND digest = $2")
                            .bind(&key.0)
                            .bind(&key.1)
                            .execute(&mut *conn)
                            .await?;
                    } else {
                        sqlx::query(
                            "INSERT INTO quota_scope_blobs (scope, digest, refs) VALUES ($1, $2, $3)
                             ON CONFLICT (scope, digest) DO UPDATE SET refs = excluded.refs",
                        )
                        .bind(&key.0)
                        .bind(&key.1)
                        .bind(a)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
            }
            Ok(drifts)
        }
    };
}

pub(crate) use quota_queries;
