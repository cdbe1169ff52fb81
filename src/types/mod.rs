//! The validated values every layer shares: digests, repository names, tags and
//! references, byte ranges, and the records the registry core and the stores exchange
//! (blobs, upload sessions and their chunks, manifests, referrers), the events
//! notifications report, and the repository-name globs policies match (`glob`).
//!
//! This is the leaf of the module graph: it imports no other module of the crate, and
//! names no HTTP, SQL, object-store or cache type. Values are parsed once, at the edge
//! (`Digest::from_str`, `RepoName::parse`, `Reference::parse`), so nothing inside
//! re-checks strings.

pub mod digest;
pub mod events;
pub mod glob;
pub mod name;
pub mod range;
pub mod records;

pub use digest::{Algorithm, Digest, DigestError};
pub use events::{
    EventAction, EventRecord, EventReference, EventSource, EventTarget, RequestContext, TargetKind,
};
pub use name::{NameError, Reference, RepoName, Tag};
pub use range::{ByteRange, ChunkRange, RangeNotSatisfiable};
pub use records::{BlobRecord, ChunkRecord, ManifestRecord, ReferrerRecord, UploadRecord};
