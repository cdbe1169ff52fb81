//! Blob uploads: sessions (`POST`), single-request uploads (`POST ?digest=`), mounts,
//! streamed and chunked `PATCH`es, the closing `PUT`, status, cancel, sha512, a 64 MiB
//! chunked upload, and uploads interrupted mid-`PATCH`.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{pseudo_random, sha256, sha512, Resp, TestRegistry};

const REPO: &str = "uploads/test";

/// Checks a `202 Accepted` for a session in progress at `offset`; returns its Location.
#[track_caller]
fn expect_in_progress(r: &Resp, repo: &str, offset: u64) -> String {
    r.expect_status(202);
    let location = r.must_header("Location").to_string();
    let path = location
        .strip_prefix("http://")
        .map(|rest| &rest[rest.find('/').unwrap_or(0)..])
        .unwrap_or(&location);
    assert!(
        path.starts_with(&format!("/v2/{repo}/blobs/uploads/")),
        "{}: Location {location:?} is not an upload of {repo}",
        r.what
    );
    let expected_range = format!("0-{}", offset.saturating_sub(1));
    assert_eq!(
        r.header("Range"),
        Some(expected_range.as_str()),
        "{}: Range",
        r.what
    );
    let uuid = r.must_header("Docker-Upload-UUID");
    assert!(!uuid.is_empty());
    assert!(
        path.contains(uuid),
        "{}: Location {location} does not name session {uuid}",
        r.what
    );
    assert_eq!(r.content_length(), Some(0), "{}: Content-Length", r.what);
    location
}

/// Checks a `201 Created` for blob `digest` of `repo`.
#[track_caller]
fn expect_created(r: &Resp, repo: &str, digest: &str) {
    r.expect_status(201);
    assert_eq!(
        r.header("Location"),
        Some(format!("/v2/{repo}/blobs/{digest}").as_str()),
        "{}: Location",
        r.what
    );
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest));
}

async fn patch(reg: &TestRegistry, location: &str, range: Option<(u64, u64)>, data: &[u8]) -> Resp {
    let mut rb = reg
        .req(Method::PATCH, location)
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec());
    if let Some((start, end)) = range {
        rb = rb.header("Content-Range", format!("{start}-{end}"));
    }
    reg.send(rb).await
}

/// `location` with `?digest=` (or `&digest=` if it already has a query).
fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

async fn put_final(
    reg: &TestRegistry,
    location: &str,
    digest: &str,
    range: Option<(u64, u64)>,
    data: Option<&[u8]>,
) -> Resp {
    let mut rb = reg.req(Method::PUT, &with_digest(location, digest));
    if let Some(data) = data {
        rb = rb
            .header("Content-Type", "application/octet-stream")
            .body(data.to_vec());
    }
    if let Some((start, end)) = range {
        rb = rb.header("Content-Range", format!("{start}-{end}"));
    }
    reg.send(rb).await
}

async fn expect_blob(reg: &TestRegistry, repo: &str, digest: &str, data: &[u8]) {
    let r = reg.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    r.expect_status(200);
    assert_eq!(r.body.len(), data.len(), "{}: length", r.what);
    assert!(r.body.as_ref() == data, "{}: bytes differ", r.what);
}

async fn status(reg: &TestRegistry, location: &str) -> Resp {
    reg.get(location).await
}

#[track_caller]
fn expect_status_at(r: &Resp, offset: u64) {
    r.expect_status(204);
    assert_eq!(
        r.header("Range"),
        Some(format!("0-{}", offset.saturating_sub(1)).as_str()),
        "{}: Range",
        r.what
    );
    assert!(r.header("Location").is_some(), "{}: no Location", r.what);
    assert!(r.header("Docker-Upload-UUID").is_some());
}

#[tokio::test]
async fn post_opens_a_session() {
    let reg = TestRegistry::start().await;
    let r = reg
        .send(reg.req(Method::POST, &format!("/v2/{REPO}/blobs/uploads/")))
        .await;
    let location = expect_in_progress(&r, REPO, 0);
    let min: u64 = r
        .must_header("OCI-Chunk-Min-Length")
        .parse()
        .expect("OCI-Chunk-Min-Length is a number");
    assert!(min >= 1);
    expect_status_at(&status(&reg, &location).await, 0);

    // Without the trailing slash as well.
    let r = reg
        .send(reg.req(Method::POST, &format!("/v2/{REPO}/blobs/uploads")))
        .await;
    let other = expect_in_progress(&r, REPO, 0);
    assert_ne!(location, other, "two sessions share a Location");
}

