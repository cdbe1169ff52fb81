//! Operational endpoints: `/metrics` (Prometheus), `/healthz` (alive), `/readyz`
//! (the metadata database answers, the blob store is reachable, and the server is not
//! saturated with blob transfers).

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

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
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
