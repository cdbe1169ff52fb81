//! [`QuotaStore`] on PostgreSQL: each write one READ COMMITTED transaction of the
//! shared statements (`quota_sql`), retried when it loses a race. A reservation locks
//! the limited scopes' usage rows `FOR UPDATE` in scope order, the order the counting
//! triggers take them in (see `migrations/postgres/0006_quotas.sql`), so reservations
//! on every instance are judged one at a time against counters no commit is changing.
//! The counting triggers append deltas (no shared row to wait on). A charged commit is
//! charged by its link's own statement ([`link_charged`], migration
//! `0013_quota_link_charged`) from its connection's slice of the scope's room (`0011_quota_slices`),
//! touching only that slice's row; or — the slice short — at its COMMIT
//! (`quota_charge`, `0010_quota_charge`) under the scope's usage row, topping the slice
//! up; a top-up folds the scope's deltas into the row, `compact` folds the rest (every
//! 30 s) and sweeps slices of closed connections. `recompute` locks the counter tables
//! against writers (`SHARE ROW EXCLUSIVE`: writes that already changed a counter finish
//! first, the next wait) so that it compares one consistent state.

use async_trait::async_trait;

use super::{quota_sql, retry, writes, writes::begin, PostgresStore};
use crate::metadata::quota::{
    ChargedCommit, Drift, QuotaCharge, QuotaLimit, QuotaOutcome, QuotaStore, Reservation,
    RoomCheck, ScopeUsage,
};
use crate::metadata::Result;
use crate::types::{BlobRecord, Digest, EventRecord, RepoName};

/// Moves the counting triggers' deltas into the per-scope rows, rows taken in scope
/// order (byte-wise, the order every locker uses) and locked *before* their deltas are
/// deleted: a scope's deltas are deleted only by a holder of its row (this, and the
/// charge's `quota_charge`), so that no one holding a row waits for a delta another
/// holds. The move is one statement, so a reader sees it either all before or all after.
///
/// Table locks: the deltas first (`ROW EXCLUSIVE`, which writers share), then the usage
/// rows — the order a commit takes them in (its link appends a delta, its charge takes
/// the usage row at COMMIT) and the order `recompute` locks the tables in, so that
/// compaction and recompute cannot each hold what the other waits for.
async fn compact(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>) -> Result<()> {
    sqlx::query("LOCK TABLE quota_usage_deltas IN ROW EXCLUSIVE MODE")
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO quota_usage (scope)
         SELECT scope FROM (SELECT DISTINCT scope FROM quota_usage_deltas) d
         ORDER BY scope COLLATE \"C\"
         ON CONFLICT DO NOTHING",
    )
    .execute(&mut **tx)
    .await?;
    let scopes: Vec<String> = sqlx::query_scalar(
        "SELECT scope FROM quota_usage
         WHERE scope IN (SELECT DISTINCT scope FROM quota_usage_deltas)
         ORDER BY scope COLLATE \"C\" FOR UPDATE",
    )
    .fetch_all(&mut **tx)
    .await?;
    if scopes.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH moved AS (DELETE FROM quota_usage_deltas WHERE scope = ANY($1)
                        RETURNING scope, logical_bytes, stored_bytes, blobs, manifests),
              sums AS (SELECT scope, CAST(sum(logical_bytes) AS BIGINT) AS l,
                              CAST(sum(stored_bytes) AS BIGINT) AS s,
                              CAST(sum(blobs) AS BIGINT) AS b, CAST(sum(manifests) AS BIGINT) AS m
                       FROM moved GROUP BY scope)
         UPDATE quota_usage u SET
             logical_bytes = u.logical_bytes + sums.l, stored_bytes = u.stored_bytes + sums.s,
             blobs = u.blobs + sums.b, manifests = u.manifests + sums.m
         FROM sums WHERE u.scope = sums.scope",
    )
    .bind(&scopes)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A charged commit's quotas, as [`link_charged`] passes them: the limited scopes in
/// scope order (byte-wise, the lock order), each once, with their quotas, and the
/// push's own reservation (`own`: not counted against it), and whether the charge
/// must wait for the COMMIT (`defer`: a statement that may wait for a lock follows the
/// link).
pub(super) struct LinkCharge<'a> {
    scopes: Vec<&'a str>,
    quotas: Vec<i64>,
    own: &'a str,
    defer: bool,
}

