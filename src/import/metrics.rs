//! `wharf import`'s Prometheus counters (labels bounded: a kind and an outcome, never a
//! repository or digest). A one-shot command has no scrape: the summary logs them too.

use std::sync::OnceLock;

use prometheus::IntCounterVec;

use crate::telemetry::lazy_counter_vec;

fn items() -> &'static IntCounterVec {
    static M: OnceLock<IntCounterVec> = OnceLock::new();
    M.get_or_init(|| {
        lazy_counter_vec(
            "import_items_total",
            "What `wharf import` read from a distribution storage layout, by kind \
             (repository, tag, manifest, blob_link, upload) and outcome (imported, \
             would_import, resumed, skipped_deleted, invalid, empty, dangling, ignored)",
            &["kind", "outcome"],
        )
    })
}

/// Counts `n` items of `kind` with `outcome`.
pub fn count(kind: &'static str, outcome: &'static str, n: u64) {
    if n > 0 {
        items().with_label_values(&[kind, outcome]).inc_by(n);
    }
}

/// The import's metrics in Prometheus' text format (for `--metrics-file`, e.g. node
/// exporter's textfile collector: a one-shot command has no scrape endpoint).
pub fn exposition() -> String {
    crate::telemetry::render()
        .lines()
        .filter(|l| l.contains("wharf_import_"))
        .map(|l| format!("{l}\n"))
        .collect()
}
