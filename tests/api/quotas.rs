//! Storage quotas and the write limiter through the HTTP API, on whichever storage and
//! metadata engine the suite runs on: a push over quota is refused with `403 DENIED`
//! naming the scope, the quota and the usage — by its declared size before any byte
//! is stored, or as its streamed body crosses the quota — and the store and the
//! metadata hold nothing of it; shared layers and mounts are charged once per
//! namespace; a manifest is refused the same way; the admin API sets quotas at run
//! time and reports usage; the write limiter answers `429` beyond its queue while
//! reads are served.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::support::*;

async fn with_quotas(quotas: Value) -> TestRegistry {
    TestRegistry::start_with(Options {
        extra: Some(json!({ "quotas": quotas })),
        ..Options::default()
    })
    .await
}

async fn usage(t: &TestRegistry, scope: &str) -> Value {
    let r = t.get(&format!("/v2/_wharf/usage/{scope}")).await;
    r.expect_status(200);
    r.json()
}

/// Nothing of a refused push is left: no object the rows do not name, no reservation,
/// no session.
async fn assert_nothing_left(t: &TestRegistry, scope: &str, stored: u64) {
    let sweep = t
        .registry
        .sweep_orphans(Duration::ZERO, true)
        .await
        .unwrap();
    assert!(
        sweep.orphans.is_empty() && sweep.young == 0,
        "objects no row names: {:?}",
        sweep.orphans
    );
    // A single-request upload that reserved (a long one, or of unknown length) and was
    // refused releases its reservation just after it answers.
    let mut u = usage(t, scope).await;
    for _ in 0..100 {
        if u["reservedBytes"] == json!(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        u = usage(t, scope).await;
    }
    assert_eq!(u["storedBytes"], json!(stored), "{u}");
    assert_eq!(u["reservedBytes"], json!(0), "{u}");
}

#[track_caller]
fn assert_denied(r: &Resp, scope: &str, quota: u64, usage: u64) {
    r.expect_error(403, "DENIED");
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&format!("quota exceeded: {scope} has a quota of {quota} bytes and {usage} bytes stored or reserved")),
        "{message}"
    );
}

#[tokio::test]
async fn quota_declared_upload_over_quota_is_refused_before_any_byte_lands() {
    let t = with_quotas(json!({ "repositories": { "q/app": 2000 } })).await;
    let first = pseudo_random(1500, 1);
    t.push_blob("q/app", &first).await;
    assert_nothing_left(&t, "q/app", 1500).await;

    // Single request, declared by Content-Length.
    let big = pseudo_random(1000, 2);
    let r = t
        .send(
            t.req(
                Method::POST,
                &format!("/v2/q/app/blobs/uploads/?digest={}", sha256(&big)),
            )
            .header("Content-Type", "application/octet-stream")
            .body(big.clone()),
        )
        .await;
    assert_denied(&r, "q/app", 2000, 1500);
    assert!(r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .ends_with("this push needs 1000 more"));
    t.head(&format!("/v2/q/app/blobs/{}", sha256(&big)))
        .await
        .expect_status(404);
    assert_nothing_left(&t, "q/app", 1500).await;

    // A session: the first chunk fits, the second (Content-Range) does not — the
    // session and the chunk it had are gone.
    let location = t.start_upload("q/app").await;
    let r = t
        .send(
            t.req(Method::PATCH, &location)
                .header("Content-Range", "0-399")
                .header("Content-Type", "application/octet-stream")
                .body(big[..400].to_vec()),
        )
        .await;
    r.expect_status(202);
    assert_eq!(usage(&t, "q/app").await["reservedBytes"], json!(400));
    let r = t
        .send(
            t.req(Method::PATCH, &location)
                .header("Content-Range", "400-999")
                .header("Content-Type", "application/octet-stream")
                .body(big[400..].to_vec()),
        )
        .await;
    assert_denied(&r, "q/app", 2000, 1500);
    t.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_nothing_left(&t, "q/app", 1500).await;

    // What fits still goes in; the quota is then exactly full.
    t.push_blob("q/app", &big[..500]).await;
    assert_nothing_left(&t, "q/app", 2000).await;
    let r = t
        .send(
            t.req(
                Method::POST,
                &format!("/v2/q/app/blobs/uploads/?digest={}", sha256(b"x")),
            )
            .body(b"x".to_vec()),
        )
        .await;
    assert_denied(&r, "q/app", 2000, 2000);
}

