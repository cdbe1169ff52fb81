//! Notifications from several `wharf serve` processes on one PostgreSQL (and the blob
//! store the suite runs on: S3 on moto in `scripts/test`): nothing lost while
//! instances are SIGKILLed and restarted and the receiver fails or is down, order per
//! repository, stable ids, signatures; dead letters and their replay through the CLI.
//! These tests fail (never skip) without PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::receiver::{Mode, Receiver};
use crate::{digest, Cluster};

const SECRET: &str = "chaos-secret";

fn notifications(receiver: &Receiver, more: &str) -> String {
    format!(
        "notifications:\n  endpoints:\n    - name: hook\n      url: {}\n      secret: {SECRET}\n      timeout: 1s\n      threshold: 2\n      backoff: 100ms\n      maxbackoff: 1s\n      ignore:\n        actions: [pull]\n{more}",
        receiver.url
    )
}

/// `n` instances with the notification YAML `top`; fails without PostgreSQL.
async fn cluster(n: usize, top: &str) -> Cluster {
    Cluster::start_with(n, "", top).await
}

fn manifest(config: &[u8], n: usize) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[],"annotations":{{"n":"{n}"}}}}"#,
        digest(config),
        config.len()
    )
}

/// Sends one request through the instances, from `first` on, until one answers
/// something other than a connection error or a 5xx; returns its status.
async fn send(
    c: &Cluster,
    alive: &[Arc<std::sync::atomic::AtomicBool>],
    first: usize,
    method: reqwest::Method,
    path: &str,
    body: Option<String>,
) -> u16 {
    let start = Instant::now();
    for attempt in 0.. {
        let i = (first + attempt) % c.urls.len();
        if !alive[i].load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let mut rb = c
            .client
            .request(method.clone(), format!("{}{path}", c.urls[i]))
            .timeout(Duration::from_secs(10));
        if let Some(b) = &body {
            rb = rb
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(b.clone());
        }
        if let Ok(r) = rb.send().await {
            if r.status().as_u16() < 500 {
                return r.status().as_u16();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{method} {path}: no instance answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!()
}

/// `(repository, "push <tag>" | "delete <tag>")` of a delivered event.
fn label(e: &Value) -> (String, String) {
    (
        e["target"]["repository"].as_str().unwrap().to_string(),
        format!(
            "{} {}",
            e["action"].as_str().unwrap(),
            e["target"]["tag"].as_str().unwrap_or("")
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_chaos_nothing_lost_in_order_signed() {
    const REPOS: usize = 50;
    const OPS: usize = 1000;
    let receiver = Arc::new(Receiver::start(Mode::Flaky(0.3)));
    let c = cluster(
        3,
        &notifications(&receiver, "      maxattempts: 100000\n      maxbatch: 20\n"),
    )
    .await;
    let alive: Vec<Arc<std::sync::atomic::AtomicBool>> = (0..3)
        .map(|_| Arc::new(std::sync::atomic::AtomicBool::new(true)))
        .collect();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    for r in 0..REPOS {
        let path = format!("/v2/chaos/r{r}/blobs/uploads/?digest={}", digest(&config));
        let status = {
            let mut rb = c
                .client
                .post(format!("{}{path}", c.url(r)))
                .body(config.clone());
            rb = rb.header("Content-Type", "application/octet-stream");
            rb.send().await.unwrap().status().as_u16()
        };
        assert_eq!(status, 201);
    }
    let c = Arc::new(tokio::sync::RwLock::new(c));

    // Each repository's operations run in order (so its commit order is known); the
    // repositories run concurrently, each request through the next live instance.
    let acknowledged: Arc<std::sync::Mutex<HashMap<String, Vec<String>>>> = Default::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..REPOS)
        .map(|r| {
            let (c, alive, acked, config) = (
                c.clone(),
                alive.clone(),
                acknowledged.clone(),
                config.clone(),
            );
            tokio::spawn(async move {
                let repo = format!("chaos/r{r}");
                let mut tags: Vec<String> = Vec::new();
                for k in 0..OPS / REPOS {
                    let guard = c.read().await;
                    let n = r * 1000 + k;
                    let (label, ok) = if k % 3 == 2 && !tags.is_empty() {
                        let tag = tags.remove(0);
                        let s = send(
                            &guard,
                            &alive,
                            n,
                            reqwest::Method::DELETE,
                            &format!("/v2/{repo}/manifests/{tag}"),
                            None,
                        )
                        .await;
                        // 404: an earlier attempt that failed on the wire had deleted it.
                        (format!("delete {tag}"), s == 202 || s == 404)
                    } else {
                        let tag = format!("t{k}");
                        let s = send(
                            &guard,
                            &alive,
                            n,
                            reqwest::Method::PUT,
                            &format!("/v2/{repo}/manifests/{tag}"),
                            Some(manifest(&config, n)),
                        )
                        .await;
                        tags.push(tag.clone());
                        (format!("push {tag}"), s == 201)
                    };
                    assert!(ok, "{repo}: {label} refused");
                    acked
                        .lock()
                        .unwrap()
                        .entry(repo.clone())
                        .or_default()
                        .push(label);
                }
            })
        })
        .collect();

    // Chaos: SIGKILL an instance every 2 s and start it again a second later; take the
    // receiver down for 3 s once.
    let chaos = {
        let (c, alive, receiver, done) = (c.clone(), alive.clone(), receiver.clone(), done.clone());
        tokio::spawn(async move {
            let mut round = 0usize;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let i = round % 3;
                alive[i].store(false, std::sync::atomic::Ordering::Release);
                c.write().await.kill(i);
                if round == 2 {
                    receiver.down();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                c.write().await.restart(i).await;
                alive[i].store(true, std::sync::atomic::Ordering::Release);
                if round == 2 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    receiver.up();
                }
                round += 1;
            }
            round
        })
    };
    for w in workers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let kills = chaos.await.unwrap();
    assert!(kills >= 3, "only {kills} instances killed");
    receiver.up();
    receiver.set_mode(Mode::Flaky(0.3));

    // Every acknowledged operation's event arrives.
    let acked = acknowledged.lock().unwrap().clone();
    let total: usize = acked.values().map(Vec::len).sum();
    assert_eq!(total, OPS);
    let start = Instant::now();
    let events = loop {
        let events = receiver.delivered();
        let seen: HashSet<(String, String)> = events.iter().map(label).collect();
        let missing = acked
            .iter()
            .flat_map(|(repo, labels)| labels.iter().map(move |l| (repo.clone(), l.clone())))
            .filter(|l| !seen.contains(l))
            .count();
        if missing == 0 {
            break events;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{missing} acknowledged operations without a delivered event"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let c = c.read().await;
    // Nothing left pending, nothing dead.
    let start = Instant::now();
    while !c.cli(&["events", "list"]).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "events still pending"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        c.cli(&["events", "list", "--dead"]).is_empty(),
        "dead letters"
    );

    // Duplicates carry the same id and the same event.
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    let mut duplicates = 0;
    for e in &events {
        let id = e["id"].as_str().unwrap();
        if let Some(first) = by_id.insert(id, e) {
            assert_eq!(first, e, "event {id} delivered with different bodies");
            duplicates += 1;
        }
    }
    // Per repository, first deliveries are in commit order.
    for (repo, labels) in &acked {
        let mut seen_ids = HashSet::new();
        let mut delivered: Vec<String> = Vec::new();
        for e in &events {
            let (r, l) = label(e);
            if &r == repo && seen_ids.insert(e["id"].as_str().unwrap()) && !delivered.contains(&l) {
                delivered.push(l);
            }
        }
        assert_eq!(
            &delivered, labels,
            "{repo}: delivery order differs from commit order"
        );
    }
    // Every request is signed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let requests = receiver.requests();
    for r in &requests {
        let sig = r.signature.as_deref().expect("signed");
        assert!(wharf::notify::sign::verify(
            SECRET.as_bytes(),
            sig,
            &r.body,
            now,
            600
        ));
    }
    let failed = requests.iter().filter(|r| r.status >= 500).count();
    eprintln!(
        "notify chaos: {OPS} operations, {} events delivered ({duplicates} duplicates), {} requests ({failed} answered 500), {kills} instances killed",
        by_id.len(),
        requests.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replayed_with_the_cli() {
    let receiver = Receiver::start(Mode::Fail(503));
    let c = cluster(
        1,
        &notifications(&receiver, "      maxattempts: 3\n      threshold: 0\n      backoff: 50ms\n      maxbackoff: 100ms\n"),
    )
    .await;
    let config = br#"{"architecture":"arm64","os":"linux"}"#.to_vec();
    let r = c
        .client
        .post(format!(
            "{}/v2/dead/one/blobs/uploads/?digest={}",
            c.url(0),
            digest(&config)
        ))
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for tag in ["a", "b"] {
        let r = c
            .client
            .put(format!("{}/v2/dead/one/manifests/{tag}", c.url(0)))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest(&config, tag.len()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let start = Instant::now();
    let dead = loop {
        let dead = c.cli(&["events", "list", "--dead"]);
        if dead.len() == 3 {
            break dead;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "dead letters: {dead:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        dead.iter()
            .all(|l| l.starts_with("hook\t") && l.contains("attempts=3") && l.contains("503")),
        "{dead:?}"
    );
    assert!(c.cli(&["events", "list"]).is_empty());
    let ids: Vec<String> = dead
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
        .collect();
    // Each id was sent exactly maxattempts times (batched: one request per attempt).
    assert_eq!(receiver.requests().len(), 3);

    receiver.set_mode(Mode::Ok);
    c.cli(&["events", "replay", "--id", &ids[1]]);
    let got = receiver
        .wait_for(Duration::from_secs(20), |e| e.len() == 1)
        .await;
    assert_eq!(got[0]["id"], ids[1].as_str());
    assert_eq!(c.cli(&["events", "list", "--dead"]).len(), 2);
    c.cli(&["events", "replay", "--endpoint", "hook"]);
    let got = receiver
        .wait_for(Duration::from_secs(20), |e| e.len() == 3)
        .await;
    let got: Vec<&str> = got.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[1].as_str(), ids[0].as_str(), ids[2].as_str()]);
    assert!(c.cli(&["events", "list", "--dead"]).is_empty());
}
