//! What the pull path tells garbage collection, recorded cheaply: blob HEADs and GETs
//! push back the blob's pending review, manifest GETs and HEADs set the manifest's
//! `last_pulled_at` (for retention's `keeppulledwithin`).
//!
//! Nothing is written per request: each request adds its digest to an in-memory set
//! (a mutex held for one insert), and [`Registry::flush_access`] — every second, from
//! the background workers — writes the set in one statement per kind (PostgreSQL:
//! `UPDATE … WHERE digest = ANY($1)`; SQLite: one group-commit job). The set is
//! bounded ([`MAX_PENDING`]); past that, records are dropped and counted. So a push-back
//! lands within about a second of the HEAD, and a pull's time is recorded within a
//! second (lost if the process dies first): both are hints. No safety property rests on
//! them (see `gc`'s argument), only how often a client is asked to upload again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::metadata::gc::PullRecord;
use crate::types::{Digest, RepoName};

use super::super::{now_ms, Registry};

/// Most distinct records kept between flushes.
pub const MAX_PENDING: usize = 100_000;
/// Digests per statement when flushing.
const FLUSH_CHUNK: usize = 1_000;

#[derive(Default)]
struct Pending {
    blobs: HashSet<Digest>,
    pulls: HashMap<(RepoName, Digest), i64>,
}

/// Uses of blobs and manifests not yet written.
#[derive(Default)]
pub struct AccessLog {
    pending: Mutex<Pending>,
}

impl AccessLog {
    pub fn blob_used(&self, digest: &Digest) {
        let mut p = self.pending.lock().expect("access log");
        if p.blobs.len() < MAX_PENDING || p.blobs.contains(digest) {
            p.blobs.insert(digest.clone());
        } else {
            dropped();
        }
    }

    pub fn manifest_pulled(&self, repo: &RepoName, digest: &Digest) {
        let now = now_ms();
        let mut p = self.pending.lock().expect("access log");
        let key = (repo.clone(), digest.clone());
        if p.pulls.len() < MAX_PENDING || p.pulls.contains_key(&key) {
            p.pulls.insert(key, now);
        } else {
            dropped();
        }
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("access log"))
    }
}

fn dropped() {
    use std::sync::OnceLock;
    static C: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        crate::telemetry::lazy_counter_vec(
            "gc_access_records_dropped_total",
            "Blob uses and manifest pulls not recorded because too many were pending",
            &[],
        )
    })
    .with_label_values(&[] as &[&str])
    .inc();
}

impl Registry {
    /// Writes the recorded blob uses and manifest pulls (failures are logged: these
    /// are hints).
    pub async fn flush_access(&self) {
        let pending = self.access.take();
        let blobs: Vec<Digest> = pending.blobs.into_iter().collect();
        for chunk in blobs.chunks(FLUSH_CHUNK) {
            if let Err(e) = self.meta.gc.touch_blobs(chunk).await {
                tracing::debug!(error = %e, "could not push back blob reviews");
            }
        }
        let pulls: Vec<PullRecord> = pending
            .pulls
            .into_iter()
            .map(|((repo, digest), at)| PullRecord { repo, digest, at })
            .collect();
        for chunk in pulls.chunks(FLUSH_CHUNK) {
            if let Err(e) = self.meta.gc.record_pulls(chunk).await {
                tracing::debug!(error = %e, "could not record manifest pulls");
            }
        }
    }
}
