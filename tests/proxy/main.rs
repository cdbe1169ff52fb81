//! The pull-through cache against real upstreams on loopback: `wharf serve` processes
//! and Debian's `docker-registry` 2.8.2 with token auth (its tokens issued by a Wharf
//! token server whose key it trusts through `auth.token.rootcertbundle`), each behind
//! a counting proxy (`support::CountingProxy`) that can throttle, answer 429 or 503.
//!
//! `multi` runs two mirror instances on one PostgreSQL database (needs
//! `WHARF_TEST_POSTGRES_URL`, as tests/multi does; without it those tests fail saying
//! so). A missing `docker-registry` fails its test too: nothing is skipped.

// A test crate: a panic is a failed test, so unwrapping is how it fails.
#![allow(clippy::unwrap_used)]

mod multi;
#[path = "../common/postgres_url.rs"]
mod postgres_url;
mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// An upstream Wharf behind a counting proxy, and a mirror of it under `up/`.
struct Bench {
    dir: tempfile::TempDir,
    upstream: Proc,
    proxy: CountingProxy,
    mirror: Proc,
    client: reqwest::Client,
}

impl Bench {
    async fn start(rate: u64, upstream_yaml: &str) -> Bench {
        let dir = scratch();
        let upstream = start_wharf(
            dir.path(),
            "upstream",
            &local_storage(dir.path(), "upstream"),
        )
        .await;
        let proxy = CountingProxy::start(&upstream.url, rate);
        let yaml = upstream_yaml
            .replace("REMOTE", &proxy.url)
            .replace("NS", &upstream.addr);
        let mirror = start_wharf(
            dir.path(),
            "mirror",
            &format!("{}{yaml}", local_storage(dir.path(), "mirror")),
        )
        .await;
        Bench {
            dir,
            upstream,
            proxy,
            mirror,
            client: reqwest::Client::new(),
        }
    }

    /// Mirror of one upstream under `up/`, tags revalidated after `tagttl`.
    async fn simple(tagttl: &str) -> Bench {
        Bench::start(
            0,
            &format!("proxy:\n  upstreams:\n    - name: up\n      prefix: up\n      ns: NS\n      remoteurl: REMOTE\n      tagttl: {tagttl}\n"),
        )
        .await
    }

    async fn push(&self, repo: &str, tag: &str, image: &Image) {
        push_image(&self.client, &self.upstream.url, repo, tag, image, None).await;
    }

    async fn metric(&self, name: &str, labels: &str) -> f64 {
        metric(&self.client, &self.mirror.url, name, labels).await
    }
}