#[tokio::test]
async fn quota_streamed_upload_is_refused_as_it_crosses_the_quota() {
    // 20 MiB quota, a 30 MiB body with no length: refused once past the quota.
    let quota: u64 = 20 << 20;
    let t = with_quotas(json!({ "namespaces": { "s/": quota } })).await;
    let location = t.start_upload("s/app").await;
    let piece = bytes::Bytes::from(pseudo_random(1 << 20, 3));
    let body =
        futures_util::stream::iter((0..30).map(move |_| Ok::<_, std::io::Error>(piece.clone())));
    let r = t
        .send(
            t.req(Method::PATCH, &location)
                .header("Content-Type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(body)),
        )
        .await;
    assert_denied(&r, "s/", quota, 0);
    t.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_nothing_left(&t, "s/", 0).await;
    // A streamed push under the quota is not refused for the reservation's step.
    let location = t.start_upload("s/app").await;
    let data = pseudo_random((quota - 10) as usize, 4);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = data
        .chunks(1 << 20)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let r = t
        .send(
            t.req(Method::PATCH, &location)
                .header("Content-Type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
        )
        .await;
    r.expect_status(202);
    let location = r.must_header("Location").to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    t.send(t.req(
        Method::PUT,
        &format!("{location}{sep}digest={}", sha256(&data)),
    ))
    .await
    .expect_status(201);
    assert_nothing_left(&t, "s/", quota - 10).await;
}

#[tokio::test]
async fn quota_shared_layers_and_mounts_are_charged_once_per_namespace() {
    let t = with_quotas(json!({ "namespaces": { "team/": 3000 } })).await;
    let layer = pseudo_random(2000, 5);
    let digest = t.push_blob("team/a", &layer).await;
    // Mounting it into another repository of the namespace needs no room: it is held.
    let r = t
        .send(t.req(
            Method::POST,
            &format!("/v2/team/b/blobs/uploads/?mount={digest}&from=team/a"),
        ))
        .await;
    r.expect_status(201);
    // Pushing the same bytes again into a third repository: also charged once.
    t.push_blob("team/c", &layer).await;
    let u = usage(&t, "team/").await;
    assert_eq!(u["storedBytes"], json!(2000), "{u}");
    assert_eq!(u["blobs"], json!(1), "{u}");
    assert_eq!(u["repositories"], json!(3), "{u}");
    assert_eq!(u["quota"], json!(3000), "{u}");
    // A mount from outside the namespace counts against it.
    let outside = pseudo_random(1500, 6);
    let other = t.push_blob("elsewhere/x", &outside).await;
    let r = t
        .send(t.req(
            Method::POST,
            &format!("/v2/team/b/blobs/uploads/?mount={other}&from=elsewhere/x"),
        ))
        .await;
    assert_denied(&r, "team/", 3000, 2000);
    t.head(&format!("/v2/team/b/blobs/{other}"))
        .await
        .expect_status(404);
    assert_nothing_left(&t, "team/", 2000).await;
}

#[tokio::test]
async fn quota_manifest_refused_when_the_scope_is_over_and_admin_api_changes_quotas() {
    let t = TestRegistry::start().await;
    // No quota: the push goes in.
    let (manifest, _) = t.push_image("adm/app", "v1", 7).await;
    let stored = usage(&t, "adm/").await["storedBytes"].as_u64().unwrap();
    assert!(stored > 1000);
    let logical = usage(&t, "adm/app").await["logicalBytes"].as_u64().unwrap();
    assert_eq!(logical, stored, "one manifest referencing each blob once");

    // Set at run time, below what is stored: nothing new gets in.
    let put = |scope: &str, body: Value| {
        t.req(Method::PUT, &format!("/v2/_wharf/quotas/{scope}"))
            .json(&body)
    };
    let r = t.send(put("adm/", json!({ "bytes": 100 }))).await;
    r.expect_status(200);
    assert_eq!(
        r.json(),
        json!({ "scope": "adm/", "bytes": 100, "source": "api" })
    );
    let r = t
        .put_manifest("adm/app", "v2", Some(OCI_MANIFEST), &manifest)
        .await;
    assert_denied(&r, "adm/", 100, stored);
    let r = t
        .send(
            t.req(
                Method::POST,
                &format!("/v2/adm/app/blobs/uploads/?digest={}", sha256(b"y")),
            )
            .body(b"y".to_vec()),
        )
        .await;
    assert_denied(&r, "adm/", 100, stored);

    // The namespace's gauges (refreshed every 30 s by `wharf serve`; here at once).
    t.registry.refresh_quota_gauges().await.unwrap();
    let metrics = t.get("/metrics").await.text();
    for line in [
        format!("wharf_quota_namespace_bytes{{kind=\"stored\",namespace=\"adm\"}} {stored}"),
        "wharf_quota_namespace_bytes{kind=\"quota\",namespace=\"adm\"} 100".to_string(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in /metrics");
    }

    // Listed, read, removed.
    let r = t.get("/v2/_wharf/quotas/").await;
    r.expect_status(200);
    assert_eq!(
        r.json(),
        json!({ "quotas": [{ "scope": "adm/", "bytes": 100, "source": "api" }] })
    );
    t.get("/v2/_wharf/quotas/adm/").await.expect_status(200);
    t.delete("/v2/_wharf/quotas/adm/").await.expect_status(204);
    t.get("/v2/_wharf/quotas/adm/")
        .await
        .expect_error(404, "NAME_UNKNOWN");
    t.delete("/v2/_wharf/quotas/adm/")
        .await
        .expect_error(404, "NAME_UNKNOWN");
    t.put_manifest("adm/app", "v2", Some(OCI_MANIFEST), &manifest)
        .await
        .expect_status(201);

    // The default applies to every namespace without its own.
    t.send(put("*", json!({ "bytes": 10 })))
        .await
        .expect_status(200);
    let u = usage(&t, "adm/").await;
    assert_eq!(u["quota"], json!(10));
    assert_eq!(u["manifests"], json!(1));

    // Bad input: a clear 400.
    t.send(put("Bad/", json!({ "bytes": 1 })))
        .await
        .expect_error(400, "NAME_INVALID");
    t.send(put("adm/", json!({ "bytes": -1 })))
        .await
        .expect_error(400, "UNSUPPORTED");
    t.send(put("adm/", json!({ "byte": 1 })))
        .await
        .expect_error(400, "UNSUPPORTED");
}

#[tokio::test]
async fn quota_config_is_validated() {
    for (quotas, key) in [
        (
            json!({ "namespaces": { "team": 10 } }),
            "quotas.namespaces.team",
        ),
        (
            json!({ "repositories": { "UPPER": 10 } }),
            "quotas.repositories.UPPER",
        ),
        (json!({ "default": "ten" }), "quotas.default"),
        (json!({ "defaults": 10 }), "quotas"),
    ] {
        let tree = serde_norway::to_value(json!({ "quotas": quotas })).unwrap();
        let e = wharf::config::Config::from_tree(tree)
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{e}");
    }
}

/// 200 concurrent uploads against 16 running and 32 queued writes: the 152 beyond get
/// `429 TOOMANYREQUESTS` with `Retry-After`, none a 5xx, every admitted one completes,
/// and reads are answered while the writes hold every turn. The admitted uploads'
/// bodies wait on a gate opened only once the 152 refusals are in, so the count does
/// not depend on timing.
#[tokio::test]
async fn write_limiter_refuses_beyond_its_queue_and_never_blocks_reads() {
    let t = Arc::new(
        TestRegistry::start_with(Options {
            extra: Some(json!({
                "http": { "limits": { "writes": {
                    "concurrent": 16, "queued": 32, "queuetimeout": "5m"
                } } }
            })),
            ..Options::default()
        })
        .await,
    );
    let readable = t.push_blob("lim/app", b"read me during the storm").await;
    let gate = Arc::new(Notify::new());
    let opened = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let (t, gate, opened) = (t.clone(), gate.clone(), opened.clone());
            tokio::spawn(async move {
                let data = pseudo_random(4096, 100 + i);
                let digest = sha256(&data);
                let first = bytes::Bytes::copy_from_slice(&data[..2048]);
                let rest = bytes::Bytes::copy_from_slice(&data[2048..]);
                let body =
                    futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) })
                        .chain(futures_util::stream::once(async move {
                            // Registered before the flag is read: no wake-up is missed.
                            let turn = gate.notified();
                            if !opened.load(std::sync::atomic::Ordering::SeqCst) {
                                turn.await;
                            }
                            Ok::<_, std::io::Error>(rest)
                        }));
                let r = t
                    .send(
                        t.req(
                            Method::POST,
                            &format!("/v2/lim/app/blobs/uploads/?digest={digest}"),
                        )
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Length", "4096")
                        .body(reqwest::Body::wrap_stream(body)),
                    )
                    .await;
                (r.status, r.header("Retry-After").map(str::to_string), r)
            })
        })
        .collect();
    let mut pending: futures_util::stream::FuturesUnordered<_> = tasks.into_iter().collect();
    let mut refused = 0;
    let mut results = Vec::new();
    while refused < 152 {
        let (status, retry_after, r) = pending.next().await.unwrap().unwrap();
        assert_eq!(
            status, 429,
            "only refusals come back while the gate is shut"
        );
        r.expect_error(429, "TOOMANYREQUESTS");
        assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
        refused += 1;
    }
    // Every write turn is held, the queue is full: reads are still answered.
    t.get("/v2/").await.expect_status(200);
    let r = t.get(&format!("/v2/lim/app/blobs/{readable}")).await;
    r.expect_status(200);
    t.head(&format!("/v2/lim/app/blobs/{readable}"))
        .await
        .expect_status(200);
    opened.store(true, std::sync::atomic::Ordering::SeqCst);
    gate.notify_waiters();
    while let Some(done) = pending.next().await {
        results.push(done.unwrap().0);
    }
    assert_eq!(results.len(), 48);
    assert!(results.iter().all(|s| *s == 201), "{results:?}");
}

