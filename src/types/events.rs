//! What happened, as the registry core describes it for notifications: one
//! [`EventRecord`] per change or pull, built from the request's [`RequestContext`]. The
//! metadata store keeps it (as JSON) in its outbox, in the transaction of the change it
//! reports; the delivery workers (`notify`) turn it into distribution's envelope or a
//! CloudEvent per endpoint at delivery time. The record is the stored format: fields
//! are added with `#[serde(default)]` only, so rows written by an older release still
//! read.

use serde::{Deserialize, Serialize};

/// What was done (distribution's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventAction {
    Push,
    Pull,
    Mount,
    Delete,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Push => "push",
            EventAction::Pull => "pull",
            EventAction::Mount => "mount",
            EventAction::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<EventAction> {
        match s {
            "push" => Some(EventAction::Push),
            "pull" => Some(EventAction::Pull),
            "mount" => Some(EventAction::Mount),
            "delete" => Some(EventAction::Delete),
            _ => None,
        }
    }
}

/// What the event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Manifest,
    Blob,
    /// A tag deleted on its own (`DELETE /v2/<name>/manifests/<tag>`).
    Tag,
    Repository,
}

/// A descriptor a manifest references (`target.references`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventReference {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The event's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTarget {
    pub kind: TargetKind,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub tag: Option<String>,
    /// The source repository of a mount.
    #[serde(default)]
    pub from_repository: Option<String>,
    /// A manifest's references (only when `notifications.events.includereferences`).
    #[serde(default)]
    pub references: Vec<EventReference>,
}

/// Who asked, as the HTTP layer saw it. `Default` (all empty) for work no request
/// caused (tests, replays).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    /// The request id (`X-Request-Id` if the client or a proxy sent one, else new).
    #[serde(default)]
    pub id: String,
    /// The client's address (`http::client_addr`, behind trusted proxies), with port
    /// when it is the TCP peer.
    #[serde(default)]
    pub addr: String,
    /// The `Host` the request was sent to.
    #[serde(default)]
    pub host: String,
    /// `http` or `https` as the client used it (behind a proxy: `X-Forwarded-Proto`),
    /// for the target's URL.
    #[serde(default)]
    pub scheme: String,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub useragent: String,
    /// The authenticated user or token subject, if any.
    #[serde(default)]
    pub actor: Option<String>,
    /// The request's W3C `traceparent` (when traces are exported), so the event's
    /// delivery joins its trace; never sent in the envelope.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traceparent: String,
}

/// The registry instance that wrote the event (distribution's `source`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSource {
    #[serde(default)]
    pub addr: String,
    #[serde(default)]
    pub instance_id: String,
}

/// One event, as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// A UUID chosen when the event is written: stable across retries and replays,
    /// so receivers can de-duplicate.
    pub id: String,
    /// When the change happened, milliseconds since the epoch.
    pub timestamp_ms: i64,
    pub action: EventAction,
    pub repository: String,
    pub target: EventTarget,
    #[serde(default)]
    pub request: RequestContext,
    #[serde(default)]
    pub source: EventSource,
}

impl EventRecord {
    /// The media type the ignore rules match (`application/octet-stream` for blobs,
    /// as distribution reports them).
    pub fn media_type(&self) -> Option<&str> {
        self.target.media_type.as_deref()
    }
}
