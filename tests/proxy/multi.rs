//! Two mirror instances sharing one PostgreSQL database and one blob directory, as
//! behind a load balancer: a cold layer pulled by many clients at once through both
//! is fetched from the upstream exactly once.
//!
//! The layer is `WHARF_PROXY_BIG_MB` MB (default 300) and the upstream is throttled
//! to `WHARF_PROXY_RATE_MB` MB/s (default 50), so the fill lasts a few seconds and
//! every client but one follows it.

use std::time::Instant;

use sqlx::{Connection, Executor};

use crate::support::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh database on the test PostgreSQL server; fails without one.
async fn database() -> String {
    let server = std::env::var("WHARF_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "the multi-instance proxy tests need WHARF_TEST_POSTGRES_URL (scripts/test starts \
                 a throwaway PostgreSQL and sets it); to leave them out: -E 'not test(/^multi::/)'"
            )
        });
    let name = format!("wharf_proxy_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .expect("postgres");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    crate::postgres_url::with_database(&server, &name)
}

#[tokio::test]
async fn one_upstream_fetch_per_blob_across_instances() {
    let mb = env_u64("WHARF_PROXY_BIG_MB", 300);
    let rate = env_u64("WHARF_PROXY_RATE_MB", 50) * 1_000_000;
    let clients = env_u64("WHARF_PROXY_CLIENTS", 20) as usize;
    let dir = scratch();
    let upstream = start_wharf(
        dir.path(),
        "upstream",
        &local_storage(dir.path(), "upstream"),
    )
    .await;
    let proxy = CountingProxy::start(&upstream.url, rate);
    let client = reqwest::Client::new();
    let layer = pseudo_random((mb * 1_000_000) as usize, 300);
    let digest = sha256(&layer);
    let image = Image {
        config: b"{}".to_vec(),
        layers: vec![layer],
        manifest: Vec::new(),
        digest: String::new(),
    };
    push_blob(&client, &upstream.url, "big/layer", &image.layers[0], None).await;
    drop(image);

    let db = database().await;
    let shared = format!(
        "storage:\n  filesystem:\n    rootdirectory: {}\ndatabase:\n  url: {db}\n  maxconnections: 8\nproxy:\n  upstreams:\n    - name: up\n      prefix: up\n      remoteurl: {}\n",
        dir.path().join("mirror-blobs").display(),
        proxy.url
    );
    let a = start_wharf(dir.path(), "mirror-a", &shared).await;
    let b = start_wharf(dir.path(), "mirror-b", &shared).await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let base = if i % 2 == 0 { &a.url } else { &b.url };
        let url = format!("{base}/v2/up/big/layer/blobs/{digest}");
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let got = get_blob_hashed(&client, &url, None).await;
            (got, t.elapsed())
        }));
    }
    let mut slowest = std::time::Duration::ZERO;
    for t in tasks {
        let ((status, got, len), took) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(len, mb * 1_000_000);
        assert_eq!(got, digest, "a client got the wrong bytes");
        slowest = slowest.max(took);
    }
    eprintln!(
        "{clients} clients, {mb} MB cold layer, two instances, upstream at {} MB/s: all done in {:?} (slowest {slowest:?})",
        rate / 1_000_000,
        started.elapsed()
    );
    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains(&digest))
        .collect();
    assert_eq!(
        gets.len(),
        1,
        "the upstream saw {} GETs of the layer: {gets:?}",
        gets.len()
    );
    let coalesced = metric(&client, &a.url, "wharf_proxy_coalesced_total", "").await
        + metric(&client, &b.url, "wharf_proxy_coalesced_total", "").await;
    eprintln!("coalesced requests: {coalesced}");
}

