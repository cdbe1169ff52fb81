//! Manifests (`/v2/{name}/manifests/{reference}`), tags (`/v2/{name}/tags/list`),
//! the catalog (`/v2/_catalog`) and referrers (`/v2/{name}/referrers/{digest}`).

use actix_web::http::header::{CONTENT_TYPE, LINK, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::json;

use super::{repo_name, request_context, segment};
use crate::http::error::{ApiError, ApiResult, ErrorCode};
use crate::http::headers::{self, param};
use crate::http::transfers::Direction;
use crate::http::AppState;
use crate::registry::manifest_format::MAX_MANIFEST_BYTES;
use crate::registry::{Page, RegistryError};
use crate::types::{Digest, NameError, Reference, Tag};

const DIGEST_HEADER: &str = "Docker-Content-Digest";

/// The reference of a read or delete: a malformed tag cannot name anything (404).
fn lookup_reference(req: &HttpRequest) -> ApiResult<Reference> {
    let raw = segment(req);
    let raw = raw.as_str();
    Reference::parse(raw).map_err(|e| match e {
        NameError::InvalidTag(_) => {
            RegistryError::ManifestUnknown(raw.chars().take(128).collect()).into()
        }
        other => RegistryError::from(other).into(),
    })
}

pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    serve(req, state, false).await
}

pub async fn head(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    serve(req, state, true).await
}

/// A manifest GET or HEAD (actix leaves HEAD's body out), once the trust policy, if
/// any, lets it through; only then is it recorded as a pull (event, last pull).
async fn serve(
    req: HttpRequest,
    state: web::Data<AppState>,
    head: bool,
) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let reference = lookup_reference(&req)?;
    let m = state.registry.find_manifest(&repo, &reference).await?;
    if let Some(trust) = &state.trust {
        super::signatures::check_pull(&req, &state, trust, &m, head).await?;
    }
    let ctx = request_context(&req, &state);
    state.registry.record_pull(&repo, &reference, &m, &ctx);
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, m.media_type))
        .insert_header((DIGEST_HEADER, m.digest.to_string()))
        .body(m.payload))
}

/// A manifest body at least this big has its memory handed back to the system after the
/// push (see [`return_memory`]).
const RETURN_MEMORY_ABOVE: usize = 1024 * 1024;

/// Hands freed heap memory back to the system (glibc `malloc_trim`, on a blocking
/// thread): the copies a big manifest push makes (body, parsed JSON, the database
/// request) are freed into glibc's arenas, which otherwise keep them after a burst.
fn return_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    drop(tokio::task::spawn_blocking(|| {
        // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
        unsafe { libc::malloc_trim(0) };
    }));
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SizeInvalid,
        format!("manifest exceeds the {MAX_MANIFEST_BYTES}-byte limit"),
    )
}

/// Reads a manifest body, refusing more than the limit without buffering it all.
/// One buffer of the declared size (`capacity`), so a body is never copied to grow it.
async fn read_manifest_body<S, E>(mut body: S, capacity: usize) -> ApiResult<Vec<u8>>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut out = Vec::with_capacity(capacity.min(MAX_MANIFEST_BYTES));
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| {
            ApiError::bad_request(
                ErrorCode::ManifestInvalid,
                format!("manifest body could not be read: {e}"),
            )
        })?;
        if out.len() + piece.len() > MAX_MANIFEST_BYTES {
            return Err(too_large());
        }
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

