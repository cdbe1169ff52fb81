//! `GET /v2/`: the API version check. It announces OpenShift's signature API extension
//! (`X-Registry-Supports-Signatures: 1`), which containers/image looks for in this
//! response (a 401 included) before it reads or writes signatures through it.

use actix_web::http::header::HeaderName;
use actix_web::HttpResponse;

pub static SUPPORTS_SIGNATURES: HeaderName =
    HeaderName::from_static("x-registry-supports-signatures");

pub async fn version_check() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((SUPPORTS_SIGNATURES.clone(), "1"))
        .body("{}")
}
