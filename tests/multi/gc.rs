//! Online garbage collection under load: two instances on the shared PostgreSQL and
//! blob store (S3 on moto in `scripts/test`'s multi step), review delay 0, collecting
//! in the background every 100 ms with random delays injected at every race point
//! (`WHARF_TEST_RACE_DELAYS`; the test binaries' `wharf` is built with `test-hooks`),
//! while clients push images that share layers, move and delete tags and push the same
//! layers again, through both instances. Every pull of a live tag must return the
//! right bytes; afterwards the store must hold exactly the objects the database names.
//!
//! Notifications are on too (one endpoint, a receiver answering 200), so every write
//! transaction both touches GC review rows and appends to the outbox while the reviews
//! run: the test counts PostgreSQL's detected deadlocks in its database (at most two:
//! see the end of the test) and checks that the collector's deletions sent no events — the receiver gets
//! exactly one `delete` event per tag the clients deleted.
//!
//! `WHARF_GC_LOAD_ROUNDS` sets the rounds per client (default 700; three clients).
//! Needs `WHARF_TEST_POSTGRES_URL`: without it this test fails (never skipped).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::receiver::{Mode, Receiver};
use super::{data, digest, Cluster};

const CLIENTS: usize = 3;
const LAYERS: usize = 8;
const RACE_DELAYS: &str = "manifest.before_put=20,upload.before_commit=20,gc.blob.decided=20,\
gc.manifest.decided=10,gc.object_delete=30,put_manifest.children_locked=10,\
commit_blob.existing_read=10";
const GC_CONFIG: &str = "  gc:\n    reviewdelay: 0s\n    interval: 100ms\n    batchsize: 20\n    orphansweep:\n      enabled: true\n      interval: 15s\n      safetyage: 1m\n";
const REPO: &str = "load/app";

#[derive(Default)]
struct Counters {
    rounds: AtomicU64,
    uploads: AtomicU64,
    head_hits: AtomicU64,
    refused_puts: AtomicU64,
    pulls: AtomicU64,
    tag_deletes: AtomicU64,
}

fn manifest_json(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let desc = |media: &str, b: &[u8]| serde_json::json!({"mediaType": media, "digest": digest(b), "size": b.len()});
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    }))
    .expect("json")
}

