//! The pull-through cache at the edge: `?ns=<registry>` (what containerd sends a
//! mirror) turned into the local repository of that registry's upstream, and pushes
//! to a mirrored repository refused.
//!
//! `ns` is honoured only for the upstreams the configuration names: an unknown one is
//! refused here, before anything is looked up, and never dialled.

use actix_web::http::StatusCode;
use actix_web::HttpRequest;

use super::error::{ApiError, ApiResult, ErrorCode};
use super::headers;
use super::route::Endpoint;
use crate::registry::mirror::Mirror;
use crate::types::RepoName;

/// `endpoint` with its repository name replaced by `name`.
fn renamed(endpoint: &Endpoint, name: String) -> Endpoint {
    use Endpoint as E;
    match endpoint.clone() {
        E::Tags { .. } => E::Tags { name },
        E::Manifest { reference, .. } => E::Manifest { name, reference },
        E::UploadStart { .. } => E::UploadStart { name },
        E::Upload { id, .. } => E::Upload { name, id },
        E::Blob { digest, .. } => E::Blob { name, digest },
        E::Referrers { digest, .. } => E::Referrers { name, digest },
        E::Signatures { digest, .. } => E::Signatures { name, digest },
        E::SignatureForms { digest, .. } => E::SignatureForms { name, digest },
        other @ (E::Base | E::Catalog | E::Quota { .. } | E::Usage { .. }) => other,
    }
}

/// The endpoint a request addresses once its `?ns=` is applied.
pub fn route(req: &HttpRequest, endpoint: Endpoint, mirror: &dyn Mirror) -> ApiResult<Endpoint> {
    let Some(name) = endpoint.name() else {
        return Ok(endpoint);
    };
    if !req.query_string().contains("ns=") {
        return Ok(endpoint);
    }
    let params = headers::query(req.query_string())?;
    let Some(ns) = headers::param(&params, "ns") else {
        return Ok(endpoint);
    };
    match mirror.ns_repository(ns, name) {
        Ok(local) => Ok(renamed(&endpoint, local)),
        Err(why) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NameUnknown,
            why,
        )),
    }
}

/// Refuses writes of content to a mirrored repository: `403 DENIED`, saying so.
pub fn refuse_push(endpoint: &Endpoint, method: &str, mirror: &dyn Mirror) -> ApiResult<()> {
    let push = matches!(
        (endpoint, method),
        (Endpoint::UploadStart { .. } | Endpoint::Upload { .. }, _)
            | (Endpoint::Manifest { .. }, "PUT")
    );
    let Some(name) = endpoint.name().filter(|_| push) else {
        return Ok(());
    };
    let Ok(repo) = RepoName::parse(name) else {
        return Ok(()); // the handler refuses the name itself
    };
    match mirror.mirror_of(&repo) {
        Some(upstream) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Denied,
            format!("{repo} is a pull-through mirror of {upstream}: pushes are refused"),
        )),
        None => Ok(()),
    }
}
