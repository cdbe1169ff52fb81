//! Background maintenance that is safe on every instance at once: purging upload
//! sessions nobody has touched for `storage.maintenance.uploadpurging.age` (their
//! chunks, then their rows), every `interval`, the first sweep soon after start-up.
//! Paused while the registry is read-only, as distribution does.

use std::time::Duration;

use tracing::Instrument;

use crate::config::Config;
use crate::registry::Registry;

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
        tokio::time::sleep(FIRST_SWEEP_AFTER).await;
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
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
