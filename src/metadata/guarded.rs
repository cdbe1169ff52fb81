//! The metadata store behind the circuit breaker ([`super::breaker`]): a decorator of
//! every aggregate that asks the breaker before each call and tells it how the call
//! went. Below the cache, so cached reads go on while the database is away.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::breaker::Breaker;
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
    BlobCommit, BlobIndex, ManifestStore, Metadata, NewManifest, PutManifestOutcome,
    RepositoryStore, Result, UploadStore,
};
use crate::types::{
    BlobRecord, ChunkRecord, Digest, EventRecord, ManifestRecord, ReferrerRecord, RepoName, Tag,
    UploadRecord,
};

/// One aggregate of the store, guarded by the shared breaker.
struct Guarded<T: ?Sized> {
    inner: Arc<T>,
    breaker: Arc<Breaker>,
}

impl<T: ?Sized> Guarded<T> {
    fn new(inner: Arc<T>, breaker: &Arc<Breaker>) -> Arc<Self> {
        Arc::new(Guarded {
            inner,
            breaker: breaker.clone(),
        })
    }
}

/// Every aggregate of `meta` behind `breaker`.
pub fn guard(meta: Metadata, breaker: &Arc<Breaker>) -> Metadata {
    Metadata {
        uploads: Guarded::new(meta.uploads, breaker),
        blobs: Guarded::new(meta.blobs, breaker),
        manifests: Guarded::new(meta.manifests, breaker),
        repositories: Guarded::new(meta.repositories, breaker),
        gc: Guarded::new(meta.gc, breaker),
        events: Guarded::new(meta.events, breaker),
        mirror: Guarded::new(meta.mirror, breaker),
        imports: Guarded::new(meta.imports, breaker),
        quotas: Guarded::new(meta.quotas, breaker),
        signatures: Guarded::new(meta.signatures, breaker),
    }
}

/// Implements `$trait` for `Guarded<dyn $trait>`: each method admitted by the
/// breaker, its outcome recorded.
macro_rules! guarded {
    ($trait:ident { $( fn $name:ident( $($arg:ident : $ty:ty),* ) -> $ret:ty; )* }) => {
        #[async_trait]
        impl $trait for Guarded<dyn $trait> {
            $(
                #[allow(clippy::too_many_arguments)]
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    let permit = self.breaker.admit()?;
                    let result = self.inner.$name($($arg),*).await;
                    permit.record(&result);
                    result
                }
            )*
        }
    };
}

for_each_store_trait!(guarded);
