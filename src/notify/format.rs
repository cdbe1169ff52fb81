//! The bodies endpoints receive, made at delivery time from the stored records, so the
//! format is the endpoint's choice and a record written once serves every endpoint.
//!
//! - distribution's envelope: `{"events": [event, …]}`, each event with `id`,
//!   `timestamp`, `action`, `target` (`mediaType`, `digest`, `size`, `length`,
//!   `repository`, `fromRepository`, `url`, `tag`, `references`), `request` (`id`,
//!   `addr`, `host`, `method`, `useragent`), `actor` (`name`), `source` (`addr`,
//!   `instanceID`). Empty fields are left out, as distribution's `omitempty` does;
//!   delete targets carry only `digest` (or `tag`) and `repository`.
//! - CloudEvents 1.0, structured JSON mode: `specversion`, `id` (the event's id),
//!   `source` (`/wharf/<instance addr>`), `type` (`dev.wharf.registry.<kind>.<action>`),
//!   `time`, `subject` (`<repository>[:tag][@digest]`), `datacontenttype`, and `data`:
//!   the distribution event above. One per request (`application/cloudevents+json`) or
//!   a JSON array (`application/cloudevents-batch+json`).

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{EndpointConfig, EventFormat};
use crate::types::{EventRecord, TargetKind};

pub const CLOUDEVENTS: &str = "application/cloudevents+json";
pub const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";

/// RFC 3339 UTC with milliseconds.
fn timestamp(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Whether a string field is left out (distribution's `omitempty`).
fn is_empty(s: &&str) -> bool {
    s.is_empty()
}

/// One event in distribution's format, serialized straight from the record (borrowed
/// fields, no intermediate `Value` tree: the body is made on every delivery).
#[derive(Serialize)]
pub struct DistributionEvent<'a> {
    id: &'a str,
    timestamp: String,
    action: &'static str,
    target: Target<'a>,
    request: Request<'a>,
    actor: Actor<'a>,
    source: Source<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Target<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    repository: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_repository: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    references: &'a [crate::types::EventReference],
}

#[derive(Serialize)]
struct Request<'a> {
    #[serde(skip_serializing_if = "is_empty")]
    id: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    addr: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    host: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    method: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    useragent: &'a str,
}

#[derive(Serialize)]
struct Actor<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct Source<'a> {
    #[serde(skip_serializing_if = "is_empty")]
    addr: &'a str,
    #[serde(rename = "instanceID", skip_serializing_if = "is_empty")]
    instance_id: &'a str,
}

/// Where the content can be fetched, for what still exists after the event.
fn url(e: &EventRecord) -> Option<String> {
    let t = &e.target;
    let digest = t.digest.as_deref()?;
    if e.request.host.is_empty() || e.action == crate::types::EventAction::Delete {
        return None;
    }
    let kind = match t.kind {
        TargetKind::Manifest => "manifests",
        TargetKind::Blob => "blobs",
        TargetKind::Tag | TargetKind::Repository => return None,
    };
    let scheme = if e.request.scheme.is_empty() {
        "http"
    } else {
        &e.request.scheme
    };
    Some(format!(
        "{scheme}://{}/v2/{}/{kind}/{digest}",
        e.request.host, e.repository
    ))
}

/// One event in distribution's format.
pub fn distribution_event(e: &EventRecord) -> DistributionEvent<'_> {
    let t = &e.target;
    let r = &e.request;
    DistributionEvent {
        id: &e.id,
        timestamp: timestamp(e.timestamp_ms),
        action: e.action.as_str(),
        target: Target {
            media_type: t.media_type.as_deref(),
            digest: t.digest.as_deref(),
            size: t.size,
            length: t.size,
            repository: &e.repository,
            from_repository: t.from_repository.as_deref(),
            url: url(e),
            tag: t.tag.as_deref(),
            references: &t.references,
        },
        request: Request {
            id: &r.id,
            addr: &r.addr,
            host: &r.host,
            method: &r.method,
            useragent: &r.useragent,
        },
        actor: Actor {
            name: r.actor.as_deref(),
        },
        source: Source {
            addr: &e.source.addr,
            instance_id: &e.source.instance_id,
        },
    }
}

fn kind_name(k: TargetKind) -> &'static str {
    match k {
        TargetKind::Manifest => "manifest",
        TargetKind::Blob => "blob",
        TargetKind::Tag => "tag",
        TargetKind::Repository => "repository",
    }
}

/// One event as a CloudEvent (structured mode).
pub fn cloudevent(e: &EventRecord) -> Value {
    let mut subject = e.repository.clone();
    if let Some(tag) = &e.target.tag {
        subject = format!("{subject}:{tag}");
    }
    if let Some(d) = &e.target.digest {
        subject = format!("{subject}@{d}");
    }
    let source = if e.source.addr.is_empty() {
        "/wharf".to_string()
    } else {
        format!("/wharf/{}", e.source.addr)
    };
    json!({
        "specversion": "1.0",
        "id": e.id,
        "source": source,
        "type": format!("dev.wharf.registry.{}.{}", kind_name(e.target.kind), e.action.as_str()),
        "time": timestamp(e.timestamp_ms),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": distribution_event(e),
    })
}

/// The request body and its `Content-Type` for `events` (at least one).
pub fn body(endpoint: &EndpointConfig, events: &[&EventRecord]) -> (Vec<u8>, String) {
    match endpoint.format {
        EventFormat::Distribution => {
            #[derive(Serialize)]
            struct Envelope<'a> {
                events: Vec<DistributionEvent<'a>>,
            }
            let envelope = Envelope {
                events: events.iter().map(|e| distribution_event(e)).collect(),
            };
            (to_vec(&envelope), endpoint.media_type().to_string())
        }
        EventFormat::Cloudevents if endpoint.maxbatch == 1 && events.len() == 1 => {
            (to_vec(&cloudevent(events[0])), CLOUDEVENTS.into())
        }
        EventFormat::Cloudevents => {
            let list: Vec<Value> = events.iter().map(|e| cloudevent(e)).collect();
            (to_vec(&list), CLOUDEVENTS_BATCH.into())
        }
    }
}

/// JSON bytes of `value` (serializing these types cannot fail: string keys only).
fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
