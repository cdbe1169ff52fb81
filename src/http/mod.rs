//! The HTTP layer (actix-web): routing, header and query parsing, the spec's error JSON.
//!
//! Handlers are thin: they parse the request into validated types, call the registry
//! core, and turn the result into the spec's response. All routes are registered in
//! [`configure`]; repository names are matched with a regex segment (`{name:.+}`) so
//! names of any depth route the same way.

use actix_web::web;

pub mod access;
pub mod client_addr;
pub mod error;
pub mod handlers;
pub mod headers;
pub mod health;
pub mod metrics;
pub mod mirror;
pub mod per_client;
pub mod route;
pub mod spans;
pub mod tls;
pub mod trace_context;
pub mod transfers;
pub mod urls;
pub mod write_limiter;

use actix_web::{HttpMessage, HttpRequest, HttpResponse};

use error::{ApiError, ApiResult};
use handlers::{base, blobs, manifests, ops, quotas, signatures, token, uploads};
use route::Endpoint;

/// Application state shared by every worker.
pub struct AppState {
    pub registry: crate::registry::Registry,
    /// Who may do what; decided in [`dispatch`] before any handler runs.
    pub auth: crate::auth::Authorizer,
    /// Who the client is, behind the trusted proxies.
    pub clients: client_addr::ClientAddr,
    /// distribution's `health` checks (readiness).
    pub health: health::Health,
    /// Blob transfers in progress, their limit, and the request body timeout.
    pub transfers: std::sync::Arc<transfers::Transfers>,
    /// `http.limits.writes`, when set.
    pub writes: Option<std::sync::Arc<write_limiter::WriteLimiter>>,
    /// Trust policies (`trust`), if any are configured.
    pub trust: Option<std::sync::Arc<crate::trust::Trust>>,
}

/// Marks a request whose caller may push to the repository it names (set for manifest
/// requests, for the trust policy: such callers may still `HEAD` and fetch by digest).
#[derive(Debug, Clone, Copy)]
pub struct PushScope;

/// Registers every route: the operational endpoints by exact path, and every `/v2/`
/// path through [`dispatch`], which parses it into an [`Endpoint`] once. `/metrics`
/// only when `public_metrics` (not when `http.debug.prometheus` has it).
pub fn configure(cfg: &mut web::ServiceConfig, public_metrics: bool) {
    if public_metrics {
        cfg.service(web::resource("/metrics").route(web::get().to(ops::metrics)));
    }
    cfg.service(web::resource("/healthz").route(web::get().to(ops::healthz)))
        .service(web::resource("/readyz").route(web::get().to(ops::readyz)))
        .service(
            web::resource("/auth/token")
                .route(web::get().to(token::get))
                .route(web::post().to(token::post)),
        )
        .default_service(web::to(dispatch));
}

/// The debug listener's routes (`http.debug.addr`): `/debug/health` as distribution
/// serves it, liveness and readiness, and the metrics at `metrics_path` if any.
pub fn configure_debug(cfg: &mut web::ServiceConfig, metrics_path: Option<String>) {
    if let Some(path) = metrics_path {
        cfg.service(web::resource(path).route(web::get().to(ops::metrics)));
    }
    cfg.service(web::resource("/debug/health").route(web::get().to(ops::debug_health)))
        .service(web::resource("/healthz").route(web::get().to(ops::healthz)))
        .service(web::resource("/readyz").route(web::get().to(ops::readyz)));
}