#[tokio::test]
async fn a_fill_whose_instance_dies_is_taken_over_and_resumed() {
    let dir = scratch();
    let upstream = start_wharf(
        dir.path(),
        "upstream",
        &local_storage(dir.path(), "upstream"),
    )
    .await;
    // 2 MB/s: the 16 MB layer takes 8 s, and instance A is killed after 3.
    let proxy = CountingProxy::start(&upstream.url, 2_000_000);
    let client = reqwest::Client::new();
    let layer = pseudo_random(16_000_000, 400);
    let digest = sha256(&layer);
    push_blob(&client, &upstream.url, "big/layer", &layer, None).await;
    let db = database().await;
    let shared = format!(
        "storage:\n  filesystem:\n    rootdirectory: {}\ndatabase:\n  url: {db}\n  maxconnections: 4\nproxy:\n  upstreams:\n    - name: up\n      prefix: up\n      remoteurl: {}\n",
        dir.path().join("mirror-blobs").display(),
        proxy.url
    );
    let mut a = start_wharf(dir.path(), "mirror-a", &shared).await;
    let b = start_wharf(dir.path(), "mirror-b", &shared).await;
    let path = format!("/v2/up/big/layer/blobs/{digest}");
    let mut first = client.get(format!("{}{path}", a.url)).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let started = Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(3) {
        if first.chunk().await.unwrap().is_none() {
            break;
        }
    }
    a.kill(); // SIGKILL: the lease stays until it expires.
    drop(first);
    let t = Instant::now();
    let (status, got, len) = get_blob_hashed(&client, &format!("{}{path}", b.url), None).await;
    assert_eq!((status, len), (200, 16_000_000));
    assert_eq!(got, digest);
    eprintln!(
        "taken over and finished {:?} after the owner died",
        t.elapsed()
    );
    let gets = proxy.count("GET", &digest);
    assert_eq!(
        gets,
        2,
        "the original fetch and one resumed from its offset: {:?}",
        proxy.requests()
    );
    // Committed: B serves it from the store.
    proxy.clear();
    let (_, got, _) = get_blob_hashed(&client, &format!("{}{path}", b.url), None).await;
    assert_eq!(got, digest);
    assert_eq!(proxy.count("GET", &digest), 0);
}

#[tokio::test]
async fn a_layer_two_cached_images_share_is_fetched_once_on_postgres() {
    let dir = scratch();
    let upstream = start_wharf(
        dir.path(),
        "upstream",
        &local_storage(dir.path(), "upstream"),
    )
    .await;
    let proxy = CountingProxy::start(&upstream.url, 0);
    let client = reqwest::Client::new();
    // Two images with the same layer (same seed and size) and different configs.
    let a = Image::new(500, &[400_000]);
    let mut b = Image::new(500, &[400_000]);
    b.config = br#"{"architecture":"arm64","os":"linux"}"#.to_vec();
    b.manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(&b.config), "size": b.config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(&b.layers[0]), "size": b.layers[0].len()}],
    }))
    .unwrap();
    b.digest = sha256(&b.manifest);
    push_image(&client, &upstream.url, "team/a", "v1", &a, None).await;
    push_image(&client, &upstream.url, "team/b", "v1", &b, None).await;
    let db = database().await;
    let mirror = start_wharf(
        dir.path(),
        "mirror",
        &format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\ndatabase:\n  url: {db}\nproxy:\n  upstreams:\n    - name: up\n      prefix: up\n      remoteurl: {}\n",
            dir.path().join("mirror-blobs").display(),
            proxy.url
        ),
    )
    .await;
    assert_eq!(
        pull_image(&client, &mirror.url, "up/team/a", "v1").await,
        a.digest
    );
    // b's manifest names the layer a's fill stored: linked into up/team/b, not
    // fetched again (the mirror looks for it in its store before asking upstream).
    let layer = sha256(&a.layers[0]);
    assert_eq!(
        pull_image(&client, &mirror.url, "up/team/b", "v1").await,
        b.digest
    );
    assert_eq!(proxy.count("GET", &layer), 1, "{:?}", proxy.requests());
}
