//! Signatures stored through OpenShift's signature API extension: simple-signing
//! blobs kept by the manifest they sign ([`SignatureStore`], table `signatures` of
//! `0007_signatures.sql`). They are deleted with their manifest (a foreign key) and
//! reference nothing, so they never keep anything alive.
//!
//! The other forms signatures are stored in (referrers, sigstore attachment tags) are
//! ordinary manifests and tags; [`SignatureStore::signatures`] and the manifest store's
//! `referrers` and `manifest_by_tag` together list every form by subject digest.
//! Statements are written once for both engines ([`signature_queries!`]).

use async_trait::async_trait;

use super::Result;
use crate::types::{Digest, RepoName};

/// One signature as the extension stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignature {
    /// `<manifest digest>@<per-image name>`, as the client named it.
    pub name: String,
    /// The signature itself (for containers/image: an OpenPGP signed message).
    pub content: Vec<u8>,
    pub created_at: i64,
}

/// What storing a signature did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutSignatureOutcome {
    Stored,
    /// A signature of that name is already stored for the manifest; nothing changed.
    Exists,
    /// The manifest is not in the repository; nothing was written.
    ManifestUnknown,
}

/// The extension's signatures, by repository and manifest digest.
#[async_trait]
pub trait SignatureStore: Send + Sync + 'static {
    /// Stores `signature` for the manifest `digest` of `repo`, if that manifest exists
    /// and no signature of the same name does (one statement: a manifest deleted at the
    /// same time takes it with it).
    async fn put_signature(
        &self,
        repo: &RepoName,
        digest: &Digest,
        signature: &StoredSignature,
    ) -> Result<PutSignatureOutcome>;
    /// The manifest's signatures in the order they were stored; empty when it has none
    /// or does not exist.
    async fn signatures(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<StoredSignature>>;
    /// The indexes of `repo` that list the manifest `digest` as a child (a few: the
    /// trust policy lets a platform manifest through when an index holding it is signed).
    async fn parents(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>>;
}

/// Defines the signature statements for one engine (`$db`, its `sqlx::Database`).
macro_rules! signature_queries {
    ($db:ty) => {
        use $crate::metadata::signatures::{PutSignatureOutcome, StoredSignature};
        use $crate::metadata::Result;
        use $crate::types::{Digest, RepoName};

        /// The insert, conditional on the manifest (an INSERT … SELECT, so a manifest
        /// that is not there inserts nothing).
        pub(crate) async fn insert_signature<'e, E>(
            e: E,
            repo: &RepoName,
            digest: &Digest,
            s: &StoredSignature,
        ) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let done = sqlx::query(
                "INSERT INTO signatures (repository_id, manifest_digest, name, content, created_at)
                 SELECT m.repository_id, m.digest, $3, $4, $5
                 FROM manifests m JOIN repositories r ON r.id = m.repository_id
                 WHERE r.name = $1 AND m.digest = $2
                 ON CONFLICT (repository_id, manifest_digest, name) DO NOTHING",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .bind(&s.name)
            .bind(&s.content)
            .bind(s.created_at)
            .execute(e)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// Why an insert inserted nothing: the name was taken, or no such manifest.
        pub(crate) async fn why_not_inserted<'e, E>(
            e: E,
            repo: &RepoName,
            digest: &Digest,
            name: &str,
        ) -> Result<PutSignatureOutcome>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM signatures s JOIN repositories r ON r.id = s.repository_id
                 WHERE r.name = $1 AND s.manifest_digest = $2 AND s.name = $3",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .bind(name)
            .fetch_optional(e)
            .await?;
            Ok(if exists.is_some() {
                PutSignatureOutcome::Exists
            } else {
                PutSignatureOutcome::ManifestUnknown
            })
        }

        pub(crate) async fn parents<'e, E>(
            e: E,
            repo: &RepoName,
            digest: &Digest,
        ) -> Result<Vec<Digest>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT mr.manifest_digest
                 FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
                 WHERE r.name = $1 AND mr.child_digest = $2 AND mr.child_is_manifest
                 ORDER BY mr.manifest_digest LIMIT 16",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_all(e)
            .await?;
            rows.iter()
                .map(|d| $crate::metadata::rows::parse_digest(d))
                .collect()
        }

        pub(crate) async fn signatures<'e, E>(
            e: E,
            repo: &RepoName,
            digest: &Digest,
        ) -> Result<Vec<StoredSignature>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
                "SELECT s.name, s.content, s.created_at
                 FROM signatures s JOIN repositories r ON r.id = s.repository_id
                 WHERE r.name = $1 AND s.manifest_digest = $2
                 ORDER BY s.created_at, s.name",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_all(e)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(name, content, created_at)| StoredSignature {
                    name,
                    content,
                    created_at,
                })
                .collect())
        }
    };
}
pub(crate) use signature_queries;
