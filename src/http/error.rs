//! The one place errors become HTTP: each [`RegistryError`] gets its status and the
//! spec's error code, in the spec's JSON body. Server-side failures get a generic
//! message; their cause goes to the log, never to the client.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::blobs::BlobError;
use crate::metadata::MetadataError;
use crate::registry::manifest::ManifestError;
use crate::registry::name::NameError;
use crate::registry::RegistryError;

/// An error response: status, spec code, message, extra headers.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(HeaderName, String)>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
    }

    fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "internal server error",
        )
    }

    fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "storage unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the registry's storage is temporarily unavailable; retry",
        )
        .with_header(actix_web::http::header::RETRY_AFTER, "1")
    }
}

/// The `Range` header value for an upload at `offset` (`0-0` when nothing is stored).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use RegistryError as E;
        let msg = e.to_string();
        match e {
            E::Name(NameError::Digest(_)) | E::Digest(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", msg)
            }
            E::Name(NameError::InvalidTag(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", msg)
            }
            E::Name(_) => ApiError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", msg),
            E::NameUnknown(_) => ApiError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", msg),
            E::BlobUnknown(_) => ApiError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", msg),
            E::UploadUnknown(_) => ApiError::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", msg),
            E::UploadInvalid(_) | E::BodyRead(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", msg)
            }
            E::ChunkOutOfOrder { offset } => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                msg,
            )
            .with_header(actix_web::http::header::RANGE, upload_range(offset)),
            E::UploadBusy => ApiError::new(StatusCode::CONFLICT, "BLOB_UPLOAD_INVALID", msg),
            E::DigestMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", msg)
            }
            E::ManifestInvalid(ManifestError::TooLarge(_)) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID", msg)
            }
            E::ManifestInvalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", msg)
            }
            E::ManifestBlobUnknown(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", msg)
            }
            E::ManifestUnknown(_) => ApiError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", msg),
            E::SizeInvalid(_) => ApiError::new(StatusCode::BAD_REQUEST, "SIZE_INVALID", msg),
            E::RangeNotSatisfiable { size } => {
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "SIZE_INVALID", msg).with_header(
                    actix_web::http::header::CONTENT_RANGE,
                    format!("bytes */{size}"),
                )
            }
            E::Unsupported(_) => ApiError::unsupported(msg),
            E::PaginationInvalid(_) => ApiError::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", msg),
            E::Storage(BlobError::ObjectStore(ref inner)) => ApiError::unavailable(inner),
            E::Metadata(ref inner @ MetadataError::Unavailable(_)) => ApiError::unavailable(inner),
            E::Metadata(ref inner) => ApiError::internal(inner),
            E::Storage(ref inner) => ApiError::internal(inner),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                response.insert_header((name.clone(), v));
            }
        }
        response.json(json!({
            "errors": [{ "code": self.code, "message": self.message, "detail": null }]
        }))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