/// The request's id (`X-Request-Id` from a trusted proxy, else a new UUID), in its
/// extensions and on its span; events name it ([`access`] sets it).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The authenticated user (htpasswd) or token subject, for events.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// Routes an API request by its parsed endpoint and method.
async fn dispatch(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let Some(mut endpoint) = Endpoint::parse(req.path()) else {
        return Err(ApiError::no_such_endpoint(req.path()));
    };
    if let Some(m) = state.registry.mirror() {
        endpoint = mirror::route(&req, endpoint, m.as_ref())?;
    }
    tracing::Span::current().record("http.route", endpoint.label());
    req.extensions_mut().insert(endpoint.clone());
    if !state.auth.is_open() {
        authorize(&req, &endpoint, &state.auth)
            .await
            .map_err(|e| match endpoint {
                // containers/image reads the header from its unauthenticated ping.
                Endpoint::Base => e.with_header(base::SUPPORTS_SIGNATURES.clone(), "1"),
                _ => e,
            })?;
    }
    if let Some(m) = state.registry.mirror() {
        mirror::refuse_push(&endpoint, req.method().as_str(), m.as_ref())?;
    }
    // Held until the handler is done (reads never wait here).
    let _write_turn = match &state.writes {
        Some(l) if write_limiter::is_write(req.method().as_str()) => Some(l.admit().await?),
        _ => None,
    };
    use Endpoint as E;
    match (&endpoint, req.method().as_str()) {
        (E::Base, "GET" | "HEAD") => Ok(base::version_check().await),
        (E::Catalog, "GET") => manifests::catalog(req, state).await,
        (E::Tags { .. }, "GET") => manifests::list_tags(req, state).await,
        (E::Manifest { .. }, "GET") => manifests::get(req, state).await,
        (E::Manifest { .. }, "HEAD") => manifests::head(req, state).await,
        (E::Manifest { .. }, "PUT") => manifests::put(req, body, state).await,
        (E::Manifest { .. }, "DELETE") => manifests::delete(req, state).await,
        (E::UploadStart { .. }, "POST") => uploads::start(req, body, state).await,
        (E::Upload { .. }, "GET") => uploads::status(req, state).await,
        (E::Upload { .. }, "PATCH") => uploads::patch(req, body, state).await,
        (E::Upload { .. }, "PUT") => uploads::finish(req, body, state).await,
        (E::Upload { .. }, "DELETE") => uploads::cancel(req, state).await,
        (E::Blob { .. }, "GET") => blobs::get(req, state).await,
        (E::Blob { .. }, "HEAD") => blobs::head(req, state).await,
        (E::Blob { .. }, "DELETE") => blobs::delete(req, state).await,
        (E::Referrers { .. }, "GET") => manifests::referrers(req, state).await,
        (E::Quota { scope: None }, "GET") => quotas::list(state).await,
        (E::Quota { scope: Some(s) }, "GET") => quotas::get(s, state).await,
        (E::Quota { scope: Some(s) }, "PUT") => quotas::put(s, body, state).await,
        (E::Quota { scope: Some(s) }, "DELETE") => quotas::delete(s, state).await,
        (E::Usage { scope }, "GET") => quotas::usage(scope, state).await,
        (E::Signatures { .. }, "GET") => signatures::get(req, state).await,
        (E::Signatures { .. }, "PUT") => signatures::put(req, body, state).await,
        (E::SignatureForms { .. }, "GET") => signatures::forms(req, state).await,
        (endpoint, method) => Err(ApiError::unsupported(format!(
            "{method} is not supported on {}",
            endpoint.label()
        ))),
    }
}

/// Authorizes the request once, before dispatch. A cross-repository mount whose source
/// the caller may not pull is marked with [`crate::auth::MountDenied`]: the upload
/// handler then opens an ordinary session instead (no error, no existence leak).
async fn authorize(
    req: &HttpRequest,
    endpoint: &Endpoint,
    auth: &crate::auth::Authorizer,
) -> ApiResult<()> {
    let need = endpoint.need(req.method().as_str());
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let grant = auth.authorize(&need, header).await?;
    let actor = match &grant {
        crate::auth::Grant::Token(claims) => claims.sub.clone(),
        crate::auth::Grant::Everything => header
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b64| crate::auth::basic(b64.trim()))
            .map(|(user, _)| user),
    };
    if let Some(actor) = actor {
        req.extensions_mut().insert(Actor(actor));
    }
    if let Endpoint::Manifest { name, .. } = endpoint {
        if grant.allows(name, crate::auth::Action::Push) {
            req.extensions_mut().insert(PushScope);
        }
    }
    if let Endpoint::Catalog = endpoint {
        req.extensions_mut().insert(auth.catalog_view(&grant));
    }
    if let Endpoint::UploadStart { .. } = endpoint {
        let params = headers::query(req.query_string()).unwrap_or_default();
        if headers::param(&params, "mount").is_some() {
            let allowed = match headers::param(&params, "from") {
                Some(from) => grant.allows(from, crate::auth::Action::Pull),
                None => grant.is_everything(),
            };
            if !allowed {
                req.extensions_mut().insert(crate::auth::MountDenied);
            }
        }
    }
    Ok(())
}
