//! Request metrics middleware: counts and times every request by its endpoint label
//! (never the raw path, which would explode the label set), and counts the requests in
//! progress.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::HttpMessage;

use super::route::Endpoint;

use crate::telemetry::metrics;

/// Counts a request in `wharf_http_requests_in_flight` until dropped (also when the
/// client goes away and the request's future is dropped).
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        metrics().http_in_flight.inc();
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics().http_in_flight.dec();
    }
}

pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let in_flight = InFlight::enter();
    let response = next.call(req).await?;
    drop(in_flight);
    let route = response
        .request()
        .extensions()
        .get::<Endpoint>()
        .map(|e| e.label().to_string())
        .unwrap_or_else(|| match response.request().path() {
            p @ ("/metrics" | "/healthz" | "/readyz") => p.to_string(),
            _ => "unmatched".to_string(),
        });
    let status = response.status().as_u16().to_string();
    let m = metrics();
    m.http_requests
        .with_label_values(&[&route, &method, &status])
        .inc();
    m.http_duration
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    Ok(response)
}
