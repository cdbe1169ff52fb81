//! The registry core's errors: one variant per way a request can fail by the spec's
//! rules, plus the storage layers' failures. The HTTP layer maps each to its status and
//! the spec's error code in exactly one place (`http::error`).

use super::manifest_format::ManifestError;
use crate::blobs::BlobError;
use crate::metadata::MetadataError;
use crate::types::digest::{Digest, DigestError};
use crate::types::name::NameError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("repository {0} is not known to the registry")]
    NameUnknown(String),
    #[error("blob {0} is not known in this repository")]
    BlobUnknown(Digest),
    #[error("upload session {0:?} is not known in this repository")]
    UploadUnknown(String),
    #[error("{0}")]
    UploadInvalid(String),
    #[error("chunk does not start at the upload's current offset {offset}")]
    ChunkOutOfOrder { offset: u64 },
    #[error("another request is writing to this upload; retry after it completes")]
    UploadBusy,
    #[error("content digest {actual} does not match the digest given, {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("{0}")]
    ManifestInvalid(#[from] ManifestError),
    #[error("manifest references {0}, which is not in this repository")]
    ManifestBlobUnknown(Digest),
    #[error("manifest {0} is not known in this repository")]
    ManifestUnknown(String),
    #[error("{0}")]
    SizeInvalid(String),
    #[error("requested range is not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    PaginationInvalid(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Storage(BlobError),
    #[error("request body could not be read: {0}")]
    BodyRead(String),
    /// A signature the extension refuses (malformed name, empty, too big).
    #[error("{0}")]
    SignatureInvalid(String),
    /// A signature of that name is already stored for the manifest.
    #[error("signature {0} already exists")]
    SignatureExists(String),
    /// A trust policy refused the request (the message names the policy).
    #[error("{0}")]
    Untrusted(String),
    #[error(transparent)]
    Upstream(#[from] super::mirror::UpstreamError),
    /// A push that would take a scope over its storage quota (`registry::quota`).
    #[error(
        "quota exceeded: {scope} has a quota of {quota} bytes and {usage} bytes stored or \
         reserved; this push needs {requested} more"
    )]
    QuotaExceeded {
        scope: String,
        quota: u64,
        usage: u64,
        requested: u64,
    },
}

impl From<BlobError> for RegistryError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Busy => RegistryError::UploadBusy,
            other => RegistryError::Storage(other),
        }
    }
}

impl From<crate::types::RangeNotSatisfiable> for RegistryError {
    fn from(e: crate::types::RangeNotSatisfiable) -> Self {
        RegistryError::RangeNotSatisfiable { size: e.size }
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;
