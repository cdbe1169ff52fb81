//! What the dependencies look like from `/metrics`, with the real binary: a histogram
//! per metadata, cache and storage call (backend, operation, outcome; the labels stay
//! bounded after pushes to many repositories), the uploads-in-flight gauge while an
//! upload streams, and the notification backlog while an endpoint is down.

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::support::{free_port, Serve};

const WAIT: Duration = Duration::from_secs(60);

/// A filesystem + SQLite configuration with `storage.cache` in memory and `extra`
/// top-level YAML.
fn config(dir: &Path, port: u16, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.yml");
    let root = dir.join("data");
    std::fs::write(
        &path,
        format!(
            "version: 0.1\nhttp:\n  addr: 127.0.0.1:{port}\n  draintimeout: 1s\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  cache:\n    blobdescriptor: inmemory\ndatabase:\n  url: sqlite://{root}/wharf.db\n{extra}",
            root = root.display()
        ),
    )
    .unwrap();
    path
}

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Pushes a one-layer image to `repo` with tag `v1`: 201s asserted.
async fn push(client: &reqwest::Client, url: &str, repo: &str, layer: &[u8]) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    for blob in [layer, &config[..]] {
        let r = client
            .post(format!(
                "{url}/v2/{repo}/blobs/uploads/?digest={}",
                digest(blob)
            ))
            .header("Content-Type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer), "size": layer.len()}],
    });
    let r = client
        .put(format!("{url}/v2/{repo}/manifests/v1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// The series of `family` (its `_count` lines).
fn count_series<'a>(metrics: &'a str, family: &str) -> Vec<&'a str> {
    let prefix = format!("{family}_count{{");
    metrics.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[tokio::test]
async fn metadata_cache_and_storage_calls_are_measured_with_bounded_labels() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _s = Serve::start(&config(dir.path(), port, ""));
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    push(&client, &url, "observe/app", b"layer one").await;
    // A pull: the manifest twice (the second from the cache), then the layer.
    for _ in 0..2 {
        let r = client
            .get(format!("{url}/v2/observe/app/manifests/v1"))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = client
        .get(format!(
            "{url}/v2/observe/app/blobs/{}",
            digest(b"layer one")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], b"layer one");

    let m = metrics(&url).await;
    let at_least_one = |series: &str| {
        let v = sample(&m, series);
        assert!(v.is_some_and(|v| v >= 1.0), "{series}: {v:?} in\n{m}");
    };
    at_least_one(
        r#"wharf_metadata_call_duration_seconds_count{backend="sqlite",operation="commit_blob",outcome="ok"}"#,
    );
    at_least_one(
        r#"wharf_metadata_call_duration_seconds_count{backend="sqlite",operation="put_manifest",outcome="ok"}"#,
    );
    at_least_one(
        r#"wharf_cache_call_duration_seconds_count{backend="inmemory",operation="lookup",outcome="ok"}"#,
    );
    at_least_one(
        r#"wharf_cache_call_duration_seconds_count{backend="inmemory",operation="store",outcome="ok"}"#,
    );
    at_least_one(
        r#"wharf_storage_call_duration_seconds_count{backend="filesystem",operation="get",outcome="ok"}"#,
    );
    at_least_one(
        r#"wharf_storage_call_duration_seconds_count{backend="filesystem",operation="finish_chunk",outcome="ok"}"#,
    );
    // A histogram, with buckets.
    assert!(
        m.contains(r#"wharf_metadata_call_duration_seconds_bucket{backend="sqlite",operation="commit_blob",outcome="ok",le="0.1"}"#),
        "{m}"
    );

    // 200 more repositories: no label names one, and each family stays within its
    // closed set: one series per operation (the traits' methods: 80 in
    // `metadata::store_methods`) and outcome.
    for i in 0..200 {
        push(&client, &url, &format!("observe/many-{i}"), b"layer one").await;
    }
    let m = metrics(&url).await;
    assert!(!m.contains("many-"), "a repository name in a label");
    for (family, operations) in [
        ("wharf_metadata_call_duration_seconds", 80),
        ("wharf_cache_call_duration_seconds", 4),
        ("wharf_storage_call_duration_seconds", 11),
    ] {
        let series = count_series(&m, family);
        assert!(
            series.len() <= operations * 2,
            "{family}: {} series for {operations} operations:\n{}",
            series.len(),
            series.join("\n")
        );
        for s in &series {
            let op = s
                .split("operation=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap();
            assert!(
                op.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{s}"
            );
        }
    }
}

#[tokio::test]
async fn uploads_in_flight_and_notification_backlog_are_gauges() {
    // An endpoint nobody answers: events wait in the outbox.
    let dead = free_port();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let notifications = format!(
        "notifications:\n  endpoints:\n    - name: down\n      url: http://127.0.0.1:{dead}/events\n      timeout: 1s\n      threshold: 1\n      backoff: 10s\n"
    );
    let _s = Serve::start(&config(dir.path(), port, &notifications));
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let uploads = r#"wharf_http_transfers_in_flight{direction="upload"}"#;

    // An upload whose body is held half-way: one upload in flight.
    let r = client
        .post(format!("{url}/v2/observe/held/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|part| (part, rx))
    });
    let patch = tokio::spawn(
        client
            .patch(format!("{url}{location}"))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", "8")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tx.send(Ok(b"half".to_vec())).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while sample(&metrics(&url).await, uploads) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the upload never showed as in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(Ok(b"done".to_vec())).await.unwrap();
    drop(tx);
    assert_eq!(patch.await.unwrap().unwrap().status(), 202);
    assert_eq!(sample(&metrics(&url).await, uploads), Some(0.0));

    // A push writes events the endpoint cannot take: the backlog gauge shows them
    // (sampled every few seconds).
    push(&client, &url, "observe/events", b"an event's layer").await;
    let pending = r#"wharf_notify_events_pending{endpoint="down"}"#;
    let deadline = Instant::now() + WAIT;
    loop {
        let v = sample(&metrics(&url).await, pending);
        if v.is_some_and(|v| v >= 3.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} never reached 3 (two blobs and a manifest): {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
