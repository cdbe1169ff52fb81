//! [`QuotaStore`] on PostgreSQL: each write one READ COMMITTED transaction of the
//! shared statements (`quota_sql`), retried when it loses a race. A reservation locks
//! the limited scopes' usage rows `FOR UPDATE` in scope order, the order the counting
//! triggers take them in (see `migrations/postgres/0006_quotas.sql`), so reservations
//! on every instance are judged one at a time against counters no commit is changing.
//! The counting triggers append deltas (no shared row to wait on); `compact` folds
//! them into the per-scope rows. `recompute` locks the counter tables against writers (`SHARE ROW EXCLUSIVE`: writes
//! that already changed a counter finish first, the next wait) so that it compares one
//! consistent state.

use async_trait::async_trait;

use super::{quota_sql, retry, writes, writes::begin, PostgresStore};
use crate::metadata::quota::{
    ChargedCommit, Drift, QuotaCharge, QuotaLimit, QuotaOutcome, QuotaStore, Reservation,
    RoomCheck, ScopeUsage,
};
use crate::metadata::Result;
use crate::types::{BlobRecord, Digest, EventRecord, RepoName};

/// Moves the counting triggers' deltas into the per-scope rows in one statement (so
/// a reader sees them either all before or all after), rows taken in scope order.
async fn compact(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>) -> Result<()> {
    sqlx::query(
        "WITH moved AS (DELETE FROM quota_usage_deltas
                        RETURNING scope, logical_bytes, stored_bytes, blobs, manifests),
              sums AS (SELECT scope, CAST(sum(logical_bytes) AS BIGINT) AS l,
                              CAST(sum(stored_bytes) AS BIGINT) AS s,
                              CAST(sum(blobs) AS BIGINT) AS b, CAST(sum(manifests) AS BIGINT) AS m
                       FROM moved GROUP BY scope)
         INSERT INTO quota_usage AS u (scope, logical_bytes, stored_bytes, blobs, manifests)
         SELECT scope, l, s, b, m FROM sums ORDER BY scope
         ON CONFLICT (scope) DO UPDATE SET
             logical_bytes = u.logical_bytes + excluded.logical_bytes,
             stored_bytes = u.stored_bytes + excluded.stored_bytes,
             blobs = u.blobs + excluded.blobs, manifests = u.manifests + excluded.manifests",
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl QuotaStore for PostgresStore {
    async fn quota_limits(&self) -> Result<Vec<QuotaLimit>> {
        quota_sql::limits(&self.pool).await
    }

    async fn set_quota_limit(&self, limit: &QuotaLimit) -> Result<()> {
        quota_sql::set_limit(&self.pool, limit).await
    }

    async fn delete_quota_limit(&self, scope: &str) -> Result<bool> {
        quota_sql::delete_limit(&self.pool, scope).await
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
            Ok(())
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

    /// Charged after the link, at the end of the transaction: the scopes' usage rows
    /// are locked last (in scope order) and held only for the check and the commit,
    /// so commits into one namespace do not queue behind each other's statements. The
    /// check then sees every earlier charged commit (READ COMMITTED: a new statement
    /// sees what committed before it) and this one's own deltas. Lock order: the
    /// link's trigger takes the scope's blob rows, then this the usage rows; nothing
    /// holding a usage row waits for a blob row (reservations and compaction take
    /// usage rows only), so the orders cannot cross.
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
            let (commit, linked) =
                writes::commit_blob_linking(&mut tx, repo, blob, upload_id, events).await?;
            let outcome =
                quota_sql::charge_after_link(&mut tx, blob, linked, own, &charge.limits).await?;
            if outcome != QuotaOutcome::Allowed {
                // Dropped, the transaction rolls back: nothing of the commit is kept.
                return Ok(ChargedCommit::Refused(outcome));
            }
            if let Some(id) = &charge.reservation {
                quota_sql::release(&mut *tx, id).await?;
            }
            tx.commit().await?;
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
        .await
    }

    async fn recompute(&self, fix: bool) -> Result<Vec<Drift>> {
        retry("quota_recompute", || async {
            let mut tx = begin(&self.pool).await?;
            sqlx::query(
                "LOCK TABLE quota_usage, quota_usage_deltas, quota_scope_blobs
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
