//! Garbage collection through the HTTP API, on whichever storage and metadata engine
//! the suite runs on: the races of `registry::gc`'s argument that a client can see,
//! forced with the race points of the core (`clock::race_point`, feature
//! `test-hooks`): a manifest PUT after its blob was collected is refused and the
//! client's re-upload succeeds; an upload of a digest being collected stores its bytes
//! anew; a HEAD pushes a review back. The server's GC workers are not started: each
//! test runs collection itself through `TestRegistry::registry`, review delay 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::sync::Notify;

use crate::support::*;

/// Pauses the first pass of `point` with `key` until released (see tests/gc/hooks.rs).
struct Gate {
    point: &'static str,
    reached: Arc<Notify>,
    release: Arc<Notify>,
}

impl Gate {
    fn arm(point: &'static str, key: impl Into<String>) -> Gate {
        let key = key.into();
        let (reached, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let fired = Arc::new(AtomicBool::new(false));
        let (r, g) = (reached.clone(), release.clone());
        wharf::clock::race::set(
            point,
            Arc::new(move |k: &str| {
                if k != key || fired.swap(true, Ordering::SeqCst) {
                    return None;
                }
                r.notify_one();
                let g = g.clone();
                Some(Box::pin(async move { g.notified().await }))
            }),
        );
        Gate {
            point,
            reached,
            release,
        }
    }

    async fn reached(&self) {
        tokio::time::timeout(Duration::from_secs(30), self.reached.notified())
            .await
            .unwrap_or_else(|_| panic!("race point {} never reached", self.point));
    }

    fn release(&self) {
        self.release.notify_one();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.release.notify_one();
        wharf::clock::race::clear(self.point);
    }
}

async fn start(delay: &str) -> TestRegistry {
    TestRegistry::start_with(Options {
        gc: Some(json!({ "reviewdelay": delay })),
        ..Options::default()
    })
    .await
}

/// Config and layer of a small image; `(config, layer)`.
fn image(seed: u64) -> (Vec<u8>, Vec<u8>) {
    (
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes(),
        pseudo_random(3000 + seed as usize, seed),
    )
}

/// Pulls `reference` and every blob of it, checking the bytes.
async fn pull(reg: &TestRegistry, repo: &str, reference: &str, blobs: &[&[u8]]) {
    let r = reg.get(&format!("/v2/{repo}/manifests/{reference}")).await;
    r.expect_status(200);
    for b in blobs {
        let got = reg.get(&format!("/v2/{repo}/blobs/{}", sha256(b))).await;
        got.expect_status(200);
        assert_eq!(got.body.as_ref(), *b, "{}: wrong bytes", got.what);
    }
}

async fn metric(reg: &TestRegistry, series: &str) -> u64 {
    let text = reg.get("/metrics").await.text();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Case 2 of the argument: the client's HEAD said the layer exists, the layer is
/// collected, the manifest PUT is refused; the client uploads again and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_then_collected_then_put_is_refused_and_reupload_works() {
    let reg = start("0s").await;
    let repo = "gc/head";
    let (config, layer) = image(1);
    reg.push_blob(repo, &config).await;
    reg.push_blob(repo, &layer).await;
    reg.head(&format!("/v2/{repo}/blobs/{}", sha256(&layer)))
        .await
        .expect_status(200);
    // Nothing references the uploads yet: a pass with delay 0 takes them.
    let report = reg.registry.gc_collect_due().await.unwrap();
    assert_eq!(report.blobs.len(), 2);
    let manifest = image_manifest(&config, &[&layer], None);
    reg.put_manifest(repo, "v1", Some(OCI_MANIFEST), &manifest)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.head(&format!("/v2/{repo}/blobs/{}", sha256(&layer)))
        .await
        .expect_status(404);
    reg.push_blob(repo, &config).await;
    reg.push_blob(repo, &layer).await;
    reg.push_manifest(repo, "v1", OCI_MANIFEST, &manifest).await;
    assert!(reg
        .registry
        .gc_collect_due()
        .await
        .unwrap()
        .blobs
        .is_empty());
    pull(&reg, repo, "v1", &[&config, &layer]).await;
}

/// The same race with the PUT already on its way (paused after validation): the store
/// decides, and refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_in_flight_while_its_layer_is_collected() {
    let reg = start("0s").await;
    let repo = "gc/inflight";
    let (config, layer) = image(2);
    reg.push_blob(repo, &config).await;
    reg.push_blob(repo, &layer).await;
    let manifest = image_manifest(&config, &[&layer], None);
    let gate = Gate::arm("manifest.before_put", repo);
    let put = {
        let (client, url, body) = (
            reg.client.clone(),
            reg.url(&format!("/v2/{repo}/manifests/v1")),
            manifest.clone(),
        );
        tokio::spawn(async move {
            client
                .put(url)
                .header("Content-Type", OCI_MANIFEST)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    gate.reached().await;
    assert_eq!(reg.registry.gc_collect_due().await.unwrap().blobs.len(), 2);
    gate.release();
    assert_eq!(put.await.unwrap(), 400);
    reg.push_blob(repo, &config).await;
    reg.push_blob(repo, &layer).await;
    reg.push_manifest(repo, "v1", OCI_MANIFEST, &manifest).await;
    pull(&reg, repo, "v1", &[&config, &layer]).await;
}

/// Case 3/4: a layer's rows are collected and its object not yet deleted; the client
/// uploads the same bytes meanwhile. They are stored under a new key, the old object
/// is deleted, and the image pulls with the right bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_while_the_old_object_awaits_its_delete() {
    let reg = start("0s").await;
    let repo = "gc/reupload";
    let (config, layer) = image(3);
    reg.push_blob(repo, &layer).await;
    let gate = Gate::arm("gc.object_delete", sha256(&layer));
    let pass = {
        let core = reg.registry.clone();
        tokio::spawn(async move { core.gc_collect_due().await })
    };
    gate.reached().await;
    let hits = metric(&reg, "wharf_gc_tombstone_hits_total{op=\"upload\"}").await;
    reg.push_blob(repo, &layer).await;
    reg.push_blob(repo, &config).await;
    let manifest = image_manifest(&config, &[&layer], None);
    reg.push_manifest(repo, "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(
        metric(&reg, "wharf_gc_tombstone_hits_total{op=\"upload\"}").await,
        hits + 1
    );
    gate.release();
    let report = pass.await.unwrap().unwrap();
    assert_eq!(report.blobs.len(), 1);
    assert_eq!(report.failed, 0);
    pull(&reg, repo, "v1", &[&config, &layer]).await;
    // Settled: the new upload is referenced.
    assert!(reg
        .registry
        .gc_collect_due()
        .await
        .unwrap()
        .blobs
        .is_empty());
    pull(&reg, repo, "v1", &[&config, &layer]).await;
}

/// Case 3: an upload of a digest has its bytes stored and is about to commit when a
/// pass collects the digest's old copy; the commit stores the new bytes as the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_commit_racing_the_collection_of_its_digest() {
    let reg = start("0s").await;
    let repo = "gc/commit";
    let (config, layer) = image(4);
    reg.push_blob(repo, &layer).await;
    let gate = Gate::arm("upload.before_commit", sha256(&layer));
    let upload = {
        let (client, url, body) = (
            reg.client.clone(),
            reg.url(&format!(
                "/v2/{repo}/blobs/uploads/?digest={}",
                sha256(&layer)
            )),
            layer.clone(),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    gate.reached().await;
    assert_eq!(reg.registry.gc_collect_due().await.unwrap().blobs.len(), 1);
    gate.release();
    assert_eq!(upload.await.unwrap(), 201);
    reg.push_blob(repo, &config).await;
    let manifest = image_manifest(&config, &[&layer], None);
    reg.push_manifest(repo, "v1", OCI_MANIFEST, &manifest).await;
    pull(&reg, repo, "v1", &[&config, &layer]).await;
}

/// A HEAD pushes the blob's review back (written within the flush); without HEADs
/// it is collected once the delay has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_pushes_the_review_back() {
    let reg = start("2s").await;
    let repo = "gc/pushback";
    let data = pseudo_random(2000, 5);
    let digest = reg.push_blob(repo, &data).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        reg.head(&format!("/v2/{repo}/blobs/{digest}"))
            .await
            .expect_status(200);
        reg.registry.flush_access().await;
        let report = reg.registry.gc_collect_due().await.unwrap();
        assert!(report.blobs.is_empty(), "collected while in use");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(reg.registry.gc_collect_due().await.unwrap().blobs.len(), 1);
    reg.head(&format!("/v2/{repo}/blobs/{digest}"))
        .await
        .expect_status(404);
}

/// Tag moves and deletes through the API, collected; the metrics say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_and_deleted_tags_are_collected_with_metrics() {
    let reg = start("0s").await;
    let repo = "gc/tags";
    let (m1, _) = reg.push_image(repo, "latest", 10).await;
    let (_, d2) = reg.push_image(repo, "latest", 11).await;
    let _ = m1;
    let report = reg.registry.gc_collect_due().await.unwrap();
    assert_eq!(report.manifests.len(), 1);
    assert_eq!(report.blobs.len(), 2, "the first image's config and layer");
    reg.get(&format!("/v2/{repo}/manifests/latest"))
        .await
        .expect_status(200);
    reg.delete(&format!("/v2/{repo}/manifests/latest"))
        .await
        .expect_status(202);
    let report = reg.registry.gc_collect_due().await.unwrap();
    assert_eq!(report.manifests.len(), 1);
    assert_eq!(report.manifests[0].1.to_string(), d2);
    assert_eq!(report.blobs.len(), 2);
    reg.registry.gc_observe_queues().await.unwrap();
    for series in [
        "wharf_gc_reviews_done_total{kind=\"manifest\",outcome=\"collected\"}",
        "wharf_gc_objects_reclaimed_total{source=\"review\"}",
        "wharf_gc_bytes_reclaimed_total{source=\"review\"}",
        "wharf_gc_deleted_total{cause=\"review\",what=\"blob\"}",
    ] {
        assert!(metric(&reg, series).await >= 2, "{series}");
    }
    let text = reg.get("/metrics").await.text();
    assert!(text.contains("wharf_gc_reviews_pending{kind=\"blob\",state=\"due\"} 0"));
}

/// `storage.delete.enabled: false`: nothing is collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_disabled_means_nothing_is_collected() {
    let reg = TestRegistry::start_with(Options {
        delete_enabled: false,
        gc: Some(json!({ "reviewdelay": "0s" })),
        ..Options::default()
    })
    .await;
    assert!(!reg.registry.gc_enabled());
    let digest = reg.push_blob("gc/off", b"kept forever").await;
    let report = reg.registry.gc_collect_due().await.unwrap();
    assert_eq!((report.reviewed, report.blobs.len()), (0, 0));
    let r = reg
        .send(reg.req(Method::HEAD, &format!("/v2/gc/off/blobs/{digest}")))
        .await;
    r.expect_status(200);
}
