//! Uploads of several chunks made into one blob: on S3 inside the store (multipart
//! upload of `UploadPartCopy`s), elsewhere, or when a chunk before the last is under
//! S3's 5 MiB part minimum, by one streaming copy. Which way was taken is read from
//! `wharf_blob_compose_total{backend,method}` (a process-wide counter: under
//! `cargo test` other tests may add to it, so the checks are "went up"). A compose that
//! fails part-way is the blob contract suite's `failed_compose_leaves_no_blob`
//! (`tests/blobs`), on every backend.

use reqwest::Method;

use crate::support::{pseudo_random, sha256, storage_kind, TestRegistry};

const REPO: &str = "compose/test";
const MIB: usize = 1024 * 1024;

/// The counter for `backend` and `method`, 0 before its first use.
async fn compose_count(reg: &TestRegistry, backend: &str, method: &str) -> u64 {
    let r = reg.get("/metrics").await;
    r.expect_status(200);
    let series = format!("wharf_blob_compose_total{{backend=\"{backend}\",method=\"{method}\"}} ");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.trim().parse().expect("a counter value"))
        .unwrap_or(0)
}

/// Pushes `data` as PATCHes of `chunks` bytes each, then a PUT without a body.
async fn push_in_chunks(reg: &TestRegistry, data: &[u8], chunks: &[usize]) -> String {
    assert_eq!(chunks.iter().sum::<usize>(), data.len());
    let mut location = reg.start_upload(REPO).await;
    let mut start = 0;
    for &len in chunks {
        let r = reg
            .send(
                reg.req(Method::PATCH, &location)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Range", format!("{start}-{}", start + len - 1))
                    .body(data[start..start + len].to_vec()),
            )
            .await;
        r.expect_status(202);
        assert_eq!(
            r.header("Range"),
            Some(format!("0-{}", start + len - 1).as_str())
        );
        location = r.must_header("Location").to_string();
        start += len;
    }
    let digest = sha256(data);
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = reg
        .send(reg.req(Method::PUT, &format!("{location}{sep}digest={digest}")))
        .await;
    r.expect_status(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    digest
}

async fn expect_bytes(reg: &TestRegistry, digest: &str, data: &[u8]) {
    let r = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    r.expect_status(200);
    assert_eq!(r.body.len(), data.len());
    assert!(r.body.as_ref() == data, "the blob's bytes differ");
    // A range across the first chunk boundary.
    let (from, to) = (5 * MIB - 10, 5 * MIB + 20);
    let r = reg
        .send(
            reg.req(Method::GET, &format!("/v2/{REPO}/blobs/{digest}"))
                .header("Range", format!("bytes={from}-{to}")),
        )
        .await;
    r.expect_status(206);
    assert!(
        r.body.as_ref() == &data[from..=to],
        "the range's bytes differ"
    );
}

#[tokio::test]
async fn three_chunks_of_five_mib_and_more() {
    let reg = TestRegistry::start().await;
    let kind = storage_kind();
    let chunks = [5 * MIB + 11, 6 * MIB, 5 * MIB + 3];
    let data = pseudo_random(chunks.iter().sum(), 71);
    let server_before = compose_count(&reg, &kind, "server_copy").await;
    let stream_before = compose_count(&reg, &kind, "stream_copy").await;
    let digest = push_in_chunks(&reg, &data, &chunks).await;
    expect_bytes(&reg, &digest, &data).await;
    let server = compose_count(&reg, &kind, "server_copy").await - server_before;
    let stream = compose_count(&reg, &kind, "stream_copy").await - stream_before;
    match kind.as_str() {
        "s3" | "azure" => assert!(server >= 1, "{kind} did not compose server-side"),
        // The filesystem writes every chunk into one file: nothing to compose.
        "filesystem" => assert_eq!((server, stream), (0, 0)),
        _ => assert!(stream >= 1, "{kind}: no stream copy counted"),
    }
}

#[tokio::test]
async fn a_small_chunk_before_the_last() {
    let reg = TestRegistry::start().await;
    let kind = storage_kind();
    // 1 MiB first: under S3's part minimum, so no UploadPartCopy layout exists and S3
    // copies by streaming; Azure blocks may be any size, so Azure still composes.
    let chunks = [MIB, 5 * MIB, 5 * MIB + 1];
    let data = pseudo_random(chunks.iter().sum(), 72);
    let server_before = compose_count(&reg, &kind, "server_copy").await;
    let stream_before = compose_count(&reg, &kind, "stream_copy").await;
    let digest = push_in_chunks(&reg, &data, &chunks).await;
    expect_bytes(&reg, &digest, &data).await;
    let server = compose_count(&reg, &kind, "server_copy").await - server_before;
    let stream = compose_count(&reg, &kind, "stream_copy").await - stream_before;
    match kind.as_str() {
        "filesystem" => assert_eq!((server, stream), (0, 0)),
        "azure" => assert!(server >= 1, "Azure did not compose server-side"),
        _ => assert!(stream >= 1, "{kind}: no stream copy counted"),
    }
}
