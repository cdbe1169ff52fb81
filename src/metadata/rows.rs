//! The rows both engines read, as `sqlx::FromRow` types, and their conversion into the
//! registry's records. A stored value that does not parse (a digest, a repository
//! name, a chunk list) is [`MetadataError::Corrupt`], never a silent default.
//!
//! An upload's chunk list is JSON in a TEXT column on both engines. (`sqlx::types::Json`
//! would want PostgreSQL's JSON type; changing the column's type would break the
//! instances of the previous release during a rolling deploy, see
//! `migrations/README.md`.) [`chunks_json`] and the row conversion are its only
//! encoder and decoder.

use super::{MetadataError, Result};
use crate::types::UploadRecord;
use crate::types::{BlobRecord, ChunkRecord, Digest, ManifestRecord, ReferrerRecord, RepoName};

pub(super) fn parse_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e| MetadataError::Corrupt(format!("digest {s:?}: {e}")))
}

/// `upload_sessions`.
#[derive(sqlx::FromRow)]
pub(super) struct UploadRow {
    id: String,
    repository: String,
    received: i64,
    storage_key: String,
    chunks: String,
    hash_state: Vec<u8>,
    created_at: i64,
    updated_at: i64,
}

/// An upload's chunk list as stored.
pub(super) fn chunks_json(chunks: &[ChunkRecord]) -> Result<String> {
    serde_json::to_string(chunks)
        .map_err(|e| MetadataError::Corrupt(format!("cannot encode a chunk list: {e}")))
}

impl TryFrom<UploadRow> for UploadRecord {
    type Error = MetadataError;

    fn try_from(r: UploadRow) -> Result<UploadRecord> {
        Ok(UploadRecord {
            repository: RepoName::parse(&r.repository)
                .map_err(|e| MetadataError::Corrupt(format!("upload {}: {e}", r.id)))?,
            chunks: serde_json::from_str(&r.chunks)
                .map_err(|e| MetadataError::Corrupt(format!("upload {} chunks: {e}", r.id)))?,
            id: r.id,
            offset: r.received as u64,
            storage_key: r.storage_key,
            hash_state: r.hash_state,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// `size, storage_key` of `blobs` (the digest is the one asked for).
#[derive(sqlx::FromRow)]
pub(super) struct BlobRow {
    size: i64,
    storage_key: String,
}

impl BlobRow {
    pub(super) fn into_record(self, digest: &Digest) -> BlobRecord {
        BlobRecord {
            digest: digest.clone(),
            size: self.size as u64,
            storage_key: self.storage_key,
        }
    }
}

/// `manifests`.
#[derive(sqlx::FromRow)]
pub(super) struct ManifestRow {
    digest: String,
    media_type: String,
    payload: Vec<u8>,
    subject_digest: Option<String>,
    artifact_type: Option<String>,
    annotations: Option<String>,
}

impl TryFrom<ManifestRow> for ManifestRecord {
    type Error = MetadataError;

    fn try_from(r: ManifestRow) -> Result<ManifestRecord> {
        Ok(ManifestRecord {
            digest: parse_digest(&r.digest)?,
            media_type: r.media_type,
            payload: r.payload,
            subject: r.subject_digest.as_deref().map(parse_digest).transpose()?,
            artifact_type: r.artifact_type,
            annotations: r.annotations,
        })
    }
}

/// A manifest as the referrers API lists it.
#[derive(sqlx::FromRow)]
pub(super) struct ReferrerRow {
    digest: String,
    media_type: String,
    size: i64,
    artifact_type: Option<String>,
    annotations: Option<String>,
}

impl TryFrom<ReferrerRow> for ReferrerRecord {
    type Error = MetadataError;

    fn try_from(r: ReferrerRow) -> Result<ReferrerRecord> {
        Ok(ReferrerRecord {
            digest: parse_digest(&r.digest)?,
            media_type: r.media_type,
            size: r.size as u64,
            artifact_type: r.artifact_type,
            annotations: r.annotations,
        })
    }
}

/// Converts every row, failing on the first that does not parse.
pub(super) fn records<R, T>(rows: Vec<R>) -> Result<Vec<T>>
where
    T: TryFrom<R, Error = MetadataError>,
{
    rows.into_iter().map(T::try_from).collect()
}