#[tokio::test]
async fn cold_pull_then_warm_pull_makes_no_upstream_request() {
    let b = Bench::simple("10m").await;
    let image = Image::new(1, &[1 << 20, 300_000]);
    b.push("team/app", "v1", &image).await;

    let digest = pull_image(&b.client, &b.mirror.url, "up/team/app", "v1").await;
    assert_eq!(digest, image.digest);
    let cold = b.proxy.requests();
    assert!(
        cold.iter()
            .any(|r| r.method == "GET" && r.path.contains("/blobs/")),
        "{cold:?}"
    );
    for blob in image.blobs() {
        assert_eq!(
            b.proxy.count("GET", &sha256(blob)),
            1,
            "one GET per blob: {cold:?}"
        );
    }

    b.proxy.clear();
    let digest = pull_image(&b.client, &b.mirror.url, "up/team/app", "v1").await;
    assert_eq!(digest, image.digest);
    let by_digest = pull_image(&b.client, &b.mirror.url, "up/team/app", &image.digest).await;
    assert_eq!(by_digest, image.digest);
    assert!(
        b.proxy.requests().is_empty(),
        "warm pull went upstream: {:?}",
        b.proxy.requests()
    );
    assert!(b.metric("wharf_proxy_hits_total", "kind=\"blob\"").await >= 3.0);
    assert!(b.metric("wharf_proxy_misses_total", "kind=\"blob\"").await >= 3.0);
    assert!(
        b.metric("wharf_proxy_upstream_bytes_total", "upstream=\"up\"")
            .await
            >= (1 << 20) as f64
    );

    // HEAD of a blob the cache has not fetched answers from the upstream's HEAD.
    let other = Image::new(2, &[1000]);
    b.push("team/app", "v2", &other).await;
    let r = b
        .client
        .head(format!(
            "{}/v2/up/team/app/blobs/{}",
            b.mirror.url,
            sha256(&other.layers[0])
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "1000");
    // Something the upstream does not have.
    let (status, _, body) = get_manifest(
        &b.client,
        &format!("{}/v2/up/team/app/manifests/nope", b.mirror.url),
    )
    .await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = get_blob_hashed(
        &b.client,
        &format!(
            "{}/v2/up/team/app/blobs/{}",
            b.mirror.url,
            sha256(b"absent")
        ),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_tag_moved_upstream_is_seen_after_the_ttl() {
    let b = Bench::simple("2s").await;
    let first = Image::new(10, &[5000]);
    let second = Image::new(11, &[6000]);
    b.push("team/app", "latest", &first).await;
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "up/team/app", "latest").await,
        first.digest
    );
    let fetched_at = Instant::now();
    b.push("team/app", "latest", &second).await;
    b.proxy.clear();
    // Within the ttl: the cached digest, no upstream request.
    let (_, digest, _) = get_manifest(
        &b.client,
        &format!("{}/v2/up/team/app/manifests/latest", b.mirror.url),
    )
    .await;
    if fetched_at.elapsed() < Duration::from_millis(1800) {
        assert_eq!(digest, first.digest);
        assert!(b.proxy.requests().is_empty(), "{:?}", b.proxy.requests());
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "up/team/app", "latest").await,
        second.digest
    );
    assert_eq!(
        b.proxy.count("HEAD", "/manifests/latest"),
        1,
        "{:?}",
        b.proxy.requests()
    );
    // The old one is still there by digest.
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "up/team/app", &first.digest).await,
        first.digest
    );
    // Revalidated and unchanged: one HEAD, no GET.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    b.proxy.clear();
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "up/team/app", "latest").await,
        second.digest
    );
    assert_eq!(b.proxy.count("HEAD", "/manifests/latest"), 1);
    assert_eq!(
        b.proxy.count("GET", "/manifests/"),
        0,
        "{:?}",
        b.proxy.requests()
    );
}

#[tokio::test]
async fn cached_images_pull_while_the_upstream_rate_limits_fails_or_is_gone() {
    let mut b = Bench::simple("1s").await;
    let image = Image::new(20, &[200_000, 3000]);
    let uncached = Image::new(21, &[100]);
    b.push("team/app", "v1", &image).await;
    b.push("team/other", "v1", &uncached).await;
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "up/team/app", "v1").await,
        image.digest
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // 429 upstream: the cached image still pulls; an uncached one is refused with 429.
    b.proxy.set_mode(Mode::TooMany);
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "up/team/app", "v1").await,
        image.digest
    );
    assert!(b.proxy.requests().iter().any(|r| r.status == 429));
    let r = b
        .client
        .get(format!("{}/v2/up/team/other/manifests/v1", b.mirror.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    assert!(
        b.metric("wharf_proxy_upstream_throttled_total", "upstream=\"up\"")
            .await
            >= 1.0
    );
    assert!(
        b.metric("wharf_proxy_stale_served_total", "upstream=\"up\"")
            .await
            >= 1.0
    );

    // 503 upstream.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.proxy.set_mode(Mode::Down);
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "up/team/app", "v1").await,
        image.digest
    );
    let r = b
        .client
        .get(format!("{}/v2/up/team/other/manifests/v1", b.mirror.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    // The upstream process stopped (the proxy answers 502).
    b.proxy.set_mode(Mode::Forward);
    b.upstream.kill();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "up/team/app", "v1").await,
        image.digest
    );
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "up/team/app", &image.digest).await,
        image.digest
    );
    assert!(
        b.metric("wharf_proxy_upstream_errors_total", "upstream=\"up\"")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn pushes_to_a_mirror_are_refused_beside_local_repositories() {
    let b = Bench::simple("10m").await;
    let r = b
        .client
        .post(format!("{}/v2/up/team/app/blobs/uploads/", b.mirror.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("mirror"),
        "{body}"
    );
    let image = Image::new(30, &[1000]);
    let r = b
        .client
        .put(format!("{}/v2/up/team/app/manifests/v1", b.mirror.url))
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A local repository beside the mirror: pushed and pulled, nothing upstream.
    push_image(&b.client, &b.mirror.url, "local/app", "v1", &image, None).await;
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "local/app", "v1").await,
        image.digest
    );
    assert!(b.proxy.requests().is_empty(), "{:?}", b.proxy.requests());
}

