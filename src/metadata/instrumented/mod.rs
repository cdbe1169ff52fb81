//! The metadata store, instrumented once: [`Instrumented`] wraps an engine (SQLite or
//! PostgreSQL) and gives every call of every aggregate a span (`store.call`, with the
//! operation, the backend and the outcome; DEBUG, so exported with the request's trace
//! and not logged at INFO) and an observation in
//! `wharf_metadata_call_duration_seconds{backend, operation, outcome}`
//! (`telemetry::calls`). The operation is the trait method's name, a closed set.
//! [`open`](super::open) wraps every store it opens; nothing else in the layer measures.
//! The forwarding impls come from the one list of the traits' methods
//! (`metadata::store_methods`), shared with the circuit breaker's decorator.

use std::sync::Arc;

use async_trait::async_trait;

use std::collections::HashSet;

use super::events::{
    ClaimedCursor, DeadLetter, EndpointBacklog, EventStore, PendingEvent, ReplayFilter, StoredEvent,
};
use super::gc::{
    GcStore, PullRecord, QueueDepth, RepoSnapshot, ReviewBatch, ReviewPreview, Tombstone,
};
use super::import::ImportStore;
use super::mirror::{CachedContent, CachedTag, FillLease, MirrorStore};
use super::quota::{
    ChargedCommit, Drift, QuotaCharge, QuotaLimit, QuotaOutcome, QuotaStore, Reservation,
    RoomCheck, ScopeUsage,
};
use super::signatures::{PutSignatureOutcome, SignatureStore, StoredSignature};
use super::{
    BlobCommit, BlobIndex, ManifestStore, NewManifest, PutManifestOutcome, RepositoryStore, Result,
    UploadStore,
};
use crate::telemetry::calls::{observe, Store};
use crate::types::{
    BlobRecord, ChunkRecord, Digest, EventRecord, ManifestRecord, ReferrerRecord, RepoName, Tag,
    UploadRecord,
};

/// Every aggregate, as one engine serves them.
pub trait Engine:
    UploadStore
    + BlobIndex
    + ManifestStore
    + RepositoryStore
    + GcStore
    + EventStore
    + MirrorStore
    + QuotaStore
    + SignatureStore
    + ImportStore
{
}

impl<S> Engine for S where
    S: UploadStore
        + BlobIndex
        + ManifestStore
        + RepositoryStore
        + GcStore
        + EventStore
        + MirrorStore
        + QuotaStore
        + SignatureStore
        + ImportStore
{
}

/// An engine whose every call is measured.
pub struct Instrumented<S> {
    inner: Arc<S>,
    /// `sqlite` or `postgres`.
    backend: &'static str,
}

impl<S: Engine> Instrumented<S> {
    pub fn new(inner: S, backend: &'static str) -> Instrumented<S> {
        Instrumented {
            inner: Arc::new(inner),
            backend,
        }
    }
}

/// Implements `$trait` for `Instrumented<S>`: each method timed and given a span under
/// its own name.
macro_rules! instrumented {
    ($trait:ident { $( fn $name:ident( $($arg:ident : $ty:ty),* ) -> $ret:ty; )* }) => {
        #[async_trait]
        impl<S: Engine> $trait for Instrumented<S> {
            $(
                #[allow(clippy::too_many_arguments)]
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    let call = <S as $trait>::$name(&self.inner, $($arg),*);
                    observe(Store::Metadata, self.backend, stringify!($name), call).await
                }
            )*
        }
    };
}

for_each_store_trait!(instrumented);
