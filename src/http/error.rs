//! The one place errors become HTTP. [`ErrorCode`] is the spec's vocabulary (plus the
//! two distribution adds for server failures); every layer's error enum is mapped here,
//! once, to a status, a code and a message, and written as the spec's JSON body by
//! [`ApiError`]'s `ResponseError` impl.
//!
//! Server-side failures get a generic message; their cause goes to the log (inside the
//! request's span, so with its request id), never to the client. Transient failures of
//! a store (timeouts, lost connections, throttling, a race retried too often) are
//! `503 UNAVAILABLE` with `Retry-After`; permanent ones (bad credentials, a missing
//! bucket, permission denied, corrupt data) are `500 UNKNOWN` with an ERROR log naming
//! the cause. Client errors are not logged above DEBUG: a `docker push` probes every
//! layer with a HEAD that 404s.

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_RANGE, RANGE, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::auth::AuthError;
use crate::blobs::BlobError;
use crate::metadata::MetadataError;
use crate::registry::manifest_format::ManifestError;
use crate::registry::RegistryError;
use crate::types::NameError;

/// The error codes of the distribution spec (`code` in the error body), and the two
/// distribution adds for failures of the registry itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// OpenShift's signature API extension: a signature it refuses.
    SignatureInvalid,
    /// OpenShift's signature API extension: a signature of that name exists.
    SignatureExists,
    /// distribution's code for an unexpected server error.
    Unknown,
    /// distribution's code for a service that is temporarily unavailable.
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        use ErrorCode as C;
        match self {
            C::BlobUnknown => "BLOB_UNKNOWN",
            C::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            C::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            C::DigestInvalid => "DIGEST_INVALID",
            C::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            C::ManifestInvalid => "MANIFEST_INVALID",
            C::ManifestUnknown => "MANIFEST_UNKNOWN",
            C::NameInvalid => "NAME_INVALID",
            C::NameUnknown => "NAME_UNKNOWN",
            C::SizeInvalid => "SIZE_INVALID",
            C::Unauthorized => "UNAUTHORIZED",
            C::Denied => "DENIED",
            C::Unsupported => "UNSUPPORTED",
            C::TooManyRequests => "TOOMANYREQUESTS",
            C::SignatureInvalid => "SIGNATURE_INVALID",
            C::SignatureExists => "SIGNATURE_EXISTS",
            C::Unknown => "UNKNOWN",
            C::Unavailable => "UNAVAILABLE",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error response: status, spec code, message, extra headers.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
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
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
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

    /// `405 UNSUPPORTED`: an operation this registry does not offer (or not now).
    pub fn unsupported(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            message,
        )
    }

    /// `400` with `code` (malformed headers, parameters, bodies).
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// `404` for a path that is no endpoint of the API. It names no repository: the
    /// path did not get as far as naming one.
    pub fn no_such_endpoint(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            format!(
                "no such endpoint: {}",
                path.chars().take(200).collect::<String>()
            ),
        )
    }

    /// A permanent failure of the registry: `500 UNKNOWN`, the cause logged at ERROR.
    fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unknown,
            "internal server error",
        )
    }

    /// A transient failure: `503 UNAVAILABLE` with `Retry-After`, the cause logged.
    fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "storage unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the registry's storage is temporarily unavailable; retry",
        )
        .with_header(RETRY_AFTER, "1")
    }
}