#[tokio::test]
async fn ns_selects_a_configured_upstream_and_nothing_else() {
    let b = Bench::simple("10m").await;
    let image = Image::new(40, &[4000]);
    b.push("library/tool", "v1", &image).await;
    let ns = &b.upstream.addr;
    let (status, digest, _) = get_manifest(
        &b.client,
        &format!("{}/v2/library/tool/manifests/v1?ns={ns}", b.mirror.url),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(digest, image.digest);
    let (status, got, _) = get_blob_hashed(
        &b.client,
        &format!(
            "{}/v2/library/tool/blobs/{}?ns={ns}",
            b.mirror.url,
            sha256(&image.layers[0])
        ),
        None,
    )
    .await;
    assert_eq!((status, got), (200, sha256(&image.layers[0])));
    // The same content under the upstream's prefix, from the store.
    b.proxy.clear();
    assert_eq!(
        pull_image(&b.client, &b.mirror.url, "up/library/tool", "v1").await,
        image.digest
    );
    // The layer was fetched through ?ns=; only the config is new.
    assert_eq!(
        b.proxy.count("GET", &sha256(&image.layers[0])),
        0,
        "{:?}",
        b.proxy.requests()
    );

    // An unconfigured ns: refused, and nothing is dialled.
    b.proxy.clear();
    for ns in ["ghcr.io", "evil.example:443", "127.0.0.1:1"] {
        let r = b
            .client
            .get(format!(
                "{}/v2/library/tool/manifests/v1?ns={ns}",
                b.mirror.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "ns={ns}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN");
        assert!(body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not an upstream"));
    }
    assert!(b.proxy.requests().is_empty(), "{:?}", b.proxy.requests());
}

#[tokio::test]
async fn a_cold_blob_streams_at_once_serves_ranges_during_its_fill_and_survives_its_client() {
    // 5 MB/s upstream, a 20 MB layer.
    let b = Bench::start(
        5_000_000,
        "proxy:\n  upstreams:\n    - name: up\n      prefix: up\n      remoteurl: REMOTE\n",
    )
    .await;
    let layer = pseudo_random(20_000_000, 50);
    let digest = sha256(&layer);
    push_blob(&b.client, &b.upstream.url, "team/big", &layer, None).await;
    let url = format!("{}/v2/up/team/big/blobs/{digest}", b.mirror.url);

    let started = Instant::now();
    let mut first = b.client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-length"], "20000000");
    let piece = first.chunk().await.unwrap().unwrap();
    let first_byte = started.elapsed();
    eprintln!("first byte of a cold 20 MB blob through a 5 MB/s upstream after {first_byte:?}");
    let mut hasher_input = piece.to_vec();

    // While the fill runs: a range and a whole read from other clients.
    let range = tokio::spawn({
        let (client, url) = (b.client.clone(), url.clone());
        async move { get_blob_hashed(&client, &url, Some("bytes=10000000-10999999")).await }
    });
    let whole = tokio::spawn({
        let (client, url) = (b.client.clone(), url.clone());
        async move { get_blob_hashed(&client, &url, None).await }
    });
    while let Some(p) = first.chunk().await.unwrap() {
        hasher_input.extend_from_slice(&p);
    }
    assert_eq!(sha256(&hasher_input), digest);
    let (status, got, len) = range.await.unwrap();
    assert_eq!((status, len), (206, 1_000_000));
    assert_eq!(got, sha256(&layer[10_000_000..11_000_000]));
    let (status, got, _) = whole.await.unwrap();
    assert_eq!((status, got), (200, digest.clone()));
    assert_eq!(b.proxy.count("GET", &digest), 1, "{:?}", b.proxy.requests());
    assert!(
        b.metric("wharf_proxy_coalesced_total", "upstream=\"up\"")
            .await
            >= 2.0
    );

    // A client that goes away after the first megabyte: the fill goes on.
    let other = pseudo_random(8_000_000, 51);
    let other_digest = sha256(&other);
    push_blob(&b.client, &b.upstream.url, "team/big", &other, None).await;
    let other_url = format!("{}/v2/up/team/big/blobs/{other_digest}", b.mirror.url);
    {
        let mut r = b.client.get(&other_url).send().await.unwrap();
        let mut got = 0;
        while got < 1_000_000 {
            got += r.chunk().await.unwrap().unwrap().len();
        }
    } // dropped: the connection closes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, got, _) = get_blob_hashed(&b.client, &other_url, None).await;
    assert_eq!((status, got), (200, other_digest.clone()));
    assert_eq!(
        b.proxy.count("GET", &other_digest),
        1,
        "{:?}",
        b.proxy.requests()
    );
    // Committed: from the store now, and the upstream is not asked again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        b.proxy.clear();
        let (status, got, _) = get_blob_hashed(&b.client, &other_url, None).await;
        assert_eq!((status, got), (200, other_digest.clone()));
        if b.metric("wharf_proxy_fills_in_flight", "upstream=\"up\"")
            .await
            == 0.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "the fill did not finish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(b.proxy.requests().is_empty());
    let _ = &b.dir;
}

#[tokio::test]
async fn an_upstream_body_that_breaks_is_resumed_with_a_range() {
    // 1 MB/s: the 6 MB layer takes six seconds, so several segments are stored before
    // the cut (a segment ends after a second).
    let b = Bench::start(
        1_000_000,
        "proxy:\n  upstreams:\n    - name: up\n      prefix: up\n      remoteurl: REMOTE\n",
    )
    .await;
    let layer = pseudo_random(6_000_000, 55);
    let digest = sha256(&layer);
    push_blob(&b.client, &b.upstream.url, "team/cut", &layer, None).await;
    b.proxy.cut_next_blob_after(3_500_000);
    let url = format!("{}/v2/up/team/cut/blobs/{digest}", b.mirror.url);
    // The first client and one that follows the fill both get the whole blob.
    let follower = tokio::spawn({
        let (client, url) = (b.client.clone(), url.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            get_blob_hashed(&client, &url, None).await
        }
    });
    let (status, got, len) = get_blob_hashed(&b.client, &url, None).await;
    assert_eq!((status, len), (200, 6_000_000));
    assert_eq!(got, digest);
    let (status, got, _) = follower.await.unwrap();
    assert_eq!((status, got), (200, digest.clone()));
    let gets: Vec<_> = b
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains(&digest))
        .collect();
    assert_eq!(gets.len(), 2, "the cut GET and one resumed: {gets:?}");
    assert_eq!(gets[0].range, None, "{gets:?}");
    // Resumed from what the session had stored: a whole number of segments, past the
    // first and not past the cut.
    let from: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("the resumed GET has no open Range: {gets:?}"));
    assert!(from > 0 && from <= 3_500_000, "resumed from {from}");
    // Committed: served from the store, nothing asked upstream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while b
        .metric("wharf_proxy_fills_in_flight", "upstream=\"up\"")
        .await
        != 0.0
    {
        assert!(Instant::now() < deadline, "the fill did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.proxy.clear();
    let (status, got, _) = get_blob_hashed(&b.client, &url, None).await;
    assert_eq!((status, got), (200, digest));
    assert!(b.proxy.requests().is_empty(), "{:?}", b.proxy.requests());
}

#[tokio::test]
async fn expiry_and_the_size_limit_remove_content_that_is_not_pulled() {
    let b = Bench::start(
        0,
        "proxy:\n  sweepinterval: 1s\n  maxsize: 1500000\n  upstreams:\n    - name: up\n      prefix: up\n      remoteurl: REMOTE\n      tagttl: 10m\n      ttl: 4s\n",
    )
    .await;
    let a = Image::new(60, &[1_000_000]);
    let c = Image::new(61, &[1_000_000]);
    b.push("team/a", "v1", &a).await;
    b.push("team/c", "v1", &c).await;
    pull_image(&b.client, &b.mirror.url, "up/team/a", "v1").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pull_image(&b.client, &b.mirror.url, "up/team/c", "v1").await;
    // Over 1.5 MB: the least recently pulled layer (a's) goes at the next sweep.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    b.proxy.clear();
    pull_image(&b.client, &b.mirror.url, "up/team/c", "v1").await;
    // c was pulled last: its layer is still cached, not fetched again.
    assert_eq!(
        b.proxy.count("GET", &sha256(&c.layers[0])),
        0,
        "{:?}",
        b.proxy.requests()
    );
    let (_, got, _) = get_blob_hashed(
        &b.client,
        &format!(
            "{}/v2/up/team/a/blobs/{}",
            b.mirror.url,
            sha256(&a.layers[0])
        ),
        None,
    )
    .await;
    assert_eq!(got, sha256(&a.layers[0]));
    assert_eq!(
        b.proxy.count("GET", &sha256(&a.layers[0])),
        1,
        "evicted, fetched again: {:?}",
        b.proxy.requests()
    );
    assert!(
        b.metric("wharf_proxy_evicted_total", "reason=\"size\"")
            .await
            >= 1.0
    );
    // Nothing pulled for the ttl (4s): expired, fetched again.
    tokio::time::sleep(Duration::from_secs(7)).await;
    b.proxy.clear();
    pull_image(&b.client, &b.mirror.url, "up/team/c", "v1").await;
    assert_eq!(
        b.proxy.count("GET", "/manifests/"),
        1,
        "{:?}",
        b.proxy.requests()
    );
    assert!(
        b.metric("wharf_proxy_evicted_total", "reason=\"expired\"")
            .await
            >= 1.0
    );
}

/// Rows of the mirror's SQLite database: `SELECT COUNT(*) FROM table WHERE digest = ?`.
async fn count_rows(db: &std::path::Path, table: &str, digest: &str) -> i64 {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE digest = $1"))
        .bind(digest)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    n
}

/// Waits (up to 30 s) until `table` has `want` rows of `digest`.
async fn wait_rows(db: &std::path::Path, table: &str, digest: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = count_rows(db, table, digest).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table} still has {n} rows of {digest}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn garbage_collection_keeps_what_mirrored_manifests_name_and_takes_what_the_cache_drops() {
    // Garbage collection reviewing everything at once (reviewdelay 0s), every second.
    let dir = scratch();
    let upstream = start_wharf(
        dir.path(),
        "upstream",
        &local_storage(dir.path(), "upstream"),
    )
    .await;
    let proxy = CountingProxy::start(&upstream.url, 0);
    let root = dir.path().join("mirror");
    let db = root.join("wharf.db");
    let mirror = start_wharf(
        dir.path(),
        "mirror",
        &format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n  gc:\n    reviewdelay: 0s\n    interval: 1s\ndatabase:\n  url: sqlite://{}\nproxy:\n  sweepinterval: 1s\n  maxsize: 1500000\n  upstreams:\n    - name: up\n      prefix: up\n      remoteurl: {}\n      tagttl: 2s\n",
            root.join("blobs").display(),
            db.display(),
            proxy.url
        ),
    )
    .await;
    let client = reqwest::Client::new();
    let a = Image::new(90, &[1_000_000]);
    let c = Image::new(91, &[1_000_000]);
    let c2 = Image::new(92, &[100_000]);
    push_image(&client, &upstream.url, "team/a", "v1", &a, None).await;
    push_image(&client, &upstream.url, "team/c", "v1", &c, None).await;

    // Mirrored blobs are committed (and linked) after their manifest, stored sparse:
    // the reviews their links queue find the manifest's references and keep them.
    assert_eq!(
        pull_image(&client, &mirror.url, "up/team/a", "v1").await,
        a.digest
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    for blob in a.blobs() {
        assert_eq!(count_rows(&db, "blobs", &sha256(blob)).await, 1);
    }
    proxy.clear();
    assert_eq!(
        pull_image(&client, &mirror.url, "up/team/a", "v1").await,
        a.digest
    );
    assert_eq!(
        proxy.count("GET", "/blobs/"),
        0,
        "a blob of a cached manifest was collected: {:?}",
        proxy.requests()
    );

    // Over the size limit: a's layer, pulled least recently, is evicted (unlinked),
    // and garbage collection then deletes its blob; its row in the cache goes too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pull_image(&client, &mirror.url, "up/team/c", "v1").await,
        c.digest
    );
    let a_layer = sha256(&a.layers[0]);
    wait_rows(&db, "blobs", &a_layer, 0).await;
    wait_rows(&db, "proxy_content", &a_layer, 0).await;
    let c_layer = sha256(&c.layers[0]);
    assert_eq!(count_rows(&db, "blobs", &c_layer).await, 1);

    // The tag moves upstream: after tagttl the mirror follows it, garbage collection
    // deletes the untagged manifest and the layer only it named, and the cache's rows
    // of both go with them (what the cache counts is what the store holds).
    push_image(&client, &upstream.url, "team/c", "v1", &c2, None).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        pull_image(&client, &mirror.url, "up/team/c", "v1").await,
        c2.digest
    );
    wait_rows(&db, "blobs", &c_layer, 0).await;
    wait_rows(&db, "proxy_content", &c_layer, 0).await;
    wait_rows(&db, "proxy_content", &c.digest, 0).await;
    // c2 is still whole in the cache: a warm pull sends no GET upstream.
    proxy.clear();
    assert_eq!(
        pull_image(&client, &mirror.url, "up/team/c", "v1").await,
        c2.digest
    );
    assert_eq!(proxy.count("GET", "/blobs/"), 0, "{:?}", proxy.requests());
    // And the old image still pulls by digest, fetched again.
    assert_eq!(
        pull_image(&client, &mirror.url, "up/team/c", &c.digest).await,
        c.digest
    );
}

#[tokio::test]
async fn the_cache_writes_no_push_events_and_its_clients_pulls_are_announced() {
    // An endpoint that never answers: events stay in the outbox, where they are counted.
    let b = Bench::start(
        0,
        "notifications:\n  endpoints:\n    - name: never\n      url: http://127.0.0.1:1/events\nproxy:\n  upstreams:\n    - name: up\n      prefix: up\n      remoteurl: REMOTE\n",
    )
    .await;
    let image = Image::new(95, &[300_000, 2000]);
    b.push("team/app", "v1", &image).await;
    // Cold (a fill per blob, the manifest fetched), then warm.
    pull_image(&b.client, &b.mirror.url, "up/team/app", "v1").await;
    pull_image(&b.client, &b.mirror.url, "up/team/app", "v1").await;
    // A push to a local repository beside the mirror does write its events.
    push_image(&b.client, &b.mirror.url, "local/app", "v1", &image, None).await;
    // Pull events are written in batches, within a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let db = b.dir.path().join("mirror").join("wharf.db");
    let counts = |repo: &'static str, action: &'static str| {
        let db = db.clone();
        async move {
            use sqlx::Connection as _;
            let mut conn =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display()))
                    .await
                    .unwrap();
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM events WHERE repository = $1 AND action = $2",
            )
            .bind(repo)
            .bind(action)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            n
        }
    };
    assert_eq!(
        counts("up/team/app", "push").await,
        0,
        "the cache's fills announced as pushes"
    );
    assert_eq!(counts("up/team/app", "mount").await, 0);
    // Two pulls of a manifest and its three blobs (the cold ones streamed during fills).
    assert_eq!(counts("up/team/app", "pull").await, 8);
    // The local push: three blobs and a manifest.
    assert_eq!(counts("local/app", "push").await, 4);
}