/// Uploads `blob` through `base` with one POST.
async fn upload(client: &reqwest::Client, base: &str, blob: &[u8]) {
    let r = client
        .post(format!(
            "{base}/v2/{REPO}/blobs/uploads/?digest={}",
            digest(blob)
        ))
        .body(blob.to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(
        r.status(),
        201,
        "upload: {}",
        r.text().await.unwrap_or_default()
    );
}

/// Pulls `tag` through `base`: the manifest must be `manifest`, every blob its bytes.
async fn pull(
    client: &reqwest::Client,
    base: &str,
    tag: &str,
    manifest: &[u8],
    blobs: &[Vec<u8>],
) -> Result<(), String> {
    let r = client
        .get(format!("{base}/v2/{REPO}/manifests/{tag}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .map_err(|e| format!("manifest {tag}: {e}"))?;
    if r.status() != 200 {
        return Err(format!("manifest {tag}: {}", r.status()));
    }
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if body.as_ref() != manifest {
        return Err(format!("manifest {tag}: other bytes"));
    }
    for b in blobs {
        let d = digest(b);
        // Redirected to the store (followed) on S3, streamed on a filesystem.
        let r = client
            .get(format!("{base}/v2/{REPO}/blobs/{d}"))
            .send()
            .await
            .map_err(|e| format!("blob {d}: {e}"))?;
        if r.status() != 200 {
            return Err(format!("blob {d} of {tag}: {}", r.status()));
        }
        let got = r.bytes().await.map_err(|e| e.to_string())?;
        if digest(&got) != d {
            return Err(format!(
                "blob {d} of {tag}: wrong bytes ({} bytes)",
                got.len()
            ));
        }
    }
    Ok(())
}

async fn client_loop(
    c: usize,
    rounds: usize,
    urls: Vec<String>,
    layers: Arc<Vec<Vec<u8>>>,
    counters: Arc<Counters>,
) -> HashMap<String, (Vec<u8>, Vec<Vec<u8>>)> {
    let client = reqwest::Client::new();
    let mut live: HashMap<String, (Vec<u8>, Vec<Vec<u8>>)> = HashMap::new();
    for i in 0..rounds {
        let base = &urls[(i + c) % urls.len()];
        let other = &urls[(i + c + 1) % urls.len()];
        let config = format!("{{\"client\":{c},\"round\":{i}}}").into_bytes();
        let (a, b) = ((i * 3 + c) % LAYERS, (i * 5 + c + 1) % LAYERS);
        let b = if a == b { (b + 1) % LAYERS } else { b };
        let blobs = vec![config.clone(), layers[a].clone(), layers[b].clone()];
        // As docker does: HEAD each blob, upload what is missing.
        for blob in &blobs {
            let r = client
                .head(format!("{base}/v2/{REPO}/blobs/{}", digest(blob)))
                .send()
                .await
                .expect("head");
            if r.status() == 200 {
                counters.head_hits.fetch_add(1, Ordering::Relaxed);
            } else {
                upload(&client, base, blob).await;
                counters.uploads.fetch_add(1, Ordering::Relaxed);
            }
        }
        let refs: Vec<&[u8]> = blobs[1..].iter().map(Vec::as_slice).collect();
        let manifest = manifest_json(&config, &refs);
        let tag = format!("c{c}-t{}", i % 4);
        let mut attempt = 0;
        loop {
            let r = client
                .put(format!("{other}/v2/{REPO}/manifests/{tag}"))
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(manifest.clone())
                .send()
                .await
                .expect("put manifest");
            let status = r.status().as_u16();
            if status == 201 {
                break;
            }
            let text = r.text().await.unwrap_or_default();
            assert!(
                status == 400 && text.contains("MANIFEST_BLOB_UNKNOWN") && attempt < 20,
                "client {c} round {i}: manifest PUT answered {status}: {text}"
            );
            // A blob was collected between our HEAD (or upload) and our PUT: as docker
            // does on a new attempt, HEAD each blob and upload what is missing. (Uploading
            // all three again, one after the other, left the first exposed to the
            // collector for three requests, and with review delay 0 a client could lose
            // that race 20 times in a row on a loaded machine.)
            counters.refused_puts.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            for blob in &blobs {
                let r = client
                    .head(format!("{base}/v2/{REPO}/blobs/{}", digest(blob)))
                    .send()
                    .await
                    .expect("head");
                if r.status() != 200 {
                    upload(&client, base, blob).await;
                }
            }
        }
        live.insert(tag, (manifest, blobs));
        if i % 7 == 6 {
            let doomed = format!("c{c}-t{}", (i + 2) % 4);
            if live.remove(&doomed).is_some() {
                let r = client
                    .delete(format!("{base}/v2/{REPO}/manifests/{doomed}"))
                    .send()
                    .await
                    .expect("delete tag");
                assert_eq!(r.status(), 202, "delete {doomed}");
                counters.tag_deletes.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Pull a live tag (the one just pushed, and another) through the other instance.
        let mut tags: Vec<&String> = live.keys().collect();
        tags.sort();
        for t in [&format!("c{c}-t{}", i % 4), tags[i % tags.len()]] {
            if let Some((m, blobs)) = live.get(t.as_str()) {
                if let Err(e) = pull(&client, other, t, m, blobs).await {
                    panic!("client {c} round {i}: a live tag failed to pull: {e}");
                }
                counters.pulls.fetch_add(1, Ordering::Relaxed);
            }
        }
        counters.rounds.fetch_add(1, Ordering::Relaxed);
    }
    live
}

async fn metric_sum(client: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_live_blob_lost_under_load() {
    assert!(
        std::env::var("WHARF_TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty()),
        "WHARF_TEST_POSTGRES_URL is not set: this test needs PostgreSQL (never skipped)"
    );
    // The instances inherit it (this test has its process to itself under nextest).
    std::env::set_var("WHARF_TEST_RACE_DELAYS", RACE_DELAYS);
    let receiver = Receiver::start(Mode::Ok);
    let notify = format!(
        "notifications:\n  endpoints:\n    - name: hook\n      url: {}\n      timeout: 2s\n      backoff: 100ms\n      maxbackoff: 500ms\n      ignore:\n        actions: [pull]\n",
        receiver.url
    );
    let mut c = Cluster::start_with(2, GC_CONFIG, &notify).await;
    let rounds: usize = std::env::var("WHARF_GC_LOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(700);
    let layers: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..LAYERS)
            .map(|i| data(2048 + 512 * i, 100 + i as u8))
            .collect(),
    );
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(client_loop(
                i,
                rounds,
                c.urls.clone(),
                layers.clone(),
                counters.clone(),
            ))
        })
        .collect();
    let mut live = HashMap::new();
    for t in futures_util::future::join_all(tasks).await {
        live.extend(t.expect("a client panicked"));
    }
    let elapsed = started.elapsed();
    let client = reqwest::Client::new();
    let mut reviews = 0.0;
    for url in &c.urls {
        reviews += metric_sum(&client, url, "wharf_gc_reviews_done_total").await;
    }
    eprintln!(
        "gc load: {} rounds in {:.1}s: {} uploads, {} HEAD hits, {} manifest PUTs refused \
         (blob collected after HEAD) and redone, {} tag deletes, {} pulls of live tags; \
         {reviews} reviews settled by the instances meanwhile",
        counters.rounds.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        counters.uploads.load(Ordering::Relaxed),
        counters.head_hits.load(Ordering::Relaxed),
        counters.refused_puts.load(Ordering::Relaxed),
        counters.tag_deletes.load(Ordering::Relaxed),
        counters.pulls.load(Ordering::Relaxed),
    );
    assert!(reviews > 0.0, "the instances collected nothing");

    // Let the instances settle every review (delay 0: everything is due).
    let db_url = super::postgres_url::with_database(&c.server_url, &c.database);
    let meta = wharf::metadata::open(&db_url, 2).await.expect("metadata");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = meta.gc.queue_depth(0).await.expect("queue depth");
        if d.blob_reviews + d.manifest_reviews + d.tombstones == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "reviews never settled: {d:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The collector's deletions write no events: the only deletes the receiver gets are
    // the clients' tag deletes, one each.
    let tag_deletes = counters.tag_deletes.load(Ordering::Relaxed) as usize;
    let events = receiver
        .wait_for(Duration::from_secs(60), |e| {
            e.iter().filter(|e| e["action"] == "delete").count() >= tag_deletes
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deletes: Vec<_> = receiver
        .delivered()
        .into_iter()
        .filter(|e| e["action"] == "delete")
        .collect();
    assert!(
        deletes.len() == tag_deletes && deletes.iter().all(|e| e["target"]["tag"].is_string()),
        "{} delete events for {tag_deletes} tag deletes: {:?}",
        deletes.len(),
        &deletes[..deletes.len().min(5)]
    );
    eprintln!(
        "gc load: {} events delivered, {} of them deletes (all the clients' tag deletes)",
        events.len(),
        deletes.len()
    );

    // Every live tag still pulls, through both instances.
    for (tag, (m, blobs)) in &live {
        for url in &c.urls {
            pull(&client, url, tag, m, blobs)
                .await
                .unwrap_or_else(|e| panic!("after the load: {e}"));
        }
    }

    // `wharf gc --dry-run` and `wharf gc` against the same configuration: nothing left.
    let config_path = c._dir.path().join("config.yml");
    for args in [&["gc", "--dry-run"][..], &["gc"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("WHARF_TEST_RACE_DELAYS")
            .output()
            .expect("wharf gc");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "wharf {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().last().unwrap_or_default();
        assert!(
            last.contains("0 manifests, 0 links, 0 blobs"),
            "wharf {args:?}: {stdout}"
        );
    }

    // The store holds exactly the objects the database names.
    let config = wharf::config::Config::load(Some(&config_path), Vec::new()).expect("config");
    let store = wharf::server::blob_backend(&config).expect("blob store");
    let listed: BTreeSet<String> = store
        .list("blobs/")
        .await
        .expect("list")
        .map(|o| o.expect("listed object").key)
        .collect()
        .await;
    let named: BTreeSet<String> = meta
        .gc
        .referenced_keys()
        .await
        .expect("keys")
        .into_iter()
        .collect();
    let extra: Vec<_> = listed.difference(&named).collect();
    let missing: Vec<_> = named.difference(&listed).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "store and database differ: {} objects no row names {extra:?}, {} keys with no object {missing:?}",
        extra.len(),
        missing.len()
    );
    // Live tags' blobs (configs and shared layers) are all there.
    assert!(listed.len() >= live.len());
    eprintln!(
        "gc load: store and database agree on {} objects; {} live tags pulled",
        listed.len(),
        live.len()
    );
    // No write transaction deadlocked with a review (PostgreSQL detects a cycle, aborts
    // one side and the store retries it: correct, but a second of stalled writes each).
    // Backends flush their statistics when they exit: stop the instances first.
    for i in 0..c.urls.len() {
        c.kill(i);
    }
    drop(meta);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut admin = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&db_url)
            .await
            .expect("postgres")
    };
    let deadlocks: i64 =
        sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = $1")
            .bind(&c.database)
            .fetch_one(&mut admin)
            .await
            .expect("pg_stat_database");
    eprintln!("gc load: {deadlocks} deadlocks detected by PostgreSQL");
    // Before one lock order was given to every transaction that deletes manifests, this
    // load saw 26 in 100 s. One cycle is still possible (a manifest review, a blob review
    // and a manifest put, three ways) and showed up once in the last three runs of this test:
    // PostgreSQL aborts one side after `deadlock_timeout` and the store retries it, so no
    // request fails, but it stalls. Allowed here at that rate, not more.
    assert!(
        deadlocks <= 2,
        "write transactions deadlocked with GC reviews {deadlocks} times"
    );
}
