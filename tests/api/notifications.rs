//! Webhook notifications against a real receiver (`tests/common/receiver.rs`): every
//! action's body checked field by field against distribution's documented envelope,
//! the signature verified as a receiver would, CloudEvents in both modes, distribution
//! 3's media type, and the ignore rules.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::receiver::{Mode, Receiver};
use crate::support::*;

const SECRET: &str = "s3cret";
const UA: &str = "wharf-test/1.0";
const WAIT: Duration = Duration::from_secs(20);

fn endpoint(name: &str, receiver: &Receiver, more: Value) -> Value {
    let mut e = json!({
        "name": name,
        "url": receiver.url,
        "timeout": "2s",
        "threshold": 3,
        "backoff": "100ms",
        "maxbackoff": "200ms",
    });
    if let Value::Object(more) = more {
        for (k, v) in more {
            e[k] = v;
        }
    }
    e
}

async fn registry_with(endpoints: Vec<Value>, include_references: bool) -> TestRegistry {
    TestRegistry::start_with(Options {
        extra: Some(json!({ "notifications": {
            "events": { "includereferences": include_references },
            "endpoints": endpoints,
        }})),
        ..Options::default()
    })
    .await
}

/// A request with our user agent.
fn req(reg: &TestRegistry, method: Method, path: &str) -> reqwest::RequestBuilder {
    reg.req(method, path).header("User-Agent", UA)
}

