//! The registry core and its stores, opened from a [`Config`]: the metadata store
//! (pool, breaker, cache), the blob backend, the redirector, the core's options
//! (validation, garbage collection, events, quotas) and the pull-through cache.

use std::sync::Arc;

use crate::blobs::{cloud, fs::FsBackend, object::ObjectBackend, BlobBackend};
use crate::config::{Config, StorageDriver};
use crate::registry::{Registry, RegistryOptions};

use super::StartError;

/// Opens the configured blob backend.
pub fn blob_backend(config: &Config) -> Result<Arc<dyn BlobBackend>, StartError> {
    let backend: Arc<dyn BlobBackend> = match config.storage.driver() {
        StorageDriver::Filesystem { rootdirectory } => Arc::new(
            FsBackend::open(&rootdirectory).map_err(|source| StartError::Storage {
                path: rootdirectory.clone(),
                source,
            })?,
        ),
        StorageDriver::InMemory => Arc::new(ObjectBackend::new(
            "inmemory",
            Arc::new(object_store::memory::InMemory::new()),
            "",
        )),
        StorageDriver::S3(s3) => Arc::new(cloud::s3(&s3).map_err(cloud_error)?),
        StorageDriver::Azure(azure) => Arc::new(cloud::azure(&azure).map_err(cloud_error)?),
        StorageDriver::Gcs(gcs) => Arc::new(cloud::gcs(&gcs).map_err(cloud_error)?),
    };
    // Every call measured once (span and latency histogram): `blobs::instrumented`.
    let backend = crate::blobs::instrumented::wrap(backend);
    fn cloud_error(e: cloud::CloudError) -> StartError {
        StartError::Storage {
            path: e.key.to_string(),
            source: std::io::Error::other(e.message),
        }
    }
    Ok(backend)
}

/// The metadata store's pool and breaker, from `database.*`.
fn store_options(config: &Config) -> crate::metadata::StoreOptions {
    let db = &config.database;
    crate::metadata::StoreOptions {
        pool_size: db.maxconnections,
        acquire_timeout: db.acquiretimeout.0,
        breaker: (db.breaker.failures > 0).then_some(crate::metadata::breaker::BreakerSettings {
            failures: db.breaker.failures,
            open_for: db.breaker.openfor.0,
            grace: db.acquiretimeout.0,
        }),
    }
}

/// Builds the registry core with its stores (running migrations).
pub async fn registry(config: &Config) -> Result<Registry, StartError> {
    let meta = crate::metadata::open_with(&config.database.url, &store_options(config)).await?;
    let meta = crate::cache::wrap(config, meta).await?;
    let blobs = blob_backend(config)?;
    let redirector = crate::redirect::Redirector::from_config(config)?;
    let options = RegistryOptions {
        delete_enabled: config.storage.delete.enabled,
        read_only: config.storage.maintenance.readonly.enabled,
        sparse_manifests: config.validation.sparse_manifests(),
        sparse_indexes: config.validation.sparse_indexes(),
        url_allow: config
            .validation
            .url_patterns(&config.validation.manifests.urls.allow),
        url_deny: config
            .validation
            .url_patterns(&config.validation.manifests.urls.deny),
        gc: crate::maintenance::gc_options(config),
        events: event_options(config),
        quotas: quota_options(config),
        ..RegistryOptions::default()
    };
    if !config.storage.maintenance.readonly.enabled {
        meta.quotas.seed_quota_limits(&quota_seeds(config)).await?;
    }
    let registry = Registry::new(meta, blobs, redirector, options);
    // The pull-through cache (`proxy`), with its background sweeps.
    match crate::proxy::Proxy::from_config(config).map_err(StartError::Proxy)? {
        Some(proxy) => {
            let registry = registry.with_mirror(proxy.clone());
            proxy.spawn_background(registry.clone());
            Ok(registry)
        }
        None => Ok(registry),
    }
}

/// `quotas` for the core.
fn quota_options(config: &Config) -> crate::registry::quota::QuotaOptions {
    let defaults = crate::registry::quota::QuotaOptions::default();
    crate::registry::quota::QuotaOptions {
        reservation_ttl: config
            .quotas
            .reservationttl
            .map_or(defaults.reservation_ttl, |d| d.0),
        ..defaults
    }
}

/// The configuration's quotas, which seed the store's (`registry::quota`).
fn quota_seeds(config: &Config) -> Vec<crate::metadata::quota::QuotaLimit> {
    (config.quotas.scopes().into_iter())
        .map(|(scope, bytes)| crate::metadata::quota::QuotaLimit {
            scope,
            bytes,
            source: "config".into(),
        })
        .collect()
}

/// What `notifications` wants the core to write.
fn event_options(config: &Config) -> crate::registry::EventOptions {
    let (enabled, pulls) = crate::notify::wants(&config.notifications);
    crate::registry::EventOptions {
        enabled,
        pulls,
        include_references: config.notifications.events.includereferences,
        source: crate::notify::source(config.http.socket_addr().ok()),
    }
}
