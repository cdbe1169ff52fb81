//! The debug listener (`http.debug.addr`): health, readiness and, when enabled, the
//! metrics, on a port of their own.

use std::net::TcpListener;

use actix_web::{web, App, HttpServer};

use crate::http::AppState;

use super::StartError;

/// Starts the debug listener (`http.debug.addr`): `/debug/health`, `/healthz`,
/// `/readyz`, and the metrics with `http.debug.prometheus.enabled`. It runs until the
/// process exits, so it reports the drain.
pub(super) fn start_debug(
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
