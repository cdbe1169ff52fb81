//! Storage quotas' Prometheus metrics. Labels are bounded: gauges per namespace only
//! for the first [`MAX_NAMESPACES`] namespaces (in name order) that have a quota of
//! their own, everything else summed under `namespace="other"` — never one series per
//! repository a client can create.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{IntCounter, IntGaugeVec};

use super::Registry;
use crate::telemetry::{lazy_counter_vec, lazy_gauge_vec};

/// Namespaces with series of their own.
pub const MAX_NAMESPACES: usize = 50;
/// How often an instance refreshes the gauges.
const EVERY: Duration = Duration::from_secs(30);

struct Metrics {
    refused: IntCounter,
    bytes: IntGaugeVec,
}

fn m() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        refused: lazy_counter_vec(
            "quota_refused_total",
            "Pushes (uploads, mounts, manifests) refused because a scope's quota had no room",
            &[],
        )
        .with_label_values(&[] as &[&str]),
        bytes: lazy_gauge_vec(
            "quota_namespace_bytes",
            "Per namespace with a quota of its own (the first 50 by name; the rest: \
             namespace=\"other\", quota not summed): stored bytes (each blob once), logical \
             bytes (what manifests reference), reserved bytes (uploads in flight), quota",
            &["namespace", "kind"],
        ),
    })
}

pub(super) fn refused() {
    m().refused.inc();
}

impl Registry {
    /// Sets the per-namespace gauges from the store once.
    pub async fn refresh_quota_gauges(&self) -> super::Result<()> {
        let limits = self.quota_limits().await?;
        let mut namespaces: Vec<_> = limits
            .iter()
            .filter(|l| l.scope.ends_with('/') && l.scope.matches('/').count() == 1)
            .collect();
        namespaces.sort_by(|a, b| a.scope.cmp(&b.scope));
        let g = &m().bytes;
        g.reset();
        let mut other = [0i64; 3];
        for (i, l) in namespaces.iter().enumerate() {
            let u = self.meta.quotas.scope_usage(&l.scope).await?;
            let figures = [u.stored_bytes, u.logical_bytes, u.reserved_bytes];
            if i < MAX_NAMESPACES {
                let ns = l.scope.trim_end_matches('/');
                for (kind, v) in ["stored", "logical", "reserved"].iter().zip(figures) {
                    g.with_label_values(&[ns, kind]).set(v as i64);
                }
                g.with_label_values(&[ns, "quota"]).set(l.bytes as i64);
            } else {
                for (o, v) in other.iter_mut().zip(figures) {
                    *o += v as i64;
                }
            }
        }
        if namespaces.len() > MAX_NAMESPACES {
            for (kind, v) in ["stored", "logical", "reserved"].iter().zip(other) {
                g.with_label_values(&["other", kind]).set(v);
            }
        }
        Ok(())
    }

    /// Refreshes the gauges (and folds the usage counters' deltas, see
    /// `metadata::quota`) every 30 s for as long as the process runs.
    pub fn spawn_quota_gauges(&self) {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tick.tick().await;
                if let Err(e) = registry.meta.quotas.compact().await {
                    tracing::debug!(error = %e, "quota counters not compacted");
                }
                if let Err(e) = registry.refresh_quota_gauges().await {
                    tracing::debug!(error = %e, "quota gauges not refreshed");
                }
            }
        });
    }
}
