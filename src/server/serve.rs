//! `wharf serve` from start to stop: the order of start-up (port first, then stores,
//! background work, signals, the server) and of shutdown (drain, background workers,
//! telemetry).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::config::Config;

use super::banner::{
    describe_auth, describe_cache, describe_database, describe_notifications, describe_storage,
};
use super::http_server::start_http;
use super::shutdown::{after_stop, shutdown_signals, stop_on_signal};
use super::{background, registry, Listener, StartError};

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

    // Handlers in place before "ready", so a signal from then on is never the default
    // action (an immediate exit).
    let signals = shutdown_signals();
    let gc = background::start(&registry, &config).await?;
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
    after_stop(&drain_started, drain_timeout).await;
    tracing::info!("stopped");
    crate::telemetry::otlp::shutdown();
    result
}
