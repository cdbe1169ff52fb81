//! Wharf's HTTP API over real HTTP: one integration binary, one module per area of the
//! OCI Distribution Spec v1.1 (and Docker registry/2.0) API. Every test starts its own
//! server in-process on a free port with fresh storage (see `support`).

// A test crate: a panic is a failed test, so unwrapping is how it fails.
#![allow(clippy::unwrap_used)]

#[path = "../common/postgres_url.rs"]
mod postgres_url;
#[path = "../common/receiver.rs"]
mod receiver;
mod support;

mod base;
mod blobs;
mod compose;
mod config_delete;
mod draft;
mod errors;
mod gc;
mod hostile;
mod maintenance;
mod manifests;
mod notifications;
mod quotas;
mod redirect;
mod referrers;
mod signatures;
mod tags_catalog;
mod trust;
mod uploads;