// ---- docker-registry 2.8.2 with token auth --------------------------------------

/// A Wharf token server (tokens for `service`, signed with an ES256 key whose
/// self-signed certificate is written to `cert`) with users admin and mirror.
async fn token_server(dir: &std::path::Path, service: &str) -> (Proc, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let kid =
        wharf::auth::token::libtrust_key_id(&rcgen::PublicKeyData::subject_public_key_info(&key));
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wharf-test-issuer");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let key_file = dir.join("token-key.pem");
    let cert_file = dir.join("token-cert.pem");
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    let users = dir.join("users.htpasswd");
    std::fs::write(
        &users,
        format!(
            "admin:{}\nmirror:{}\n",
            bcrypt::hash("admin-pass", 4).unwrap(),
            bcrypt::hash("mirror-pass", 4).unwrap()
        ),
    )
    .unwrap();
    let port = free_port();
    // The realm must name the port before the server starts: start_wharf picks its
    // own, so the token server's config names a realm it does not use itself.
    let _ = port;
    let config = format!(
        "{}auth:\n  htpasswd:\n    path: {}\n  token:\n    realm: http://127.0.0.1/unused\n    service: {service}\n    issuer: wharf-test-issuer\n  tokenserver:\n    key: {}\n    kid: \"{kid}\"\n    access:\n      - users: [admin]\n        repositories: [\"*\"]\n        actions: [\"*\"]\n      - users: [mirror]\n        repositories: [\"*\"]\n        actions: [pull]\n",
        local_storage(dir, "tokens"),
        users.display(),
        key_file.display()
    );
    (start_wharf(dir, "tokens", &config).await, cert_file)
}

