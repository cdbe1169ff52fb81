//! The instrumented engine's quota, signature and import aggregates (`QuotaStore`,
//! `SignatureStore`, `ImportStore`): each call measured as in the parent module.

use async_trait::async_trait;

use super::{Engine, Instrumented};
use crate::metadata::import::ImportStore;
use crate::metadata::quota::{
    Drift, QuotaLimit, QuotaOutcome, QuotaStore, Reservation, ScopeUsage,
};
use crate::metadata::signatures::{PutSignatureOutcome, SignatureStore, StoredSignature};
use crate::metadata::Result;
use crate::telemetry::calls::{observe, Store};
use crate::types::{Digest, RepoName};

#[async_trait]
impl<S: Engine> QuotaStore for Instrumented<S> {
    async fn quota_limits(&self) -> Result<Vec<QuotaLimit>> {
        let call = self.inner.quota_limits();
        observe(Store::Metadata, self.backend, "quota_limits", call).await
    }

    async fn set_quota_limit(&self, limit: &QuotaLimit) -> Result<()> {
        let call = self.inner.set_quota_limit(limit);
        observe(Store::Metadata, self.backend, "set_quota_limit", call).await
    }

    async fn delete_quota_limit(&self, scope: &str) -> Result<bool> {
        let call = self.inner.delete_quota_limit(scope);
        observe(Store::Metadata, self.backend, "delete_quota_limit", call).await
    }

    async fn seed_quota_limits(&self, limits: &[QuotaLimit]) -> Result<()> {
        let call = self.inner.seed_quota_limits(limits);
        observe(Store::Metadata, self.backend, "seed_quota_limits", call).await
    }

    async fn scope_usage(&self, scope: &str) -> Result<ScopeUsage> {
        let call = self.inner.scope_usage(scope);
        observe(Store::Metadata, self.backend, "scope_usage", call).await
    }

    async fn reserve(
        &self,
        reservation: &Reservation,
        limits: &[(String, u64)],
    ) -> Result<QuotaOutcome> {
        let call = self.inner.reserve(reservation, limits);
        observe(Store::Metadata, self.backend, "reserve", call).await
    }

    async fn release(&self, id: &str) -> Result<()> {
        let call = self.inner.release(id);
        observe(Store::Metadata, self.backend, "release", call).await
    }

    async fn check_blobs(
        &self,
        repo: &RepoName,
        digests: &[Digest],
        limits: &[(String, u64)],
    ) -> Result<QuotaOutcome> {
        let call = self.inner.check_blobs(repo, digests, limits);
        observe(Store::Metadata, self.backend, "check_blobs", call).await
    }

    async fn compact(&self) -> Result<()> {
        let call = self.inner.compact();
        observe(Store::Metadata, self.backend, "compact", call).await
    }

    async fn recompute(&self, fix: bool) -> Result<Vec<Drift>> {
        let call = self.inner.recompute(fix);
        observe(Store::Metadata, self.backend, "recompute", call).await
    }
}

#[async_trait]
impl<S: Engine> SignatureStore for Instrumented<S> {
    async fn put_signature(
        &self,
        repo: &RepoName,
        digest: &Digest,
        signature: &StoredSignature,
    ) -> Result<PutSignatureOutcome> {
        let call = self.inner.put_signature(repo, digest, signature);
        observe(Store::Metadata, self.backend, "put_signature", call).await
    }

    async fn signatures(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<StoredSignature>> {
        let call = self.inner.signatures(repo, digest);
        observe(Store::Metadata, self.backend, "signatures", call).await
    }

    async fn parents(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>> {
        let call = self.inner.parents(repo, digest);
        observe(Store::Metadata, self.backend, "parents", call).await
    }
}

#[async_trait]
impl<S: Engine> ImportStore for Instrumented<S> {
    async fn imported_repositories(&self, source: &str) -> Result<Vec<String>> {
        let call = self.inner.imported_repositories(source);
        observe(Store::Metadata, self.backend, "imported_repositories", call).await
    }

    async fn mark_imported(&self, source: &str, repository: &str, now: i64) -> Result<()> {
        let call = self.inner.mark_imported(source, repository, now);
        observe(Store::Metadata, self.backend, "mark_imported", call).await
    }

    async fn forget_imports(&self, source: &str) -> Result<u64> {
        let call = self.inner.forget_imports(source);
        observe(Store::Metadata, self.backend, "forget_imports", call).await
    }
}
