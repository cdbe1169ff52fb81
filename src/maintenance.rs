//! Background maintenance that is safe on every instance at once: purging upload
//! sessions nobody has touched for `storage.maintenance.uploadpurging.age` (their
//! chunks, then their rows), every `interval`, the first sweep soon after start-up;
//! and garbage collection's workers ([`spawn_gc`]: review batches, retention, the
//! orphan sweep, writing blob uses and manifest pulls; the rules are the core's,
//! `registry::gc`). Paused while the registry is read-only, as distribution does.

use std::time::Duration;

use tracing::Instrument;

use crate::config::Config;
use crate::registry::gc::RetentionPlan;
use crate::registry::Registry;
use crate::types::RepoName;

/// The first sweep, after start-up has settled.
const FIRST_SWEEP_AFTER: Duration = Duration::from_secs(1);

/// Starts the upload purger, if `storage.maintenance` enables it.
pub fn spawn(registry: Registry, config: &Config) {
    let maintenance = &config.storage.maintenance;
    let purging = maintenance.uploadpurging.clone();
    if !purging.enabled {
        tracing::info!(
            "upload purging disabled (storage.maintenance.uploadpurging.enabled: false)"
        );
        return;
    }
    if maintenance.readonly.enabled {
        tracing::info!("upload purging paused: the registry is read-only");
        return;
    }
    let (age, every, dry_run) = (purging.age.0, purging.interval.0, purging.dryrun);
    tokio::spawn(async move {
        let _running = crate::lifecycle::worker();
        let mut wait = FIRST_SWEEP_AFTER;
        // Ends at SIGTERM (`lifecycle`), after the sweep in progress.
        while crate::lifecycle::pause(wait).await {
            wait = every;
            let span = tracing::info_span!(
                "maintenance.purge_uploads",
                age_secs = age.as_secs(),
                dry_run
            );
            let purged = registry
                .purge_stale_uploads(age, dry_run)
                .instrument(span)
                .await;
            let counter = &crate::telemetry::metrics().uploads_purged;
            match purged {
                Ok(0) => {}
                Ok(n) if dry_run => tracing::info!(
                    stale = n,
                    "dry run: stale upload sessions found, none purged"
                ),
                Ok(n) => {
                    counter.inc_by(n as u64);
                    tracing::info!(purged = n, "purged stale upload sessions");
                }
                Err(e) => tracing::warn!(error = %e, "upload purge failed"),
            }
        }
    });
}

/// `storage.gc` and `retention` as the registry core takes them.
pub fn gc_options(config: &Config) -> crate::registry::gc::GcOptions {
    let gc = &config.storage.gc;
    crate::registry::gc::GcOptions {
        enabled: gc.effective(config.storage.delete.enabled),
        review_delay: gc.reviewdelay.0,
        batch_size: gc.batchsize,
        orphan_safety_age: gc.orphansweep.safetyage.0,
        retention: config
            .retention
            .iter()
            .map(|p| crate::registry::gc::RetentionPolicy {
                repositories: p.repositories.clone(),
                keep_tags: p.keeptags,
                keep_matching: p.keep_patterns(),
                untagged_older_than: p.untaggedolderthan.map(|d| d.0),
                keep_pulled_within: p.keeppulledwithin.map(|d| d.0),
                dry_run: p.dryrun,
            })
            .collect(),
    }
}

/// How often blob uses and manifest pulls are written (`registry::gc::access`).
const ACCESS_FLUSH: Duration = Duration::from_secs(1);
/// How often the review queues' lengths are sampled into their gauges.
const QUEUE_SAMPLE: Duration = Duration::from_secs(15);
/// The first orphan sweep, after start-up has settled.
const FIRST_ORPHAN_SWEEP_AFTER: Duration = Duration::from_secs(60);