async fn token(client: &reqwest::Client, realm: &str, service: &str, scope: &str) -> String {
    let r = client
        .get(realm)
        .basic_auth("admin", Some("admin-pass"))
        .query(&[("service", service), ("scope", scope)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn docker_registry_with_token_auth_as_the_upstream() {
    let dir = scratch();
    let service = "upstream-registry";
    let (tokens, cert) = token_server(dir.path(), service).await;
    let realm = format!("{}/auth/token", tokens.url);
    let registry = start_docker_registry(
        dir.path(),
        "distribution",
        &format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: wharf-test-issuer\n    rootcertbundle: {}\n",
            cert.display()
        ),
    )
    .await;
    let client = reqwest::Client::new();
    // The upstream refuses anonymous pulls.
    let r = client
        .get(format!("{}/v2/team/app/manifests/v1", registry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer realm="));
    let push_token = token(&client, &realm, service, "repository:team/app:pull,push").await;
    let image = Image::new(70, &[700_000, 5000]);
    push_image(
        &client,
        &registry.url,
        "team/app",
        "v1",
        &image,
        Some(&push_token),
    )
    .await;

    let proxy = CountingProxy::start(&registry.url, 0);
    let pwfile = dir.path().join("mirror-password");
    std::fs::write(&pwfile, "wrong\n").unwrap();
    let mirror = start_wharf(
        dir.path(),
        "mirror",
        &format!(
            "{}proxy:\n  upstreams:\n    - name: dist\n      prefix: dist\n      remoteurl: {}\n      username: mirror\n      passwordfile: {}\n",
            local_storage(dir.path(), "mirror"),
            proxy.url,
            pwfile.display()
        ),
    )
    .await;
    // A wrong password: the upstream's refusal is a 502 that names it.
    let (status, _, body) = get_manifest(
        &client,
        &format!("{}/v2/dist/team/app/manifests/v1", mirror.url),
    )
    .await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("dist"));
    // The file is re-read when it changes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&pwfile, "mirror-pass\n").unwrap();
    proxy.clear();
    assert_eq!(
        pull_image(&client, &mirror.url, "dist/team/app", "v1").await,
        image.digest
    );
    let log = proxy.requests();
    assert_eq!(
        log.iter().filter(|r| r.status == 401).count(),
        1,
        "one challenge, then the cached token: {log:?}"
    );
    assert!(
        log.iter()
            .any(|r| r.method == "HEAD" && r.path.contains("/manifests/v1") && r.status == 200),
        "{log:?}"
    );
    for blob in image.blobs() {
        assert_eq!(proxy.count("GET", &sha256(blob)), 1);
    }
    // Warm: nothing upstream.
    proxy.clear();
    assert_eq!(
        pull_image(&client, &mirror.url, "dist/team/app", "v1").await,
        image.digest
    );
    assert!(proxy.requests().is_empty());
    drop(tokens);
}

#[tokio::test]
async fn an_upstream_with_basic_auth() {
    use base64::Engine as _;
    let dir = scratch();
    let users = dir.path().join("users.htpasswd");
    std::fs::write(
        &users,
        format!("mirror:{}\n", bcrypt::hash("mirror-pass", 4).unwrap()),
    )
    .unwrap();
    let upstream = start_wharf(
        dir.path(),
        "upstream",
        &format!(
            "{}auth:\n  htpasswd:\n    realm: basic-upstream\n    path: {}\n",
            local_storage(dir.path(), "upstream"),
            users.display()
        ),
    )
    .await;
    let client = reqwest::Client::new();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("mirror:mirror-pass")
    );
    let image = Image::new(80, &[50_000]);
    push_image(
        &client,
        &upstream.url,
        "team/app",
        "v1",
        &image,
        Some(&basic),
    )
    .await;
    let proxy = CountingProxy::start(&upstream.url, 0);
    let mirror = start_wharf(
        dir.path(),
        "mirror",
        &format!(
            "{}proxy:\n  remoteurl: {}\n  username: mirror\n  password: mirror-pass\n",
            local_storage(dir.path(), "mirror"),
            proxy.url
        ),
    )
    .await;
    // distribution's proxy.remoteurl: every repository mirrors it, under its own name.
    assert_eq!(
        pull_image(&client, &mirror.url, "team/app", "v1").await,
        image.digest
    );
    let log = proxy.requests();
    assert_eq!(
        log.iter().filter(|r| r.status == 401).count(),
        1,
        "one challenge: {log:?}"
    );
    assert!(
        log.iter().filter(|r| r.status == 200).count() >= 3,
        "{log:?}"
    );
}
