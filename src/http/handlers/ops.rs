//! Operational endpoints: `/metrics` (Prometheus), `/healthz` (alive), `/readyz`
//! (the metadata database answers, the blob store is reachable, no `health` check is
//! failing, the server is not draining and not saturated with blob transfers),
//! `/debug/health` (distribution's).

use actix_web::{web, HttpResponse};

use crate::http::AppState;

pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render())
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// distribution's `/debug/health`: `{}` when every check passes, else 503 with the
/// failing checks and their errors.
pub async fn debug_health(state: web::Data<AppState>) -> HttpResponse {
    let failing = state.health.failing();
    let mut resp = if failing.is_empty() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    resp.json(failing)
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let failing = state.health.failing();
    if !failing.is_empty() {
        let what: Vec<String> = failing.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        return HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(what.join("\n"));
    }
    // Full of transfers: a load balancer should send new clients elsewhere.
    if state.transfers.saturated() {
        tracing::warn!(
            in_flight = state.transfers.in_flight(),
            "not ready: saturated (http.limits.transfers in progress)"
        );
        return HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("saturated");
    }
    match state.registry.check_ready().await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(e) => {
            // A permanent failure (credentials, a missing bucket) is an operator's to
            // fix: ERROR, naming it; a transient one may pass on its own.
            let what = match &e {
                crate::registry::RegistryError::Metadata(m) if m.is_transient() => {
                    tracing::warn!(error = %e, "not ready: metadata database unavailable");
                    "metadata database unavailable"
                }
                crate::registry::RegistryError::Metadata(_) => {
                    tracing::error!(error = %e, "not ready: metadata database failing");
                    "metadata database failing"
                }
                crate::registry::RegistryError::Storage(b) if b.is_transient() => {
                    tracing::warn!(error = %e, "not ready: blob store unavailable");
                    "blob store unavailable"
                }
                _ => {
                    tracing::error!(error = %e, "not ready: blob store failing");
                    "blob store failing"
                }
            };
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body(what)
        }
    }
}