#[tokio::test]
async fn single_post_upload() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(70_000, 10);
    let digest = sha256(&data);
    let r = reg
        .send(
            reg.req(
                Method::POST,
                &format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(data.clone()),
        )
        .await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, &data).await;
}

#[tokio::test]
async fn single_post_with_wrong_digest_is_refused() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(5000, 11);
    let wrong = sha256(b"something else");
    let r = reg
        .send(
            reg.req(
                Method::POST,
                &format!("/v2/{REPO}/blobs/uploads/?digest={wrong}"),
            )
            .body(data.clone()),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    for d in [wrong, sha256(&data)] {
        reg.head(&format!("/v2/{REPO}/blobs/{d}"))
            .await
            .expect_status(404);
    }
}

#[tokio::test]
async fn post_then_put_with_whole_body() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(123_457, 12);
    let digest = sha256(&data);
    let location = reg.start_upload(REPO).await;
    let r = put_final(&reg, &location, &digest, None, Some(&data)).await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, &data).await;
    // The session is gone once committed.
    reg.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn streamed_patches_then_put_without_body() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(300_001, 13);
    let digest = sha256(&data);
    let mut location = reg.start_upload(REPO).await;
    let mut offset = 0u64;
    for part in [&data[..100_000], &data[100_000..100_001], &data[100_001..]] {
        let r = patch(&reg, &location, None, part).await;
        offset += part.len() as u64;
        location = expect_in_progress(&r, REPO, offset);
        expect_status_at(&status(&reg, &location).await, offset);
    }
    let r = put_final(&reg, &location, &digest, None, None).await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, &data).await;
}

#[tokio::test]
async fn chunked_patches_then_put_with_last_chunk() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(250_000, 14);
    let digest = sha256(&data);
    let mut location = reg.start_upload(REPO).await;
    let cuts = [0usize, 65_536, 65_537, 200_000, 250_000];
    for w in cuts.windows(2).take(cuts.len() - 2) {
        let (s, e) = (w[0], w[1]);
        let r = patch(&reg, &location, Some((s as u64, e as u64 - 1)), &data[s..e]).await;
        location = expect_in_progress(&r, REPO, e as u64);
    }
    let (s, e) = (cuts[cuts.len() - 2], cuts[cuts.len() - 1]);
    let r = put_final(
        &reg,
        &location,
        &digest,
        Some((s as u64, e as u64 - 1)),
        Some(&data[s..e]),
    )
    .await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, &data).await;
}

#[tokio::test]
async fn chunk_at_wrong_offset_is_416_with_current_range() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(3000, 15);
    let digest = sha256(&data);
    let location = reg.start_upload(REPO).await;

    // Nothing stored yet: a chunk that does not start at 0.
    let r = patch(&reg, &location, Some((10, 19)), &data[10..20]).await;
    r.expect_status(416);
    assert_eq!(r.header("Range"), Some("0-0"));
    r.error_code();

    let r = patch(&reg, &location, Some((0, 999)), &data[..1000]).await;
    let location = expect_in_progress(&r, REPO, 1000);

    // A gap, an overlap and a repeat of the last chunk are all out of order.
    for (s, e) in [(1001u64, 1999u64), (500, 1499), (0, 999)] {
        let r = patch(
            &reg,
            &location,
            Some((s, e)),
            &data[s as usize..=e as usize],
        )
        .await;
        r.expect_status(416);
        assert_eq!(r.header("Range"), Some("0-999"), "{}", r.what);
        assert!(r.header("Location").is_some(), "416 without Location");
        r.error_code();
    }
    // The closing PUT's chunk is checked the same way.
    let r = put_final(
        &reg,
        &location,
        &digest,
        Some((1500, 2999)),
        Some(&data[1500..]),
    )
    .await;
    r.expect_status(416);
    assert_eq!(r.header("Range"), Some("0-999"), "{}", r.what);
    r.error_code();
    // The session did not move and continues from where it was.
    expect_status_at(&status(&reg, &location).await, 1000);
    let r = patch(&reg, &location, Some((1000, 2999)), &data[1000..]).await;
    let location = expect_in_progress(&r, REPO, 3000);
    let r = put_final(&reg, &location, &digest, None, None).await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, &data).await;
}

