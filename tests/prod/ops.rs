//! `http.debug` (the debug listener, with `prometheus`) and distribution's `health`
//! checks.

use std::time::Duration;

use crate::support::{config, free_port, Serve};

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The number of `wharf_http_requests_total` series.
fn series(metrics: &str) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with("wharf_http_requests_total{"))
        .count()
}

#[tokio::test]
async fn metrics_on_the_debug_listener_only_with_bounded_series() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let debug = free_port();
    let http = format!(
        "  addr: 127.0.0.1:{port}\n  debug:\n    addr: 127.0.0.1:{debug}\n    prometheus:\n      enabled: true\n      path: /prom\n"
    );
    let serve = Serve::start(&config(dir.path(), &http, ""));
    serve.wait_for(&format!(
        "debug listener on http://127.0.0.1:{debug}, metrics at /prom"
    ));
    let public = format!("http://127.0.0.1:{port}");
    let private = format!("http://127.0.0.1:{debug}");
    assert_eq!(get(&format!("{public}/metrics")).await.0, 404);
    assert_eq!(get(&format!("{public}/v2/")).await.0, 200);
    let (status, metrics) = get(&format!("{private}/prom")).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("wharf_http_requests_total{method=\"GET\",route=\"/v2/\",status=\"200\"}"),
        "{metrics}"
    );
    let before = series(&metrics);
    // 1,000 repositories: the label set does not grow with them.
    let client = reqwest::Client::new();
    for i in 0..1000 {
        let r = client
            .get(format!("{public}/v2/team/repo-{i}/manifests/latest"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let (_, metrics) = get(&format!("{private}/prom")).await;
    assert!(series(&metrics) <= before + 2, "{metrics}");
    assert!(!metrics.contains("repo-1"));
    // The debug listener's health.
    assert_eq!(
        get(&format!("{private}/debug/health")).await,
        (200, "{}".into())
    );
    assert_eq!(get(&format!("{private}/readyz")).await.0, 200);
}

#[tokio::test]
async fn health_checks_drive_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let debug = free_port();
    let closed = free_port();
    let down = dir.path().join("down");
    let http = format!("  addr: 127.0.0.1:{port}\n  debug:\n    addr: 127.0.0.1:{debug}\n");
    let health = format!(
        "health:\n  storagedriver:\n    enabled: true\n    interval: 1s\n    threshold: 3\n  file:\n    - file: {}\n      interval: 1s\n",
        down.display()
    );
    let serve = Serve::start(&config(dir.path(), &http, &health));
    let public = format!("http://127.0.0.1:{port}");
    let private = format!("http://127.0.0.1:{debug}");
    // Metrics stay on the public port without `prometheus`.
    assert_eq!(get(&format!("{public}/metrics")).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        get(&format!("{private}/debug/health")).await,
        (200, "{}".into())
    );
    assert_eq!(get(&format!("{public}/readyz")).await.0, 200);

    // The file appears: unready, naming it; it goes: ready again, no restart.
    std::fs::write(&down, "maintenance").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = get(&format!("{private}/debug/health")).await;
    assert_eq!(status, 503);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v[down.to_str().unwrap()]
            .as_str()
            .unwrap()
            .contains("exists"),
        "{body}"
    );
    let (status, body) = get(&format!("{public}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    serve.wait_for("health check failing");
    std::fs::remove_file(&down).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(get(&format!("{public}/readyz")).await.0, 200);
    drop(serve);

    // A TCP check on a closed port fails after its threshold.
    let port = free_port();
    let http = format!("  addr: 127.0.0.1:{port}\n");
    let health = format!(
        "health:\n  tcp:\n    - addr: 127.0.0.1:{closed}\n      interval: 1s\n      timeout: 1s\n      threshold: 2\n"
    );
    let _serve = Serve::start(&config(dir.path(), &http, &health));
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let (status, body) = get(&format!("http://127.0.0.1:{port}/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains(&format!("127.0.0.1:{closed}")), "{body}");
}
