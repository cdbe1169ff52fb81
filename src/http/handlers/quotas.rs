//! Wharf's quota admin API (authorized as `registry:quota:read` / `write`, see
//! `auth::Need::Quotas`): `GET /v2/_wharf/quotas/` lists the quotas, `GET`, `PUT` and
//! `DELETE /v2/_wharf/quotas/{scope}` read, set and remove one (the body of a `PUT`:
//! `{"bytes": N}`), and `GET /v2/_wharf/usage/{scope}` gives a scope's usage. A scope
//! is a repository name, a namespace prefix ending in `/`, or `*` (the default for
//! every namespace). Quotas live in the metadata store: every instance applies a
//! change within seconds, this one at once.

use actix_web::{web, HttpResponse};
use futures_util::StreamExt as _;
use serde_json::json;

use crate::http::error::{ApiError, ApiResult, ErrorCode};
use crate::http::AppState;
use crate::metadata::quota::DEFAULT_SCOPE;
use crate::types::RepoName;

/// The largest `PUT` body accepted.
const MAX_BODY: usize = 4096;

/// Checks a scope as written in the path.
fn scope(raw: &str) -> ApiResult<String> {
    if raw == DEFAULT_SCOPE {
        return Ok(raw.to_string());
    }
    let name = raw.strip_suffix('/').unwrap_or(raw);
    RepoName::parse(name).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::NameInvalid,
            format!(
                "{raw:?} is no quota scope (a repository, a namespace ending in `/`, or `*`): {e}"
            ),
        )
    })?;
    Ok(raw.to_string())
}

fn not_found(scope: &str) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        ErrorCode::NameUnknown,
        format!("no quota is set for {scope:?}"),
    )
}

pub async fn list(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let limits = state.registry.meta_quota_limits().await?;
    let quotas: Vec<_> = limits
        .iter()
        .map(|l| json!({ "scope": l.scope, "bytes": l.bytes, "source": l.source }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "quotas": quotas })))
}

pub async fn get(raw: &str, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let scope = scope(raw)?;
    let limits = state.registry.meta_quota_limits().await?;
    let l = limits
        .iter()
        .find(|l| l.scope == scope)
        .ok_or_else(|| not_found(&scope))?;
    Ok(HttpResponse::Ok().json(json!({ "scope": l.scope, "bytes": l.bytes, "source": l.source })))
}

pub async fn put(
    raw: &str,
    mut body: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let scope = scope(raw)?;
    let mut data = Vec::new();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| {
            ApiError::bad_request(ErrorCode::Unsupported, format!("request body: {e}"))
        })?;
        if data.len() + piece.len() > MAX_BODY {
            return Err(ApiError::bad_request(
                ErrorCode::SizeInvalid,
                format!("a quota's body is at most {MAX_BODY} bytes"),
            ));
        }
        data.extend_from_slice(&piece);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        bytes: u64,
    }
    let parsed: Body = serde_json::from_slice(&data).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::Unsupported,
            format!("the body must be {{\"bytes\": N}} (N a number of bytes): {e}"),
        )
    })?;
    state.registry.set_quota(&scope, parsed.bytes).await?;
    tracing::info!(scope = %scope, bytes = parsed.bytes, "quota set through the admin API");
    Ok(HttpResponse::Ok().json(json!({ "scope": scope, "bytes": parsed.bytes, "source": "api" })))
}

pub async fn delete(raw: &str, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let scope = scope(raw)?;
    if state.registry.delete_quota(&scope).await? {
        tracing::info!(scope = %scope, "quota removed through the admin API");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found(&scope))
    }
}

pub async fn usage(raw: &str, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let scope = scope(raw)?;
    let (u, quota) = state.registry.quota_usage(&scope).await?;
    Ok(HttpResponse::Ok().json(json!({
        "scope": u.scope,
        "quota": quota,
        "storedBytes": u.stored_bytes,
        "logicalBytes": u.logical_bytes,
        "reservedBytes": u.reserved_bytes,
        "blobs": u.blobs,
        "manifests": u.manifests,
        "repositories": u.repositories,
    })))
}
