//! `http.limits.connectionsperclient`: open connections per client address.
//!
//! Counted when a connection is accepted, by its TCP peer address (plain TCP and TLS
//! listeners, the HTTP/1.1-only TLS one of `http.http2.disabled` too; an IPv6 peer by
//! its /64, the block one host is usually given). Not on a unix socket (`http.net:
//! unix`): it has no peer address, and who may connect is the socket file's
//! permissions' business (a local proxy in front is the usual client). At
//! accept no header has been read, so `X-Forwarded-For` cannot be known, and a
//! connection-level limit must not wait for one. Peers listed in `http.trustedproxies`
//! are not counted: a load balancer carries many clients on its connections (limit
//! those clients at the balancer, which sees them).
//!
//! A connection over the limit is not counted; its first request is answered
//! `429 TOOMANYREQUESTS` with `Retry-After` and `Connection: close`, so the client
//! learns why (a bare reset would look like a network fault and be retried at once).
//! Metrics: `wharf_http_connections_refused_total{reason="per_client"}`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use super::client_addr::ClientAddr;
use super::error::{ApiError, ErrorCode};

/// Open connections per client key, shared by every worker.
#[derive(Debug)]
pub struct PerClient {
    limit: usize,
    trusted: ClientAddr,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// What a connection carries: its counted slot, or the mark that it was over.
#[derive(Debug)]
pub enum Slot {
    Counted {
        limiter: Arc<PerClient>,
        key: IpAddr,
    },
    Over,
}

/// The key a peer is counted under: its address, an IPv6 one cut to its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::V6(s.into())
        }
        v4 => v4,
    }
}

impl PerClient {
    /// `limit` 0: no limit (None).
    pub fn new(limit: usize, trusted: ClientAddr) -> Option<Arc<PerClient>> {
        (limit > 0).then(|| {
            Arc::new(PerClient {
                limit,
                trusted,
                open: Mutex::new(HashMap::new()),
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Counts only: a panic elsewhere leaves them whole.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a new connection from `peer`, or says it is over the limit. Trusted
    /// proxies are not counted (None).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        if self.trusted.is_trusted(peer.to_canonical()) {
            return None;
        }
        let key = key(peer);
        let mut open = self.lock();
        let n = open.entry(key).or_insert(0);
        if *n >= self.limit {
            refused().inc();
            return Some(Slot::Over);
        }
        *n += 1;
        Some(Slot::Counted {
            limiter: self.clone(),
            key,
        })
    }

    /// Open connections counted for `peer` (tests).
    pub fn open(&self, peer: IpAddr) -> usize {
        self.lock().get(&key(peer)).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Slot::Counted { limiter, key } = self {
            let mut open = limiter.lock();
            if let Some(n) = open.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(key);
                }
            }
        }
    }
}

/// The peer of an accepted connection (plain TCP or TLS over TCP).
pub fn peer(conn: &dyn std::any::Any) -> Option<IpAddr> {
    use actix_web::rt::net::TcpStream;
    let tcp = conn.downcast_ref::<TcpStream>().or_else(|| {
        conn.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>()
            .map(|tls| tls.get_ref().0)
    })?;
    tcp.peer_addr().ok().map(|a| a.ip())
}

/// Middleware: a request on a connection that was over the limit is answered 429 and
/// the connection closed.
pub async fn refuse_over_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if matches!(req.conn_data::<Slot>(), Some(Slot::Over)) {
        tracing::debug!(
            peer = ?req.peer_addr(),
            "connection refused: over http.limits.connectionsperclient"
        );
        let refusal = ApiError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            "too many connections from this address (http.limits.connectionsperclient)",
        )
        .with_header(actix_web::http::header::RETRY_AFTER, "1");
        let mut resp = actix_web::ResponseError::error_response(&refusal);
        resp.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Ok(req.into_response(resp).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

fn refused() -> &'static prometheus::IntCounter {
    static REFUSED: OnceLock<prometheus::IntCounter> = OnceLock::new();
    REFUSED.get_or_init(|| {
        crate::telemetry::lazy_counter_vec(
            "http_connections_refused_total",
            "Connections refused by reason (per_client: over http.limits.connectionsperclient)",
            &["reason"],
        )
        .with_label_values(&["per_client"])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_frees_on_close() {
        let trusted: ipnet::IpNet = "10.0.0.1/32".parse().unwrap();
        let p = PerClient::new(2, ClientAddr::new(vec![trusted])).unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let one = p.admit(a).unwrap();
        let two = p.admit(a).unwrap();
        assert!(matches!(p.admit(a), Some(Slot::Over)));
        assert!(matches!(p.admit(b), Some(Slot::Counted { .. })));
        assert_eq!(p.open(a), 2);
        drop(one);
        assert!(matches!(p.admit(a), Some(Slot::Counted { .. })));
        drop(two);
        // A trusted proxy is not counted.
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..5 {
            assert!(p.admit(proxy).is_none());
        }
        // IPv6 by /64; an IPv4-mapped address as IPv4.
        let v6: Vec<IpAddr> = ["2001:db8::1", "2001:db8::2:3", "::ffff:192.0.2.9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let _x = p.admit(v6[0]).unwrap();
        let _y = p.admit(v6[1]).unwrap();
        assert!(matches!(p.admit(v6[0]), Some(Slot::Over)));
        assert_eq!(p.open("192.0.2.9".parse().unwrap()), 0);
        let _z = p.admit(v6[2]).unwrap();
        assert_eq!(p.open("192.0.2.9".parse().unwrap()), 1);
    }
}
