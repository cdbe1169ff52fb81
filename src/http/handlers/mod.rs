//! Request handlers, one file per resource. Each parses, calls the core, and responds.

use actix_web::{HttpMessage, HttpRequest};

use super::route::Endpoint;

use super::error::ApiError;
use crate::registry::RegistryError;
use crate::types::{RepoName, RequestContext};

pub mod base;
pub mod blobs;
pub mod manifests;
pub mod ops;
pub mod quotas;
pub mod signatures;
pub mod token;
pub mod uploads;

/// Who made the request, for the events it causes (an empty context when no endpoint
/// is enabled: nothing reads it then). The client's address carries its port when it is
/// the TCP peer, as in distribution's `request.addr`.
pub fn request_context(req: &HttpRequest, state: &super::AppState) -> RequestContext {
    if !state.registry.events_enabled() {
        return RequestContext::default();
    }
    let headers = req.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let peer = req.peer_addr();
    let addr = match (state.clients.of(req), peer) {
        (Some(ip), Some(p)) if p.ip().to_canonical() == ip => p.to_string(),
        (Some(ip), _) => ip.to_string(),
        (None, _) => String::new(),
    };
    let info = req.connection_info();
    let id = req
        .extensions()
        .get::<super::RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    RequestContext {
        id,
        addr,
        host: info.host().to_string(),
        scheme: info.scheme().to_string(),
        method: req.method().to_string(),
        useragent: header("user-agent"),
        actor: req.extensions().get::<super::Actor>().map(|a| a.0.clone()),
        traceparent: crate::telemetry::otlp::traceparent().unwrap_or_default(),
    }
}

/// The endpoint [`crate::http::dispatch`] parsed for this request.
fn endpoint(req: &HttpRequest) -> Option<Endpoint> {
    req.extensions().get::<Endpoint>().cloned()
}

/// The validated repository name of a `/v2/{name}/…` request.
pub fn repo_name(req: &HttpRequest) -> Result<RepoName, ApiError> {
    let endpoint = endpoint(req);
    let raw = endpoint.as_ref().and_then(|e| e.name()).unwrap_or_default();
    RepoName::parse(raw).map_err(|e| RegistryError::from(e).into())
}

/// The path segment after the route's keyword: reference, digest or upload id.
pub fn segment(req: &HttpRequest) -> String {
    endpoint(req)
        .as_ref()
        .and_then(|e| e.second().map(str::to_string))
        .unwrap_or_default()
}
