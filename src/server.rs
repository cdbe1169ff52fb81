//! Assembles a running registry from a [`Config`]: metadata store, blob store, core,
//! HTTP server and background work.

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle};
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
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    #[error("pull-through cache: {0}")]
    Proxy(String),
    #[error("trust: {0}")]
    Trust(String),
    #[error("cannot listen on {addr}: {source}{}", listen_hint(.source))]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// What to do about a port that cannot be bound.
fn listen_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another process has it: stop it, or choose another address with http.addr \
             or REGISTRY_HTTP_ADDR)"
        }
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        _ => "",
    }
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

/// Starts the notification workers of the enabled endpoints (none: nothing).
pub async fn spawn_notifications(registry: &Registry, config: &Config) -> Result<(), StartError> {
    crate::notify::spawn(registry.meta.events.clone(), &config.notifications).await?;
    Ok(())
}

/// Starts the HTTP server on `listener` (already bound, so tests can use port 0).
pub fn http_server(
    registry: Registry,
    config: &Config,
    listener: TcpListener,
) -> Result<Server, StartError> {
    let auth = crate::auth::Authorizer::from_config(&config.auth)?;
    start_http(registry, auth, config, Listener::Tcp(listener))
}

/// A bound listening socket (`http.net`).
pub enum Listener {
    Tcp(TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Listener {
    /// Binds `http.addr` on `http.net`. A unix socket left by a previous run (nothing
    /// answers on it) is replaced.
    pub fn bind(http: &crate::config::HttpConfig) -> Result<Listener, StartError> {
        if http.is_unix() {
            let path = std::path::Path::new(&http.addr);
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                && std::os::unix::net::UnixStream::connect(path).is_err()
            {
                let _ = std::fs::remove_file(path);
            }
            return std::os::unix::net::UnixListener::bind(path)
                .map(Listener::Unix)
                .map_err(|source| StartError::Listen {
                    addr: http.addr.clone(),
                    source,
                });
        }
        let addr = http.socket_addr()?;
        TcpListener::bind(addr)
            .map(Listener::Tcp)
            .map_err(|source| StartError::Listen {
                addr: addr.to_string(),
                source,
            })
    }

    /// Where it listens, as a URL (`https://127.0.0.1:5000`, `unix:/run/wharf.sock`).
    pub fn url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("{scheme}://{a}"))
                .unwrap_or_default(),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_default(),
        }
    }
}

/// The application: state, middleware and routes, as every worker builds it.
fn app(
    state: web::Data<AppState>,
    urls: web::Data<crate::http::urls::Urls>,
    access_log: crate::http::access::AccessLog,
    public_metrics: bool,
    extra_headers: &std::collections::BTreeMap<String, Vec<String>>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let mut headers =
        DefaultHeaders::new().add(("Docker-Distribution-API-Version", "registry/2.0"));
    for (name, values) in extra_headers {
        if let Some(v) = values.first() {
            headers = headers.add((name.as_str(), v.as_str()));
        }
    }
    App::new()
        .app_data(state)
        .app_data(urls)
        .app_data(access_log)
        .wrap(from_fn(crate::http::per_client::refuse_over_limit))
        .wrap(from_fn(crate::http::metrics::record))
        .wrap(from_fn(crate::http::access::record))
        .wrap(tracing_actix_web::TracingLogger::<
            crate::http::spans::RegistryRootSpan,
        >::new())
        .wrap(actix_web::middleware::Condition::new(
            crate::telemetry::otlp::exporting(),
            from_fn(crate::http::trace_context::carry),
        ))
        .wrap(headers)
        .wrap(from_fn(crate::http::urls::rewrite))
        .configure(|cfg| configure(cfg, public_metrics))
}

