//! Request handlers, one file per resource. Each parses, calls the core, and responds.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::error::ApiError;
use crate::registry::name::RepoName;
use crate::registry::RegistryError;

pub mod base;
pub mod blobs;
pub mod manifests;
pub mod ops;
pub mod uploads;

/// The validated repository name of a `/v2/{name}/…` route.
pub fn repo_name(req: &HttpRequest) -> Result<RepoName, ApiError> {
    let raw = req.match_info().get("name").unwrap_or_default();
    RepoName::parse(raw).map_err(|e| RegistryError::from(e).into())
}

/// A path segment by name (always present on the routes that ask for it).
pub fn segment<'a>(req: &'a HttpRequest, name: &str) -> &'a str {
    req.match_info().get(name).unwrap_or_default()
}

pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::unsupported(format!(
        "{} is not supported on {}",
        req.method(),
        req.match_pattern().unwrap_or_else(|| req.path().to_string())
    ))
    .error_response()
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        format!("no such endpoint: {}", req.path().chars().take(200).collect::<String>()),
    )
    .error_response()
}
