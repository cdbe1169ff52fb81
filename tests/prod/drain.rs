//! The drain on SIGTERM with the real binary: readiness fails at once, new connections
//! are still served until `http.draintimeout` has passed (a load balancer needs that
//! long to notice), then the listener closes and requests in progress finish; a 1 GiB
//! upload streamed across the signal completes with 201 and reads back after a restart.
//! Bodies are generated and hashed as streams on both sides, never held whole (hashed
//! by coreutils' `sha256sum`: the test's own build is unoptimized).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::support::{config, free_port, Serve};

const MIB: u64 = 1024 * 1024;
const WAIT: Duration = Duration::from_secs(60);

/// A client that opens a new connection for every request (none kept alive).
fn fresh() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// `wharf_http_requests_in_flight` from `/metrics` (which counts itself).
async fn in_flight(url: &str) -> u64 {
    let text = fresh()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("wharf_http_requests_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts an upload session; its Location.
async fn start_upload(url: &str, repo: &str) -> String {
    let r = fresh()
        .post(format!("{url}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Waits until the server is handling `n` requests besides the metrics GET.
async fn wait_busy(url: &str, n: u64) {
    let deadline = Instant::now() + WAIT;
    while in_flight(url).await < n + 1 {
        assert!(Instant::now() < deadline, "the request never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a blocking wait (reading the server's log) off the async workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_serves_new_connections_until_draintimeout_then_closes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config(
        dir.path(),
        &format!("  addr: 127.0.0.1:{port}\n  draintimeout: 5s"),
        "",
    );
    let mut s = Serve::start(&path);
    let url = format!("http://127.0.0.1:{port}");
    let location = start_upload(&url, "drain/window").await;

    // A PATCH whose body arrives in two parts, the second after the listener closed.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|part| (part, rx))
    });
    let patch = tokio::spawn(
        fresh()
            .patch(format!("{url}{location}"))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", "2000")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tx.send(Ok(vec![b'a'; 1000])).await.unwrap();
    wait_busy(&url, 1).await;

    s.signal(libc::SIGTERM);
    blocking(|| s.wait_for("new connections are still served for 5 s"));
    // After SIGTERM, before draintimeout: a new connection is served, and readiness
    // says the instance is going away.
    let r = fresh().get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = fresh().get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("draining"));
    let started = start_upload(&url, "drain/late").await;
    assert!(
        started.contains("/v2/drain/late/blobs/uploads/"),
        "{started}"
    );

    // draintimeout over: the listener closes (a connection is refused) while the
    // PATCH in progress goes on.
    blocking(|| s.wait_for("no new connections from now on; draining 1 request(s) in progress"));
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "the listener never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(Ok(vec![b'b'; 1000])).await.unwrap();
    drop(tx);
    let r = patch.await.unwrap().unwrap();
    assert_eq!(r.status(), 202, "the PATCH in progress finished");
    assert_eq!(r.headers()["range"], "0-1999");
    blocking(|| s.wait_for("drained in"));
    let status = blocking(|| s.wait_exit());
    assert!(status.success(), "{status:?}");
}

/// Piece `i` (1 MiB) of the big blob: one pseudo-random block, its first 8 bytes the
/// piece's number (so no two pieces are alike).
fn piece(i: u64) -> Bytes {
    static BLOCK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let block = BLOCK.get_or_init(|| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..MIB / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect()
    });
    let mut out = block.clone();
    out[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(out)
}

/// `sha256sum` (native speed: the test's own build is unoptimized) fed by `feed`.
fn sha256sum(feed: impl FnOnce(&mut dyn std::io::Write)) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    feed(&mut child.stdin.take().unwrap());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

fn vm_hwm_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_1_gib_upload_across_sigterm_completes_with_201_and_reads_back() {
    const PIECES: u64 = 1024; // 1 GiB
    const BEFORE_SIGNAL: u64 = 768;
    let digest = sha256sum(|w| {
        for i in 0..PIECES {
            w.write_all(&piece(i)).unwrap();
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config(
        dir.path(),
        &format!("  addr: 127.0.0.1:{port}\n  draintimeout: 60s"),
        "",
    );
    let mut s = Serve::start(&path);
    let url = format!("http://127.0.0.1:{port}");
    let location = start_upload(&url, "drain/big").await;

    // The body: 768 MiB, then it waits for `go` (sent after SIGTERM), then the rest,
    // within draintimeout (60 s: room for an unoptimized build on a busy machine).
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let gate = std::sync::Arc::new(tokio::sync::Mutex::new(Some((reached_tx, go_rx))));
    let body = futures_util::stream::iter(0..PIECES).then(move |i| {
        let gate = gate.clone();
        async move {
            if i == BEFORE_SIGNAL {
                if let Some((reached, go)) = gate.lock().await.take() {
                    let _ = reached.send(());
                    let _ = go.await;
                }
            }
            Ok::<_, std::io::Error>(piece(i))
        }
    });
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = tokio::spawn(
        fresh()
            .put(format!("{url}{location}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", (PIECES * MIB).to_string())
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    reached_rx.await.unwrap();
    s.signal(libc::SIGTERM);
    blocking(|| s.wait_for("SIGTERM received: stopping"));
    // A request started after the signal is still served.
    let r = fresh().get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    go_tx.send(()).unwrap();

    let r = put.await.unwrap().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let hwm = vm_hwm_mib(s.pid());
    assert!(
        hwm < 200,
        "the server's peak RSS was {hwm} MiB for a 1 GiB upload"
    );
    blocking(|| s.wait_for_within("drained in", Duration::from_secs(150)));
    let status = blocking(|| s.wait_exit());
    assert!(status.success(), "{status:?}");

    // The blob is there after a restart, whole.
    let s = Serve::start(&path);
    let r = fresh()
        .get(format!("{url}/v2/drain/big/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(PIECES * MIB));
    let mut stream = r.bytes_stream();
    let read_back = sha256sum(|w| {
        let rt = tokio::runtime::Handle::current();
        blocking(|| {
            while let Some(chunk) = rt.block_on(stream.next()) {
                w.write_all(&chunk.unwrap()).unwrap();
            }
        })
    });
    assert_eq!(read_back, digest);
    drop(s);
}
