//! W3C `traceparent` on Wharf's outgoing HTTP calls, with the real binary and traces
//! exported (`OTEL_EXPORTER_OTLP_ENDPOINT`): a push sent with a `traceparent` makes a
//! webhook delivery, a pull-through cache's upstream request, an S3 request, and the
//! server-side compose call of a two-chunk push on S3, Azure and GCS that each carry
//! the push's trace id (in a span of their own); a push whose caller did not sample its
//! trace makes an S3 request and a webhook delivery that carry its trace id with the
//! sampled flag cleared.
//!
//! The callees are a recorder written here — a plain HTTP/1.1 server on loopback that
//! keeps each request's head and answers with a fixed status — because the point is
//! the header Wharf sends, which a real receiver, registry or S3 server does not show.
//! The spans themselves go to a port nobody listens on (export failures are dropped
//! by the SDK; the spans' content is `tests/e2e/otlp.py`'s subject).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::support::{free_port, Serve};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const WAIT: Duration = Duration::from_secs(60);

/// A request as the recorder saw it: method, path, headers (lower-case names).
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

/// An HTTP server that records request heads and answers `status` with `extra` headers.
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn start(status: &'static str, extra: &'static str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_string();
                    let path = parts.next().unwrap_or_default().to_string();
                    let mut headers = HashMap::new();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let len: u64 = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let _ = std::io::copy(&mut (&mut reader).take(len), &mut std::io::sink());
                    sink.lock().unwrap().push(Seen {
                        method,
                        path,
                        headers,
                    });
                    let mut conn = conn;
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                });
            }
        });
        Recorder { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits for a request `matching`; returns it.
    fn wait(&self, what: &str, matching: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.seen.lock().unwrap().iter().find(|s| matching(s)) {
                return s.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what}; seen: {:?}",
                self.seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `traceparent` of `seen` continues the test's trace, from a span of Wharf's.
fn assert_continues_the_trace(what: &str, seen: &Seen) {
    assert_continues(what, seen, "01");
}

/// The same for a trace the caller did not sample: its trace id, flags `00`.
fn assert_continues(what: &str, seen: &Seen, flags: &str) {
    let tp = seen
        .headers
        .get("traceparent")
        .unwrap_or_else(|| panic!("{what}: no traceparent in {seen:?}"));
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{what}: {tp}");
    assert_eq!(parts[0], "00", "{what}: {tp}");
    assert_eq!(parts[1], TRACE, "{what}: the push's trace id: {tp}");
    assert_ne!(parts[2], PARENT, "{what}: a span of Wharf's own: {tp}");
    assert_eq!(parts[3], flags, "{what}: sampled flag: {tp}");
}

/// `wharf serve` on `yaml` (everything but `http`), exporting traces.
/// The store section for S3 at `recorder` (any credentials: the recorder checks none).
fn s3_config(recorder: &Recorder) -> String {
    format!(
        "storage:\n  s3:\n    bucket: traces\n    region: us-east-1\n    regionendpoint: {}\n    forcepathstyle: true\n    accesskey: key\n    secretkey: secret\n  redirect:\n    disable: true\n",
        recorder.url()
    )
}

fn serve(dir: &std::path::Path, port: u16, yaml: &str) -> Serve {
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        format!(
            "version: 0.1\nhttp:\n  addr: 127.0.0.1:{port}\n  draintimeout: 1s\ndatabase:\n  url: sqlite://{}/wharf.db\n{yaml}",
            dir.display()
        ),
    )
    .unwrap();
    let collector = format!("http://127.0.0.1:{}", free_port());
    Serve::start_env(
        &path,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_SERVICE_NAME", "wharf-propagation-test"),
        ],
    )
}

fn traceparent() -> String {
    format!("00-{TRACE}-{PARENT}-01")
}

/// `POST /v2/<repo>/blobs/uploads/?digest=` with the test's traceparent; the status.
async fn push_blob(url: &str, repo: &str, bytes: &[u8]) -> u16 {
    push_blob_traced(url, repo, bytes, &traceparent()).await
}

