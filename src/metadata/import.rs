//! [`ImportStore`]: `wharf import`'s checkpoints (`import_checkpoints`, migration 0008),
//! one row per repository of a source store that has been imported completely. Both
//! engines run the same three statements ([`import_queries!`]).

use async_trait::async_trait;

use super::Result;

/// Which repositories of a source store an import has finished.
#[async_trait]
pub trait ImportStore: Send + Sync + 'static {
    /// The repositories of `source` recorded as imported.
    async fn imported_repositories(&self, source: &str) -> Result<Vec<String>>;
    /// Records `repository` of `source` as imported (again: no change).
    async fn mark_imported(&self, source: &str, repository: &str, now: i64) -> Result<()>;
    /// Forgets every checkpoint of `source` (a fresh import re-reads everything);
    /// returns how many there were.
    async fn forget_imports(&self, source: &str) -> Result<u64>;
}

/// The statements, stamped out per engine like `mirror_queries!`.
macro_rules! import_queries {
    ($db:ty) => {
        use $crate::metadata::Result;

        pub(crate) async fn imported_repositories<'e, E>(e: E, source: &str) -> Result<Vec<String>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT repository FROM import_checkpoints WHERE source = $1 ORDER BY repository",
            )
            .bind(source)
            .fetch_all(e)
            .await?;
            Ok(rows.into_iter().map(|(r,)| r).collect())
        }

        pub(crate) async fn mark_imported<'e, E>(
            e: E,
            source: &str,
            repository: &str,
            now: i64,
        ) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query(
                "INSERT INTO import_checkpoints (source, repository, completed_at)
                 VALUES ($1, $2, $3) ON CONFLICT (source, repository) DO NOTHING",
            )
            .bind(source)
            .bind(repository)
            .bind(now)
            .execute(e)
            .await?;
            Ok(())
        }

        pub(crate) async fn forget_imports<'e, E>(e: E, source: &str) -> Result<u64>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query("DELETE FROM import_checkpoints WHERE source = $1")
                .bind(source)
                .execute(e)
                .await?;
            Ok(done.rows_affected())
        }
    };
}
pub(crate) use import_queries;
