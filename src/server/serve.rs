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
use super::shutdown::{shutdown_signals, stop_on_signal};
use super::{registry, spawn_notifications, Listener, StartError};

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
