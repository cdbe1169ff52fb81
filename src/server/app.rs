//! The actix-web application every worker builds: shared state, the middleware stack
//! (per-client limit, metrics, access log, tracing, trace context, default and
//! configured headers, `http.prefix` rewriting) and the routes.

use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App};

use crate::http::{configure, AppState};

/// The application: state, middleware and routes, as every worker builds it.
pub(super) fn app(
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
