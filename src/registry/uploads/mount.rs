//! Cancelling an upload, and the cross-repository mount (which opens an ordinary
//! session when the blob cannot be mounted).

use super::MountOutcome;
use crate::registry::{Registry, Result};
use crate::types::digest::Digest;
use crate::types::name::RepoName;
use crate::types::{EventAction, RequestContext};

impl Registry {
    /// `DELETE` of an upload: cancels it and frees its storage.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        self.require_writable()?;
        let upload = self.load_upload(repo, id).await?;
        if let Some(u) = self.meta.uploads.delete_upload(&upload.id).await? {
            self.blobs.discard_upload(&u.storage_key, &u.chunks).await?;
        }
        Ok(())
    }

    /// `POST ?mount=&from=`: links an existing blob into `repo` if it can be, otherwise
    /// opens an ordinary session. Without `from`, any repository's copy may be mounted.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %digest))]
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        ctx: &RequestContext,
    ) -> Result<MountOutcome> {
        self.require_writable()?;
        let source = match from {
            Some(from) => self.meta.blobs.repo_blob(from, digest).await?,
            None => self.meta.blobs.any_blob(digest).await?,
        };
        let events = match &source {
            Some(blob) if self.events_enabled() => {
                let mut target = crate::registry::events::blob_target(digest, Some(blob.size));
                target.from_repository = from.map(|f| f.to_string());
                self.event(ctx, EventAction::Mount, repo, target)
            }
            _ => Vec::new(),
        };
        if let Some(blob) = &source {
            // A mount counts against the quota: reserved while it links.
            let already = self.meta.blobs.repo_blob(repo, digest).await?.is_some();
            let reservation = if already {
                None
            } else {
                self.reserve_mount(repo, digest, blob.size).await?
            };
            let linked = self.meta.blobs.link_blob(repo, digest, &events).await;
            self.release_reservation(reservation).await;
            if linked? {
                if let Some(blob) = self.meta.blobs.repo_blob(repo, digest).await? {
                    return Ok(MountOutcome::Mounted(blob));
                }
            } else if self.meta.gc.is_tombstoned(digest).await.unwrap_or(false) {
                crate::registry::gc::metrics::tombstone_hit("mount");
            }
        }
        Ok(MountOutcome::Started(
            self.start_upload(repo, digest.algorithm()).await?,
        ))
    }
}