/// Two small single-request pushes that each fit when checked but not together (the
/// first held at its commit, the second pushed meanwhile): the one that commits second
/// is refused by its commit's charge — `403 DENIED`, nothing of it left, the stored
/// bytes within the quota. A session's small final `PUT` that does not fit is refused
/// before its body is read.
#[tokio::test]
async fn quota_small_push_that_loses_the_race_for_the_last_room_is_refused_at_commit() {
    let t = with_quotas(json!({ "repositories": { "r/app": 1000 } })).await;
    let (a, b) = (pseudo_random(600, 5), pseudo_random(600, 6));
    let (reached, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (r, g, key) = (reached.clone(), release.clone(), sha256(&a));
    wharf::clock::race::set(
        "upload.before_commit",
        Arc::new(move |k: &str| {
            if k != key {
                return None;
            }
            r.notify_one();
            let g = g.clone();
            Some(Box::pin(async move { g.notified().await }))
        }),
    );
    let push_a = t.send(
        t.req(
            Method::POST,
            &format!("/v2/r/app/blobs/uploads/?digest={}", sha256(&a)),
        )
        .header("Content-Type", "application/octet-stream")
        .body(a.clone()),
    );
    let meanwhile = async {
        tokio::time::timeout(Duration::from_secs(30), reached.notified())
            .await
            .expect("the first push never reached its commit");
        t.push_blob("r/app", &b).await;
        release.notify_one();
    };
    let (r, ()) = tokio::join!(push_a, meanwhile);
    wharf::clock::race::clear("upload.before_commit");
    assert_denied(&r, "r/app", 1000, 600);
    t.head(&format!("/v2/r/app/blobs/{}", sha256(&a)))
        .await
        .expect_status(404);
    t.head(&format!("/v2/r/app/blobs/{}", sha256(&b)))
        .await
        .expect_status(200);
    assert_nothing_left(&t, "r/app", 600).await;

    // A session's final PUT (declared by Content-Length): checked before its body.
    let location = t.start_upload("r/app").await;
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = t
        .send(
            t.req(
                Method::PUT,
                &format!("{location}{sep}digest={}", sha256(&a)),
            )
            .header("Content-Type", "application/octet-stream")
            .body(a.clone()),
        )
        .await;
    assert_denied(&r, "r/app", 1000, 600);
    t.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_nothing_left(&t, "r/app", 600).await;
}
