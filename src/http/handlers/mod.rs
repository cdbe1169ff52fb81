//! Request handlers, one file per resource. Each parses, calls the core, and responds.

use actix_web::{HttpMessage, HttpRequest};

use super::route::Endpoint;

use super::error::ApiError;
use crate::registry::RegistryError;
use crate::types::RepoName;

pub mod base;
pub mod blobs;
pub mod manifests;
pub mod ops;
pub mod token;
pub mod uploads;

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
