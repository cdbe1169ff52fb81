//! Online garbage collection: what nothing references is removed while the registry
//! serves, on every instance at once, and no live blob can be deleted.
//!
//! # The rules
//!
//! - A **manifest** is reachable while a tag points at it, a manifest of its repository
//!   references it (an index's child), or its subject is a manifest of its repository
//!   (a referrer: signature, SBOM — it goes with its subject unless it has a tag of its
//!   own). An unreachable manifest is deleted with its references.
//! - A blob's **link** to a repository stays while a manifest of that repository
//!   references the blob; an upload committed and never referenced loses its link.
//! - A **blob** (row and object) is deleted when no repository links it.
//! - A manifest pushed by digest and never tagged is not collected by review (nothing
//!   dropped a reference to it); retention's `untaggedolderthan` is for those.
//!
//! # How
//!
//! The database queues a **review** whenever a write drops a reference (triggers,
//! `migrations/*/0002_gc.sql`: a tag moved or deleted, a manifest deleted, a blob
//! linked or unlinked). A review is due `reviewdelay` after the last such event; an
//! upload, a mount or a HEAD/GET of the blob pushes it back (HEAD/GET in batches, see
//! [`access`]). Workers on every instance ([`Registry::gc_step`]) claim due reviews in
//! batches — PostgreSQL `FOR UPDATE SKIP LOCKED`, SQLite one writer — and in the same
//! transaction re-check each under row locks and delete what is garbage: the rows, and
//! for a blob a **tombstone** naming its object. After the commit the cache is
//! invalidated (the decorator does it for every repository the batch changed), then the
//! objects are deleted, then the tombstones. A pass that dies in between leaves
//! tombstones that the next pass finishes. [`sweep`] removes objects that no row names
//! (stores written before GC, crashes); [`retention`] applies the configured policies.
//!
//! # Why no live blob is deleted
//!
//! *Live* means: a manifest M of repository R references blob D and D is linked in R
//! (what a pull of M from R reads). Only a review deletes links, blob rows and blob
//! objects (besides an explicit blob `DELETE`, which is the client's decision). On
//! PostgreSQL (READ COMMITTED; each statement sees everything committed before it
//! starts) a blob review runs, in one transaction: (1) claim D's review row `FOR UPDATE
//! SKIP LOCKED`; (2) lock `blobs(D)` `FOR UPDATE`; (3) lock every `repository_blobs(·,
//! D)` `FOR UPDATE`; (4) in a new statement, delete the links no `manifest_references`
//! row of their repository names; (5) if no link is left, insert the tombstone and
//! delete `blobs(D)`; (6) delete the review; commit; (7) delete the object; (8) delete
//! the tombstone. The interleavings:
//!
//! 1. **Manifest PUT referencing D in R, against a review of D.** The put locks the
//!    link `(R, D)` `FOR SHARE` (`lock_children`) and holds it until it commits its
//!    references. (a) Put first: step (3) waits for the put's commit, and step (4),
//!    a later statement, sees its references: the link stays. (b) Review first: the
//!    put's locking read waits for the review's commit; if the link was deleted the
//!    read skips it and the put answers `MANIFEST_BLOB_UNKNOWN` having written nothing
//!    (the client uploads D again); if it was kept, the put goes on. (c) No overlap:
//!    the same two outcomes, by statement order. The tombstone is committed with the
//!    link's removal, so "tombstoned" and "link gone" are one fact for every statement.
//! 2. **The HEAD-then-PUT race** (a client's HEAD said D exists, D is collected, its
//!    manifest PUT follows): case 1(b)/(c) — the PUT is refused and the client
//!    re-uploads; nothing references a deleted object. The HEAD pushed D's review back
//!    (within a second), so with a non-zero delay this needs a HEAD older than the delay.
//! 3. **Upload commit or mount of D, against a review of D.** Their first statement
//!    touches D's review row: if a review has claimed it, the touch waits for that
//!    transaction to end, and every later statement sees its outcome — no blob row
//!    (the commit stores its own bytes under its own, new key; a mount finds nothing
//!    and opens an upload session) or the blob kept. If the touch goes first, the claim
//!    skips the locked row (or finds it no longer due). With no review row there is no
//!    review in progress: a review deletes its row only in its own transaction, and an
//!    `UPDATE` of a row being deleted waits for the deleter. Besides, a new link's
//!    foreign key takes `KEY SHARE` on `blobs(D)`, which conflicts with step (2): a link
//!    to a blob row being deleted fails (foreign-key violation) and the write is retried.
//!    So a commit never links to, or returns, a key whose tombstone is committed, and
//!    its own bytes are never deleted as a "duplicate" of them.
//! 4. **Reads of D during the review** (GET, HEAD, a redirect): they may read the row
//!    before the commit and the object after step (7) and fail — only for a blob no
//!    manifest referenced at step (4), and none can since (case 1), so no pull of a live
//!    manifest reads it. Storage keys are unique per upload and never reused, so step
//!    (7) can only delete the bytes of that one dead row.
//! 5. **Two reviews of D** (two instances): `SKIP LOCKED` gives the review row to one;
//!    a review queued again meanwhile is claimed after the first commits and finds
//!    the new state. Steps (7) and (8) are idempotent.
//! 6. **Manifest reviews** lock the manifest's row `FOR UPDATE` before checking tags,
//!    parents and subject: a tag upsert (foreign key: `KEY SHARE`) or an index put
//!    (`FOR SHARE` on its children) waits, then fails and is retried (the tag's put
//!    stores the manifest again) or answers `MANIFEST_BLOB_UNKNOWN`. Deleting a manifest
//!    queues reviews of its blobs and children (triggers); case 1 applies to them.
//! 7. **The cache** may still say "present" for a link the review removed: a HEAD
//!    answered from it leads to case 2; generations are renewed right after the review
//!    commits, before any object is deleted.
//! 8. **SQLite**: one writer, a review batch is one job of the group committer, so
//!    every write runs wholly before or after it: case (c) of each of the above.
//!
//! What is *not* claimed: a blob `DELETE` by a client, or sparse manifests
//! (`validation.manifests.sparse`), whose blobs need not be in the repository, can
//! leave manifests referencing absent blobs, as in distribution. A referrer pushed
//! while its subject is being collected can be left behind (a leak, not a loss).
//!
//! Tests: `tests/gc` (the store contract, each interleaving on both engines, paused at
//! the race points with `clock::race_point` hooks) and `tests/multi/gc.rs` (two
//! instances on PostgreSQL and S3 under load, with delays injected at the race points).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tracing::Instrument;

