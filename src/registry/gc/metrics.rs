//! Garbage collection's Prometheus metrics (labels bounded: a kind, an outcome, a
//! source, an operation — never a repository or digest).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};

use crate::metadata::gc::{QueueDepth, ReviewBatch, Tombstone};
use crate::telemetry::{lazy_counter_vec, lazy_gauge_vec, lazy_histogram_vec};

struct Metrics {
    reviews: IntCounterVec,
    pending: IntGaugeVec,
    objects: IntCounterVec,
    bytes: IntCounterVec,
    deleted: IntCounterVec,
    tombstone_hits: IntCounterVec,
    durations: HistogramVec,
}

fn m() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        reviews: lazy_counter_vec(
            "gc_reviews_done_total",
            "Garbage-collection reviews settled, by kind (blob, manifest) and outcome \
             (collected: something was deleted; kept: still in use or already gone)",
            &["kind", "outcome"],
        ),
        pending: lazy_gauge_vec(
            "gc_reviews_pending",
            "Reviews queued, by kind (blob, manifest) and state (queued: all; due: past \
             the review delay); tombstones: blob objects being deleted",
            &["kind", "state"],
        ),
        objects: lazy_counter_vec(
            "gc_objects_reclaimed_total",
            "Blob objects deleted from the store, by source (review, sweep)",
            &["source"],
        ),
        bytes: lazy_counter_vec(
            "gc_bytes_reclaimed_total",
            "Bytes of blob objects deleted from the store, by source (review, sweep)",
            &["source"],
        ),
        deleted: lazy_counter_vec(
            "gc_deleted_total",
            "Rows garbage collection and retention deleted, by what (manifest, tag, link, \
             blob) and cause (review, retention)",
            &["what", "cause"],
        ),
        tombstone_hits: lazy_counter_vec(
            "gc_tombstone_hits_total",
            "Requests that met a blob being collected, by operation (manifest_put: refused \
             with MANIFEST_BLOB_UNKNOWN; mount: an upload was opened instead; upload: the \
             bytes were stored anew)",
            &["op"],
        ),
        durations: lazy_histogram_vec(
            "gc_duration_seconds",
            "Duration of garbage-collection work, by what (pass, sweep, retention)",
            &["what"],
            vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0],
        ),
    })
}

pub(super) fn reviews(batch: &ReviewBatch, kind: &str) {
    let collected = batch.reviewed.saturating_sub(batch.kept) as u64;
    m().reviews
        .with_label_values(&[kind, "collected"])
        .inc_by(collected);
    m().reviews
        .with_label_values(&[kind, "kept"])
        .inc_by(batch.kept as u64);
    let deleted = &m().deleted;
    deleted
        .with_label_values(&["manifest", "review"])
        .inc_by(batch.manifests.len() as u64);
    deleted
        .with_label_values(&["link", "review"])
        .inc_by(batch.unlinked.len() as u64);
    deleted
        .with_label_values(&["blob", "review"])
        .inc_by(batch.tombstones.len() as u64);
}

pub(super) fn reclaimed(source: &str, objects: &[Tombstone]) {
    m().objects
        .with_label_values(&[source])
        .inc_by(objects.len() as u64);
    m().bytes
        .with_label_values(&[source])
        .inc_by(objects.iter().map(|t| t.size).sum());
}

pub(super) fn swept(objects: u64, bytes: u64) {
    m().objects.with_label_values(&["sweep"]).inc_by(objects);
    m().bytes.with_label_values(&["sweep"]).inc_by(bytes);
}

pub(super) fn retention(what: &str, n: u64) {
    m().deleted
        .with_label_values(&[what, "retention"])
        .inc_by(n);
}

pub(crate) fn tombstone_hit(op: &str) {
    m().tombstone_hits.with_label_values(&[op]).inc();
}

pub(super) fn queues(depth: &QueueDepth) {
    let g = &m().pending;
    g.with_label_values(&["blob", "queued"])
        .set(depth.blob_reviews as i64);
    g.with_label_values(&["blob", "due"])
        .set(depth.blob_reviews_due as i64);
    g.with_label_values(&["manifest", "queued"])
        .set(depth.manifest_reviews as i64);
    g.with_label_values(&["manifest", "due"])
        .set(depth.manifest_reviews_due as i64);
    g.with_label_values(&["tombstone", "queued"])
        .set(depth.tombstones as i64);
}

pub(super) fn pass_duration(d: Duration) {
    m().durations
        .with_label_values(&["pass"])
        .observe(d.as_secs_f64());
}

pub(super) fn sweep_duration(d: Duration) {
    m().durations
        .with_label_values(&["sweep"])
        .observe(d.as_secs_f64());
}

pub(super) fn retention_duration(d: Duration) {
    m().durations
        .with_label_values(&["retention"])
        .observe(d.as_secs_f64());
}
