//! Authentication and authorization over real HTTP: htpasswd (Basic), bearer tokens
//! (every kind of bad token, scopes, mounts), and the built-in token server with its
//! access policy. Each test starts its own server in-process (see `support`).

// A test crate: a panic is a failed test, so unwrapping is how it fails.
#![allow(clippy::unwrap_used)]

mod support;

mod catalog;
mod htpasswd;
mod logs;
mod token;
mod token_server;
mod x5c;
