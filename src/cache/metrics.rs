//! The cache's Prometheus metrics, registered in the process-wide registry the first
//! time they are used.

use std::sync::OnceLock;

use prometheus::{IntCounterVec, IntGauge, Opts};

pub struct CacheMetrics {
    /// Lookups by entry kind and outcome: `hit`, `miss`, `bypass` (cache unreachable),
    /// `error` (the lookup itself failed).
    pub lookups: IntCounterVec,
    /// Generation renewals after writes: `done`, or `deferred` while Redis is unreachable.
    pub invalidations: IntCounterVec,
    /// Cache backend errors by operation.
    pub errors: IntCounterVec,
    /// 1 while the cache is used, 0 while requests bypass it.
    pub up: IntGauge,
}

pub fn metrics() -> &'static CacheMetrics {
    static METRICS: OnceLock<CacheMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let lookups = IntCounterVec::new(
            Opts::new(
                "cache_lookups_total",
                "Metadata cache lookups by entry and result",
            ),
            &["entry", "result"],
        )
        .expect("static metric");
        let invalidations = IntCounterVec::new(
            Opts::new(
                "cache_invalidations_total",
                "Repository generations renewed after writes",
            ),
            &["result"],
        )
        .expect("static metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "cache_errors_total",
                "Metadata cache backend errors by operation",
            ),
            &["op"],
        )
        .expect("static metric");
        let up = IntGauge::new("cache_up", "1 while the metadata cache is in use")
            .expect("static metric");
        let registry = &crate::telemetry::metrics().registry;
        for m in [
            Box::new(lookups.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(invalidations.clone()),
            Box::new(errors.clone()),
            Box::new(up.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        CacheMetrics {
            lookups,
            invalidations,
            errors,
            up,
        }
    })
}
