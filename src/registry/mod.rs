//! The registry core: the OCI Distribution Spec's rules — names, references, digests,
//! upload sessions, manifest validation, tags, referrers, storage quotas (`quota`), and
//! the events that report changes and pulls (`events`).
//!
//! Layer rule: the core calls the metadata store, the blob store and the redirector;
//! they never call the core. Nothing in here names an HTTP, SQL, object-store or cache
//! type (no actix, sqlx, object_store or redis; `tests/layers.rs` checks): handlers
//! translate requests into calls on [`Registry`], and the stores hide their engines
//! behind traits and their own error enums.

use std::sync::Arc;

use crate::blobs::BlobBackend;
pub(crate) use crate::clock::now_ms;
use crate::metadata::Metadata;
use crate::redirect::Redirector;

pub mod adopt;
pub mod blobs;
pub mod error;
pub mod events;
pub mod gc;
pub mod hasher;
pub mod manifest_format;
pub mod manifests;
pub mod mirror;
pub mod quota;
mod quota_metrics;
pub mod signatures;
pub mod uploads;

pub use error::{RegistryError, Result};
pub use events::EventOptions;

/// Behaviour switches that come from configuration.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `storage.delete.enabled`: blob and manifest deletes are allowed.
    pub delete_enabled: bool,
    /// `storage.maintenance.readonly.enabled`: every push and delete is refused.
    pub read_only: bool,
    /// Upper bound on one page of tags or repositories.
    pub max_page: u32,
    /// `validation.manifests.sparse`: a manifest may reference blobs and manifests that
    /// are not in the repository.
    pub sparse_manifests: bool,
    /// `validation.manifests.indexes.platforms: none`: an index's children need not be
    /// in the repository.
    pub sparse_indexes: bool,
    /// `validation.manifests.urls`: what the `urls` of non-distributable layers must
    /// match (any of `allow`, when there are any) and must not match (any of `deny`).
    pub url_allow: Vec<regex::Regex>,
    pub url_deny: Vec<regex::Regex>,
    /// `storage.gc` and `retention`.
    pub gc: gc::GcOptions,
    /// What notifications want written (`notifications`).
    pub events: EventOptions,
    /// `quotas` (`quota`).
    pub quotas: quota::QuotaOptions,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            delete_enabled: true,
            read_only: false,
            max_page: 10_000,
            sparse_manifests: false,
            sparse_indexes: false,
            url_allow: Vec::new(),
            url_deny: Vec::new(),
            gc: gc::GcOptions::default(),
            events: EventOptions::default(),
            quotas: quota::QuotaOptions::default(),
        }
    }
}

/// The registry: every operation of the distribution API, independent of transport.
#[derive(Clone)]
pub struct Registry {
    pub(crate) meta: Metadata,
    pub(crate) blobs: Arc<dyn BlobBackend>,
    /// Sends blob GETs elsewhere (presigned URLs, a CDN); `None`: always stream.
    pub(crate) redirector: Option<Arc<Redirector>>,
    pub(crate) options: RegistryOptions,
    /// Blob uses and manifest pulls, written in batches (`gc::access`).
    pub(crate) access: Arc<gc::access::AccessLog>,
    /// Where pull events wait to be written (only when some endpoint wants them).
    pub(crate) pulls: Option<events::PullBuffer>,
    /// The pull-through cache, if configured (`mirror`).
    pub(crate) mirror: Option<Arc<dyn mirror::Mirror>>,
    /// This instance's copy of the quotas (`quota`).
    pub(crate) quota_cache: Arc<quota::QuotaCache>,
}

impl Registry {
    pub fn new(
        meta: Metadata,
        blobs: Arc<dyn BlobBackend>,
        redirector: Option<Redirector>,
        options: RegistryOptions,
    ) -> Self {
        let pulls = if options.events.enabled && options.events.pulls {
            events::PullBuffer::start(meta.events.clone())
        } else {
            None
        };
        Registry {
            meta,
            blobs,
            redirector: redirector.map(Arc::new),
            options,
            access: Arc::default(),
            pulls,
            mirror: None,
            quota_cache: Arc::default(),
        }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// The blob backend's name (`filesystem`, `s3`, …), for logs.
    pub fn storage_name(&self) -> &'static str {
        self.blobs.name()
    }

    /// The smallest chunk an upload should send (`OCI-Chunk-Min-Length`): what the
    /// blob store composes without copying.
    pub fn min_chunk_len(&self) -> u64 {
        self.blobs.min_chunk_len()
    }

    /// Whether the registry can serve: the metadata database answers and the blob
    /// store is reachable with the configured bucket and credentials.
    pub async fn check_ready(&self) -> Result<()> {
        self.meta.repositories.ping().await?;
        self.blobs.check().await?;
        Ok(())
    }

    /// Refuses writes while the registry is read-only.
    fn require_writable(&self) -> Result<()> {
        if self.options.read_only {
            Err(RegistryError::Unsupported(
                "the registry is read-only (storage.maintenance.readonly.enabled: true)".into(),
            ))
        } else {
            Ok(())
        }
    }

    fn require_delete(&self) -> Result<()> {
        self.require_writable()?;
        if self.options.delete_enabled {
            Ok(())
        } else {
            Err(RegistryError::Unsupported(
                "deletes are disabled on this registry (storage.delete.enabled: false)".into(),
            ))
        }
    }

    /// Clamps a client's page size `n` (absent: the maximum).
    fn page_size(&self, n: Option<u32>) -> u32 {
        n.unwrap_or(self.options.max_page)
            .min(self.options.max_page)
    }
}

/// One page of a lexically ordered listing.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<String>,
    /// The `last` to ask for the next page with, if there is one.
    pub next_last: Option<String>,
}

impl Page {
    /// Builds a page from up to `limit + 1` fetched items.
    fn from_fetched(mut items: Vec<String>, limit: u32) -> Page {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_last = if more { items.last().cloned() } else { None };
        Page { items, next_last }
    }
}
