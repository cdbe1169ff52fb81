//! The sweep of stale upload sessions, safe on every instance at once.

use crate::registry::{now_ms, Registry, Result};

impl Registry {
    /// Deletes upload sessions idle for longer than `max_age`, with their data, and
    /// returns how many went. With `dry_run`, deletes nothing and returns how many
    /// (of the first batch) would go. Safe on every instance at once: only the instance
    /// whose delete removes a session's row frees its data.
    pub async fn purge_stale_uploads(
        &self,
        max_age: std::time::Duration,
        dry_run: bool,
    ) -> Result<usize> {
        const BATCH: u32 = 500;
        let before = now_ms() - i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        if dry_run {
            let stale = self.meta.uploads.stale_uploads(before, BATCH).await?;
            for u in &stale {
                tracing::info!(upload = %u.id, repo = %u.repository, "dry run: would purge upload session");
            }
            return Ok(stale.len());
        }
        let mut purged = 0;
        loop {
            let stale = self.meta.uploads.stale_uploads(before, BATCH).await?;
            let full = stale.len() == BATCH as usize;
            let mut progress = false;
            for upload in stale {
                if let Some(u) = self.meta.uploads.delete_upload(&upload.id).await? {
                    self.blobs.discard_upload(&u.storage_key, &u.chunks).await?;
                    purged += 1;
                    progress = true;
                }
            }
            // Another instance may be sweeping the same rows: stop when a full batch
            // freed nothing here, so two sweepers never spin on each other's rows.
            if !full || !progress {
                return Ok(purged);
            }
        }
    }
}