fn start_http(
    registry: Registry,
    auth: crate::auth::Authorizer,
    config: &Config,
    listener: Listener,
) -> Result<Server, StartError> {
    let clients = crate::http::client_addr::ClientAddr::new(config.http.trusted_proxies()?);
    let per_client = crate::http::per_client::PerClient::new(
        config.http.limits.connectionsperclient,
        clients.clone(),
    );
    let health = crate::http::health::Health::spawn(&config.health, &registry);
    let trust = crate::trust::Trust::from_config(&config.trust, registry.clone())
        .map_err(StartError::Trust)?;
    let state = web::Data::new(AppState {
        trust,
        registry,
        auth,
        clients,
        health,
        transfers: crate::http::transfers::Transfers::new(
            config.http.limits.transfers,
            config.http.timeouts.body.0,
            config.http.limits.manifestbytes,
        ),
        writes: config.http.limits.writes.map(|w| {
            crate::http::write_limiter::WriteLimiter::new(w.concurrent, w.queued, w.queuetimeout.0)
        }),
    });
    let timeouts = config.http.timeouts;
    let public_metrics = !config.http.metrics_on_debug();
    if let Some(debug) = &config.http.debug {
        start_debug(state.clone(), debug)?;
    }
    let urls = web::Data::new(crate::http::urls::Urls::from_config(&config.http));
    let extra_headers = config.http.headers.clone();
    let access_log = crate::http::access::AccessLog(!config.log.accesslog.disabled);
    let addr = listener.url(config.http.tls.is_some());
    let listen_error = |source| StartError::Listen {
        addr: addr.clone(),
        source,
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let drain = config.http.drain_timeout().as_secs();
    let http2 = !config.http.http2.disabled;
    let tls = match &config.http.tls {
        Some(tls) => Some(crate::http::tls::server_config(tls, http2)?),
        None => None,
    };
    // Per connection: its guard, TCP_USER_TIMEOUT, and its place under
    // `connectionsperclient` (TCP peers only: a unix socket has no peer address).
    let on_connect = crate::http::transfers::on_connect(timeouts.send.0, per_client);
    type TlsTcp = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let server = match (listener, tls) {
        (Listener::Tcp(listener), Some(tls)) if !http2 => {
            // actix-web's HttpServer always offers h2 over TLS: HTTP/1.1 alone is
            // actix-http's H1 service behind the rustls acceptor.
            Server::build()
                .workers(workers)
                .max_concurrent_connections(config.http.limits.connections.div_ceil(workers))
                .disable_signals()
                .shutdown_timeout(drain)
                .listen("wharf-https-h1", listener, move || {
                    let app = app(
                        state.clone(),
                        urls.clone(),
                        access_log,
                        public_metrics,
                        &extra_headers,
                    );
                    let on_connect = on_connect.clone();
                    actix_http::HttpService::build()
                        .client_request_timeout(timeouts.header.0)
                        .keep_alive(timeouts.idle.0)
                        .on_connect_ext(move |io: &TlsTcp, ext| on_connect(io, ext))
                        .h1(actix_service::map_config(app, |()| {
                            actix_web::dev::AppConfig::default()
                        }))
                        .rustls_0_23(tls.clone())
                })
                .map_err(listen_error)?
                .run()
        }
        (listener, tls) => {
            let builder = HttpServer::new(move || {
                app(
                    state.clone(),
                    urls.clone(),
                    access_log,
                    public_metrics,
                    &extra_headers,
                )
            })
            .workers(workers)
            // Per worker in actix: the configured total shared out.
            .max_connections(config.http.limits.connections.div_ceil(workers))
            .client_request_timeout(timeouts.header.0)
            .keep_alive(timeouts.idle.0)
            // TCP_USER_TIMEOUT on plain TCP connections (a TLS stream is not matched
            // there: its send timeout is the TLS layer's own).
            .on_connect(on_connect)
            // `serve` handles the signals itself, to say what happens.
            .disable_signals()
            .shutdown_timeout(drain);
            let builder = match (listener, tls) {
                (Listener::Tcp(l), Some(tls)) => builder.listen_rustls_0_23(l, tls),
                (Listener::Tcp(l), None) => builder.listen(l),
                (Listener::Unix(l), _) => builder.listen_uds(l),
            };
            builder.map_err(listen_error)?.run()
        }
    };
    Ok(server)
}

/// Starts the debug listener (`http.debug.addr`): `/debug/health`, `/healthz`,
/// `/readyz`, and the metrics with `http.debug.prometheus.enabled`. It runs until the
/// process exits, so it reports the drain.
fn start_debug(
    state: web::Data<AppState>,
    debug: &crate::config::DebugConfig,
) -> Result<(), StartError> {
    let addr = debug.socket_addr()?;
    let listener = TcpListener::bind(addr).map_err(|source| StartError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    let metrics = debug.prometheus.enabled.then(|| debug.prometheus.path());
    tracing::info!(
        "debug listener on http://{}{}",
        listener.local_addr().unwrap_or(addr),
        metrics
            .as_deref()
            .map(|p| format!(", metrics at {p}"))
            .unwrap_or_default()
    );
    let server = HttpServer::new(move || {
        let metrics = metrics.clone();
        App::new()
            .app_data(state.clone())
            .configure(move |cfg| crate::http::configure_debug(cfg, metrics))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(|source| StartError::Listen {
        addr: addr.to_string(),
        source,
    })?
    .run();
    actix_web::rt::spawn(server);
    Ok(())
}

/// Everything `wharf serve` does. The port is bound first, so a busy port fails before
/// anything is created or migrated; then the stores are opened (SQLite: locked for this
/// process), then requests are served until SIGTERM or SIGINT. Start-up says, one line
/// each, what it runs on; shutdown says which signal, how many requests it drains, and
/// when it has stopped.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let started = Instant::now();
    tracing::info!(
        pid = std::process::id(),
        "wharf {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let listener = Listener::bind(&config.http)?;
    let local = listener.url(config.http.tls.is_some());
    tracing::info!("listening on {local}");
    let auth = crate::auth::Authorizer::from_config(&config.auth)?;

    let (backend, location) = describe_storage(&config);
    tracing::info!("blob storage: {backend}, {location}");
    let (engine, database) = describe_database(&config);
    tracing::info!("metadata: {engine}, {database}");
    let registry = registry(&config).await?;
    let cache = describe_cache(&config);
    tracing::info!("cache: {cache}");
    let auth_mode = describe_auth(&config);
    tracing::info!("auth: {auth_mode}");
    tracing::info!("notifications: {}", describe_notifications(&config));

    crate::maintenance::spawn(registry.clone(), &config);
    registry.spawn_quota_gauges();
    // Handlers in place before "ready", so a signal from then on is never the default
    // action (an immediate exit).
    let signals = shutdown_signals();
    spawn_notifications(&registry, &config).await?;
    let gc = crate::maintenance::spawn_gc(registry.clone(), &config);
    let server = start_http(registry, auth, &config, listener)?;
    tracing::info!(
        startup_ms = started.elapsed().as_millis() as u64,
        "ready: serving on {local}"
    );
    let drain_started = Arc::new(OnceLock::new());
    let drain_timeout = config.http.drain_timeout();
    actix_web::rt::spawn(stop_on_signal(
        server.handle(),
        signals,
        drain_started.clone(),
        drain_timeout,
    ));
    let result = server.await.map_err(|source| StartError::Listen {
        addr: local.clone(),
        source,
    });
    gc.stop().await;
    // Background workers were told to stop at the signal (or are now, if the server
    // ended on its own); what they hold finishes.
    crate::lifecycle::stop();
    let left = crate::lifecycle::workers_done(drain_timeout).await;
    if left > 0 {
        tracing::warn!(
            "{left} background worker(s) still busy after {} s: cut off",
            drain_timeout.as_secs()
        );
    }
    if let Some(drain_started) = drain_started.get() {
        let took = drain_started.elapsed();
        if took >= drain_timeout {
            tracing::warn!(
                "drain timed out after {} s: requests still in progress were cut off",
                drain_timeout.as_secs()
            );
        } else {
            tracing::info!("drained in {:.1} s", took.as_secs_f64());
        }
    }
    tracing::info!("stopped");
    crate::telemetry::otlp::shutdown();
    result
}

/// The signals that stop the server, by name.
type Signals = Vec<(tokio::signal::unix::Signal, &'static str)>;

fn shutdown_signals() -> Signals {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::quit(), "SIGQUIT"),
    ];
    let mut streams = Vec::new();
    for (kind, name) in kinds {
        match signal(kind) {
            Ok(s) => streams.push((s, name)),
            Err(e) => tracing::warn!(error = %e, "cannot handle {name}"),
        }
    }
    streams
}

/// Waits for SIGTERM or SIGINT, then stops: readiness fails at once and background
/// workers claim no new work (`lifecycle`). On SIGTERM the listener stays open for
/// `http.draintimeout`, serving new connections while load balancers notice the failing
/// readiness; SIGINT (Ctrl-C) skips that wait. Then the listener closes and requests in
/// progress finish (up to `http.draintimeout` more). A second signal, or SIGQUIT,
/// exits at once.
async fn stop_on_signal(
    handle: ServerHandle,
    mut streams: Signals,
    drain_started: Arc<OnceLock<Instant>>,
    drain_timeout: Duration,
) {
    let Some(first) = next_signal(&mut streams).await else {
        return;
    };
    if first == "SIGQUIT" {
        tracing::info!("{first} received: exiting now");
        std::process::exit(131);
    }
    crate::http::health::start_draining();
    crate::lifecycle::stop();
    let secs = drain_timeout.as_secs_f64();
    if first == "SIGTERM" && !drain_timeout.is_zero() {
        tracing::info!(
            "{first} received: stopping; readiness fails from now on, new connections are still served for {secs} s (http.draintimeout) so load balancers notice, then requests in progress are drained (a second signal exits at once)"
        );
        tokio::select! {
            () = tokio::time::sleep(drain_timeout) => {}
            second = next_signal(&mut streams) => exit_now(second.unwrap_or(first)),
        }
        let in_flight = crate::telemetry::metrics().http_in_flight.get();
        tracing::info!(
            "no new connections from now on; draining {in_flight} request(s) in progress (at most {secs} s)"
        );
    } else {
        let in_flight = crate::telemetry::metrics().http_in_flight.get();
        tracing::info!(
            "{first} received: stopping; no new connections, draining {in_flight} request(s) in progress (at most {secs} s; a second signal exits at once)"
        );
    }
    let _ = drain_started.set(Instant::now());
    // `serve` says when the drain is over.
    let stopping = handle.stop(true);
    tokio::select! {
        () = stopping => {}
        second = next_signal(&mut streams) => exit_now(second.unwrap_or(first)),
    }
}

/// A second signal while draining: exit without waiting.
fn exit_now(second: &str) -> ! {
    let left = crate::telemetry::metrics().http_in_flight.get();
    tracing::warn!("{second} received while draining: exiting now, {left} request(s) cut off");
    std::process::exit(1);
}

/// The next of `streams`' signals, by name (None if a stream ended).
async fn next_signal(
    streams: &mut [(tokio::signal::unix::Signal, &'static str)],
) -> Option<&'static str> {
    if streams.is_empty() {
        std::future::pending::<()>().await;
    }
    let waits = streams.iter_mut().map(|(s, name)| {
        let name = *name;
        Box::pin(async move { s.recv().await.map(|_| name) })
    });
    futures_util::future::select_all(waits).await.0
}

/// `storage` for the start-up line: the backend and where its bytes live.
fn describe_storage(config: &Config) -> (&'static str, String) {
    match config.storage.driver() {
        StorageDriver::Filesystem { rootdirectory } => {
            let shown = std::path::absolute(&rootdirectory)
                .map(|p| p.display().to_string())
                .unwrap_or(rootdirectory);
            ("filesystem", shown)
        }
        StorageDriver::InMemory => ("inmemory", "this process's memory (lost on exit)".into()),
        StorageDriver::S3(s3) => {
            let mut at = format!(
                "bucket {} in {}",
                s3.bucket.as_deref().unwrap_or("?"),
                s3.region()
            );
            if let Some(endpoint) = s3.endpoint() {
                at.push_str(&format!(" at {endpoint}"));
            }
            if let Some(root) = &s3.rootdirectory {
                at.push_str(&format!(", under {root}"));
            }
            ("s3", at)
        }
        StorageDriver::Azure(az) => {
            let mut at = format!(
                "container {} at {}",
                az.container.as_deref().unwrap_or("?"),
                az.endpoint()
            );
            if let Some(root) = &az.rootdirectory {
                at.push_str(&format!(", under {root}"));
            }
            ("azure", at)
        }
        StorageDriver::Gcs(gcs) => {
            let mut at = format!("bucket {}", gcs.bucket.as_deref().unwrap_or("?"));
            if let Some(endpoint) = &gcs.endpoint {
                at.push_str(&format!(" at {endpoint}"));
            }
            if let Some(root) = &gcs.rootdirectory {
                at.push_str(&format!(", under {root}"));
            }
            ("gcs", at)
        }
    }
}

/// `database` for the start-up line: the engine and the URL without its password.
fn describe_database(config: &Config) -> (&'static str, String) {
    let url = &config.database.url;
    if url.starts_with("sqlite:") {
        let path = crate::metadata::sqlite_path(url).unwrap_or_else(|| url.clone().into());
        let shown = std::path::absolute(&path).unwrap_or(path);
        (
            "sqlite",
            format!("{} (one instance per file)", shown.display()),
        )
    } else {
        ("postgres", redact(url))
    }
}

/// `storage.cache` for the start-up line.
fn describe_cache(config: &Config) -> String {
    let cache = &config.storage.cache;
    let ttl = humantime::format_duration(cache.ttl);
    match cache.blobdescriptor {
        None => "none".into(),
        Some(crate::config::CacheKind::Inmemory) => {
            format!("in this process, entries live at most {ttl}")
        }
        Some(crate::config::CacheKind::Redis) => {
            let addrs = config
                .redis
                .as_ref()
                .map(|r| {
                    let mut a = r.addrs.clone();
                    a.extend(r.addr.clone());
                    a.join(", ")
                })
                .unwrap_or_default();
            format!("redis at {addrs}, entries live at most {ttl}")
        }
    }
}

/// `notifications` for the start-up line: each enabled endpoint, by name and URL.
fn describe_notifications(config: &Config) -> String {
    let endpoints: Vec<String> = config
        .notifications
        .enabled()
        .map(|e| format!("{} ({})", e.name, e.url))
        .collect();
    if endpoints.is_empty() {
        "none".into()
    } else {
        format!("{} endpoint(s): {}", endpoints.len(), endpoints.join(", "))
    }
}

/// `auth` for the start-up line.
fn describe_auth(config: &Config) -> String {
    let auth = &config.auth;
    match (&auth.token, &auth.htpasswd) {
        (Some(token), _) => {
            let mut s = format!(
                "token (realm {}, service {}, issuer {})",
                token.realm, token.service, token.issuer
            );
            if let (Some(_), Some(h)) = (&auth.tokenserver, &auth.htpasswd) {
                s.push_str(&format!(
                    "; built-in token server at /auth/token, users from {}",
                    h.path
                ));
            }
            s
        }
        (None, Some(h)) => format!("htpasswd (Basic), users from {}", h.path),
        (None, None) => "none: anyone who can reach the port has full access".into(),
    }
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
