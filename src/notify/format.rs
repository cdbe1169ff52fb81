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

use serde_json::{json, Map, Value};

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

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v);
    }
}

fn nonempty(s: &str) -> Option<Value> {
    (!s.is_empty()).then(|| Value::String(s.to_string()))
}

/// One event in distribution's format.
pub fn distribution_event(e: &EventRecord) -> Value {
    let t = &e.target;
    let mut target = Map::new();
    put(
        &mut target,
        "mediaType",
        t.media_type.clone().map(Value::String),
    );
    put(&mut target, "digest", t.digest.clone().map(Value::String));
    put(&mut target, "size", t.size.map(Value::from));
    put(&mut target, "length", t.size.map(Value::from));
    target.insert("repository".into(), Value::String(e.repository.clone()));
    put(
        &mut target,
        "fromRepository",
        t.from_repository.clone().map(Value::String),
    );
    // Where the content can be fetched, for what still exists after the event.
    if let (Some(digest), false) = (&t.digest, e.request.host.is_empty()) {
        let kind = match t.kind {
            TargetKind::Manifest => Some("manifests"),
            TargetKind::Blob => Some("blobs"),
            TargetKind::Tag | TargetKind::Repository => None,
        };
        if let (Some(kind), false) = (kind, e.action == crate::types::EventAction::Delete) {
            let scheme = if e.request.scheme.is_empty() {
                "http"
            } else {
                &e.request.scheme
            };
            target.insert(
                "url".into(),
                Value::String(format!(
                    "{scheme}://{}/v2/{}/{kind}/{digest}",
                    e.request.host, e.repository
                )),
            );
        }
    }
    put(&mut target, "tag", t.tag.clone().map(Value::String));
    if !t.references.is_empty() {
        target.insert("references".into(), json!(t.references));
    }
    let r = &e.request;
    let mut request = Map::new();
    put(&mut request, "id", nonempty(&r.id));
    put(&mut request, "addr", nonempty(&r.addr));
    put(&mut request, "host", nonempty(&r.host));
    put(&mut request, "method", nonempty(&r.method));
    put(&mut request, "useragent", nonempty(&r.useragent));
    let mut actor = Map::new();
    put(&mut actor, "name", r.actor.clone().map(Value::String));
    let mut source = Map::new();
    put(&mut source, "addr", nonempty(&e.source.addr));
    put(&mut source, "instanceID", nonempty(&e.source.instance_id));
    json!({
        "id": e.id,
        "timestamp": timestamp(e.timestamp_ms),
        "action": e.action.as_str(),
        "target": target,
        "request": request,
        "actor": actor,
        "source": source,
    })
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
    let value = match endpoint.format {
        EventFormat::Distribution => {
            let list: Vec<Value> = events.iter().map(|e| distribution_event(e)).collect();
            return (
                json!({ "events": list }).to_string().into_bytes(),
                endpoint.media_type().to_string(),
            );
        }
        EventFormat::Cloudevents if endpoint.maxbatch == 1 && events.len() == 1 => {
            return (
                cloudevent(events[0]).to_string().into_bytes(),
                CLOUDEVENTS.into(),
            );
        }
        EventFormat::Cloudevents => Value::Array(events.iter().map(|e| cloudevent(e)).collect()),
    };
    (value.to_string().into_bytes(), CLOUDEVENTS_BATCH.into())
}