/// The `Range` header value for an upload at `offset` (`0-0` when nothing is stored).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl From<MetadataError> for ApiError {
    fn from(e: MetadataError) -> Self {
        if let MetadataError::CircuitOpen { retry_after } = e {
            // The breaker refused without trying: its opening was logged once.
            tracing::debug!(error = %e, "storage unavailable");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the registry's storage is temporarily unavailable; retry",
            )
            .with_header(RETRY_AFTER, retry_after.to_string());
        }
        if e.is_transient() {
            ApiError::unavailable(&e)
        } else {
            ApiError::internal(&e)
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        if e.is_transient() {
            ApiError::unavailable(&e)
        } else {
            ApiError::internal(&e)
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized { message, challenge } => {
                ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
                    .with_header(actix_web::http::header::WWW_AUTHENTICATE, challenge)
            }
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use ErrorCode as C;
        use RegistryError as E;
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            E::Name(NameError::Digest(_)) | E::Digest(_) => {
                ApiError::new(S::BAD_REQUEST, C::DigestInvalid, msg)
            }
            E::Name(NameError::InvalidTag(_)) => {
                ApiError::new(S::BAD_REQUEST, C::ManifestInvalid, msg)
            }
            E::Name(_) => ApiError::new(S::BAD_REQUEST, C::NameInvalid, msg),
            E::NameUnknown(_) => ApiError::new(S::NOT_FOUND, C::NameUnknown, msg),
            E::BlobUnknown(_) => ApiError::new(S::NOT_FOUND, C::BlobUnknown, msg),
            E::UploadUnknown(_) => ApiError::new(S::NOT_FOUND, C::BlobUploadUnknown, msg),
            E::UploadInvalid(_) | E::BodyRead(_) => {
                ApiError::new(S::BAD_REQUEST, C::BlobUploadInvalid, msg)
            }
            E::ChunkOutOfOrder { offset } => {
                ApiError::new(S::RANGE_NOT_SATISFIABLE, C::BlobUploadInvalid, msg)
                    .with_header(RANGE, upload_range(offset))
            }
            E::UploadBusy => ApiError::new(S::CONFLICT, C::BlobUploadInvalid, msg),
            E::DigestMismatch { .. } => ApiError::new(S::BAD_REQUEST, C::DigestInvalid, msg),
            E::ManifestInvalid(ManifestError::TooLarge(_)) => {
                ApiError::new(S::PAYLOAD_TOO_LARGE, C::SizeInvalid, msg)
            }
            E::ManifestInvalid(_) => ApiError::new(S::BAD_REQUEST, C::ManifestInvalid, msg),
            E::ManifestBlobUnknown(_) => ApiError::new(S::BAD_REQUEST, C::ManifestBlobUnknown, msg),
            E::ManifestUnknown(_) => ApiError::new(S::NOT_FOUND, C::ManifestUnknown, msg),
            E::SizeInvalid(_) => ApiError::new(S::BAD_REQUEST, C::SizeInvalid, msg),
            E::RangeNotSatisfiable { size } => {
                ApiError::new(S::RANGE_NOT_SATISFIABLE, C::SizeInvalid, msg)
                    .with_header(CONTENT_RANGE, format!("bytes */{size}"))
            }
            E::Unsupported(_) => ApiError::unsupported(msg),
            E::PaginationInvalid(_) => ApiError::new(S::BAD_REQUEST, C::Unsupported, msg),
            E::Metadata(inner) => inner.into(),
            E::Storage(inner) => inner.into(),
            E::Upstream(inner) => upstream_error(inner),
            E::QuotaExceeded { .. } => ApiError::new(S::FORBIDDEN, C::Denied, msg),
            E::SignatureInvalid(_) => ApiError::new(S::BAD_REQUEST, C::SignatureInvalid, msg),
            E::SignatureExists(_) => ApiError::new(S::CONFLICT, C::SignatureExists, msg),
            E::Untrusted(_) => ApiError::new(S::FORBIDDEN, C::Denied, msg),
        }
    }
}

/// A pull-through cache's upstream failed and nothing cached could be served: the
/// client learns which upstream and how (no secret is in these messages).
fn upstream_error(e: crate::registry::mirror::UpstreamError) -> ApiError {
    use crate::registry::mirror::UpstreamError as U;
    let msg = e.to_string();
    match e {
        U::TooManyRequests { retry_after, .. } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            msg,
        )
        .with_header(RETRY_AFTER, retry_after.unwrap_or(10).to_string()),
        U::Unavailable { .. } => {
            tracing::warn!(error = %msg, "upstream unavailable");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, msg)
                .with_header(RETRY_AFTER, "5")
        }
        U::Denied { .. } | U::Invalid { .. } => {
            tracing::error!(error = %msg, "upstream failed");
            ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::Unknown, msg)
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
        if self.status.is_client_error() {
            tracing::debug!(status = self.status.as_u16(), code = %self.code, message = %self.message, "request refused");
        }
        response.json(json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message, "detail": null }]
        }))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