#[tokio::test]
async fn chunk_whose_body_disagrees_with_content_range_is_refused() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(2000, 16);
    let digest = sha256(&data);
    let location = reg.start_upload(REPO).await;
    let r = patch(&reg, &location, Some((0, 499)), &data[..500]).await;
    let location = expect_in_progress(&r, REPO, 500);

    // Body shorter, then longer, than the declared range.
    for body in [&data[500..900], &data[500..1500]] {
        let r = patch(&reg, &location, Some((500, 999)), body).await;
        r.expect_error(400, "BLOB_UPLOAD_INVALID");
    }
    // Nothing of the refused chunks counts (DESIGN: nothing partial is visible).
    expect_status_at(&status(&reg, &location).await, 500);
    let r = patch(&reg, &location, Some((500, 1999)), &data[500..]).await;
    let location = expect_in_progress(&r, REPO, 2000);
    let r = put_final(&reg, &location, &digest, None, None).await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, &data).await;
}

#[tokio::test]
async fn put_with_wrong_digest_is_digest_invalid() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(4000, 17);
    let wrong = sha256(b"not these bytes");
    let location = reg.start_upload(REPO).await;
    let r = patch(&reg, &location, None, &data).await;
    let location = expect_in_progress(&r, REPO, 4000);
    let r = put_final(&reg, &location, &wrong, None, None).await;
    r.expect_error(400, "DIGEST_INVALID");
    for d in [wrong, sha256(&data)] {
        reg.head(&format!("/v2/{REPO}/blobs/{d}"))
            .await
            .expect_status(404);
    }

    // Wrong digest given together with the final chunk.
    let location = reg.start_upload(REPO).await;
    let r = put_final(&reg, &location, &sha256(b"x"), None, Some(&data)).await;
    r.expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/{REPO}/blobs/{}", sha256(&data)))
        .await
        .expect_status(404);
}

#[tokio::test]
async fn put_without_digest_is_refused() {
    let reg = TestRegistry::start().await;
    let location = reg.start_upload(REPO).await;
    let r = patch(&reg, &location, None, b"abc").await;
    let location = expect_in_progress(&r, REPO, 3);
    let r = reg.send(reg.req(Method::PUT, &location)).await;
    r.expect_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn empty_blob_through_a_session() {
    let reg = TestRegistry::start().await;
    let digest = sha256(b"");
    let location = reg.start_upload(REPO).await;
    let r = put_final(&reg, &location, &digest, None, None).await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, b"").await;
}

#[tokio::test]
async fn cancel_is_204_then_upload_unknown() {
    let reg = TestRegistry::start().await;
    let location = reg.start_upload(REPO).await;
    let r = patch(&reg, &location, None, b"some bytes").await;
    let location = expect_in_progress(&r, REPO, 10);

    reg.delete(&location).await.expect_status(204);
    reg.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    patch(&reg, &location, None, b"more")
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    put_final(&reg, &location, &sha256(b"some bytes"), None, None)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn unknown_session_is_404() {
    let reg = TestRegistry::start().await;
    let location = format!("/v2/{REPO}/blobs/uploads/3b241101-e2bb-4255-8caf-4136c566a962");
    reg.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    patch(&reg, &location, None, b"x")
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    put_final(&reg, &location, &sha256(b"x"), None, Some(b"x"))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn session_used_under_another_repository_is_unknown() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(1000, 18);
    let digest = sha256(&data);
    let location = reg.start_upload(REPO).await;
    let r = patch(&reg, &location, None, &data[..400]).await;
    let location = expect_in_progress(&r, REPO, 400);

    let moved = location.replacen(&format!("/v2/{REPO}/"), "/v2/another/repo/", 1);
    assert_ne!(moved, location);
    reg.get(&moved)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    patch(&reg, &moved, None, &data[400..])
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    put_final(&reg, &moved, &digest, None, Some(&data[400..]))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&moved)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.head(&format!("/v2/another/repo/blobs/{digest}"))
        .await
        .expect_status(404);

    // The session itself is untouched.
    expect_status_at(&status(&reg, &location).await, 400);
    let r = put_final(&reg, &location, &digest, None, Some(&data[400..])).await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, &data).await;
}

