//! Storage quotas on two instances sharing PostgreSQL and the blob store, one of them
//! killed (SIGKILL) at random and restarted while 50 clients push images near a
//! namespace's quota through both: the images share a base layer and each has a layer
//! of its own, sent as a session (`POST`, `PATCH`, `PUT`) whose requests go to either
//! instance. A sampler reads the namespace's usage all along.
//!
//! Afterwards: `wharf quota recompute --check` finds every counter right; stored bytes,
//! live reservations and unused quota slices are within the quota; the stored
//! bytes never exceeded the quota (the bound `registry::quota` argues: none — a push
//! gets in only if it fits with every live reservation); pushes beyond it were refused
//! with `403 DENIED`; every image whose manifest was accepted pulls, byte for byte.
//! Notifications are on (a receiver that answers 200), so every charged commit also
//! writes its event after the quota's link, its charge taken from the connection's
//! slice in the link's statement (not deferred to the COMMIT: since migration 0016 the
//! event's insert waits for nothing): every accepted manifest's push event arrives.
//! Needs `WHARF_TEST_POSTGRES_URL` (never skipped).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::receiver::{Mode, Receiver};
use super::{data, digest, Cluster};

const CLIENTS: usize = 50;
const LAYER: usize = 256 * 1024;
/// Room for fewer than a third of the pushes.
const QUOTA: u64 = 15 * LAYER as u64;

/// A small deterministic generator (no `rand` among the dependencies).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let desc = |media: &str, b: &[u8]| serde_json::json!({"mediaType": media, "digest": digest(b), "size": b.len()});
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// How a push ended.
#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    Accepted,
    /// `403 DENIED` naming the namespace's quota.
    Refused,
    /// An instance died under one of its requests (or answered 503 meanwhile).
    Lost,
}

