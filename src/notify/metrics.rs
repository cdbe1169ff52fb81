//! Per-endpoint delivery metrics (the `endpoint` label is bounded by the
//! configuration): `wharf_notify_events_delivered_total`,
//! `wharf_notify_delivery_failures_total` (failed requests),
//! `wharf_notify_events_retried_total` (events sent again after a failure),
//! `wharf_notify_events_dead_total`, the gauges `wharf_notify_events_pending` and
//! `wharf_notify_oldest_pending_age_seconds` (computed every few seconds from the
//! outbox, so every instance reports the whole backlog), and the histogram
//! `wharf_notify_delivery_latency_seconds` (from the change's commit to its 2xx).

use std::sync::OnceLock;

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts};

pub struct NotifyMetrics {
    pub delivered: IntCounterVec,
    pub failures: IntCounterVec,
    pub retried: IntCounterVec,
    pub dead: IntCounterVec,
    pub pending: GaugeVec,
    pub oldest_age: GaugeVec,
    pub latency: HistogramVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    if let Err(e) = crate::telemetry::metrics()
        .registry
        .register(Box::new(c.clone()))
    {
        tracing::warn!(error = %e, "notification metric not registered");
    }
    c
}

pub fn metrics() -> &'static NotifyMetrics {
    static M: OnceLock<NotifyMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let counter =
            |name: &str, help: &str| crate::telemetry::lazy_counter_vec(name, help, &["endpoint"]);
        let gauge = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["endpoint"]).expect("static metric")
        };
        NotifyMetrics {
            delivered: counter(
                "notify_events_delivered_total",
                "Events an endpoint acknowledged with a 2xx",
            ),
            failures: counter(
                "notify_delivery_failures_total",
                "Delivery requests that failed (error, timeout, non-2xx)",
            ),
            retried: counter(
                "notify_events_retried_total",
                "Events sent again after a failed attempt",
            ),
            dead: counter(
                "notify_events_dead_total",
                "Events moved to the dead letters",
            ),
            pending: register(gauge(
                "notify_events_pending",
                "Events not yet delivered to the endpoint",
            )),
            oldest_age: register(gauge(
                "notify_oldest_pending_age_seconds",
                "Age of the oldest event not yet delivered to the endpoint",
            )),
            latency: register(
                HistogramVec::new(
                    HistogramOpts::new(
                        "notify_delivery_latency_seconds",
                        "From an event's commit to its delivery",
                    )
                    .buckets(vec![
                        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                        3600.0,
                    ]),
                    &["endpoint"],
                )
                .expect("static metric"),
            ),
        }
    })
}
