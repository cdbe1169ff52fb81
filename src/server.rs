//! Assembles a running registry from a [`Config`]: metadata store, blob store, core,
//! HTTP server and background work.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpServer};

use crate::blobs::{cloud, fs::FsBackend, object::ObjectBackend, BlobBackend};
use crate::config::{Config, StorageDriver};
use crate::http::{configure, AppState};
use crate::registry::{Registry, RegistryOptions};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("metadata store: {0}")]
    Metadata(#[from] crate::metadata::MetadataError),
    #[error("metadata cache: {0}")]
    Cache(#[from] crate::cache::CacheError),
    #[error("blob storage at {path}: {source}")]
    Storage {
        path: String,
        source: std::io::Error,
    },
    #[error("pull-through cache: {0}")]
    Proxy(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

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
    fn cloud_error(e: cloud::CloudError) -> StartError {
        StartError::Storage {
            path: e.key.to_string(),
            source: std::io::Error::other(e.message),
        }
    }
    Ok(backend)
}

/// Builds the registry core with its stores (running migrations).
pub async fn registry(config: &Config) -> Result<Registry, StartError> {
    let meta = crate::metadata::open(&config.database.url, config.database.maxconnections).await?;
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
        ..RegistryOptions::default()
    };
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

/// Starts the HTTP server on `listener` (already bound, so tests can use port 0).
pub fn http_server(
    registry: Registry,
    config: &Config,
    listener: TcpListener,
) -> Result<Server, StartError> {
    let auth = crate::auth::Authorizer::from_config(&config.auth)?;
    tracing::info!(?auth, "authentication");
    let clients = crate::http::client_addr::ClientAddr::new(config.http.trusted_proxies()?);
    let state = web::Data::new(AppState {
        registry,
        auth,
        clients,
    });
    let extra_headers = config.http.headers.clone();
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server = HttpServer::new(move || {
        let mut headers =
            DefaultHeaders::new().add(("Docker-Distribution-API-Version", "registry/2.0"));
        for (name, values) in &extra_headers {
            if let Some(v) = values.first() {
                headers = headers.add((name.as_str(), v.as_str()));
            }
        }
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(crate::http::metrics::record))
            .wrap(tracing_actix_web::TracingLogger::<
                crate::http::spans::RegistryRootSpan,
            >::new())
            .wrap(headers)
            .configure(configure)
    })
    .workers(workers)
    .listen(listener)
    .map_err(|source| StartError::Listen { addr, source })?
    .run();
    Ok(server)
}

/// Everything `wharf serve` does: build, bind, serve, with background maintenance.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let addr = config.http.socket_addr()?;
    let registry = registry(&config).await?;
    let listener = TcpListener::bind(addr).map_err(|source| StartError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    tracing::info!(%addr, storage = registry.storage_name(), database = %redact(&config.database.url), "wharf listening");
    crate::maintenance::spawn(registry.clone(), &config);
    http_server(registry, &config, listener)?
        .await
        .map_err(|source| StartError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