/// Sends the request `build` makes to a random instance; when the connection fails (the
/// instance is dead), to another — as a load balancer would — up to eight times.
async fn send(
    rng: &mut Lcg,
    urls: &[String],
    build: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Option<reqwest::Response> {
    for _ in 0..8 {
        let url = &urls[rng.next(urls.len() as u64) as usize];
        match build(url).send().await {
            Ok(r) if r.status() != 503 => return Some(r),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

fn lost(what: &str, r: Option<reqwest::Response>) -> Pushed {
    eprintln!("push lost at {what}: {:?}", r.map(|r| r.status()));
    Pushed::Lost
}

/// One push: each request to a random instance of `urls`.
async fn push(
    client: &reqwest::Client,
    urls: &[String],
    seed: u64,
    repo: &str,
    tag: &str,
    blobs: &[&[u8]],
    manifest_body: &[u8],
) -> Pushed {
    let mut rng = Lcg(seed);
    for blob in blobs {
        let r = send(&mut rng, urls, |u| {
            client.post(format!("{u}/v2/{repo}/blobs/uploads/"))
        })
        .await;
        let Some(r) = r.filter(|r| r.status() == 202) else {
            return lost("POST", None);
        };
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let half = blob.len() / 2;
        let r = send(&mut rng, urls, |u| {
            client
                .patch(format!("{u}{location}"))
                .header("Content-Range", format!("0-{}", half - 1))
                .header("Content-Type", "application/octet-stream")
                .body(blob[..half].to_vec())
        })
        .await;
        let r = match r.as_ref().map(|r| r.status().as_u16()) {
            Some(202) => r.unwrap(),
            Some(403) => return refused(r.unwrap()).await,
            _ => return lost("PATCH", r),
        };
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = send(&mut rng, urls, |u| {
            client
                .put(format!("{u}{location}{sep}digest={}", digest(blob)))
                .header("Content-Range", format!("{half}-{}", blob.len() - 1))
                .header("Content-Type", "application/octet-stream")
                .body(blob[half..].to_vec())
        })
        .await;
        match r.as_ref().map(|r| r.status().as_u16()) {
            Some(201) => {}
            Some(403) => return refused(r.unwrap()).await,
            // A PUT the dead instance committed before it could answer: the retry
            // finds the session gone. As a client would, look for the blob.
            Some(404) => {
                let head = send(&mut rng, urls, |u| {
                    client.head(format!("{u}/v2/{repo}/blobs/{}", digest(blob)))
                })
                .await;
                if head.as_ref().map(|r| r.status().as_u16()) != Some(200) {
                    return lost("PUT", r);
                }
            }
            _ => return lost("PUT", r),
        }
    }
    let r = send(&mut rng, urls, |u| {
        client
            .put(format!("{u}/v2/{repo}/manifests/{tag}"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest_body.to_vec())
    })
    .await;
    match r.as_ref().map(|r| r.status().as_u16()) {
        Some(201) => Pushed::Accepted,
        Some(403) => refused(r.unwrap()).await,
        _ => lost("manifest PUT", r),
    }
}

async fn refused(r: reqwest::Response) -> Pushed {
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("quota exceeded: q/ has a quota of {QUOTA} bytes")),
        "{message}"
    );
    Pushed::Refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quota_holds_under_overlapping_pushes_with_instances_killed() {
    let receiver = Receiver::start(Mode::Ok);
    let mut c = Cluster::start_with(
        2,
        "",
        &format!(
            "quotas:\n  namespaces:\n    q/: {QUOTA}\nnotifications:\n  endpoints:\n    \
             - name: hook\n      url: {}\n      ignore:\n        actions: [pull]\n",
            receiver.url
        ),
    )
    .await;
    let urls = c.urls.clone();
    let client = c.client.clone();
    let base = Arc::new(data(LAYER, 200));

    // The sampler: the namespace's stored bytes, as often as an instance answers.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, most, samples, urls, client) = (
            done.clone(),
            most.clone(),
            samples.clone(),
            urls.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::SeqCst) {
                i += 1;
                let url = format!("{}/v2/_wharf/usage/q/", urls[i % urls.len()]);
                if let Ok(r) = client.get(url).send().await {
                    if r.status() == 200 {
                        let u: serde_json::Value = r.json().await.unwrap();
                        most.fetch_max(u["storedBytes"].as_u64().unwrap(), Ordering::SeqCst);
                        samples.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let pushes: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (urls, client, base) = (urls.clone(), client.clone(), base.clone());
            tokio::spawn(async move {
                let repo = format!("q/app{}", i % 5);
                let tag = format!("v{i}");
                let config = format!("{{\"client\":{i}}}").into_bytes();
                let own = data(LAYER, i as u8);
                let body = manifest(&config, &[&base, &own]);
                // A little spread, so pushes overlap rather than start as one.
                tokio::time::sleep(Duration::from_millis(20 * (i as u64 % 10))).await;
                let outcome = push(
                    &client,
                    &urls,
                    i as u64 + 1,
                    &repo,
                    &tag,
                    &[&config, &base, &own],
                    &body,
                )
                .await;
                (repo, tag, body, config, own, outcome)
            })
        })
        .collect();

    // Kill one instance or the other at random, and bring it back, until the pushes end.
    let mut rng = Lcg(7);
    let mut kills = 0;
    while !pushes.iter().all(|p| p.is_finished()) {
        tokio::time::sleep(Duration::from_millis(300 + rng.next(700))).await;
        let victim = rng.next(2) as usize;
        c.kill(victim);
        kills += 1;
        tokio::time::sleep(Duration::from_millis(100 + rng.next(300))).await;
        c.restart(victim).await;
    }
    let mut results = Vec::new();
    for p in pushes {
        results.push(p.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();

    let count = |o: Pushed| results.iter().filter(|r| r.5 == o).count();
    let (accepted, refused, lost) = (
        count(Pushed::Accepted),
        count(Pushed::Refused),
        count(Pushed::Lost),
    );
    eprintln!(
        "{CLIENTS} pushes: {accepted} accepted, {refused} refused over quota, {lost} lost \
         to {kills} kills; {} usage samples, most stored {} of {QUOTA}",
        samples.load(Ordering::SeqCst),
        most.load(Ordering::SeqCst)
    );
    assert!(accepted > 0, "some pushes fit");
    assert!(refused > 0, "the quota was reached");

    // The counters are right, and were never over the quota.
    c.cli(&["quota", "recompute", "--check"]);
    let u: serde_json::Value = client
        .get(format!("{}/v2/_wharf/usage/q/", c.url(0)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = u["storedBytes"].as_u64().unwrap();
    assert!(stored <= QUOTA, "{u}");
    assert!(
        most.load(Ordering::SeqCst) <= QUOTA,
        "usage went over the quota"
    );
    // And the invariant the bound rests on, read from the database: stored bytes, live
    // reservations and the connections' unused quota slices (`0011_quota_slices`:
    // those of the killed instance's connections included) together within the quota.
    let db_url = super::postgres_url::with_database(&c.server_url, &c.database);
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    let (held, reserved, sliced): (i64, i64, i64) = sqlx::query_as(
        "SELECT coalesce((SELECT stored_bytes FROM quota_usage_totals WHERE scope = 'q/'), 0),
                coalesce((SELECT CAST(sum(bytes) AS BIGINT) FROM quota_reservations
                          WHERE expires_at > gc_now() AND repository LIKE 'q/%'), 0),
                coalesce((SELECT CAST(sum(room) AS BIGINT) FROM quota_slices
                          WHERE scope = 'q/' AND expires_at > gc_now()), 0)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(held as u64, stored, "usage API and database disagree");
    assert!(
        held + reserved + sliced <= QUOTA as i64,
        "stored {held} + reserved {reserved} + unused slices {sliced} over {QUOTA}"
    );

    // Every accepted manifest's push event arrives (at least once: a killed instance's
    // batch is sent again).
    let accepted_tags: std::collections::HashSet<(String, String)> = results
        .iter()
        .filter(|r| r.5 == Pushed::Accepted)
        .map(|r| (r.0.clone(), r.1.clone()))
        .collect();
    let tag_events = |events: &[serde_json::Value]| -> std::collections::HashSet<(String, String)> {
        events
            .iter()
            .filter(|e| e["action"] == "push" && e["target"]["tag"].is_string())
            .map(|e| {
                (
                    e["target"]["repository"].as_str().unwrap_or("").to_string(),
                    e["target"]["tag"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    receiver
        .wait_for(Duration::from_secs(60), |events| {
            accepted_tags.is_subset(&tag_events(events))
        })
        .await;

    // Every accepted image pulls, through either instance.
    for (i, (repo, tag, body, config, own, outcome)) in results.iter().enumerate() {
        if *outcome != Pushed::Accepted {
            continue;
        }
        let url = c.url(i);
        let r = client
            .get(format!("{url}/v2/{repo}/manifests/{tag}"))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo}:{tag}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice());
        for blob in [config.as_slice(), base.as_slice(), own.as_slice()] {
            let r = client
                .get(format!("{url}/v2/{repo}/blobs/{}", digest(blob)))
                .send()
                .await
                .unwrap();
            let r = if r.status() == 307 {
                let to = r.headers()["location"].to_str().unwrap().to_string();
                client.get(to).send().await.unwrap()
            } else {
                r
            };
            assert_eq!(r.status(), 200, "{repo} {}", digest(blob));
            assert_eq!(r.bytes().await.unwrap().as_ref(), blob);
        }
    }
}
