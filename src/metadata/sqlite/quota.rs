//! [`QuotaStore`] on SQLite: reads on the reader pool, every write one job of the group
//! committer (one writer: a reservation's check and write cannot interleave with
//! another's); the statements are the shared ones (`quota_sql`).

use async_trait::async_trait;

use super::{quota_sql, writes, SqliteStore};
use crate::metadata::quota::{
    ChargedCommit, Drift, QuotaCharge, QuotaLimit, QuotaOutcome, QuotaStore, Reservation,
    RoomCheck, ScopeUsage,
};
use crate::metadata::Result;
use crate::types::{BlobRecord, Digest, EventRecord, RepoName};

#[async_trait]
impl QuotaStore for SqliteStore {
    async fn quota_limits(&self) -> Result<Vec<QuotaLimit>> {
        quota_sql::limits(&self.reader).await
    }

    async fn set_quota_limit(&self, limit: &QuotaLimit) -> Result<()> {
        let limit = limit.clone();
        self.writer
            .write(move |conn| Box::pin(async move { quota_sql::set_limit(conn, &limit).await }))
            .await
    }

    async fn delete_quota_limit(&self, scope: &str) -> Result<bool> {
        let scope = scope.to_string();
        self.writer
            .write(move |conn| Box::pin(async move { quota_sql::delete_limit(conn, &scope).await }))
            .await
    }

    async fn seed_quota_limits(&self, limits: &[QuotaLimit]) -> Result<()> {
        let limits = limits.to_vec();
        self.writer
            .write(move |conn| Box::pin(async move { quota_sql::seed_limits(conn, &limits).await }))
            .await
    }

    async fn scope_usage(&self, scope: &str) -> Result<ScopeUsage> {
        quota_sql::usage(&self.reader, scope).await
    }

    async fn reserve(
        &self,
        reservation: &Reservation,
        limits: &[(String, u64)],
    ) -> Result<QuotaOutcome> {
        let (r, limits) = (reservation.clone(), limits.to_vec());
        self.writer
            .write(move |conn| Box::pin(async move { quota_sql::reserve(conn, &r, &limits).await }))
            .await
    }

    async fn release(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.writer
            .write(move |conn| Box::pin(async move { quota_sql::release(conn, &id).await }))
            .await
    }

    async fn check_room(
        &self,
        reservation: &Reservation,
        limits: &[(String, u64)],
    ) -> Result<RoomCheck> {
        let mut conn = self.reader.acquire().await?;
        quota_sql::check_room(&mut conn, reservation, limits).await
    }

    async fn commit_blob_charged(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
        events: &[EventRecord],
        charge: &QuotaCharge,
    ) -> Result<ChargedCommit> {
        let (repo, blob, charge) = (repo.clone(), blob.clone(), charge.clone());
        let (upload_id, events) = (upload_id.map(str::to_string), events.to_vec());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let own = charge.reservation.as_deref().or(upload_id.as_deref());
                    let outcome =
                        quota_sql::charge(conn, &blob, own.unwrap_or(""), &charge.limits).await?;
                    if outcome != QuotaOutcome::Allowed {
                        return Ok(ChargedCommit::Refused(outcome));
                    }
                    let commit =
                        writes::commit_blob_job(conn, &repo, &blob, upload_id.as_deref(), &events)
                            .await?;
                    if let Some(id) = &charge.reservation {
                        quota_sql::release(&mut *conn, id).await?;
                    }
                    Ok(ChargedCommit::Committed(commit))
                })
            })
            .await
    }

    async fn check_blobs(
        &self,
        repo: &RepoName,
        digests: &[Digest],
        limits: &[(String, u64)],
    ) -> Result<QuotaOutcome> {
        let mut conn = self.reader.acquire().await?;
        quota_sql::check_blobs(&mut conn, repo, digests, limits).await
    }

    async fn compact(&self) -> Result<()> {
        Ok(())
    }

    async fn recompute(&self, fix: bool) -> Result<Vec<Drift>> {
        self.writer
            .write(move |conn| Box::pin(async move { quota_sql::recompute(conn, fix).await }))
            .await
    }
}
