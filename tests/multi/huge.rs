//! A blob over 5 GiB on S3 (S3's largest single PUT and largest part), pushed through a
//! `wharf serve` process as one request and as two chunks (the second over 5 GiB, so it
//! is composed with ranged `UploadPartCopy`s), then pulled back and hashed. The bytes are
//! generated as a stream on both sides, never held whole; the server's peak RSS
//! (`VmHWM`) is printed and must stay small.
//!
//! Not in the default suite: both tests are `#[ignore]`d (some 4 minutes on moto), so
//! nextest reports them skipped; asked for, they need `WHARF_TEST_STORAGE=s3` and fail
//! without it. Size in MiB in `WHARF_TEST_HUGE_BLOB_MIB` (default 5248 = 5.125 GiB). Run
//! one test at a time: each needs about three times the blob's size of disk on the S3
//! server, and deletes what it wrote at the end. moto also holds the whole object in
//! memory several times over while completing a multipart upload (its RSS peaked at
//! ~21 GB for 5.125 GiB on a 23 GiB machine): do not go much larger on moto.
//!
//! ```sh
//! source scripts/lib/services.sh && services_init && start_s3 && start_postgres
//! WHARF_TEST_STORAGE=s3 cargo nextest run --release --test multi --run-ignored only \
//!     -E 'test(/^huge::/)' -j 1 --no-capture
//! ```

use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::ObjectStore;
use sha2::{Digest as _, Sha256};

use super::Cluster;

const MIB: u64 = 1024 * 1024;
/// The server's peak RSS must stay under this, whatever the blob's size.
const MAX_RSS_MIB: u64 = 200;

/// The blob's size; the test fails off S3.
fn size() -> u64 {
    assert!(
        super::on_s3(),
        "huge blobs need WHARF_TEST_STORAGE=s3 (and WHARF_TEST_S3_ENDPOINT, \
         WHARF_TEST_S3_BUCKET: start_s3 in scripts/lib/services.sh)"
    );
    let mib = std::env::var("WHARF_TEST_HUGE_BLOB_MIB")
        .ok()
        .map_or(5248, |v| v.parse().expect("WHARF_TEST_HUGE_BLOB_MIB: MiB"));
    mib * MIB
}

/// Byte `range` of the blob: SplitMix64 of each 8-byte word's index (any range
/// computable on its own). `range` starts and ends on multiples of 8.
fn piece(range: std::ops::Range<u64>) -> Bytes {
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    for word in range.start / 8..range.end / 8 {
        let mut z = word.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    Bytes::from(out)
}

/// `range` of the blob as a request body, in 1 MiB pieces.
fn body(range: std::ops::Range<u64>) -> reqwest::Body {
    let starts = (range.start..range.end).step_by(MIB as usize);
    let end = range.end;
    reqwest::Body::wrap_stream(
        futures_util::stream::iter(starts)
            .map(move |s| Ok::<_, std::io::Error>(piece(s..(s + MIB).min(end)))),
    )
}

fn digest_of(len: u64) -> String {
    let mut h = Sha256::new();
    for s in (0..len).step_by(MIB as usize) {
        h.update(piece(s..(s + MIB).min(len)));
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn vm_hwm_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024
}

/// Pulls the blob through instance 0 and checks its length and digest.
async fn pull_and_check(c: &Cluster, repo: &str, digest: &str, len: u64) {
    let started = Instant::now();
    let r = c
        .client
        .get(format!("{}/v2/{repo}/blobs/{digest}", c.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let (mut h, mut got) = (Sha256::new(), 0u64);
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("pull body");
        got += piece.len() as u64;
        h.update(&piece);
    }
    assert_eq!(got, len);
    assert_eq!(format!("sha256:{}", hex::encode(h.finalize())), digest);
    eprintln!("huge: pulled {len} bytes in {:.0?}", started.elapsed());
}

/// Deletes everything the cluster wrote to the bucket (the S3 server's disk is finite).
async fn delete_objects(c: &Cluster) {
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(std::env::var("WHARF_TEST_S3_BUCKET").unwrap())
        .with_endpoint(std::env::var("WHARF_TEST_S3_ENDPOINT").unwrap())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .expect("an S3 client");
    let prefix = object_store::path::Path::from(c.root.as_str());
    let keys: Vec<_> = store
        .list(Some(&prefix))
        .map(|m| m.map(|m| m.location))
        .collect()
        .await;
    for key in keys {
        store.delete(&key.expect("list")).await.expect("delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes on S3: WHARF_TEST_STORAGE=s3, --run-ignored only -E 'test(/^huge::/)'"]
async fn blob_over_5_gib_in_one_put() {
    let len = size();
    let c = Cluster::start(1).await;
    let digest = digest_of(len);
    let started = Instant::now();
    let r = c
        .client
        .post(format!(
            "{}/v2/huge/one/blobs/uploads/?digest={digest}",
            c.url(0)
        ))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", len)
        .body(body(0..len))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    eprintln!(
        "huge: pushed {len} bytes in one POST in {:.0?}",
        started.elapsed()
    );
    pull_and_check(&c, "huge/one", &digest, len).await;
    let rss = vm_hwm_mib(c.pid(0));
    eprintln!("huge: server peak RSS {rss} MiB");
    delete_objects(&c).await;
    assert!(rss < MAX_RSS_MIB, "peak RSS {rss} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes on S3: WHARF_TEST_STORAGE=s3, --run-ignored only -E 'test(/^huge::/)'"]
async fn blob_over_5_gib_in_chunks_composed_server_side() {
    let len = size();
    let c = Cluster::start(1).await;
    let digest = digest_of(len);
    let first = 64 * MIB;
    assert!(
        len - first > 5 * 1024 * MIB,
        "the second chunk must be over 5 GiB"
    );
    let started = Instant::now();
    let r = c
        .client
        .post(format!("{}/v2/huge/chunks/blobs/uploads/", c.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut location = r.headers()["location"].to_str().unwrap().to_string();
    for range in [0..first, first..len] {
        let r = c
            .client
            .patch(format!("{}{location}", c.url(0)))
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("{}-{}", range.start, range.end - 1),
            )
            .header("Content-Length", range.end - range.start)
            .body(body(range.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        location = r.headers()["location"].to_str().unwrap().to_string();
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = c
        .client
        .put(format!("{}{location}{sep}digest={digest}", c.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    eprintln!(
        "huge: pushed {len} bytes in two PATCHes in {:.0?}",
        started.elapsed()
    );
    assert_eq!(c.s3_composes(0, "server_copy").await, 1);
    pull_and_check(&c, "huge/chunks", &digest, len).await;
    let rss = vm_hwm_mib(c.pid(0));
    eprintln!("huge: server peak RSS {rss} MiB");
    delete_objects(&c).await;
    assert!(rss < MAX_RSS_MIB, "peak RSS {rss} MiB");
}
