//! Background work started beside the HTTP server: the notification workers.

use crate::config::Config;
use crate::registry::Registry;

use super::StartError;

/// Starts the notification workers of the enabled endpoints (none: nothing).
pub async fn spawn_notifications(registry: &Registry, config: &Config) -> Result<(), StartError> {
    crate::notify::spawn(registry.meta.events.clone(), &config.notifications).await?;
    Ok(())
}