/// The same with `traceparent`.
async fn push_blob_traced(url: &str, repo: &str, bytes: &[u8], traceparent: &str) -> u16 {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    reqwest::Client::new()
        .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .header("traceparent", traceparent)
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_delivery_carries_the_push_trace() {
    let receiver = Recorder::start("200 OK", "");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _s = serve(
        dir.path(),
        port,
        &format!(
            "storage:\n  filesystem:\n    rootdirectory: {}/data\nnotifications:\n  endpoints:\n    - name: recorder\n      url: {}/events\n      timeout: 5s\n",
            dir.path().display(),
            receiver.url()
        ),
    );
    let status = push_blob(&format!("http://127.0.0.1:{port}"), "trace/hook", b"hook").await;
    assert_eq!(status, 201);
    let seen = tokio::task::block_in_place(|| {
        receiver.wait("webhook delivery", |s| {
            s.method == "POST" && s.path == "/events"
        })
    });
    assert_continues_the_trace("webhook delivery", &seen);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_through_upstream_request_carries_the_pull_trace() {
    let upstream = Recorder::start("404 Not Found", "");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _s = serve(
        dir.path(),
        port,
        &format!(
            "storage:\n  filesystem:\n    rootdirectory: {}/data\nproxy:\n  remoteurl: {}\n",
            dir.path().display(),
            upstream.url()
        ),
    );
    let r = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/v2/library/trace/manifests/latest"
        ))
        .header("traceparent", traceparent())
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let seen = tokio::task::block_in_place(|| {
        upstream.wait("upstream manifest request", |s| {
            s.path.contains("/manifests/latest")
        })
    });
    assert_continues_the_trace("upstream request", &seen);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_request_carries_the_push_trace() {
    // Every S3 call answered 200 (with an ETag, as a PUT's answer has).
    let s3 = Recorder::start("200 OK", "ETag: \"0123456789abcdef\"\r\n");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _s = serve(dir.path(), port, &s3_config(&s3));
    // Whatever Wharf answers (the recorder is no real S3), the object PUT was sent
    // with the push's trace.
    let _ = push_blob(&format!("http://127.0.0.1:{port}"), "trace/s3", b"s3 bytes").await;
    let seen = tokio::task::block_in_place(|| {
        s3.wait("S3 object PUT", |s| {
            s.method == "PUT" && s.path.starts_with("/traces/")
        })
    });
    assert_continues_the_trace("S3 PUT", &seen);
}

/// A chunked push with the test's traceparent on every request: a 5 MiB chunk, then
/// a 1-byte one, then the closing `PUT` — two chunks, so the blob is composed in the
/// store. Whatever the closing `PUT` answers (the recorder is no real store).
async fn push_two_chunks(url: &str, repo: &str) {
    let client = reqwest::Client::new();
    let chunks = [vec![7u8; 5 * 1024 * 1024], vec![8u8]];
    let mut hasher = Sha256::new();
    for c in &chunks {
        hasher.update(c);
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    let r = client
        .post(format!("{url}/v2/{repo}/blobs/uploads/"))
        .header("traceparent", traceparent())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut location = r.headers()["location"].to_str().unwrap().to_string();
    let mut offset = 0;
    for c in &chunks {
        let target = if location.starts_with('/') {
            format!("{url}{location}")
        } else {
            location.clone()
        };
        let r = client
            .patch(target)
            .header("traceparent", traceparent())
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("{}-{}", offset, offset + c.len() - 1),
            )
            .body(c.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "PATCH: {:?}", r.text().await);
        location = r.headers()["location"].to_str().unwrap().to_string();
        offset += c.len();
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let target = if location.starts_with('/') {
        format!("{url}{location}{sep}digest={digest}")
    } else {
        format!("{location}{sep}digest={digest}")
    };
    let _ = client
        .put(target)
        .header("traceparent", traceparent())
        .send()
        .await
        .unwrap();
}

/// The store's config for a compose test against `recorder`; the request that is
/// the compose call.
fn compose_case(backend: &str, recorder: &Recorder) -> (String, fn(&Seen) -> bool) {
    match backend {
        // The AWS SDK's requests (only the compose calls use it) carry its invocation id.
        "s3" => (
            s3_config(recorder),
            |s| s.headers.contains_key("amz-sdk-invocation-id"),
        ),
        // Put Block From URL.
        "azure" => (
            format!(
                "storage:\n  azure:\n    accountname: devstoreaccount1\n    accountkey: {}\n    container: traces\n    endpoint: {}/devstoreaccount1\n  redirect:\n    disable: true\n",
                base64_key(),
                recorder.url()
            ),
            |s| s.method == "PUT" && s.headers.contains_key("x-ms-copy-source"),
        ),
        // objects.compose.
        "gcs" => (
            format!(
                "storage:\n  gcs:\n    bucket: traces\n    endpoint: {}\n  redirect:\n    disable: true\n",
                recorder.url()
            ),
            |s| s.method == "POST" && s.path.ends_with("/compose"),
        ),
        other => panic!("no compose case for {other}"),
    }
}

/// Any valid base64 key: the recorder checks no signature.
fn base64_key() -> &'static str {
    "a2V5LWZvci10aGUtcmVjb3JkZXItb25seQ=="
}

/// A two-chunk push to `backend` (answered by a recorder): the compose call Wharf
/// builds itself carries the push's trace.
async fn compose_carries_the_push_trace(backend: &str) {
    let store = Recorder::start(
        "200 OK",
        "ETag: \"0123456789abcdef\"\r\nx-ms-request-server-encrypted: true\r\n",
    );
    let (yaml, is_compose) = compose_case(backend, &store);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _s = serve(dir.path(), port, &yaml);
    push_two_chunks(&format!("http://127.0.0.1:{port}"), "trace/compose").await;
    let seen = tokio::task::block_in_place(|| store.wait("compose call", is_compose));
    assert_continues_the_trace(&format!("{backend} compose call"), &seen);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_compose_call_carries_the_push_trace() {
    compose_carries_the_push_trace("s3").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_azure_compose_call_carries_the_push_trace() {
    compose_carries_the_push_trace("azure").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gcs_compose_call_carries_the_push_trace() {
    compose_carries_the_push_trace("gcs").await;
}

/// A caller that did not sample its trace: Wharf builds no spans for it below the
/// request's (`telemetry::sampling`), yet the S3 request made inside a storage call
/// carries the caller's trace id with the flag cleared.
#[tokio::test(flavor = "multi_thread")]
async fn an_s3_request_of_an_unsampled_push_carries_its_trace_unsampled() {
    let s3 = Recorder::start("200 OK", "ETag: \"0123456789abcdef\"\r\n");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _s = serve(dir.path(), port, &s3_config(&s3));
    let _ = push_blob_traced(
        &format!("http://127.0.0.1:{port}"),
        "trace/s3",
        b"unsampled s3 bytes",
        &format!("00-{TRACE}-{PARENT}-00"),
    )
    .await;
    let seen = tokio::task::block_in_place(|| {
        s3.wait("S3 object PUT", |s| {
            s.method == "PUT" && s.path.starts_with("/traces/")
        })
    });
    assert_continues("S3 PUT of an unsampled push", &seen, "00");
}

/// The same for the webhook delivered after the push (from the trace context stored
/// with the event).
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_delivery_of_an_unsampled_push_carries_its_trace_unsampled() {
    let receiver = Recorder::start("200 OK", "");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _s = serve(
        dir.path(),
        port,
        &format!(
            "storage:\n  filesystem:\n    rootdirectory: {}/data\nnotifications:\n  endpoints:\n    - name: recorder\n      url: {}/events\n      timeout: 5s\n",
            dir.path().display(),
            receiver.url()
        ),
    );
    let status = push_blob_traced(
        &format!("http://127.0.0.1:{port}"),
        "trace/hook",
        b"unsampled hook",
        &format!("00-{TRACE}-{PARENT}-00"),
    )
    .await;
    assert_eq!(status, 201);
    let seen = tokio::task::block_in_place(|| {
        receiver.wait("webhook delivery", |s| {
            s.method == "POST" && s.path == "/events"
        })
    });
    assert_continues("webhook delivery of an unsampled push", &seen, "00");
}
