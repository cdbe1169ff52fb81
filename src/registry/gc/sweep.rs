//! The orphan sweep: objects under `blobs/` in the store that no row names — left by
//! stores written before garbage collection existed, by crashes between writing an
//! object and recording it, by failed deletes — are deleted once older than the safety
//! age.
//!
//! Order matters: the store is listed first, then every key a row names is read in
//! one statement (blobs, upload sessions and their chunks, tombstones: one snapshot),
//! then the listed objects that are older than the safety age and named by no row are
//! deleted. A key only becomes named by a row when it is fresh — a new upload's key, a
//! chunk or an assembled blob recorded right after it is written — so an object that
//! is old and unnamed at the snapshot stays unnamed. The safety age must exceed the
//! longest an upload request can take between writing its object and recording it
//! (the default, 24 h, is far beyond any request; an idle upload session is named by
//! its row whatever its age).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tracing::Instrument;

use super::super::{now_ms, Registry, Result};
use super::metrics;
use crate::blobs::ListedObject;

/// Where blob objects live under every backend's root.
pub const BLOB_PREFIX: &str = "blobs/";

/// What a sweep found (and, unless a dry run, deleted).
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    /// Objects listed.
    pub listed: u64,
    /// Unnamed objects old enough to go.
    pub orphans: Vec<ListedObject>,
    /// Unnamed objects younger than the safety age (left alone).
    pub young: u64,
    /// Orphans whose delete failed.
    pub failed: u64,
}

impl SweepReport {
    pub fn bytes(&self) -> u64 {
        self.orphans.iter().map(|o| o.size).sum()
    }
}

impl Registry {
    /// Lists the store and deletes (unless `dry_run`) the objects older than
    /// `safety_age` that no row names.
    pub async fn sweep_orphans(&self, safety_age: Duration, dry_run: bool) -> Result<SweepReport> {
        if !dry_run && !self.gc_enabled() {
            return Ok(SweepReport::default());
        }
        let started = Instant::now();
        let report = self
            .sweep(safety_age, dry_run)
            .instrument(tracing::info_span!("gc.orphan_sweep", dry_run))
            .await;
        metrics::sweep_duration(started.elapsed());
        report
    }

    async fn sweep(&self, safety_age: Duration, dry_run: bool) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let mut listed = Vec::new();
        let mut stream = self.blobs.list(BLOB_PREFIX).await?;
        while let Some(object) = stream.next().await {
            listed.push(object?);
        }
        report.listed = listed.len() as u64;
        // After the listing: see the module doc.
        let named = self.meta.gc.referenced_keys().await?;
        let old_before = now_ms() - i64::try_from(safety_age.as_millis()).unwrap_or(i64::MAX);
        for object in listed {
            if named.contains(&object.key) {
                continue;
            }
            if object.modified_ms > old_before {
                report.young += 1;
            } else {
                report.orphans.push(object);
            }
        }
        if dry_run {
            return Ok(report);
        }
        let mut deleted = Vec::new();
        for object in std::mem::take(&mut report.orphans) {
            match self.blobs.delete(&object.key).await {
                Ok(()) => deleted.push(object),
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(key = %object.key, error = %e, "orphan sweep: delete failed");
                }
            }
        }
        report.orphans = deleted;
        metrics::swept(report.orphans.len() as u64, report.bytes());
        tracing::info!(
            listed = report.listed,
            deleted = report.orphans.len(),
            bytes = report.bytes(),
            young = report.young,
            "orphan sweep done"
        );
        Ok(report)
    }
}
