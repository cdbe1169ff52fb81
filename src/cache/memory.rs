//! The in-process cache (`storage.cache.blobdescriptor: inmemory`): the same entries and
//! generations as Redis, in a bounded `moka` cache. Only right for a single instance:
//! other instances' writes cannot reach it.

use std::time::Duration;

use async_trait::async_trait;
use moka::sync::Cache;

use super::{new_generation, CacheBackend, Lookup, Result};

/// Entries are bounded by their bytes, not their number (manifests vary a lot in size).
const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Generations are a few bytes each; bounded by count. One evicted is recreated with a
/// new random value, which only costs misses.
const MAX_GENERATIONS: u64 = 100_000;

pub struct MemoryCache {
    entries: Cache<String, std::sync::Arc<[u8]>>,
    generations: Cache<String, u64>,
}

impl MemoryCache {
    /// Entries live at most `ttl`.
    pub fn new(ttl: Duration) -> Self {
        MemoryCache {
            entries: Cache::builder()
                .max_capacity(MAX_BYTES)
                .weigher(|k: &String, v: &std::sync::Arc<[u8]>| {
                    u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
            generations: Cache::builder().max_capacity(MAX_GENERATIONS).build(),
        }
    }
}

#[async_trait]
impl CacheBackend for MemoryCache {
    fn name(&self) -> &'static str {
        "inmemory"
    }

    async fn lookup(&self, generation_key: &str, key: &str) -> Result<Lookup> {
        let generation = self
            .generations
            .get_with_by_ref(generation_key, new_generation);
        Ok(Lookup {
            generation,
            entry: self.entries.get(key).map(|v| v.to_vec()),
        })
    }

    async fn store(&self, key: &str, value: Vec<u8>, _ttl: Duration) -> Result<()> {
        self.entries.insert(key.to_string(), value.into());
        Ok(())
    }

    async fn renew(&self, generation_key: &str) -> Result<()> {
        self.generations
            .insert(generation_key.to_string(), new_generation());
        Ok(())
    }

    async fn probe(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generation_is_stable_until_renewed() {
        let c = MemoryCache::new(Duration::from_secs(60));
        let a = c.lookup("g", "k").await.unwrap();
        assert_eq!(a.entry, None);
        c.store("k", b"v".to_vec(), Duration::from_secs(60))
            .await
            .unwrap();
        let b = c.lookup("g", "k").await.unwrap();
        assert_eq!(b.generation, a.generation);
        assert_eq!(b.entry.as_deref(), Some(&b"v"[..]));
        c.renew("g").await.unwrap();
        assert_ne!(c.lookup("g", "k").await.unwrap().generation, a.generation);
    }
}
