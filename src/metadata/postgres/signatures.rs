//! [`SignatureStore`] on PostgreSQL: single statements on the pool.

use async_trait::async_trait;

use super::PostgresStore;
use crate::metadata::signatures::{PutSignatureOutcome, SignatureStore, StoredSignature};
use crate::metadata::Result;
use crate::types::{Digest, RepoName};

mod q {
    crate::metadata::signatures::signature_queries!(sqlx::Postgres);
}

#[async_trait]
impl SignatureStore for PostgresStore {
    async fn put_signature(
        &self,
        repo: &RepoName,
        digest: &Digest,
        signature: &StoredSignature,
    ) -> Result<PutSignatureOutcome> {
        if q::insert_signature(&self.pool, repo, digest, signature).await? {
            return Ok(PutSignatureOutcome::Stored);
        }
        q::why_not_inserted(&self.pool, repo, digest, &signature.name).await
    }

    async fn signatures(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<StoredSignature>> {
        q::signatures(&self.pool, repo, digest).await
    }

    async fn parents(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>> {
        q::parents(&self.pool, repo, digest).await
    }
}