use super::{Registry, Result};
use crate::metadata::gc::{ReviewBatch, Tombstone};
use crate::types::{Digest, RepoName};

pub mod access;
pub mod metrics;
pub mod retention;
pub mod sweep;

pub use retention::{RetentionPlan, RetentionPolicy};
pub use sweep::SweepReport;

/// Objects deleted at once after a batch.
const DELETE_CONCURRENCY: usize = 16;
/// A tombstone this old was left by a pass that stopped before deleting its object.
const LEFTOVER_TOMBSTONE: Duration = Duration::from_secs(60);

/// `storage.gc` and `retention`, as the core uses them.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Reviews run at all (`storage.gc.enabled`, only with `storage.delete.enabled`).
    pub enabled: bool,
    /// How long after the last event a review is due.
    pub review_delay: Duration,
    /// Reviews claimed per transaction.
    pub batch_size: u32,
    /// The orphan sweep leaves objects younger than this.
    pub orphan_safety_age: Duration,
    /// Retention policies, the first whose repositories match applying.
    pub retention: Vec<RetentionPolicy>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            enabled: true,
            review_delay: Duration::from_secs(24 * 3600),
            batch_size: 100,
            orphan_safety_age: Duration::from_secs(24 * 3600),
            retention: Vec::new(),
        }
    }
}

