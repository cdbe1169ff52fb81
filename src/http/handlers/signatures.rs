//! OpenShift's signature API extension as containers/image speaks it
//! (`GET`/`PUT /extensions/v2/{name}/signatures/{digest}`), and Wharf's listing of a
//! manifest's signatures in every stored form
//! (`GET /extensions/wharf/v1/{name}/signatures/{digest}`).
//!
//! The wire format is containers/image's `extensionSignature`: `schemaVersion` (2),
//! `name` (`<digest>@<per-image name>`), `type` (`atomic`) and `content` (base64);
//! a `GET` answers `{"signatures": [...]}`, a `PUT` sends one object and expects 201.

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{repo_name, segment};
use crate::http::error::{ApiError, ApiResult, ErrorCode};
use crate::http::AppState;
use crate::registry::signatures::MAX_EXTENSION_SIGNATURE;
use crate::registry::RegistryError;
use crate::types::Digest;

/// The only schema version and type containers/image reads and writes.
const SCHEMA_VERSION: u64 = 2;
const TYPE_ATOMIC: &str = "atomic";

#[derive(Deserialize)]
struct PutBody {
    #[serde(rename = "schemaVersion")]
    schema_version: u64,
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    content: String,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::SignatureInvalid, message)
}

fn digest_of(req: &HttpRequest) -> ApiResult<Digest> {
    Ok(segment(req).parse().map_err(RegistryError::Digest)?)
}

pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let digest = digest_of(&req)?;
    let stored = state.registry.extension_signatures(&repo, &digest).await?;
    let signatures: Vec<Value> = stored
        .iter()
        .map(|s| {
            json!({
                "schemaVersion": SCHEMA_VERSION,
                "name": s.name,
                "type": TYPE_ATOMIC,
                "content": B64.encode(&s.content),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "signatures": signatures })))
}

pub async fn put(
    req: HttpRequest,
    mut body: web::Payload,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let digest = digest_of(&req)?;
    // base64 and JSON around the signature: a third more, and some slack.
    let limit = MAX_EXTENSION_SIGNATURE * 4 / 3 + 4096;
    let mut raw = Vec::new();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| invalid(format!("body could not be read: {e}")))?;
        if raw.len() + piece.len() > limit {
            return Err(invalid(format!(
                "the signature exceeds the {MAX_EXTENSION_SIGNATURE}-byte limit"
            )));
        }
        raw.extend_from_slice(&piece);
    }
    let sig: PutBody = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("the body is not a signature object: {e}")))?;
    if sig.schema_version != SCHEMA_VERSION {
        return Err(invalid(format!(
            "schemaVersion {} is not supported; only {SCHEMA_VERSION}",
            sig.schema_version
        )));
    }
    if let Some(kind) = sig.kind.as_deref().filter(|k| *k != TYPE_ATOMIC) {
        return Err(invalid(format!(
            "signature type {:?} is not supported; only {TYPE_ATOMIC:?}",
            kind.chars().take(64).collect::<String>()
        )));
    }
    let content = B64
        .decode(sig.content.as_bytes())
        .map_err(|e| invalid(format!("content is not base64: {e}")))?;
    state
        .registry
        .put_extension_signature(&repo, &digest, &sig.name, content)
        .await?;
    Ok(HttpResponse::build(StatusCode::CREATED).finish())
}

/// Every stored form: the extension's signatures (names and sizes), the sigstore
/// attachment (its tag, digest and simple-signing layers), and the signature referrers.
pub async fn forms(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let repo = repo_name(&req)?;
    let digest = digest_of(&req)?;
    let l = state.registry.signatures_of(&repo, &digest).await?;
    let extension: Vec<Value> = l
        .extension
        .iter()
        .map(|s| json!({ "name": s.name, "size": s.content.len(), "createdAt": s.created_at }))
        .collect();
    let attachment = l.attachment.as_ref().map(|a| {
        json!({
            "tag": a.tag,
            "digest": a.digest.to_string(),
            "layers": a.layers.iter().map(|x| json!({
                "digest": x.digest.to_string(),
                "size": x.size,
                "signed": x.signature.is_some(),
            })).collect::<Vec<_>>(),
        })
    });
    let referrers: Vec<Value> = l
        .referrers
        .iter()
        .map(|r| json!({ "digest": r.digest.to_string(), "mediaType": r.media_type, "artifactType": r.artifact_type, "size": r.size }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "subject": digest.to_string(),
        "count": l.count(),
        "extension": extension,
        "sigstoreAttachment": attachment,
        "referrers": referrers,
    })))
}

/// The trust policy's check of a manifest pull (`manifests::get`/`head`): the caller
/// has push scope when auth is open or its grant allows a push to the repository.
pub async fn check_pull(
    req: &HttpRequest,
    state: &AppState,
    trust: &crate::trust::Trust,
    manifest: &crate::types::ManifestRecord,
    head: bool,
) -> ApiResult<()> {
    let repo = repo_name(req)?;
    let reference = crate::types::Reference::parse(&segment(req)).map_err(RegistryError::from)?;
    let push_scope =
        state.auth.is_open() || req.extensions().get::<crate::http::PushScope>().is_some();
    Ok(trust
        .check_pull(&repo, &reference, manifest, head, push_scope)
        .await?)
}