/// The garbage collector's background tasks; [`GcWorkers::stop`] ends them between
/// batches (a batch in progress finishes: its objects deleted, its tombstones cleared).
pub struct GcWorkers {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl GcWorkers {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Waits `every`, or returns false once asked to stop ([`GcWorkers::stop`], or the
/// process stopping: `lifecycle`).
async fn pause(stop: &mut tokio::sync::watch::Receiver<bool>, every: Duration) -> bool {
    if *stop.borrow() || crate::lifecycle::stopping() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(every) => !*stop.borrow() && !crate::lifecycle::stopping(),
        _ = stop.changed() => false,
        () = crate::lifecycle::stopped() => false,
    }
}

/// Starts garbage collection on this instance (safe on every instance at once): the
/// access-log flusher always; unless collection is off (`storage.delete.enabled`,
/// `storage.gc.enabled`, read-only mode), the review worker, retention and the orphan
/// sweep.
pub fn spawn_gc(registry: Registry, config: &Config) -> GcWorkers {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    {
        let (registry, mut rx) = (registry.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            let _running = crate::lifecycle::worker();
            while pause(&mut rx, ACCESS_FLUSH).await {
                registry.flush_access().await;
            }
            registry.flush_access().await;
        }));
    }
    let gc = &config.storage.gc;
    if !registry.gc_enabled() {
        tracing::info!(
            delete_enabled = config.storage.delete.enabled,
            read_only = config.storage.maintenance.readonly.enabled,
            "garbage collection off: nothing is collected"
        );
        return GcWorkers { stop, tasks };
    }
    tracing::info!(review_delay = ?gc.reviewdelay.0, interval = ?gc.interval.0,
        batch = gc.batchsize, "garbage collection on");
    {
        let (registry, mut rx, every) = (registry.clone(), rx.clone(), gc.interval.0);
        tasks.push(tokio::spawn(async move {
            let _running = crate::lifecycle::worker();
            let mut wait = Duration::from_millis(200);
            let mut sampled = std::time::Instant::now() - QUEUE_SAMPLE;
            while pause(&mut rx, wait).await {
                wait = match registry.gc_step().await {
                    // More may be due: go on at once.
                    Ok((_, true)) => Duration::ZERO,
                    Ok((report, false)) => {
                        if let Err(e) = registry
                            .gc_leftover_tombstones(Duration::from_secs(60))
                            .await
                        {
                            tracing::warn!(error = %e, "gc: leftover tombstones");
                        }
                        if report.reviewed > 0 {
                            tracing::debug!(reviewed = report.reviewed, "gc: reviews settled");
                        }
                        every
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "gc: review batch failed");
                        every
                    }
                };
                if sampled.elapsed() >= QUEUE_SAMPLE {
                    sampled = std::time::Instant::now();
                    if let Err(e) = registry.gc_observe_queues().await {
                        tracing::debug!(error = %e, "gc: queue depth");
                    }
                }
            }
        }));
    }
    if !config.retention.is_empty() {
        let (registry, mut rx, every) = (registry.clone(), rx.clone(), gc.retentioninterval.0);
        tasks.push(tokio::spawn(async move {
            let _running = crate::lifecycle::worker();
            while pause(&mut rx, every).await {
                if let Err(e) = registry.apply_retention(false).await {
                    tracing::warn!(error = %e, "retention failed");
                }
            }
        }));
    }
    if gc.orphansweep.enabled {
        let sweep = gc.orphansweep.clone();
        let (registry, mut rx) = (registry.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            let _running = crate::lifecycle::worker();
            let mut wait = FIRST_ORPHAN_SWEEP_AFTER.min(sweep.interval.0);
            while pause(&mut rx, wait).await {
                wait = sweep.interval.0;
                if let Err(e) = registry.sweep_orphans(sweep.safetyage.0, false).await {
                    tracing::warn!(error = %e, "orphan sweep failed");
                }
            }
        }));
    }
    GcWorkers { stop, tasks }
}

/// Bytes for people: `1.5 MiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn retention_lines(out: &mut Vec<String>, plans: &[(RepoName, RetentionPlan)], verb: &str) {
    for (repo, plan) in plans {
        for (tag, digest) in &plan.tags {
            out.push(format!(
                "{verb} tag       {repo}:{tag} ({digest}) [retention]"
            ));
        }
        for (digest, size) in &plan.manifests {
            out.push(format!(
                "{verb} manifest  {repo}@{digest} {} [retention]",
                human(*size)
            ));
        }
    }
}

/// `wharf gc`: one pass now (retention, every due review, the orphan sweep if
/// enabled), or with `dry_run` what it would remove, with sizes; the lines to print.
pub async fn gc_command(
    registry: &Registry,
    config: &Config,
    dry_run: bool,
) -> Result<Vec<String>, crate::registry::RegistryError> {
    let mut out = Vec::new();
    if !registry.gc_enabled() {
        out.push(
            "garbage collection is off (storage.delete.enabled, storage.gc.enabled or read-only \
             mode): nothing is collected"
                .to_string(),
        );
        return Ok(out);
    }
    let sweep = config.storage.gc.orphansweep.enabled;
    if dry_run {
        let preview = registry.gc_preview(sweep).await?;
        retention_lines(&mut out, &preview.retention, "would delete");
        let r = &preview.reviews;
        for (repo, digest, size) in &r.manifests {
            out.push(format!(
                "would delete manifest  {repo}@{digest} {}",
                human(*size)
            ));
        }
        for (repo, digest) in &r.unlinked {
            out.push(format!("would unlink blob      {repo}@{digest}"));
        }
        for (digest, size) in &r.blobs {
            out.push(format!("would delete blob      {digest} {}", human(*size)));
        }
        for o in &preview.orphans.orphans {
            out.push(format!(
                "would delete orphan    {} {}",
                o.key,
                human(o.size)
            ));
        }
        let blob_bytes: u64 = r.blobs.iter().map(|(_, s)| s).sum();
        out.push(format!(
            "dry run: {} manifests, {} links, {} blobs ({}), {} orphans ({}) would go; {} reviews due would keep theirs",
            r.manifests.len() + preview.retention.iter().map(|(_, p)| p.manifests.len()).sum::<usize>(),
            r.unlinked.len(),
            r.blobs.len(),
            human(blob_bytes),
            preview.orphans.orphans.len(),
            human(preview.orphans.bytes()),
            r.kept,
        ));
        return Ok(out);
    }
    let report = registry.gc_pass(sweep).await?;
    retention_lines(&mut out, &report.retention, "deleted");
    let c = &report.collected;
    for (repo, digest) in &c.manifests {
        out.push(format!("deleted manifest  {repo}@{digest}"));
    }
    for t in &c.blobs {
        out.push(format!("deleted blob      {} {}", t.digest, human(t.size)));
    }
    let orphans = report.orphans.unwrap_or_default();
    for o in &orphans.orphans {
        out.push(format!("deleted orphan    {} {}", o.key, human(o.size)));
    }
    out.push(format!(
        "gc: {} reviews ({} kept), {} manifests, {} links, {} blobs ({}), {} orphans ({}) removed{}",
        c.reviewed,
        c.kept,
        c.manifests.len(),
        c.unlinked,
        c.blobs.len(),
        human(c.bytes()),
        orphans.orphans.len(),
        human(orphans.bytes()),
        if c.failed > 0 {
            format!("; {} objects left for a later pass", c.failed)
        } else {
            String::new()
        }
    ));
    Ok(out)
}
