//! Background work started beside the HTTP server: maintenance (upload purging), the
//! quota gauges, the notification workers and garbage collection's workers. (The
//! pull-through cache's sweeps start with the core: `stores`.)

use crate::config::Config;
use crate::registry::Registry;

use super::StartError;

/// Starts every background worker `wharf serve` runs; garbage collection's are
/// returned, to be stopped once the server has.
pub(super) async fn start(
    registry: &Registry,
    config: &Config,
) -> Result<crate::maintenance::GcWorkers, StartError> {
    crate::maintenance::spawn(registry.clone(), config);
    registry.spawn_quota_gauges();
    spawn_notifications(registry, config).await?;
    Ok(crate::maintenance::spawn_gc(registry.clone(), config))
}

/// Starts the notification workers of the enabled endpoints (none: nothing).
pub async fn spawn_notifications(registry: &Registry, config: &Config) -> Result<(), StartError> {
    crate::notify::spawn(registry.meta.events.clone(), &config.notifications).await?;
    Ok(())
}
