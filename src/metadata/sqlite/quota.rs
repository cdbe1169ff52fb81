//! [`QuotaStore`] on SQLite: reads on the reader pool, every write one job of the group
//! committer (one writer: a reservation's check and write cannot interleave with
//! another's); the statements are the shared ones (`quota_sql`).

use async_trait::async_trait;

use super::{quota_sql, SqliteStore};
use crate::metadata::quota::{
    Drift, QuotaLimit, QuotaOutcome, QuotaStore, Reservation, ScopeUsage,
};
use crate::metadata::Result;
use crate::types::{Digest, RepoName};

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
