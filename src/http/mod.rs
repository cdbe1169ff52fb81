//! The HTTP layer (actix-web): routing, header and query parsing, the spec's error JSON.
//!
//! Handlers are thin: they parse the request into validated types, call the registry
//! core, and turn the result into the spec's response. All routes are registered in
//! [`configure`]; repository names are matched with a regex segment (`{name:.+}`) so
//! names of any depth route the same way.

use actix_web::web;

pub mod error;
pub mod handlers;
pub mod headers;
pub mod metrics;
pub mod spans;

use handlers::{base, blobs, manifests, ops, uploads};

/// Application state shared by every worker.
pub struct AppState {
    pub registry: crate::registry::Registry,
}

const NAME: &str = "/v2/{name:.+}";

/// Registers every route. Upload routes come before `blobs/{digest}` so that
/// `blobs/uploads` is never read as a digest.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let unsupported = || web::to(handlers::method_not_allowed);
    cfg.service(
        web::resource(["/v2", "/v2/"])
            .route(web::get().to(base::version_check))
            .route(web::head().to(base::version_check))
            .default_service(unsupported()),
    )
    .service(
        web::resource("/v2/_catalog")
            .route(web::get().to(manifests::catalog))
            .default_service(unsupported()),
    )
    .service(
        web::resource(format!("{NAME}/tags/list"))
            .route(web::get().to(manifests::list_tags))
            .default_service(unsupported()),
    )
    .service(
        web::resource(format!("{NAME}/manifests/{{reference}}"))
            .route(web::get().to(manifests::get))
            .route(web::head().to(manifests::head))
            .route(web::put().to(manifests::put))
            .route(web::delete().to(manifests::delete))
            .default_service(unsupported()),
    )
    .service(
        web::resource([format!("{NAME}/blobs/uploads/"), format!("{NAME}/blobs/uploads")])
            .route(web::post().to(uploads::start))
            .default_service(unsupported()),
    )
    .service(
        web::resource(format!("{NAME}/blobs/uploads/{{id}}"))
            .route(web::get().to(uploads::status))
            .route(web::patch().to(uploads::patch))
            .route(web::put().to(uploads::finish))
            .route(web::delete().to(uploads::cancel))
            .default_service(unsupported()),
    )
    .service(
        web::resource(format!("{NAME}/blobs/{{digest}}"))
            .route(web::get().to(blobs::get))
            .route(web::head().to(blobs::head))
            .route(web::delete().to(blobs::delete))
            .default_service(unsupported()),
    )
    .service(
        web::resource(format!("{NAME}/referrers/{{digest}}"))
            .route(web::get().to(manifests::referrers))
            .default_service(unsupported()),
    )
    .service(web::resource("/metrics").route(web::get().to(ops::metrics)))
    .service(web::resource("/healthz").route(web::get().to(ops::healthz)))
    .service(web::resource("/readyz").route(web::get().to(ops::readyz)))
    .default_service(web::to(handlers::not_found));
}