#[tokio::test]
async fn mount_from_a_repository_that_has_the_blob() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(10_000, 19);
    let digest = reg.push_blob("source/repo", &data).await;
    let r = reg
        .send(reg.req(
            Method::POST,
            &format!("/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"),
        ))
        .await;
    expect_created(&r, "target/repo", &digest);
    expect_blob(&reg, "target/repo", &digest, &data).await;
    // Deleting it from the source leaves the mounted copy.
    reg.delete(&format!("/v2/source/repo/blobs/{digest}"))
        .await
        .expect_status(202);
    expect_blob(&reg, "target/repo", &digest, &data).await;
}

#[tokio::test]
async fn mount_from_a_repository_without_the_blob_opens_a_session() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(10_000, 20);
    let digest = sha256(&data);
    // The blob exists, but not in the repository named by `from`.
    reg.push_blob("holder/repo", &data).await;
    for from in ["empty/repo", "never/created"] {
        let r = reg
            .send(reg.req(
                Method::POST,
                &format!("/v2/target/repo/blobs/uploads/?mount={digest}&from={from}"),
            ))
            .await;
        let location = expect_in_progress(&r, "target/repo", 0);
        reg.head(&format!("/v2/target/repo/blobs/{digest}"))
            .await
            .expect_status(404);
        // The session is an ordinary one.
        let r = put_final(&reg, &location, &digest, None, Some(&data)).await;
        expect_created(&r, "target/repo", &digest);
        reg.delete(&format!("/v2/target/repo/blobs/{digest}"))
            .await
            .expect_status(202);
    }
}

#[tokio::test]
async fn mount_without_from() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(777, 21);
    let digest = reg.push_blob("somewhere/else", &data).await;
    // Wharf mounts from any repository when `from` is omitted (the spec's MAY).
    let r = reg
        .send(reg.req(
            Method::POST,
            &format!("/v2/target/repo/blobs/uploads/?mount={digest}"),
        ))
        .await;
    expect_created(&r, "target/repo", &digest);
    expect_blob(&reg, "target/repo", &digest, &data).await;

    // A digest nobody has: an upload session instead.
    let unknown = sha256(b"nobody has this");
    let r = reg
        .send(reg.req(
            Method::POST,
            &format!("/v2/target/repo/blobs/uploads/?mount={unknown}"),
        ))
        .await;
    expect_in_progress(&r, "target/repo", 0);
}

#[tokio::test]
async fn sha512_chunked_upload() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(200_003, 22);
    let digest = sha512(&data);
    let location = reg.start_upload(REPO).await;
    let r = patch(&reg, &location, Some((0, 99_999)), &data[..100_000]).await;
    let location = expect_in_progress(&r, REPO, 100_000);
    let r = patch(&reg, &location, None, &data[100_000..200_000]).await;
    let location = expect_in_progress(&r, REPO, 200_000);
    let r = put_final(
        &reg,
        &location,
        &digest,
        Some((200_000, 200_002)),
        Some(&data[200_000..]),
    )
    .await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, &data).await;
    // Addressed by its sha512 digest; the sha256 of the same bytes was never given.
    let r = reg.head(&format!("/v2/{REPO}/blobs/{digest}")).await;
    r.expect_status(200);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
}

#[tokio::test]
async fn sha512_wrong_digest_is_refused() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(1000, 23);
    let location = reg.start_upload(REPO).await;
    let r = put_final(&reg, &location, &sha512(b"other"), None, Some(&data)).await;
    r.expect_error(400, "DIGEST_INVALID");
}

