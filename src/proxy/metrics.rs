//! The cache's metrics, labelled by upstream name (bounded: the configured ones).
//!
//! - `wharf_proxy_hits_total{upstream,kind}`: pulls served from the store
//!   (`kind`: manifest, blob);
//! - `wharf_proxy_misses_total{upstream,kind}`: pulls that went upstream;
//! - `wharf_proxy_upstream_requests_total{upstream}`, `..._upstream_bytes_total`;
//! - `wharf_proxy_upstream_errors_total{upstream}` (unreachable, timeouts, 5xx,
//!   refusals) and `wharf_proxy_upstream_throttled_total{upstream}` (429s);
//! - `wharf_proxy_stale_served_total{upstream}`: cached tags served because the
//!   upstream failed;
//! - `wharf_proxy_fills_in_flight{upstream}`: blob fills this instance runs;
//! - `wharf_proxy_coalesced_total{upstream}`: blob requests that followed a fill
//!   already under way (on any instance) instead of fetching;
//! - `wharf_proxy_evicted_total{upstream,reason}`: content removed (`expired`, `size`).

use std::sync::OnceLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::telemetry::lazy_counter_vec;

struct ProxyMetrics {
    hits: IntCounterVec,
    misses: IntCounterVec,
    requests: IntCounterVec,
    bytes: IntCounterVec,
    errors: IntCounterVec,
    throttled: IntCounterVec,
    stale: IntCounterVec,
    in_flight: IntGaugeVec,
    coalesced: IntCounterVec,
    evicted: IntCounterVec,
}

fn m() -> &'static ProxyMetrics {
    static M: OnceLock<ProxyMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "proxy_fills_in_flight",
                "Blob fills from an upstream this instance is running",
            ),
            &["upstream"],
        )
        .expect("static metric");
        if let Err(e) = crate::telemetry::metrics()
            .registry
            .register(Box::new(in_flight.clone()))
        {
            tracing::warn!(error = %e, "metric not registered");
        }
        ProxyMetrics {
            hits: lazy_counter_vec(
                "proxy_hits_total",
                "Pulls of mirrored content served from the store",
                &["upstream", "kind"],
            ),
            misses: lazy_counter_vec(
                "proxy_misses_total",
                "Pulls of mirrored content fetched from the upstream",
                &["upstream", "kind"],
            ),
            requests: lazy_counter_vec(
                "proxy_upstream_requests_total",
                "Requests sent to an upstream",
                &["upstream"],
            ),
            bytes: lazy_counter_vec(
                "proxy_upstream_bytes_total",
                "Bytes received from an upstream (manifests and blobs)",
                &["upstream"],
            ),
            errors: lazy_counter_vec(
                "proxy_upstream_errors_total",
                "Upstream requests that failed (unreachable, timeout, 5xx, refused)",
                &["upstream"],
            ),
            throttled: lazy_counter_vec(
                "proxy_upstream_throttled_total",
                "Upstream answers 429 Too Many Requests",
                &["upstream"],
            ),
            stale: lazy_counter_vec(
                "proxy_stale_served_total",
                "Cached manifests served because the upstream could not revalidate them",
                &["upstream"],
            ),
            in_flight,
            coalesced: lazy_counter_vec(
                "proxy_coalesced_total",
                "Blob requests that followed a fill under way instead of fetching",
                &["upstream"],
            ),
            evicted: lazy_counter_vec(
                "proxy_evicted_total",
                "Cached content removed, by reason (expired, size)",
                &["upstream", "reason"],
            ),
        }
    })
}

pub fn hit(upstream: &str, kind: &str) {
    m().hits.with_label_values(&[upstream, kind]).inc();
}
pub fn miss(upstream: &str, kind: &str) {
    m().misses.with_label_values(&[upstream, kind]).inc();
}
pub fn upstream_request(upstream: &str) {
    m().requests.with_label_values(&[upstream]).inc();
}
pub fn upstream_bytes(upstream: &str, n: u64) {
    m().bytes.with_label_values(&[upstream]).inc_by(n);
}
pub fn upstream_error(upstream: &str) {
    m().errors.with_label_values(&[upstream]).inc();
}
pub fn upstream_throttled(upstream: &str) {
    m().throttled.with_label_values(&[upstream]).inc();
}
pub fn stale_served(upstream: &str) {
    m().stale.with_label_values(&[upstream]).inc();
}
pub fn coalesced(upstream: &str) {
    m().coalesced.with_label_values(&[upstream]).inc();
}
pub fn evicted(upstream: &str, reason: &str, n: u64) {
    m().evicted.with_label_values(&[upstream, reason]).inc_by(n);
}

/// Counts a fill in flight while it lives.
pub struct InFlight(String);

impl InFlight {
    pub fn start(upstream: &str) -> InFlight {
        m().in_flight.with_label_values(&[upstream]).inc();
        InFlight(upstream.to_string())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        m().in_flight.with_label_values(&[&self.0]).dec();
    }
}
