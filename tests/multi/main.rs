//! Several `wharf serve` processes sharing one PostgreSQL database and one blob store,
//! with requests spread across them — what a round-robin load balancer without sticky
//! sessions does — and one instance killed (SIGKILL) in the middle of an upload.
//!
//! Needs `WHARF_TEST_POSTGRES_URL` (scripts/test starts a throwaway cluster); without
//! it every test fails, saying how to provide it (`-E 'not binary(multi)'` leaves the
//! suite out). The blob store is the one `WHARF_TEST_STORAGE` names (`s3` with
//! `WHARF_TEST_S3_ENDPOINT`/`_BUCKET`), else one filesystem directory shared by the
//! processes.
//!
//! `huge` (blobs over 5 GiB on S3) is `#[ignore]`d: it takes many minutes and some
//! 16 GiB of the S3 server's disk, so it runs only when asked for with `--run-ignored`
//! (see its module doc).

// A test crate: a panic is a failed test, so unwrapping is how it fails.
#![allow(clippy::unwrap_used)]

mod huge;
mod notify;
#[path = "../common/receiver.rs"]
mod receiver;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;

mod cache;
mod gc;
#[path = "../common/postgres_url.rs"]
mod postgres_url;
mod quota;
#[path = "../common/redis_server.rs"]
mod redis_server;
use sha2::{Digest as _, Sha256};
use sqlx::{Connection, Executor};

struct Cluster {
    instances: Vec<Option<Child>>,
    urls: Vec<String>,
    /// The blob store's `rootdirectory` on S3.
    root: String,
    client: reqwest::Client,
    server_url: String,
    database: String,
    /// The instances' configuration file.
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn on_s3() -> bool {
    std::env::var("WHARF_TEST_STORAGE").as_deref() == Ok("s3")
}

fn storage_yaml(dir: &std::path::Path, root: &str) -> String {
    match std::env::var("WHARF_TEST_STORAGE").as_deref() {
        Ok("s3") => {
            let need = |v: &str| std::env::var(v).unwrap_or_else(|_| panic!("{v} is not set"));
            format!(
                "  s3:\n    bucket: {}\n    region: us-east-1\n    regionendpoint: {}\n    forcepathstyle: true\n    accesskey: test\n    secretkey: test\n    rootdirectory: {root}\n",
                need("WHARF_TEST_S3_BUCKET"),
                need("WHARF_TEST_S3_ENDPOINT"),
            )
        }
        _ => format!(
            "  filesystem:\n    rootdirectory: {}\n",
            dir.join("blobs").display()
        ),
    }
}

impl Cluster {
    /// Starts `n` instances; the test fails without PostgreSQL.
    async fn start(n: usize) -> Cluster {
        Self::start_with(n, "", "").await
    }