pub async fn put(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let reference = Reference::parse(&segment(&req)).map_err(RegistryError::from)?;
    // `?tag=` (the draft spec): more tags for the same manifest, each validated as a
    // push by tag would be, before anything is read or written.
    let params = headers::query(req.query_string())?;
    let extra_tags = params
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| Tag::parse(v))
        .collect::<Result<Vec<Tag>, NameError>>()
        .map_err(RegistryError::from)?;
    let content_type = headers::content_type(req.headers())?.map(str::to_string);
    // Held until the manifest is stored: the body, and what is made of it, count
    // against http.limits.manifestbytes at their declared size (the maximum if none).
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_MANIFEST_BYTES) {
        return Err(too_large());
    }
    let capacity = declared.unwrap_or(MAX_MANIFEST_BYTES);
    let _budget = state.transfers.buffer(capacity.max(1))?;
    let (body, stalled) = state.transfers.body(body, Direction::Upload);
    let timeout = body.timeout();
    let body = read_manifest_body(body, capacity)
        .await
        .map_err(|e| stalled.explain(e, timeout))?;
    if let Some(trust) = &state.trust {
        let tagged = matches!(reference, Reference::Tag(_)) || !extra_tags.is_empty();
        trust.check_push(&repo, &reference, tagged, &body).await?;
    }
    let pushed = state
        .registry
        .put_manifest(
            &repo,
            &reference,
            &extra_tags,
            content_type.as_deref(),
            body,
            &request_context(&req, &state),
        )
        .await?;
    crate::telemetry::metrics().manifests_pushed.inc();
    if capacity >= RETURN_MEMORY_ABOVE {
        return_memory();
    }
    let mut response = HttpResponse::Created();
    response
        .insert_header((LOCATION, format!("/v2/{repo}/manifests/{}", pushed.digest)))
        .insert_header((DIGEST_HEADER, pushed.digest.to_string()));
    if let Some(subject) = &pushed.subject {
        response.insert_header(("OCI-Subject", subject.to_string()));
    }
    // One field per tag that now points at the manifest (only when `?tag=` was used:
    // a plain push by tag answers as v1.1 says).
    if !extra_tags.is_empty() {
        for tag in &pushed.tags {
            response.append_header(("OCI-Tag", tag.as_str()));
        }
    }
    Ok(response.finish())
}

pub async fn delete(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let reference = lookup_reference(&req)?;
    let ctx = request_context(&req, &state);
    state
        .registry
        .delete_manifest(&repo, &reference, &ctx)
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

/// `Link: <path?n=…&last=…>; rel="next"` when another page exists.
fn with_next_link(
    mut response: actix_web::HttpResponseBuilder,
    path: &str,
    page: &Page,
    n: Option<u32>,
) -> actix_web::HttpResponseBuilder {
    if let Some(last) = &page.next_last {
        let mut query = format!("last={}", utf8_percent_encode(last, LINK_VALUE));
        if let Some(n) = n {
            query = format!("n={n}&{query}");
        }
        response.insert_header((LINK, format!("<{path}?{query}>; rel=\"next\"")));
    }
    response
}

/// What a `last=` value keeps unencoded in a `Link` URL: RFC 3986's unreserved
/// characters and `/` (repository names).
const LINK_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

pub async fn list_tags(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let params = headers::query(req.query_string())?;
    let n = headers::page_size(&params)?;
    let page = state
        .registry
        .list_tags(&repo, param(&params, "last"), n)
        .await?;
    let path = format!("/v2/{repo}/tags/list");
    Ok(with_next_link(HttpResponse::Ok(), &path, &page, n)
        .json(json!({ "name": repo.as_str(), "tags": page.items })))
}

pub async fn catalog(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let params = headers::query(req.query_string())?;
    let n = headers::page_size(&params)?;
    // What the caller may see, set by authorization (without authentication, all);
    // were it missing, nothing is shown.
    use crate::auth::CatalogView;
    use actix_web::HttpMessage as _;
    let view = if state.auth.is_open() {
        CatalogView::All
    } else {
        req.extensions()
            .get::<CatalogView>()
            .cloned()
            .unwrap_or_else(|| CatalogView::Pullable(std::sync::Arc::new(|_| false)))
    };
    let page = state
        .registry
        .catalog_where(param(&params, "last"), n, |name| view.shows(name))
        .await?;
    Ok(with_next_link(HttpResponse::Ok(), "/v2/_catalog", &page, n)
        .json(json!({ "repositories": page.items })))
}

pub async fn referrers(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let subject: Digest = segment(&req).parse().map_err(RegistryError::Digest)?;
    let params = headers::query(req.query_string())?;
    let artifact_type = param(&params, "artifactType").filter(|a| !a.is_empty());
    let referrers = state
        .registry
        .referrers(&repo, &subject, artifact_type)
        .await?;
    let mut response = HttpResponse::Ok();
    response.insert_header((CONTENT_TYPE, crate::registry::manifest_format::OCI_INDEX));
    if referrers.filtered_by_artifact_type {
        response.insert_header(("OCI-Filters-Applied", "artifactType"));
    }
    Ok(response.body(referrers.index.to_string()))
}
