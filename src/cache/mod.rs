//! The metadata cache: what pulls read most — blob descriptors with their repository
//! membership, tag → manifest, manifests by digest — kept in Redis (shared by every
//! instance) or in this process (`inmemory`, for one instance).
//!
//! It sits in front of the metadata store's blob index and manifest store as a
//! decorator ([`CachedMetadata`]), so every write that can change a cached read passes
//! through it and invalidates what it changed; nothing else in the registry knows the
//! cache exists. Upload sessions and the catalog are not cached and do not pass through.
//!
//! Consistency rests on one mechanism, a **generation per repository**: every entry is
//! stored with the generation its reader saw *before* reading the database, and a write
//! (after its transaction commits) gives the repository a new random generation. An entry
//! filled from a read that raced a write therefore carries the old generation and is
//! never served, without timing assumptions. Generation and entry share a Redis Cluster
//! hash tag (`wharf:{<repository>}:…`), so a lookup is one `MGET` on one slot.
//!
//! The cache fails open: after an error or timeout requests go to the database until a
//! probe finds Redis answering again; writes made meanwhile are remembered and their
//! repositories' generations renewed before the cache is read again (see
//! [`cached_metadata`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{CacheKind, Config};
use crate::metadata::Metadata;

pub mod cached_metadata;
mod codec;
pub mod instrumented;
pub mod memory;
pub mod metrics;
pub mod redis;

pub use cached_metadata::CachedMetadata;

/// Errors of a cache backend. They never reach a client: the cache fails open.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cache configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, CacheError>;

/// What one lookup found: the repository's current generation and the raw entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub generation: u64,
    pub entry: Option<Vec<u8>>,
}

/// Where entries live. Keys come from [`keys`]; values are opaque bytes.
#[async_trait]
pub trait CacheBackend: Send + Sync + 'static {
    /// `redis` or `inmemory`, for logs and metrics.
    fn name(&self) -> &'static str;
    /// The generation under `generation_key` (created, random, if there is none) and the
    /// entry under `key`, read together.
    async fn lookup(&self, generation_key: &str, key: &str) -> Result<Lookup>;
    /// Stores an entry for `ttl`.
    async fn store(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<()>;
    /// Gives `generation_key` a new random value.
    async fn renew(&self, generation_key: &str) -> Result<()>;
    /// Checks the backend answers (every connection, so broken ones reconnect).
    async fn probe(&self) -> Result<()>;
}

/// Key names. Every key of a repository carries the repository name as its Redis
/// Cluster hash tag; repository names cannot contain braces.
pub mod keys {
    use crate::types::name::RepoName;

    const PREFIX: &str = "wharf";

    pub fn generation(repo: &RepoName) -> String {
        format!("{PREFIX}:{{{repo}}}:gen")
    }

    /// `kind` is `b` (blob link), `m` (manifest by digest) or `t` (tag).
    pub fn entry(repo: &RepoName, kind: char, id: &str) -> String {
        format!("{PREFIX}:{{{repo}}}:{kind}:{id}")
    }
}

/// A fresh generation: random, so a generation key lost (evicted, Redis restarted)
/// and created again can never match entries stored under the old one.
pub(crate) fn new_generation() -> u64 {
    // The top bit is kept clear so the value round-trips through Redis integers.
    uuid::Uuid::new_v4().as_u64_pair().0 >> 1
}

/// Puts the cache the configuration chooses in front of `meta`'s blob index and
/// manifest store (or returns it as it is).
pub async fn wrap(config: &Config, meta: Metadata) -> Result<Metadata> {
    let cache = &config.storage.cache;
    let backend: Arc<dyn CacheBackend> = match cache.blobdescriptor {
        None => return Ok(meta),
        Some(CacheKind::Inmemory) => Arc::new(memory::MemoryCache::new(cache.ttl)),
        Some(CacheKind::Redis) => {
            let redis = config
                .redis
                .as_ref()
                .ok_or_else(|| CacheError::Config("no redis section".into()))?;
            Arc::new(redis::RedisCache::connect(redis).await?)
        }
    };
    let backend = instrumented::wrap(backend);
    tracing::info!(cache = backend.name(), ttl = ?cache.ttl, "metadata cache enabled");
    Ok(CachedMetadata::wrap(meta, backend, cache.ttl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::name::RepoName;

    #[test]
    fn keys_share_the_repository_hash_tag() {
        let repo = RepoName::parse("team/app").unwrap();
        assert_eq!(keys::generation(&repo), "wharf:{team/app}:gen");
        assert_eq!(
            keys::entry(&repo, 't', "latest"),
            "wharf:{team/app}:t:latest"
        );
    }

    #[test]
    fn generations_differ() {
        let a = new_generation();
        assert_ne!(a, new_generation());
        assert!(a < (1 << 63));
    }
}
