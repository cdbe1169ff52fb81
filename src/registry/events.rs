//! Notification events, as the core describes them: which change or pull happened,
//! to what, on whose request ([`EventRecord`]). Events of changes are handed to the
//! metadata store with the write itself, which puts them in its outbox in the same
//! transaction: an acknowledged change always has its event, and a change that rolled
//! back has none. Delivery (formats, endpoints, retries) is `notify`'s business.
//!
//! Pulls do not write: they are on the hot path. When some endpoint wants them (and
//! only then), a pull's event goes to an in-memory buffer that a task flushes to the
//! outbox every [`PULL_FLUSH_EVERY`] or [`PULL_BATCH`] events, one transaction per
//! batch. The cost: pull events of the last second (at most the buffer) are lost if
//! the process dies, and a full buffer (the database too slow for the pull rate)
//! drops pull events, counted in `wharf_notify_pull_events_dropped_total`. Changes
//! never go through the buffer.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::Registry;
use crate::metadata::EventStore;
use crate::types::{
    Digest, EventAction, EventRecord, EventReference, EventSource, EventTarget, RepoName,
    RequestContext, TargetKind,
};

/// Most pull events in one outbox transaction.
pub const PULL_BATCH: usize = 500;
/// Longest a pull event waits in memory.
pub const PULL_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Pull events held in memory at most (further ones are dropped and counted).
pub const PULL_BUFFER: usize = 20_000;

/// What the configured endpoints want written.
#[derive(Debug, Clone, Default)]
pub struct EventOptions {
    /// Some enabled endpoint: write events of changes.
    pub enabled: bool,
    /// Some enabled endpoint does not ignore pulls: buffer pull events.
    pub pulls: bool,
    /// `notifications.events.includereferences`: a manifest's descriptors in its events.
    pub include_references: bool,
    /// This instance, as events name it.
    pub source: EventSource,
}

/// The pull-event buffer's sending side.
#[derive(Clone)]
pub(crate) struct PullBuffer {
    tx: mpsc::Sender<EventRecord>,
}

impl PullBuffer {
    /// Starts the flusher on the current runtime (none outside one: no pull events).
    pub(crate) fn start(store: std::sync::Arc<dyn EventStore>) -> Option<PullBuffer> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(PULL_BUFFER);
        handle.spawn(flush_loop(store, rx));
        Some(PullBuffer { tx })
    }

    fn push(&self, event: EventRecord) {
        if self.tx.try_send(event).is_err() {
            dropped_pulls().inc();
        }
    }
}

fn dropped_pulls() -> &'static prometheus::IntCounter {
    static C: std::sync::OnceLock<prometheus::IntCounter> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        crate::telemetry::lazy_counter_vec(
            "notify_pull_events_dropped_total",
            "Pull events dropped because the in-memory buffer was full",
            &[],
        )
        .with_label_values::<&str>(&[])
    })
}

async fn flush_loop(store: std::sync::Arc<dyn EventStore>, mut rx: mpsc::Receiver<EventRecord>) {
    let mut batch = Vec::with_capacity(PULL_BATCH);
    loop {
        let Some(first) = rx.recv().await else { return };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + PULL_FLUSH_EVERY;
        while batch.len() < PULL_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        for attempt in 0..3u32 {
            match store.append_events(&batch).await {
                Ok(()) => break,
                Err(e) if attempt < 2 => {
                    tracing::debug!(error = %e, "pull events: outbox write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => {
                    dropped_pulls().inc_by(batch.len() as u64);
                    tracing::warn!(error = %e, lost = batch.len(), "pull events could not be written");
                }
            }
        }
        batch.clear();
    }
}

impl Registry {
    /// Whether changes write events (some endpoint is enabled).
    pub fn events_enabled(&self) -> bool {
        self.options.events.enabled
    }

    /// An event of `action` on `target` in `repo`, or none when notifications are off.
    pub(crate) fn event(
        &self,
        ctx: &RequestContext,
        action: EventAction,
        repo: &RepoName,
        target: EventTarget,
    ) -> Vec<EventRecord> {
        if !self.options.events.enabled {
            return Vec::new();
        }
        vec![self.record(ctx, action, repo, target)]
    }

    fn record(
        &self,
        ctx: &RequestContext,
        action: EventAction,
        repo: &RepoName,
        target: EventTarget,
    ) -> EventRecord {
        EventRecord {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp_ms: super::now_ms(),
            action,
            repository: repo.to_string(),
            target,
            request: ctx.clone(),
            source: self.options.events.source.clone(),
        }
    }

    /// Records a pull (buffered, see the module doc), if some endpoint wants pulls.
    pub(crate) fn pulled(&self, ctx: &RequestContext, repo: &RepoName, target: EventTarget) {
        if let (true, Some(buffer)) = (self.options.events.pulls, &self.pulls) {
            buffer.push(self.record(ctx, EventAction::Pull, repo, target));
        }
    }

    /// A manifest's target: media type, digest, size, the tag if any, its references
    /// when configured.
    pub(crate) fn manifest_target(
        &self,
        media_type: &str,
        digest: &Digest,
        payload: &[u8],
        tag: Option<&str>,
    ) -> EventTarget {
        EventTarget {
            kind: TargetKind::Manifest,
            media_type: Some(media_type.to_string()),
            digest: Some(digest.to_string()),
            size: Some(payload.len() as u64),
            tag: tag.map(str::to_string),
            from_repository: None,
            references: if self.options.events.include_references {
                references(payload)
            } else {
                Vec::new()
            },
        }
    }
}

/// A blob's target (distribution reports blobs as `application/octet-stream`).
pub(crate) fn blob_target(digest: &Digest, size: Option<u64>) -> EventTarget {
    EventTarget {
        kind: TargetKind::Blob,
        media_type: size.map(|_| "application/octet-stream".to_string()),
        digest: Some(digest.to_string()),
        size,
        tag: None,
        from_repository: None,
        references: Vec::new(),
    }
}

/// A target that names only what was deleted.
pub(crate) fn deleted_target(
    kind: TargetKind,
    digest: Option<&Digest>,
    tag: Option<&str>,
) -> EventTarget {
    EventTarget {
        kind,
        media_type: None,
        digest: digest.map(Digest::to_string),
        size: None,
        tag: tag.map(str::to_string),
        from_repository: None,
        references: Vec::new(),
    }
}

/// The descriptors a manifest references: config, layers, an index's manifests, an
/// artifact's blobs, the subject.
fn references(payload: &[u8]) -> Vec<EventReference> {
    let Ok(doc) = serde_json::from_slice::<Value>(payload) else {
        return Vec::new();
    };
    let one = |v: &Value| -> Option<EventReference> {
        Some(EventReference {
            media_type: v.get("mediaType")?.as_str()?.to_string(),
            digest: v.get("digest")?.as_str()?.to_string(),
            size: v.get("size")?.as_u64()?,
        })
    };
    let mut out = Vec::new();
    if let Some(c) = doc.get("config").and_then(one) {
        out.push(c);
    }
    for key in ["layers", "manifests", "blobs"] {
        if let Some(list) = doc.get(key).and_then(Value::as_array) {
            out.extend(list.iter().filter_map(one));
        }
    }
    if let Some(s) = doc.get("subject").and_then(one) {
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_a_manifest() {
        let m = br#"{"config":{"mediaType":"c","digest":"sha256:1","size":1},
            "layers":[{"mediaType":"l","digest":"sha256:2","size":2},{"bad":1}]}"#;
        let r = references(m);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].digest, "sha256:2");
        assert!(references(b"not json").is_empty());
    }
}
