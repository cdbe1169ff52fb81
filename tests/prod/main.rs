//! Production settings as an operator meets them: real `wharf serve` processes with
//! distribution's `http` keys — HTTPS from a generated CA (rcgen), mutual TLS, the
//! minimum TLS version, a certificate rotated on disk and served without a restart,
//! HTTP/2 on and off, a unix socket, `http.prefix` and `http.host` — and the keys that
//! are refused, by name. Clients are real: reqwest (rustls), curl and skopeo.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../common/redis_server.rs"]
mod redis_server;

mod db_outage;
mod drain;
mod http;
mod log;
mod observe;
mod ops;
mod propagation;
mod samples;
mod tls;
