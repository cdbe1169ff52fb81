//! The cache backend, instrumented once: [`Instrumented`] wraps a [`CacheBackend`]
//! (Redis or in-process) and gives each call a span (`store.call`) and an observation
//! in `wharf_cache_call_duration_seconds{backend, operation, outcome}`
//! (`telemetry::calls`). [`wrap`](super::wrap) wraps the backend it opens.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{CacheBackend, Lookup, Result};
use crate::telemetry::calls::{observe, Store};

/// A cache backend whose every call is measured.
pub struct Instrumented {
    inner: Arc<dyn CacheBackend>,
    backend: &'static str,
}

/// `backend` with its calls measured.
pub fn wrap(backend: Arc<dyn CacheBackend>) -> Arc<dyn CacheBackend> {
    let name = backend.name();
    Arc::new(Instrumented {
        inner: backend,
        backend: name,
    })
}

#[async_trait]
impl CacheBackend for Instrumented {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn lookup(&self, generation_key: &str, key: &str) -> Result<Lookup> {
        observe(
            Store::Cache,
            self.backend,
            "lookup",
            self.inner.lookup(generation_key, key),
        )
        .await
    }

    async fn store(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<()> {
        observe(
            Store::Cache,
            self.backend,
            "store",
            self.inner.store(key, value, ttl),
        )
        .await
    }

    async fn renew(&self, generation_key: &str) -> Result<()> {
        observe(
            Store::Cache,
            self.backend,
            "renew",
            self.inner.renew(generation_key),
        )
        .await
    }

    async fn probe(&self) -> Result<()> {
        observe(Store::Cache, self.backend, "probe", self.inner.probe()).await
    }
}
