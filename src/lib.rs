//! Wharf: a container registry speaking the OCI Distribution Spec v1.1 and Docker's
//! registry/2.0 API. See `DESIGN.md` for the architecture; the modules are its layers:
//! `http` (actix-web) → `registry` (the spec's rules) → `metadata` and `blobs` (stores).

pub mod auth;
pub mod blobs;
pub mod cache;
pub mod clock;
pub mod config;
pub mod http;
pub mod import;
pub mod lifecycle;
pub mod maintenance;
pub mod metadata;
pub mod notify;
pub mod proxy;
pub mod redirect;
pub mod registry;
pub mod server;
pub mod telemetry;
pub mod trust;
pub mod types;
