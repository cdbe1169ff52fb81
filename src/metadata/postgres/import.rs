//! [`ImportStore`] on PostgreSQL: single statements on the pool.

use async_trait::async_trait;

use super::PostgresStore;
use crate::metadata::import::ImportStore;
use crate::metadata::Result;

mod q {
    crate::metadata::import::import_queries!(sqlx::Postgres);
}

#[async_trait]
impl ImportStore for PostgresStore {
    async fn imported_repositories(&self, source: &str) -> Result<Vec<String>> {
        q::imported_repositories(&self.pool, source).await
    }

    async fn mark_imported(&self, source: &str, repository: &str, now: i64) -> Result<()> {
        q::mark_imported(&self.pool, source, repository, now).await
    }

    async fn forget_imports(&self, source: &str) -> Result<u64> {
        q::forget_imports(&self.pool, source).await
    }
}