impl<'a> LinkCharge<'a> {
    /// `None` when no quota binds the commit (it is linked as an uncharged one is).
    fn new(limits: &'a [(String, u64)], own: &'a str, defer: bool) -> Option<Self> {
        if limits.is_empty() {
            return None;
        }
        let mut sorted: Vec<(&str, u64)> = limits.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        sorted.sort();
        sorted.dedup_by(|a, b| a.0 == b.0);
        Some(LinkCharge {
            scopes: sorted.iter().map(|(s, _)| *s).collect(),
            quotas: sorted
                .iter()
                .map(|(_, q)| i64::try_from(*q).unwrap_or(i64::MAX))
                .collect(),
            own,
            defer,
        })
    }
}

/// A charged commit's link and charge in one statement, `quota_link_charged`
/// (migration `0013_quota_link_charged`): the blob linked and, in each limited scope the
/// link made it new to, taken from this connection's slice there and then (its own
/// slice row only); a scope whose slice is short — and every scope when `defer` —
/// is queued as a row of `quota_charges`, whose deferred trigger runs `quota_charge` at
/// COMMIT (`0010_quota_charge`, `0011_quota_slices`: the slice topped up under the
/// scope's usage row, or the blob refused, failing the COMMIT: [`refused`]). The
/// charge's `defer` when a statement that may wait for a lock follows the link (a
/// reservation's release): a slice row is never held while waiting for another lock.
/// The commit's events may follow it without: their inserts wait for nothing (until
/// migration 0016 they took their stream's row lock, and a charge with events was
/// deferred too). `blob` is the stored record (its size is the charge). Returns
/// whether the link is new; an existing one charges nothing.
pub(super) async fn link_charged(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    repo_id: i64,
    blob: &BlobRecord,
    charge: &LinkCharge<'_>,
) -> Result<bool> {
    let linked: bool =
        sqlx::query_scalar("SELECT quota_link_charged($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(repo_id)
            .bind(blob.digest.to_string())
            .bind(crate::clock::now_ms())
            .bind(i64::try_from(blob.size).unwrap_or(i64::MAX))
            .bind(&charge.scopes)
            .bind(&charge.quotas)
            .bind(charge.own)
            .bind(charge.defer)
            .fetch_one(&mut **tx)
            .await?;
    Ok(linked)
}

/// Drops every quota slice (a quota changed: room handed out under the old one must
/// not be taken under the new one, even by an instance that still reads the old quota —
/// a slice is taken only under the quota it was granted with). One row per statement,
/// so that it never holds one slice row while waiting for another (which could close a
/// cycle with a top-up revoking slices).
async fn drop_slices(pool: &sqlx::PgPool) -> Result<()> {
    let rows: Vec<(String, i32)> = sqlx::query_as("SELECT scope, holder FROM quota_slices")
        .fetch_all(pool)
        .await?;
    for (scope, holder) in rows {
        sqlx::query("DELETE FROM quota_slices WHERE scope = $1 AND holder = $2")
            .bind(scope)
            .bind(holder)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// The refusal a COMMIT failed with when the charge did not fit (SQLSTATE `WQ001`,
/// message `quota_charge|scope|quota|stored|reserved`), if that is what it failed with.
fn refused(e: &sqlx::Error, blob: &BlobRecord) -> Option<QuotaOutcome> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    if db.code().as_deref() != Some("WQ001") {
        return None;
    }
    let msg = db.message();
    let mut fields = msg.rsplitn(4, '|');
    let reserved: i64 = fields.next()?.parse().ok()?;
    let stored: i64 = fields.next()?.parse().ok()?;
    let quota: i64 = fields.next()?.parse().ok()?;
    let scope = fields.next()?.strip_prefix("quota_charge|")?.to_string();
    let size = i64::try_from(blob.size).unwrap_or(i64::MAX);
    let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
    Some(QuotaOutcome::Exceeded {
        scope,
        quota: to_u64(quota),
        usage: to_u64(stored - size + reserved),
        requested: to_u64(size),
    })
}

#[async_trait]
impl QuotaStore for PostgresStore {
    async fn quota_limits(&self) -> Result<Vec<QuotaLimit>> {
        quota_sql::limits(&self.pool).await
    }

    async fn set_quota_limit(&self, limit: &QuotaLimit) -> Result<()> {
        quota_sql::set_limit(&self.pool, limit).await?;
        drop_slices(&self.pool).await
    }

    async fn delete_quota_limit(&self, scope: &str) -> Result<bool> {
        let deleted = quota_sql::delete_limit(&self.pool, scope).await?;
        drop_slices(&self.pool).await?;
        Ok(deleted)
    }

    async fn seed_quota_limits(&self, limits: &[QuotaLimit]) -> Result<()> {
        retry("quota_seed", || async {
            let mut tx = begin(&self.pool).await?;
            // Instances starting together seed one after another.
            sqlx::query("LOCK TABLE quota_limits IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            quota_sql::seed_limits(&mut tx, limits).await?;
            tx.commit().await?;
            drop_slices(&self.pool).await
        })
        .await
    }

    async fn scope_usage(&self, scope: &str) -> Result<ScopeUsage> {
        quota_sql::usage(&self.pool, scope).await
    }

    async fn reserve(
        &self,
        reservation: &Reservation,
        limits: &[(String, u64)],
    ) -> Result<QuotaOutcome> {
        retry("quota_reserve", || async {
            let mut tx = begin(&self.pool).await?;
            let outcome = quota_sql::reserve(&mut tx, reservation, limits).await?;
            tx.commit().await?;
            Ok(outcome)
        })
        .await
    }

    async fn release(&self, id: &str) -> Result<()> {
        quota_sql::release(&self.pool, id).await
    }

    async fn check_room(
        &self,
        reservation: &Reservation,
        limits: &[(String, u64)],
    ) -> Result<RoomCheck> {
        let mut conn = self.pool.acquire().await?;
        quota_sql::check_room(&mut conn, reservation, limits).await
    }

    /// Charged by the link's statement from the connection's slices ([`link_charged`]),
    /// or, a slice short, at the COMMIT: the scopes' usage rows are locked (in scope
    /// order) inside the COMMIT, by its deferred trigger, so a row is held for no round
    /// trip — commits into one namespace pass it one at a time only for the top-up and
    /// the commit record. The check sees every earlier charged commit
    /// (READ COMMITTED: each statement after the lock sees what committed before it)
    /// and this one's own deltas. Lock order: the link's trigger takes the scope's
    /// blob rows, then the charge the usage rows; nothing holding a usage row waits
    /// for a blob row (reservations and compaction take usage rows and the deltas of
    /// their scopes only), so the orders cannot cross.
    async fn commit_blob_charged(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
        events: &[EventRecord],
        charge: &QuotaCharge,
    ) -> Result<ChargedCommit> {
        retry("commit_blob_charged", || async {
            let mut tx = begin(&self.pool).await?;
            let own = charge.reservation.as_deref().or(upload_id).unwrap_or("");
            // A reservation is released after the link: its charge then waits for
            // the COMMIT (`defer`), so that no slice row is held across the release.
            let link_charge = LinkCharge::new(&charge.limits, own, charge.reservation.is_some());
            let commit = writes::commit_blob_linking(
                &mut tx,
                repo,
                blob,
                upload_id,
                events,
                link_charge.as_ref(),
            )
            .await?;
            if let Some(id) = &charge.reservation {
                quota_sql::release(&mut *tx, id).await?;
            }
            match tx.commit().await {
                Ok(()) => {}
                // The charge did not fit: the COMMIT failed, nothing of it was kept.
                Err(e) => match refused(&e, blob) {
                    Some(outcome) => return Ok(ChargedCommit::Refused(outcome)),
                    None => return Err(e.into()),
                },
            }
            Ok(ChargedCommit::Committed(commit))
        })
        .await
    }

    async fn check_blobs(
        &self,
        repo: &RepoName,
        digests: &[Digest],
        limits: &[(String, u64)],
    ) -> Result<QuotaOutcome> {
        let mut conn = self.pool.acquire().await?;
        quota_sql::check_blobs(&mut conn, repo, digests, limits).await
    }

    async fn compact(&self) -> Result<()> {
        retry("quota_compact", || async {
            let mut tx = begin(&self.pool).await?;
            compact(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        // Apart from the compaction (which holds usage rows: a slice row is taken after
        // its scope's usage row, never after a later scope's), and never waiting.
        let swept: i64 = sqlx::query_scalar("SELECT quota_sweep_slices()")
            .fetch_one(&self.pool)
            .await?;
        if swept > 0 {
            tracing::debug!(swept, "quota slices of gone or idle connections reclaimed");
        }
        Ok(())
    }

    async fn recompute(&self, fix: bool) -> Result<Vec<Drift>> {
        retry("quota_recompute", || async {
            let mut tx = begin(&self.pool).await?;
            // In the order a commit takes them (its link: the scope's blob counts,
            // then a delta; its charge, at COMMIT: the usage row), so that recompute
            // waits for a commit in progress rather than holding a table it needs.
            sqlx::query(
                "LOCK TABLE quota_scope_blobs, quota_usage_deltas, quota_usage
                 IN SHARE ROW EXCLUSIVE MODE",
            )
            .execute(&mut *tx)
            .await?;
            // The figures are then the per-scope rows alone.
            compact(&mut tx).await?;
            let drifts = quota_sql::recompute(&mut tx, fix).await?;
            tx.commit().await?;
            Ok(drifts)
        })
        .await
    }
}