/// 64 MiB pushed in chunks of odd sizes (some far below, some above the server's
/// buffer sizes), committed by its sha256, read back and compared, plus ranges across
/// chunk borders.
#[tokio::test]
async fn large_blob_in_odd_chunks() {
    let reg = TestRegistry::start().await;
    const SIZE: usize = 64 * 1024 * 1024;
    let data = Bytes::from(pseudo_random(SIZE, 24));
    let digest = sha256(&data);
    let sizes = [
        1usize, 7_777_777, 3, 1_048_575, 1_048_577, 12_345_679, 65_537, 9_999_991,
    ];
    let mut location = reg.start_upload(REPO).await;
    let mut offset = 0usize;
    let mut borders = Vec::new();
    let mut i = 0;
    while SIZE - offset > 5_000_000 {
        let len = sizes[i % sizes.len()].min(SIZE - offset - 1);
        i += 1;
        let rb = reg
            .req(Method::PATCH, &location)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{}-{}", offset, offset + len - 1))
            .body(data.slice(offset..offset + len));
        let r = reg.send(rb).await;
        offset += len;
        borders.push(offset);
        location = expect_in_progress(&r, REPO, offset as u64);
    }
    // The rest goes with the closing PUT.
    let rb = reg
        .req(Method::PUT, &with_digest(&location, &digest))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", format!("{}-{}", offset, SIZE - 1))
        .body(data.slice(offset..));
    let r = reg.send(rb).await;
    expect_created(&r, REPO, &digest);

    let path = format!("/v2/{REPO}/blobs/{digest}");
    let r = reg.get(&path).await;
    r.expect_status(200);
    assert_eq!(r.body.len(), SIZE);
    // Byte equality with what was pushed (whose sha256 is `digest`): the same check as
    // hashing the read-back, without a second 64 MiB sha256 in a debug build.
    assert!(
        r.body == data,
        "the blob read back differs from what was pushed"
    );
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    for b in borders.iter().filter(|b| **b >= 3).take(4) {
        let (s, e) = (b - 3, b + 2);
        let r = reg
            .send(
                reg.req(Method::GET, &path)
                    .header("Range", format!("bytes={s}-{e}")),
            )
            .await;
        r.expect_status(206);
        assert_eq!(
            r.body.as_ref(),
            &data[s..=e],
            "bytes around chunk border {b}"
        );
    }
}

/// Retries `make` while the server reports the session busy (409): an interrupted
/// request may still be unwinding on the server when the client has already given up.
async fn retry_busy<F, Fut>(mut make: F) -> Resp
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    for _ in 0..50 {
        let r = make().await;
        if r.status != 409 {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    make().await
}

/// After an interrupted PATCH: the session is still at `at`; the rest of `data` from
/// there completes it, and the blob holds `data`.
async fn resume_from(reg: &TestRegistry, location: &str, at: usize, data: &[u8], digest: &str) {
    let r = retry_busy(|| status(reg, location)).await;
    expect_status_at(&r, at as u64);
    let end = data.len() as u64 - 1;
    let r = retry_busy(|| patch(reg, location, Some((at as u64, end)), &data[at..])).await;
    let location = expect_in_progress(&r, REPO, data.len() as u64);
    let r = put_final(reg, &location, digest, None, None).await;
    expect_created(&r, REPO, digest);
    expect_blob(reg, REPO, digest, data).await;
}

/// A PATCH whose body stream fails part way: the client aborts the request. The
/// session stays at its previous offset and the upload can be completed.
#[tokio::test]
async fn patch_interrupted_by_failing_body_stream() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(3_000_000, 25);
    let digest = sha256(&data);
    let location = reg.start_upload(REPO).await;
    let r = patch(&reg, &location, None, &data[..1_000_000]).await;
    let location = expect_in_progress(&r, REPO, 1_000_000);

    // Sends 1.5 MB of the next chunk, then fails.
    let parts: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::copy_from_slice(&data[1_000_000..1_500_000])),
        Ok(Bytes::copy_from_slice(&data[1_500_000..2_500_000])),
        Err(std::io::Error::other("client gave up")),
    ];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(parts));
    let sent = reg
        .client
        .patch(reg.url(&location))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await;
    assert!(
        sent.is_err(),
        "the interrupted PATCH was answered: {sent:?}"
    );

    resume_from(&reg, &location, 1_000_000, &data, &digest).await;
}