    /// Like [`Cluster::start`], with more YAML under `storage:` (indented two spaces)
    /// and at the top level.
    async fn start_with(n: usize, more_storage: &str, more_top: &str) -> Cluster {
        let server_url = std::env::var("WHARF_TEST_POSTGRES_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "the multi-instance tests need WHARF_TEST_POSTGRES_URL, a PostgreSQL \
                     server's URL (scripts/test starts a throwaway server and sets it; by \
                     hand: source scripts/lib/services.sh && services_init && start_postgres, \
                     in the shell that runs cargo); to run without them: \
                     cargo nextest run -E 'not binary(multi)'"
                )
            });
        let database = format!("wharf_multi_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server_url)
            .await
            .expect("postgres");
        admin
            .execute(format!("CREATE DATABASE {database}").as_str())
            .await
            .expect("create database");
        let db_url = postgres_url::with_database(&server_url, &database);
        let dir = tempfile::tempdir().expect("tempdir");
        let root = format!("multi-{}", uuid::Uuid::new_v4().simple());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n{}{more_storage}database:\n  url: {db_url}\n  maxconnections: 4\n{more_top}",
                storage_yaml(dir.path(), &root)
            ),
        )
        .expect("write config");
        let mut cluster = Cluster {
            instances: Vec::new(),
            urls: Vec::new(),
            root,
            client: reqwest::Client::new(),
            server_url,
            database,
            config,
            _dir: dir,
        };
        for _ in 0..n {
            let port = free_port();
            cluster.instances.push(Some(cluster.spawn(port)));
            cluster.urls.push(format!("http://127.0.0.1:{port}"));
        }
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    fn spawn(&self, port: u16) -> Child {
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env_remove("AWS_CA_BUNDLE")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wharf")
    }

    async fn wait_ready(&self, i: usize) {
        let url = &self.urls[i];
        for _ in 0..400 {
            if let Ok(r) = self.client.get(format!("{url}/v2/")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance {url} did not come up");
    }

    /// Starts instance `i` again (after [`Cluster::kill`]) on its port.
    async fn restart(&mut self, i: usize) {
        let port: u16 = self.urls[i].rsplit(':').next().unwrap().parse().unwrap();
        if self.instances[i].is_none() {
            self.instances[i] = Some(self.spawn(port));
        }
        self.wait_ready(i).await;
    }

    /// Runs `wharf ARGS… --config <the instances' file>`; returns stdout's lines.
    fn cli(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "error")
            .output()
            .expect("run wharf");
        assert!(
            out.status.success(),
            "wharf {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn url(&self, i: usize) -> &str {
        &self.urls[i % self.urls.len()]
    }

    fn pid(&self, i: usize) -> u32 {
        self.instances[i].as_ref().expect("a running instance").id()
    }

    /// Instance `i`'s `wharf_blob_compose_total` for `method` on S3 (0 before its first use).
    async fn s3_composes(&self, i: usize, method: &str) -> u64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.url(i)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!("wharf_blob_compose_total{{backend=\"s3\",method=\"{method}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse().expect("a counter"))
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.instances[i].take() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.instances.len() {
            self.kill(i);
        }
        // Best effort: drop the test database on a fresh runtime.
        let (server_url, database) = (self.server_url.clone(), self.database.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&server_url).await {
                        let _ = c
                            .execute(
                                format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().expect("ascii").to_string()
}

fn range_end(r: &reqwest::Response) -> String {
    r.headers()["range"].to_str().expect("ascii").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_alternating_between_instances() {
    let c = Cluster::start(3).await;
    let blob = data(5 * 1024 * 1024 + 17, 1);
    let r = c
        .client
        .post(format!("{}/v2/multi/a/blobs/uploads/", c.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut path = location(&r);
    let chunk = 1024 * 1024 + 3;
    for (i, piece) in blob.chunks(chunk).enumerate() {
        let start = i * chunk;
        let r = c
            .client
            .patch(format!("{}{path}", c.url(i)))
            .header(
                "Content-Range",
                format!("{}-{}", start, start + piece.len() - 1),
            )
            .header("Content-Type", "application/octet-stream")
            .body(piece.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "PATCH {i} via instance {}", i % 3);
        assert_eq!(range_end(&r), format!("0-{}", start + piece.len() - 1));
        path = location(&r);
    }
    // Status through yet another instance.
    let r = c
        .client
        .get(format!("{}{path}", c.url(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(range_end(&r), format!("0-{}", blob.len() - 1));
    let d = digest(&blob);
    let r = c
        .client
        .put(format!("{}{path}?digest={d}", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    if on_s3() {
        // Chunks of 1 MiB are under S3's part minimum: one streaming copy.
        assert_eq!(c.s3_composes(1, "stream_copy").await, 1);
    }
    // What one instance accepted, every other serves at once.
    for i in 0..3 {
        let r = c
            .client
            .get(format!("{}/v2/multi/a/blobs/{d}", c.url(i)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "instance {i}");
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            blob.as_slice(),
            "instance {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_killed_mid_patch_upload_completes_elsewhere() {
    let mut c = Cluster::start(2).await;
    // 6 MiB: at least S3's smallest part, so on S3 the two chunks are composed
    // server-side by the surviving instance.
    let first = data(6 * 1024 * 1024, 2);
    let rest = data(4 * 1024 * 1024, 3);
    let r = c
        .client
        .post(format!("{}/v2/multi/kill/blobs/uploads/", c.url(0)))
        .send()
        .await
        .unwrap();
    let path = location(&r);
    let r = c
        .client
        .patch(format!("{}{path}", c.url(0)))
        .body(first.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // A second PATCH to instance 0 that streams half its body, then instance 0 dies.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let url0 = format!("{}{path}", c.url(0));
    let client = c.client.clone();
    let pending = tokio::spawn(async move { client.patch(url0).body(body).send().await });
    tx.send(Ok(Bytes::from(rest[..2 * 1024 * 1024].to_vec())))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.kill(0);
    drop(tx);
    let outcome = pending.await.unwrap();
    assert!(
        outcome.map(|r| r.status() != 202).unwrap_or(true),
        "an interrupted PATCH must not be acknowledged"
    );

    // Instance 1 sees the upload exactly where the last acknowledged PATCH left it.
    let r = c
        .client
        .get(format!("{}{path}", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(range_end(&r), format!("0-{}", first.len() - 1));
    let mut whole = first.clone();
    whole.extend_from_slice(&rest);
    let d = digest(&whole);
    let r = c
        .client
        .put(format!("{}{path}?digest={d}", c.url(1)))
        .header(
            "Content-Range",
            format!("{}-{}", first.len(), whole.len() - 1),
        )
        .body(rest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    if on_s3() {
        assert_eq!(c.s3_composes(1, "server_copy").await, 1);
        assert_eq!(c.s3_composes(1, "stream_copy").await, 0);
    }
    let r = c
        .client
        .get(format!("{}/v2/multi/kill/blobs/{d}", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), whole.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_same_blob_pushes_across_instances() {
    let c = Cluster::start(2).await;
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = data(100_000, 4);
    // The same blobs pushed through both instances at once.
    for blob in [&config, &layer] {
        let d = digest(blob);
        let pushes = (0..2).map(|i| {
            let (client, url, body, d) = (
                c.client.clone(),
                c.url(i).to_string(),
                blob.to_vec(),
                d.clone(),
            );
            tokio::spawn(async move {
                client
                    .post(format!("{url}/v2/multi/tags/blobs/uploads/?digest={d}"))
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        });
        for p in futures_util::future::join_all(pushes).await {
            assert_eq!(p.unwrap().unwrap(), 201);
        }
    }
    let manifest = |n: u32| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}],"annotations":{{"n":"{n}"}}}}"#,
            digest(&config),
            config.len(),
            digest(&layer),
            layer.len()
        )
    };
    // A tag moved through one instance is seen at once through the other.
    for n in 0..3u32 {
        let body = manifest(n);
        let r = c
            .client
            .put(format!(
                "{}/v2/multi/tags/manifests/latest",
                c.url(n as usize)
            ))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = c
            .client
            .get(format!(
                "{}/v2/multi/tags/manifests/latest",
                c.url(n as usize + 1)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            digest(body.as_bytes())
        );
    }
    // Deleted through one, gone through the other.
    let r = c
        .client
        .delete(format!("{}/v2/multi/tags/manifests/latest", c.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .client
        .get(format!("{}/v2/multi/tags/manifests/latest", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
