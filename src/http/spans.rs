//! The root span of every request (tracing-actix-web), recording method, path, endpoint
//! and status. Client errors (4xx) are ordinary registry traffic — `docker push`
//! probes every layer with a HEAD that 404s — so only server errors are logged as
//! events; every request's status is still on its span.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage as _;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

pub struct RegistryRootSpan;

/// Longest request target put on a span (and so on every log line of the request).
const MAX_LOGGED_TARGET: usize = 256;

/// The target, cut to [`MAX_LOGGED_TARGET`] bytes (at a character boundary) with its
/// full length said: a 100 KB URL makes no 100 KB log line.
pub fn short_target(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= MAX_LOGGED_TARGET {
        return path.into();
    }
    let mut end = MAX_LOGGED_TARGET;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &path[..end], path.len()).into()
}

impl RootSpanBuilder for RegistryRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        // Not `root_span!`: it asks actix for the matched route pattern, which re-runs
        // every route's regex per request. The endpoint label is recorded by dispatch.
        let span = tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.target = %short_target(request.path()),
            http.route = tracing::field::Empty,
            request_id = tracing::field::Empty,
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.kind = "server",
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        );
        // A sampled request (traces exported, `trace_context`): the decision taken on
        // its arrival, with the caller's `traceparent` as the parent.
        if let Some(root) = request
            .extensions()
            .get::<crate::telemetry::decision::SampledRoot>()
        {
            crate::telemetry::sampling::start_sampled(&span, root.clone());
        }
        span
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

#[cfg(test)]
mod tests {
    #[test]
    fn long_targets_are_cut() {
        assert_eq!(super::short_target("/v2/a/b"), "/v2/a/b");
        let long = format!("/v2/{}", "é".repeat(60_000));
        let cut = super::short_target(&long);
        assert!(cut.len() < 300, "{}", cut.len());
        assert!(cut.ends_with(&format!("…({} bytes)", long.len())));
    }
}
