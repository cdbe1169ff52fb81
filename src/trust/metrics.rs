//! The trust policy's metrics, labelled by policy name (bounded: the configured ones).
//!
//! - `wharf_trust_verifications_total{policy,result}`: verifications run (cache
//!   misses), by outcome: `verified`, `unsigned` (no signature in any form), `invalid`
//!   (signatures, none valid with the policy's keys);
//! - `wharf_trust_cache_total{result}`: verdicts looked up (`hit`, `miss`);
//! - `wharf_trust_refusals_total{policy,action}`: requests refused (`pull`, `push`);
//! - `wharf_trust_coalesced_total`: cache misses that awaited a verification another
//!   request was running for the same key instead of running their own.

use std::sync::OnceLock;

use prometheus::{IntCounter, IntCounterVec};

use crate::telemetry::lazy_counter_vec;

struct TrustMetrics {
    verifications: IntCounterVec,
    /// `cache_total{result="hit"}` and `{result="miss"}`, resolved once: a hit is
    /// on every checked pull.
    hit: IntCounter,
    miss: IntCounter,
    refusals: IntCounterVec,
    coalesced: IntCounter,
}

fn m() -> &'static TrustMetrics {
    static M: OnceLock<TrustMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let cache = lazy_counter_vec(
            "trust_cache_total",
            "Trust verdicts looked up in the cache, by hit or miss",
            &["result"],
        );
        TrustMetrics {
            verifications: lazy_counter_vec(
                "trust_verifications_total",
                "Signature verifications run for a trust policy, by result",
                &["policy", "result"],
            ),
            hit: cache.with_label_values(&["hit"]),
            miss: cache.with_label_values(&["miss"]),
            refusals: lazy_counter_vec(
                "trust_refusals_total",
                "Requests a trust policy refused, by policy and action",
                &["policy", "action"],
            ),
            coalesced: lazy_counter_vec(
                "trust_coalesced_total",
                "Trust cache misses that shared a verification another request ran",
                &[],
            )
            .with_label_values(&[] as &[&str]),
        }
    })
}

pub fn verification(policy: &str, result: &str) {
    m().verifications.with_label_values(&[policy, result]).inc();
}

pub fn cache(hit: bool) {
    if hit {
        m().hit.inc();
    } else {
        m().miss.inc();
    }
}

pub fn refusal(policy: &str, action: &str) {
    m().refusals.with_label_values(&[policy, action]).inc();
}

pub fn coalesced() {
    m().coalesced.inc();
}