fn is_uuid(s: &Value) -> bool {
    s.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// What every event must carry, whatever its action.
fn check_common(e: &Value, reg: &TestRegistry, method: &str) {
    assert!(is_uuid(&e["id"]), "{e}");
    let ts = e["timestamp"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(ts).is_ok(), "timestamp {ts}");
    let host = reg.base.trim_start_matches("http://");
    let r = &e["request"];
    assert!(is_uuid(&r["id"]), "request.id {r}");
    assert!(r["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{r}");
    assert_eq!(r["host"], host);
    assert_eq!(r["method"], method);
    assert_eq!(r["useragent"], UA);
    assert_eq!(keys(r), ["addr", "host", "id", "method", "useragent"]);
    assert_eq!(e["actor"], json!({}));
    assert!(!e["source"]["addr"].as_str().unwrap().is_empty());
    assert!(is_uuid(&e["source"]["instanceID"]));
    assert_eq!(
        keys(e),
        [
            "action",
            "actor",
            "id",
            "request",
            "source",
            "target",
            "timestamp"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_in_distributions_format() {
    let receiver = Receiver::start(Mode::Ok);
    let reg = registry_with(
        vec![endpoint(
            "hook",
            &receiver,
            json!({ "secret": SECRET, "headers": { "X-Test": ["yes"] } }),
        )],
        true,
    )
    .await;
    let host = reg.base.trim_start_matches("http://").to_string();
    let (a, b) = ("notify/a", "notify/b");

    // Blob pushes: one request, and POST + PUT.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = pseudo_random(3000, 1);
    let (config_d, layer_d) = (sha256(&config), sha256(&layer));
    reg.send(
        req(
            &reg,
            Method::POST,
            &format!("/v2/{a}/blobs/uploads/?digest={config_d}"),
        )
        .body(config.clone()),
    )
    .await
    .expect_status(201);
    let location = reg
        .send(req(&reg, Method::POST, &format!("/v2/{a}/blobs/uploads/")))
        .await
        .must_header("Location")
        .to_string();
    reg.send(req(&reg, Method::PUT, &format!("{location}?digest={layer_d}")).body(layer.clone()))
        .await
        .expect_status(201);
    // A mount into b.
    reg.send(req(
        &reg,
        Method::POST,
        &format!("/v2/{b}/blobs/uploads/?mount={layer_d}&from={a}"),
    ))
    .await
    .expect_status(201);
    // A manifest by tag, another by digest with two ?tag=.
    let manifest = image_manifest(&config, &[&layer], None);
    let manifest_d = sha256(&manifest);
    reg.send(
        req(&reg, Method::PUT, &format!("/v2/{a}/manifests/v1"))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.clone()),
    )
    .await
    .expect_status(201);
    let second = image_manifest(&config, &[&layer], Some(json!({"annotations": {"n": "2"}})));
    let second_d = sha256(&second);
    reg.send(
        req(
            &reg,
            Method::PUT,
            &format!("/v2/{a}/manifests/{second_d}?tag=t1&tag=t2"),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(second.clone()),
    )
    .await
    .expect_status(201);
    // Pulls.
    reg.send(req(&reg, Method::GET, &format!("/v2/{a}/manifests/v1")))
        .await
        .expect_status(200);
    reg.send(req(&reg, Method::GET, &format!("/v2/{a}/blobs/{layer_d}")))
        .await
        .expect_status(200);
    // Deletes: a tag, a manifest, a blob.
    reg.send(req(&reg, Method::DELETE, &format!("/v2/{a}/manifests/t1")))
        .await
        .expect_status(202);
    reg.send(req(
        &reg,
        Method::DELETE,
        &format!("/v2/{a}/manifests/{second_d}"),
    ))
    .await
    .expect_status(202);
    reg.send(req(
        &reg,
        Method::DELETE,
        &format!("/v2/{b}/blobs/{layer_d}"),
    ))
    .await
    .expect_status(202);
    // Refused requests cause no event.
    reg.send(req(
        &reg,
        Method::DELETE,
        &format!("/v2/{a}/manifests/nope"),
    ))
    .await
    .expect_status(404);

    receiver.wait_for(WAIT, |e| e.len() >= 11).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = receiver.delivered();
    assert_eq!(events.len(), 11, "{events:#?}");

    // Every request: distribution 2.x's media type, our header, a signature that
    // verifies as a receiver checks it (and not with another secret).
    for r in receiver.requests() {
        assert_eq!(
            r.content_type,
            "application/vnd.docker.distribution.events.v1+json"
        );
        assert_eq!(r.header("X-Test"), Some("yes"));
        assert!(
            r.signature_verifies(SECRET.as_bytes()),
            "signature {:?}",
            r.signature
        );
        assert!(!r.signature_verifies(b"wrong"));
    }
    let find = |action: &str, repo: &str, pred: &dyn Fn(&Value) -> bool| -> Value {
        let found: Vec<&Value> = events
            .iter()
            .filter(|e| e["action"] == action && e["target"]["repository"] == repo && pred(e))
            .collect();
        assert_eq!(found.len(), 1, "{action} in {repo}: {found:#?}");
        found[0].clone()
    };
    let url = |repo: &str, kind: &str, d: &str| format!("http://{host}/v2/{repo}/{kind}/{d}");

    // Blob pushes.
    for (d, len) in [(&config_d, config.len()), (&layer_d, layer.len())] {
        let e = find("push", a, &|e| e["target"]["digest"] == *d);
        check_common(&e, &reg, if d == &config_d { "POST" } else { "PUT" });
        assert_eq!(
            e["target"],
            json!({
                "mediaType": "application/octet-stream",
                "digest": d,
                "size": len,
                "length": len,
                "repository": a,
                "url": url(a, "blobs", d),
            })
        );
    }
    // The mount.
    let e = find("mount", b, &|_| true);
    check_common(&e, &reg, "POST");
    assert_eq!(
        e["target"],
        json!({
            "mediaType": "application/octet-stream",
            "digest": layer_d,
            "size": layer.len(),
            "length": layer.len(),
            "repository": b,
            "fromRepository": a,
            "url": url(b, "blobs", &layer_d),
        })
    );
    // Manifest pushes, with their references.
    let references = json!([
        { "mediaType": OCI_CONFIG, "digest": config_d, "size": config.len() },
        { "mediaType": OCI_LAYER, "digest": layer_d, "size": layer.len() },
    ]);
    let e = find("push", a, &|e| e["target"]["tag"] == "v1");
    check_common(&e, &reg, "PUT");
    assert_eq!(
        e["target"],
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": manifest_d,
            "size": manifest.len(),
            "length": manifest.len(),
            "repository": a,
            "url": url(a, "manifests", &manifest_d),
            "tag": "v1",
            "references": references,
        })
    );
    // ?tag=: one push event per tag, as pushes by tag would give.
    for tag in ["t1", "t2"] {
        let e = find("push", a, &|e| e["target"]["tag"] == tag);
        assert_eq!(e["target"]["digest"], second_d);
        assert_eq!(e["target"]["size"], second.len());
    }
    // Pulls.
    let e = find("pull", a, &|e| e["target"]["digest"] == manifest_d);
    check_common(&e, &reg, "GET");
    assert_eq!(e["target"]["tag"], "v1");
    assert_eq!(e["target"]["mediaType"], OCI_MANIFEST);
    assert_eq!(e["target"]["references"], references);
    let e = find("pull", a, &|e| e["target"]["digest"] == layer_d);
    check_common(&e, &reg, "GET");
    assert_eq!(e["target"]["length"], layer.len());
    assert_eq!(e["target"]["url"], url(a, "blobs", &layer_d));
    // Deletes name only what was deleted.
    let e = find("delete", a, &|e| e["target"]["tag"] == "t1");
    check_common(&e, &reg, "DELETE");
    assert_eq!(e["target"], json!({ "repository": a, "tag": "t1" }));
    let e = find("delete", a, &|e| e["target"]["digest"] == second_d);
    assert_eq!(e["target"], json!({ "repository": a, "digest": second_d }));
    let e = find("delete", b, &|_| true);
    assert_eq!(e["target"], json!({ "repository": b, "digest": layer_d }));

    // Per repository, changes arrive in the order they were made (pulls are written
    // in batches, so they may come later).
    let order: Vec<String> = events
        .iter()
        .filter(|e| e["target"]["repository"] == a && e["action"] != "pull")
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["target"]["tag"]
                    .as_str()
                    .or(e["target"]["digest"].as_str())
                    .unwrap()
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            format!("push {config_d}"),
            format!("push {layer_d}"),
            "push v1".into(),
            "push t1".into(),
            "push t2".into(),
            "delete t1".into(),
            format!("delete {second_d}"),
        ]
    );
    // Ids are unique.
    let ids: std::collections::HashSet<&str> =
        events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_v2_media_type_and_ignore_rules() {
    let (single, batch, v2) = (
        Receiver::start(Mode::Ok),
        Receiver::start(Mode::Ok),
        Receiver::start(Mode::Ok),
    );
    let reg = registry_with(
        vec![
            endpoint(
                "single",
                &single,
                json!({ "format": "cloudevents", "maxbatch": 1 }),
            ),
            endpoint("batch", &batch, json!({ "format": "cloudevents" })),
            endpoint(
                "v2",
                &v2,
                json!({
                    "mediatype": "application/vnd.docker.distribution.events.v2+json",
                    "ignoredmediatypes": ["application/octet-stream"],
                    "ignore": { "actions": ["pull", "delete"] },
                }),
            ),
            json!({ "name": "off", "disabled": true, "url": "http://127.0.0.1:9/" }),
        ],
        false,
    )
    .await;
    let repo = "notify/ce";
    let (manifest, digest) = reg.push_image(repo, "latest", 3).await;
    reg.get(&format!("/v2/{repo}/manifests/latest"))
        .await
        .expect_status(200);
    reg.delete(&format!("/v2/{repo}/manifests/latest"))
        .await
        .expect_status(202);

    // Blob pushes ×2, manifest push, pull, tag delete.
    let events = single.wait_for(WAIT, |e| e.len() >= 5).await;
    assert!(single
        .requests()
        .iter()
        .all(|r| r.content_type == "application/cloudevents+json"));
    let push = events
        .iter()
        .find(|e| e["type"] == "dev.wharf.registry.manifest.push")
        .expect("a manifest push CloudEvent");
    assert_eq!(push["specversion"], "1.0");
    assert!(is_uuid(&push["id"]));
    assert!(push["source"].as_str().unwrap().starts_with("/wharf"));
    assert_eq!(push["subject"], format!("{repo}:latest@{digest}"));
    assert_eq!(push["datacontenttype"], "application/json");
    assert!(humantime::parse_rfc3339(push["time"].as_str().unwrap()).is_ok());
    assert_eq!(push["data"]["id"], push["id"]);
    assert_eq!(push["data"]["action"], "push");
    assert_eq!(push["data"]["target"]["size"], manifest.len());
    assert!(
        push["data"]["target"].get("references").is_none(),
        "includereferences is off"
    );
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"dev.wharf.registry.blob.push"), "{types:?}");
    assert!(
        types.contains(&"dev.wharf.registry.manifest.pull"),
        "{types:?}"
    );
    assert!(
        types.contains(&"dev.wharf.registry.tag.delete"),
        "{types:?}"
    );

    let events = batch.wait_for(WAIT, |e| e.len() >= 5).await;
    assert!(batch
        .requests()
        .iter()
        .all(|r| r.content_type == "application/cloudevents-batch+json"));
    assert!(batch.requests().iter().all(|r| r.json().is_array()));
    assert_eq!(events.len(), 5);

    v2.wait_for(WAIT, |e| !e.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = v2.delivered();
    assert_eq!(events.len(), 1, "only the manifest push: {events:#?}");
    assert_eq!(events[0]["target"]["digest"], digest);
    assert!(v2.requests().iter().all(|r| r.content_type
        == "application/vnd.docker.distribution.events.v2+json"
        && r.signature.is_none()));
}

/// A receiver that fails, then hangs past the timeout, then recovers: the events come
/// through once it answers, with the same ids every time they were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_until_a_2xx_with_stable_ids() {
    let receiver = Receiver::start(Mode::Fail(500));
    let reg = registry_with(
        vec![endpoint(
            "hook",
            &receiver,
            json!({ "timeout": "300ms", "threshold": 1 }),
        )],
        false,
    )
    .await;
    reg.push_image("notify/retry", "v1", 4).await;
    let start = std::time::Instant::now();
    while receiver.requests().len() < 3 {
        assert!(start.elapsed() < WAIT, "no retries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.set_mode(Mode::Hang(Duration::from_secs(1)));
    tokio::time::sleep(Duration::from_millis(800)).await;
    receiver.set_mode(Mode::Ok);
    let events = receiver.wait_for(WAIT, |e| e.len() >= 3).await;
    let delivered: std::collections::HashSet<&str> =
        events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    // Every id that was ever sent is among the delivered ones.
    for r in receiver.requests() {
        for e in r.json()["events"].as_array().unwrap() {
            assert!(delivered.contains(e["id"].as_str().unwrap()));
        }
    }
    assert_eq!(delivered.len(), 3);
    // The receiver logs a request before Wharf has its answer (and a hung request it
    // answers after Wharf gave up on it), so the counters may lag the receiver's log.
    let start = std::time::Instant::now();
    let metrics = loop {
        let metrics = reg.get("/metrics").await.text();
        if metrics.contains("wharf_notify_events_delivered_total{endpoint=\"hook\"} 3")
            || start.elapsed() > WAIT
        {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        metrics.contains("wharf_notify_delivery_failures_total{endpoint=\"hook\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wharf_notify_events_delivered_total{endpoint=\"hook\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("wharf_notify_delivery_latency_seconds_bucket{endpoint=\"hook\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_off_write_no_events() {
    // No endpoints: the outbox stays empty and no worker runs.
    let reg = TestRegistry::start().await;
    reg.push_image("notify/off", "v1", 5).await;
    let metrics = reg.get("/metrics").await.text();
    assert!(!metrics.contains("notify_events_delivered_total{"));
}
