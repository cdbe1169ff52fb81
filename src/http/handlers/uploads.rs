//! Blob uploads: `POST /v2/{name}/blobs/uploads/` (new session, single-request upload,
//! cross-repository mount) and `GET`/`PATCH`/`PUT`/`DELETE …/uploads/{id}`.

use actix_web::http::header::{HeaderName, LOCATION, RANGE};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use super::{repo_name, request_context, segment};
use crate::http::error::{upload_range, ApiError, ApiResult};
use crate::http::headers::{self, param};
use crate::http::transfers::Direction;
use crate::http::AppState;
use crate::registry::uploads::{MountOutcome, UploadStatus};
use crate::registry::RegistryError;
use crate::types::digest::{Algorithm, Digest};
use crate::types::{BlobRecord, RepoName};

const UPLOAD_UUID: &str = "Docker-Upload-UUID";
const DIGEST_HEADER: &str = "Docker-Content-Digest";
const CHUNK_MIN: &str = "OCI-Chunk-Min-Length";

fn location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// `202 Accepted` describing a session in progress.
fn in_progress(state: &AppState, status: &UploadStatus) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((LOCATION, location(&status.repository, &status.id)))
        .insert_header((RANGE, upload_range(status.offset)))
        .insert_header((UPLOAD_UUID, status.id.clone()))
        .insert_header((CHUNK_MIN, state.registry.min_chunk_len().to_string()))
        .finish()
}

/// `201 Created` for a committed blob.
fn created(repo: &RepoName, blob: &BlobRecord) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((LOCATION, format!("/v2/{repo}/blobs/{}", blob.digest)))
        .insert_header((DIGEST_HEADER, blob.digest.to_string()))
        .finish()
}

/// The request's `Content-Length`, if it sent one (a chunked body has none): what a
/// quota is checked against before any byte is stored.
fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn parse_digest(value: &str) -> ApiResult<Digest> {
    value.parse().map_err(|e| RegistryError::Digest(e).into())
}

/// Adds the session's `Location` to errors that the client recovers from by resuming.
fn with_session(repo: &RepoName, id: &str, e: RegistryError) -> ApiError {
    let resumable = matches!(
        e,
        RegistryError::ChunkOutOfOrder { .. } | RegistryError::UploadBusy
    );
    let err = ApiError::from(e);
    if resumable {
        err.with_header(LOCATION, location(repo, id))
            .with_header(HeaderName::from_static("docker-upload-uuid"), id)
    } else {
        err
    }
}

pub async fn start(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let params = headers::query(req.query_string())?;
    let registry = &state.registry;

    let mount_denied = req.extensions().get::<crate::auth::MountDenied>().is_some();
    let ctx = request_context(&req, &state);
    if let Some(mount) = param(&params, "mount") {
        // A mount that cannot be done, malformed arguments included, falls back to an
        // ordinary upload session (the spec's SHOULD; clients then push the blob).
        let digest = mount.parse::<Digest>().ok();
        let from = param(&params, "from").map(RepoName::parse);
        // A mount from a repository the caller may not pull: an ordinary session.
        if let (Some(digest), None | Some(Ok(_)), false) = (&digest, &from, mount_denied) {
            let from = from.and_then(|f| f.ok());
            return Ok(
                match registry
                    .mount_blob(&repo, digest, from.as_ref(), &ctx)
                    .await?
                {
                    MountOutcome::Mounted(blob) => created(&repo, &blob),
                    MountOutcome::Started(status) => in_progress(&state, &status),
                },
            );
        }
        let algorithm = digest.map_or(Algorithm::Sha256, |d| d.algorithm());
        let status = registry.start_upload(&repo, algorithm).await?;
        return Ok(in_progress(&state, &status));
    }
    if let Some(d) = param(&params, "digest") {
        let digest = parse_digest(d)?;
        let _transfer = state.transfers.begin(Direction::Upload)?;
        let (body, stalled) = state.transfers.body(body, Direction::Upload);
        let timeout = body.timeout();
        let blob = registry
            .upload_monolithic(&repo, &digest, content_length(&req), body, &ctx)
            .await
            .map_err(|e| stalled.explain(e.into(), timeout))?;
        crate::telemetry::metrics().blobs_committed.inc();
        return Ok(created(&repo, &blob));
    }
    let algorithm = match param(&params, "digest-algorithm") {
        Some(a) => a.parse::<Algorithm>().map_err(RegistryError::Digest)?,
        None => Algorithm::Sha256,
    };
    let status = registry.start_upload(&repo, algorithm).await?;
    Ok(in_progress(&state, &status))
}

pub async fn status(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let status = state.registry.upload_status(&repo, &segment(&req)).await?;
    Ok(HttpResponse::NoContent()
        .insert_header((LOCATION, location(&repo, &status.id)))
        .insert_header((RANGE, upload_range(status.offset)))
        .insert_header((UPLOAD_UUID, status.id.clone()))
        .finish())
}

pub async fn patch(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let id = &segment(&req);
    let range = headers::chunk_range(req.headers())?;
    let _transfer = state.transfers.begin(Direction::Upload)?;
    let (body, stalled) = state.transfers.body(body, Direction::Upload);
    let timeout = body.timeout();
    let status = state
        .registry
        .append_chunk(&repo, id, range, content_length(&req), body)
        .await
        .map_err(|e| stalled.explain(with_session(&repo, id, e), timeout))?;
    Ok(in_progress(&state, &status))
}

pub async fn finish(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let id = &segment(&req);
    let params = headers::query(req.query_string())?;
    let digest = match param(&params, "digest") {
        Some(d) => parse_digest(d)?,
        None => {
            return Err(ApiError::from(RegistryError::Digest(
                crate::types::DigestError::Malformed(
                    "missing ?digest= on the upload's final PUT".into(),
                ),
            )))
        }
    };
    let range = headers::chunk_range(req.headers())?;
    let _transfer = state.transfers.begin(Direction::Upload)?;
    let (body, stalled) = state.transfers.body(body, Direction::Upload);
    let timeout = body.timeout();
    let blob = state
        .registry
        .finish_upload(
            &repo,
            id,
            &digest,
            range,
            content_length(&req),
            body,
            &request_context(&req, &state),
        )
        .await
        .map_err(|e| stalled.explain(with_session(&repo, id, e), timeout))?;
    crate::telemetry::metrics().blobs_committed.inc();
    Ok(created(&repo, &blob))
}

pub async fn cancel(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    state.registry.cancel_upload(&repo, &segment(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
