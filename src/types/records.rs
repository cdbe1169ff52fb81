//! The records the registry core and the stores exchange: what a blob, an upload
//! session, a manifest and a referrer are once validated. The metadata store persists
//! them; nothing here knows how.

use super::digest::Digest;
use super::name::RepoName;

/// A blob known to the registry: its digest, size and where its bytes are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    pub digest: Digest,
    pub size: u64,
    pub storage_key: String,
}

/// A stored piece of an upload in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkRecord {
    pub key: String,
    pub offset: u64,
    pub len: u64,
}

/// Appends a finished chunk to an upload's chunk list, merging a chunk that continues
/// the previous one in place (the filesystem writes every chunk into one file).
pub fn push_chunk(chunks: &mut Vec<ChunkRecord>, chunk: ChunkRecord) {
    if let Some(last) = chunks.last_mut() {
        if last.key == chunk.key && last.offset + last.len == chunk.offset {
            last.len += chunk.len;
            return;
        }
    }
    chunks.push(chunk);
}

/// An upload session as stored between requests.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    pub id: String,
    pub repository: RepoName,
    /// Bytes received and durably stored so far.
    pub offset: u64,
    /// Where the blob's bytes go (the first chunk's key on object stores).
    pub storage_key: String,
    pub chunks: Vec<ChunkRecord>,
    /// Serialized hash mid-state (`registry::hasher::ResumableHasher`).
    pub hash_state: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A manifest as stored.
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub payload: Vec<u8>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    /// JSON object text.
    pub annotations: Option<String>,
}

/// A referrer of a subject, for the referrers API.
#[derive(Debug, Clone)]
pub struct ReferrerRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}
