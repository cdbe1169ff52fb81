//! [`ImportStore`] on SQLite: reads from the read pool, writes as group-commit jobs.

use async_trait::async_trait;

use super::SqliteStore;
use crate::metadata::import::ImportStore;
use crate::metadata::Result;

mod q {
    crate::metadata::import::import_queries!(sqlx::Sqlite);
}

#[async_trait]
impl ImportStore for SqliteStore {
    async fn imported_repositories(&self, source: &str) -> Result<Vec<String>> {
        q::imported_repositories(&self.reader, source).await
    }

    async fn mark_imported(&self, source: &str, repository: &str, now: i64) -> Result<()> {
        let (source, repository) = (source.to_owned(), repository.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move { q::mark_imported(conn, &source, &repository, now).await })
            })
            .await
    }

    async fn forget_imports(&self, source: &str) -> Result<u64> {
        let source = source.to_owned();
        self.writer
            .write(move |conn| Box::pin(async move { q::forget_imports(conn, &source).await }))
            .await
    }
}