/// What a step or a pass of collection removed.
#[derive(Debug, Clone, Default)]
pub struct CollectReport {
    pub reviewed: usize,
    pub kept: usize,
    pub manifests: Vec<(RepoName, Digest)>,
    pub unlinked: usize,
    /// Blobs whose rows went; their objects were deleted unless counted in `failed`.
    pub blobs: Vec<Tombstone>,
    /// Objects that could not be deleted now (their tombstones stay for a later pass).
    pub failed: usize,
}

impl CollectReport {
    fn add(&mut self, other: CollectReport) {
        self.reviewed += other.reviewed;
        self.kept += other.kept;
        self.manifests.extend(other.manifests);
        self.unlinked += other.unlinked;
        self.blobs.extend(other.blobs);
        self.failed += other.failed;
    }

    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|t| t.size).sum()
    }
}

/// What a dry run found: what a pass would remove now, with sizes.
#[derive(Debug, Clone, Default)]
pub struct GcPreview {
    pub reviews: crate::metadata::gc::ReviewPreview,
    pub retention: Vec<(RepoName, RetentionPlan)>,
    pub orphans: SweepReport,
}

/// What `wharf gc` did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    pub retention: Vec<(RepoName, RetentionPlan)>,
    pub collected: CollectReport,
    pub orphans: Option<SweepReport>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Registry {
    pub fn gc_options(&self) -> &super::gc::GcOptions {
        &self.options.gc
    }

    /// Whether anything may be collected: `storage.delete.enabled`, `storage.gc.enabled`,
    /// and not read-only.
    pub fn gc_enabled(&self) -> bool {
        self.options.delete_enabled && self.options.gc.enabled && !self.options.read_only
    }

    /// One batch of manifest reviews and one of blob reviews, then their objects.
    /// Returns what went and whether a batch was full (more may be due at once).
    pub async fn gc_step(&self) -> Result<(CollectReport, bool)> {
        if !self.gc_enabled() {
            return Ok((CollectReport::default(), false));
        }
        let span = tracing::info_span!(
            "gc.review_batch",
            manifests = tracing::field::Empty,
            blobs = tracing::field::Empty,
            kept = tracing::field::Empty
        );
        async {
            let delay = millis(self.options.gc.review_delay);
            let limit = self.options.gc.batch_size.max(1);
            let manifests = self.meta.gc.review_manifests(delay, limit).await?;
            metrics::reviews(&manifests, "manifest");
            let blobs = self.meta.gc.review_blobs(delay, limit).await?;
            metrics::reviews(&blobs, "blob");
            let full = manifests.reviewed >= limit as usize || blobs.reviewed >= limit as usize;
            let mut report = CollectReport::default();
            for batch in [manifests, blobs] {
                report.add(self.finish_batch(batch).await);
            }
            let span = tracing::Span::current();
            span.record("manifests", report.manifests.len());
            span.record("blobs", report.blobs.len());
            span.record("kept", report.kept);
            Ok((report, full))
        }
        .instrument(span)
        .await
    }

    /// After a batch committed (and the cache decorator renewed what it changed):
    /// deletes the objects, then their tombstones.
    async fn finish_batch(&self, batch: ReviewBatch) -> CollectReport {
        for (repo, digest) in &batch.manifests {
            tracing::debug!(%repo, %digest, "gc: manifest deleted");
        }
        let (deleted, failed) = self.delete_tombstoned(&batch.tombstones).await;
        metrics::reclaimed("review", &deleted);
        CollectReport {
            reviewed: batch.reviewed,
            kept: batch.kept,
            manifests: batch.manifests,
            unlinked: batch.unlinked.len(),
            blobs: batch.tombstones,
            failed,
        }
    }

    /// Deletes the objects of committed tombstones, then the tombstones; returns those
    /// done and how many failed (left for a later pass).
    async fn delete_tombstoned(&self, tombstones: &[Tombstone]) -> (Vec<Tombstone>, usize) {
        let results: Vec<(Tombstone, bool)> = futures_util::stream::iter(tombstones.to_vec())
            .map(|t| {
                let store = self.blobs.clone();
                async move {
                    crate::clock::race_point("gc.object_delete", &t.digest.to_string()).await;
                    match store.delete(&t.storage_key).await {
                        Ok(()) => (t, true),
                        Err(e) => {
                            tracing::warn!(key = %t.storage_key, error = %e,
                                "gc: could not delete a blob object; a later pass will");
                            (t, false)
                        }
                    }
                }
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        let done: Vec<Tombstone> = results
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(t, _)| t.clone())
            .collect();
        let failed = results.len() - done.len();
        let keys: Vec<String> = done.iter().map(|t| t.storage_key.clone()).collect();
        if let Err(e) = self.meta.gc.clear_tombstones(&keys).await {
            tracing::warn!(error = %e, "gc: could not clear tombstones; a later pass will");
        }
        (done, failed)
    }

    /// Finishes tombstones left by passes that stopped between commit and delete.
    pub async fn gc_leftover_tombstones(&self, older_than: Duration) -> Result<CollectReport> {
        let mut report = CollectReport::default();
        if !self.gc_enabled() {
            return Ok(report);
        }
        loop {
            let batch = self
                .meta
                .gc
                .tombstones(millis(older_than), self.options.gc.batch_size.max(1))
                .await?;
            if batch.is_empty() {
                return Ok(report);
            }
            let (done, failed) = self.delete_tombstoned(&batch).await;
            metrics::reclaimed("review", &done);
            report.blobs.extend(done);
            report.failed += failed;
            if failed > 0 {
                return Ok(report);
            }
        }
    }

    /// Collects everything due now, batch after batch, then leftover tombstones.
    pub async fn gc_collect_due(&self) -> Result<CollectReport> {
        let mut report = CollectReport::default();
        loop {
            let (step, full) = self.gc_step().await?;
            let progress = step.reviewed > 0;
            report.add(step);
            if !full || !progress {
                break;
            }
        }
        report.add(self.gc_leftover_tombstones(LEFTOVER_TOMBSTONE).await?);
        Ok(report)
    }

    /// One whole pass, as `wharf gc` runs it: retention, then every due review
    /// (again after retention's deletes when the delay is zero), then the orphan sweep.
    pub async fn gc_pass(&self, sweep_orphans: bool) -> Result<PassReport> {
        let started = Instant::now();
        let retention = self.apply_retention(false).await?;
        self.flush_access().await;
        let collected = self.gc_collect_due().await?;
        let orphans = if sweep_orphans {
            Some(
                self.sweep_orphans(self.options.gc.orphan_safety_age, false)
                    .await?,
            )
        } else {
            None
        };
        metrics::pass_duration(started.elapsed());
        Ok(PassReport {
            retention,
            collected,
            orphans,
        })
    }

    /// What a pass would remove now (the first batch of due reviews, retention's plans,
    /// the orphans), changing nothing.
    pub async fn gc_preview(&self, sweep_orphans: bool) -> Result<GcPreview> {
        let delay = millis(self.options.gc.review_delay);
        let reviews = self.meta.gc.preview_reviews(delay, 10_000).await?;
        let retention = self.apply_retention(true).await?;
        let orphans = if sweep_orphans {
            self.sweep_orphans(self.options.gc.orphan_safety_age, true)
                .await?
        } else {
            SweepReport::default()
        };
        Ok(GcPreview {
            reviews,
            retention,
            orphans,
        })
    }

    /// Samples the queues into the `wharf_gc_reviews_pending` gauges.
    pub async fn gc_observe_queues(&self) -> Result<crate::metadata::gc::QueueDepth> {
        let depth = self
            .meta
            .gc
            .queue_depth(millis(self.options.gc.review_delay))
            .await?;
        metrics::queues(&depth);
        Ok(depth)
    }
}
