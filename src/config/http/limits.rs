//! `http.timeouts` and `http.limits`: how long a slow or silent client may hold a
//! connection, and how much work the server takes at once.

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigDuration;

/// `http.timeouts`: each a duration such as `30s`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTimeouts {
    /// A request's head (request line and headers) must arrive within this.
    #[serde(default = "default_header")]
    pub header: ConfigDuration,
    /// A request body that brings no byte for this long ends the request (`408`); an
    /// upload keeps the offset of its last completed chunk.
    #[serde(default = "default_body")]
    pub body: ConfigDuration,
    /// Response bytes the client leaves unacknowledged for this long close the
    /// connection (the socket's `TCP_USER_TIMEOUT`, which also ends a zero window).
    #[serde(default = "default_send")]
    pub send: ConfigDuration,
    /// An idle keep-alive connection is closed after this.
    #[serde(default = "default_idle")]
    pub idle: ConfigDuration,
}

fn default_header() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}
fn default_body() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_send() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_idle() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            header: default_header(),
            body: default_body(),
            send: default_send(),
            idle: default_idle(),
        }
    }
}

/// `http.limits`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimits {
    /// Open connections at most (beyond it, new ones wait in the listen backlog).
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Blob uploads and downloads in progress at most; beyond it a new one is refused
    /// with `429 TOOMANYREQUESTS` and `Retry-After`, and `/readyz` says `saturated`.
    #[serde(default = "default_transfers")]
    pub transfers: usize,
    /// Bytes of manifest bodies held in memory at once (each counted at its
    /// `Content-Length`, or the 4 MiB maximum without one); beyond it a push is refused
    /// with `429 TOOMANYREQUESTS` and `Retry-After`.
    #[serde(default = "default_manifestbytes")]
    pub manifestbytes: usize,
    /// The write limiter (off unless set): pushes and deletes running at once.
    #[serde(default)]
    pub writes: Option<WriteLimits>,
    /// Open connections per client address (the TCP peer; an IPv6 one by its /64;
    /// `http.trustedproxies` not counted); beyond it the connection's request is
    /// answered `429 TOOMANYREQUESTS` and the connection closed. 0: no limit.
    #[serde(default = "default_connectionsperclient")]
    pub connectionsperclient: usize,
}

fn default_connectionsperclient() -> usize {
    256
}

/// `http.limits.writes`: at most `concurrent` writes (`POST`, `PUT`, `PATCH`, `DELETE`
/// on the API) run at once; up to `queued` more wait up to `queuetimeout` for a turn;
/// beyond that, or past the wait, `429 TOOMANYREQUESTS` with `Retry-After`. Reads
/// (`GET`, `HEAD`) never wait behind writes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteLimits {
    pub concurrent: usize,
    #[serde(default)]
    pub queued: usize,
    #[serde(default = "default_write_queue_timeout")]
    pub queuetimeout: ConfigDuration,
}

fn default_write_queue_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}

fn default_manifestbytes() -> usize {
    64 * 1024 * 1024
}

fn default_connections() -> usize {
    10_000
}
fn default_transfers() -> usize {
    4_096
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connections: default_connections(),
            transfers: default_transfers(),
            manifestbytes: default_manifestbytes(),
            writes: None,
            connectionsperclient: default_connectionsperclient(),
        }
    }
}
