//! One span and one latency observation per call to a store: the metadata database,
//! the metadata cache, blob storage. The decorators that call [`observe`] sit around
//! each store's trait (`metadata::instrumented`, `cache::instrumented`,
//! `blobs::instrumented`), so every call is measured once, in one place, and the
//! stores themselves measure nothing.
//!
//! Metrics: `wharf_metadata_call_duration_seconds`, `wharf_cache_call_duration_seconds`
//! and `wharf_storage_call_duration_seconds`, each by `backend` (`sqlite`, `postgres`,
//! `redis`, `inmemory`, `filesystem`, `s3`, …), `operation` (the trait method's name:
//! a closed set) and `outcome` (`ok`, `error`); the `_count` of `outcome="error"` is
//! the error count. Spans: `store.call` at DEBUG (exported with the request's trace,
//! not logged at INFO), named `<store> <operation>` in the trace.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use prometheus::HistogramVec;
use tracing::Instrument;

/// Which store a call goes to.
#[derive(Clone, Copy, Debug)]
pub enum Store {
    Metadata,
    Cache,
    Storage,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Metadata => "metadata",
            Store::Cache => "cache",
            Store::Storage => "storage",
        }
    }
}

/// Seconds: from a cache hit in memory to a slow multipart completion.
const BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn histogram(store: Store) -> &'static HistogramVec {
    static H: OnceLock<[HistogramVec; 3]> = OnceLock::new();
    let all = H.get_or_init(|| {
        let make = |store: Store| {
            super::lazy_histogram_vec(
                &format!("{}_call_duration_seconds", store.name()),
                &format!(
                    "Calls to the {} store by backend, operation and outcome (ok, error)",
                    store.name()
                ),
                &["backend", "operation", "outcome"],
                BUCKETS.to_vec(),
            )
        };
        [
            make(Store::Metadata),
            make(Store::Cache),
            make(Store::Storage),
        ]
    });
    &all[store as usize]
}

/// Runs `call` inside a `store.call` span and records its duration and outcome.
pub async fn observe<T, E, F>(
    store: Store,
    backend: &'static str,
    operation: &'static str,
    call: F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let span = tracing::debug_span!(
        "store.call",
        otel.name = tracing::field::Empty,
        otel.kind = "client",
        store = store.name(),
        backend,
        operation,
        outcome = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    if !span.is_disabled() {
        span.record("otel.name", format!("{} {operation}", store.name()));
    }
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    if !span.is_disabled() {
        span.record("outcome", outcome);
        if let Err(e) = &result {
            span.record("error", tracing::field::display(e));
        }
    }
    histogram(store)
        .with_label_values(&[backend, operation, outcome])
        .observe(started.elapsed().as_secs_f64());
    result
}