/// A PATCH whose connection is dropped before the declared Content-Length arrived.
#[tokio::test]
async fn patch_interrupted_by_dropped_connection() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(2_000_000, 26);
    let digest = sha256(&data);
    let location = reg.start_upload(REPO).await;
    let r = patch(&reg, &location, Some((0, 499_999)), &data[..500_000]).await;
    let location = expect_in_progress(&r, REPO, 500_000);

    let addr = reg.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: 500000-1999999\r\nContent-Length: 1500000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream
        .write_all(&data[500_000..1_200_000])
        .await
        .expect("write part of the body");
    stream.flush().await.expect("flush");
    stream.shutdown().await.expect("shutdown write side");
    // Whatever the server answers (if anything), the chunk must not count.
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await;
    drop(stream);
    let answer = String::from_utf8_lossy(&sink);
    assert!(
        !answer.starts_with("HTTP/1.1 202"),
        "a truncated chunk was accepted: {answer}"
    );

    resume_from(&reg, &location, 500_000, &data, &digest).await;
}

/// Several PATCHes race for the same offset of one session, each with different bytes.
/// At most one may count, and the blob committed under the winner's digest must hold
/// exactly the winner's bytes (the stored bytes and the hash state must not come from
/// different requests).
#[tokio::test]
async fn racing_chunks_at_the_same_offset() {
    let reg = TestRegistry::start().await;
    const RACERS: usize = 6;
    const LEN: usize = 256 * 1024;
    for round in 0..8u64 {
        let location = reg.start_upload(REPO).await;
        let bodies: Vec<Vec<u8>> = (0..RACERS)
            .map(|i| pseudo_random(LEN, 1000 + round * 100 + i as u64))
            .collect();
        let sends = bodies.iter().map(|b| {
            reg.client
                .patch(reg.url(&location))
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("0-{}", LEN - 1))
                .body(b.clone())
                .send()
        });
        let results = futures_util::future::join_all(sends).await;
        let mut winners = Vec::new();
        for (i, res) in results.into_iter().enumerate() {
            let res = res.expect("PATCH answered");
            let status = res.status().as_u16();
            assert!(
                status == 202 || status == 409 || status == 416,
                "round {round}: racer {i} got {status}"
            );
            if status == 202 {
                winners.push(i);
            }
        }
        assert!(
            winners.len() <= 1,
            "round {round}: several chunks accepted at offset 0: {winners:?}"
        );
        let r = retry_busy(|| status(&reg, &location)).await;
        let Some(&winner) = winners.first() else {
            // Nobody won (all refused): the session must still be empty.
            expect_status_at(&r, 0);
            continue;
        };
        expect_status_at(&r, LEN as u64);
        let digest = sha256(&bodies[winner]);
        let r = put_final(&reg, &location, &digest, None, None).await;
        expect_created(&r, REPO, &digest);
        let r = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
        r.expect_status(200);
        if r.body.as_ref() != bodies[winner].as_slice() {
            let source = bodies.iter().position(|b| b.as_slice() == r.body.as_ref());
            panic!(
                "round {round}: blob {digest} (racer {winner}'s, the one answered 202) is served \
                 with other bytes, sha256 {}: {}",
                sha256(&r.body),
                match source {
                    Some(i) => format!("those of racer {i}, which was refused"),
                    None => "bytes of no single racer".to_string(),
                }
            );
        }
    }
}

#[tokio::test]
async fn empty_blobs_by_sha512() {
    let reg = TestRegistry::start().await;
    let digest = sha512(b"");
    let r = reg
        .send(reg.req(
            Method::POST,
            &format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
        ))
        .await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, b"").await;
    // Through a session (which hashes with sha256 unless told otherwise).
    let location = reg.start_upload("other/repo").await;
    let r = put_final(&reg, &location, &digest, None, None).await;
    expect_created(&r, "other/repo", &digest);
    expect_blob(&reg, "other/repo", &digest, b"").await;
}

/// A mount of a sha512 digest nobody has opens a session; that session can still be
/// finished with the sha256 digest of what is sent.
#[tokio::test]
async fn mount_fallback_session_with_another_algorithm() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(9999, 27);
    let r = reg
        .send(reg.req(
            Method::POST,
            &format!(
                "/v2/{REPO}/blobs/uploads/?mount={}&from=nowhere/repo",
                sha512(b"absent")
            ),
        ))
        .await;
    let location = expect_in_progress(&r, REPO, 0);
    let r = patch(&reg, &location, None, &data).await;
    let location = expect_in_progress(&r, REPO, 9999);
    let digest = sha256(&data);
    let r = put_final(&reg, &location, &digest, None, None).await;
    expect_created(&r, REPO, &digest);
    expect_blob(&reg, REPO, &digest, &data).await;
}
