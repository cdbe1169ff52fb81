//! The registry core: the OCI Distribution Spec's rules — names, references, digests,
//! upload sessions, manifest validation, tags, referrers.
//!
//! Layer rule: the core calls the metadata store and the blob store; they never call the
//! core. Nothing in here knows about HTTP (no actix) or SQL (no sqlx): handlers translate
//! requests into calls on [`Registry`], and the stores hide their engines behind traits.

use std::sync::Arc;

use crate::blobs::BlobStore;
pub(crate) use crate::clock::now_ms;
use crate::metadata::MetadataStore;

pub mod blobs;
pub mod digest;
pub mod error;
pub mod hasher;
pub mod manifest;
pub mod manifests;
pub mod name;
pub mod uploads;

pub use error::{RegistryError, Result};

/// Behaviour switches that come from configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `storage.delete.enabled`: blob and manifest deletes are allowed.
    pub delete_enabled: bool,
    /// `storage.maintenance.readonly.enabled`: every push and delete is refused.
    pub read_only: bool,
    /// Upper bound on one page of tags or repositories.
    pub max_page: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            delete_enabled: true,
            read_only: false,
            max_page: 10_000,
        }
    }
}

/// The registry: every operation of the distribution API, independent of transport.
#[derive(Clone)]
pub struct Registry {
    pub(crate) meta: Arc<dyn MetadataStore>,
    pub(crate) blobs: BlobStore,
    pub(crate) policy: Policy,
}

impl Registry {
    pub fn new(meta: Arc<dyn MetadataStore>, blobs: BlobStore, policy: Policy) -> Self {
        Registry {
            meta,
            blobs,
            policy,
        }
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    pub fn blob_store(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Refuses writes while the registry is read-only.
    fn require_writable(&self) -> Result<()> {
        if self.policy.read_only {
            Err(RegistryError::Unsupported(
                "the registry is read-only (storage.maintenance.readonly.enabled: true)".into(),
            ))
        } else {
            Ok(())
        }
    }

    fn require_delete(&self) -> Result<()> {
        self.require_writable()?;
        if self.policy.delete_enabled {
            Ok(())
        } else {
            Err(RegistryError::Unsupported(
                "deletes are disabled on this registry (storage.delete.enabled: false)".into(),
            ))
        }
    }

    /// Clamps a client's page size `n` (absent: the maximum).
    fn page_size(&self, n: Option<u32>) -> u32 {
        n.unwrap_or(self.policy.max_page).min(self.policy.max_page)
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
