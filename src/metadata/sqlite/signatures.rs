//! [`SignatureStore`] on SQLite: reads from the read pool, the insert as a group-commit
//! job.

use async_trait::async_trait;

use super::SqliteStore;
use crate::metadata::signatures::{PutSignatureOutcome, SignatureStore, StoredSignature};
use crate::metadata::Result;
use crate::types::{Digest, RepoName};

mod q {
    crate::metadata::signatures::signature_queries!(sqlx::Sqlite);
}

#[async_trait]
impl SignatureStore for SqliteStore {
    async fn put_signature(
        &self,
        repo: &RepoName,
        digest: &Digest,
        signature: &StoredSignature,
    ) -> Result<PutSignatureOutcome> {
        let (r, d, s) = (repo.clone(), digest.clone(), signature.clone());
        let stored = self
            .writer
            .write(move |conn| Box::pin(async move { q::insert_signature(conn, &r, &d, &s).await }))
            .await?;
        if stored {
            return Ok(PutSignatureOutcome::Stored);
        }
        q::why_not_inserted(&self.reader, repo, digest, &signature.name).await
    }

    async fn signatures(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<StoredSignature>> {
        q::signatures(&self.reader, repo, digest).await
    }

    async fn parents(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>> {
        q::parents(&self.reader, repo, digest).await
    }
}
