//! Background maintenance that is safe on every instance at once: purging upload
//! sessions nobody has touched for a week (their chunks, then their rows).

use std::time::Duration;

use crate::registry::Registry;

/// How long an untouched upload session is kept (distribution's default, 168h).
const UPLOAD_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
const INTERVAL: Duration = Duration::from_secs(3600);

pub fn spawn(registry: Registry) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tick.tick().await;
            match registry.purge_stale_uploads(UPLOAD_MAX_AGE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "purged stale upload sessions"),
                Err(e) => tracing::warn!(error = %e, "upload purge failed"),
            }
        }
    });
}
