//! `GET`, `HEAD`, `DELETE /v2/{name}/blobs/{digest}`.

use actix_web::body::SizedStream;
use actix_web::http::header::{ACCEPT_RANGES, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::TryStreamExt;

use super::{repo_name, request_context, segment};
use crate::http::error::ApiResult;
use crate::http::headers;
use crate::http::transfers::{Direction, Guarded};
use crate::http::AppState;
use crate::registry::blobs::BlobLocation;
use crate::registry::RegistryError;
use crate::types::Digest;

const DIGEST_HEADER: &str = "Docker-Content-Digest";

fn digest(req: &HttpRequest) -> ApiResult<Digest> {
    segment(req)
        .parse()
        .map_err(|e| RegistryError::Digest(e).into())
}

pub async fn head(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let digest = digest(&req)?;
    let blob = state.registry.stat_blob(&repo, &digest).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/octet-stream"))
        .insert_header((DIGEST_HEADER, blob.digest.to_string()))
        .insert_header((ACCEPT_RANGES, "bytes"))
        .body(SizedStream::new(
            blob.size,
            futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>(),
        )))
}

pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let digest = digest(&req)?;
    let range = headers::byte_range(req.headers())?;
    let client = state.clients.of(&req);
    // Counted before the store is asked, so a refusal costs nothing; a redirect ends it.
    let transfer = state.transfers.begin(Direction::Download)?;
    let content = match state
        .registry
        .locate_blob(
            &repo,
            &digest,
            range,
            client,
            &request_context(&req, &state),
        )
        .await?
    {
        // The store answers the client's `Range` itself; no Content-Length of the blob's.
        BlobLocation::Redirect { blob, redirect } => {
            return Ok(HttpResponse::TemporaryRedirect()
                .insert_header((LOCATION, redirect.url.as_str()))
                .insert_header((DIGEST_HEADER, blob.digest.to_string()))
                .finish())
        }
        BlobLocation::Stream(content) => content,
    };
    let size = content.blob.size;
    let mut response = match &content.range {
        Some(r) => {
            let mut b = HttpResponse::PartialContent();
            b.insert_header((
                CONTENT_RANGE,
                format!("bytes {}-{}/{}", r.start, r.end - 1, size),
            ));
            b
        }
        None => HttpResponse::Ok(),
    };
    let len = content.range.as_ref().map_or(size, |r| r.end - r.start);
    let counter = crate::telemetry::metrics().download_bytes.clone();
    let stream = content.stream.map_ok(move |b| {
        counter.inc_by(b.len() as u64);
        b
    });
    Ok(response
        .insert_header((CONTENT_TYPE, "application/octet-stream"))
        .insert_header((DIGEST_HEADER, content.blob.digest.to_string()))
        .insert_header((ACCEPT_RANGES, "bytes"))
        .body(SizedStream::new(len, Guarded::new(stream, transfer))))
}

pub async fn delete(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let digest = digest(&req)?;
    let ctx = request_context(&req, &state);
    state.registry.delete_blob(&repo, &digest, &ctx).await?;
    Ok(HttpResponse::Accepted().finish())
}
