//! The root span of every request (tracing-actix-web), recording method, route, status
//! and a request id. Client errors (4xx) are ordinary registry traffic — `docker push`
//! probes every layer with a HEAD that 404s — so only server errors are logged as
//! events; every request's status is still on its span.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

pub struct RegistryRootSpan;

impl RootSpanBuilder for RegistryRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        tracing_actix_web::root_span!(request)
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        match outcome {
            Ok(response) if !response.status().is_server_error() => {
                span.record("http.status_code", response.status().as_u16());
                span.record("otel.status_code", "OK");
            }
            _ => DefaultRootSpanBuilder::on_request_end(span, outcome),
        }
    }
}
