//! Blobs: `GET` (whole and `Range`), `HEAD`, `DELETE`, repository scoping, sha512.

use reqwest::Method;

use crate::support::{pseudo_random, sha256, sha512, Options, TestRegistry};

const REPO: &str = "library/blobs-test";

#[tokio::test]
async fn get_returns_exact_bytes_and_headers() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(100_000, 1);
    let digest = reg.push_blob(REPO, &data).await;

    let r = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    r.expect_status(200);
    assert_eq!(r.body.as_ref(), data.as_slice(), "blob bytes differ");
    assert_eq!(r.content_length(), Some(data.len() as u64));
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
}

#[tokio::test]
async fn head_gives_size_and_digest_without_body() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(4321, 2);
    let digest = reg.push_blob(REPO, &data).await;

    let r = reg.head(&format!("/v2/{REPO}/blobs/{digest}")).await;
    r.expect_status(200);
    assert_eq!(r.content_length(), Some(4321));
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert!(r.body.is_empty());
}

async fn ranged(reg: &TestRegistry, path: &str, range: &str) -> crate::support::Resp {
    reg.send(reg.req(Method::GET, path).header("Range", range))
        .await
}

#[tokio::test]
async fn range_requests_give_206_with_content_range() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(1000, 3);
    let digest = reg.push_blob(REPO, &data).await;
    let path = format!("/v2/{REPO}/blobs/{digest}");

    // (Range header, expected first byte, expected last byte inclusive)
    let cases = [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-7", 993, 999),
        ("bytes=995-5000", 995, 999),
        ("bytes=0-999", 0, 999),
        ("bytes=-5000", 0, 999),
    ];
    for (range, first, last) in cases {
        let r = ranged(&reg, &path, range).await;
        r.expect_status(206);
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes {first}-{last}/1000").as_str()),
            "{range}"
        );
        assert_eq!(r.content_length(), Some(last - first + 1), "{range}");
        assert_eq!(
            r.body.as_ref(),
            &data[first as usize..=last as usize],
            "{range}: wrong bytes"
        );
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    }
}

#[tokio::test]
async fn unsatisfiable_range_is_416_with_size() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(1000, 4);
    let digest = reg.push_blob(REPO, &data).await;
    let path = format!("/v2/{REPO}/blobs/{digest}");
    for range in [
        "bytes=1000-",
        "bytes=1000-1001",
        "bytes=5000-6000",
        "bytes=-0",
    ] {
        let r = ranged(&reg, &path, range).await;
        r.expect_status(416);
        assert_eq!(r.header("Content-Range"), Some("bytes */1000"), "{range}");
        r.error_code();
    }
}

/// Regression (found writing the fuzz target for ranges): a suffix range of an empty
/// blob was a 206 whose `Content-Range` came from an overflowing `end - 1`.
#[tokio::test]
async fn suffix_range_of_an_empty_blob_is_416() {
    let reg = TestRegistry::start_with(Options {
        redirect_disable: true,
        ..Options::default()
    })
    .await;
    let digest = reg.push_blob(REPO, b"").await;
    let path = format!("/v2/{REPO}/blobs/{digest}");
    for range in ["bytes=-5", "bytes=0-", "bytes=-1"] {
        let r = ranged(&reg, &path, range).await;
        r.expect_status(416);
        assert_eq!(r.header("Content-Range"), Some("bytes */0"), "{range}");
        r.error_code();
    }
    let r = reg.get(&path).await;
    r.expect_status(200);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn empty_blob_round_trips() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob(REPO, b"").await;
    assert_eq!(
        digest,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let path = format!("/v2/{REPO}/blobs/{digest}");
    let r = reg.get(&path).await;
    r.expect_status(200);
    assert!(r.body.is_empty());
    assert_eq!(r.content_length(), Some(0));
    let r = reg.head(&path).await;
    r.expect_status(200);
    assert_eq!(r.content_length(), Some(0));
    let r = ranged(&reg, &path, "bytes=0-").await;
    r.expect_status(416);
    assert_eq!(r.header("Content-Range"), Some("bytes */0"));
}

#[tokio::test]
async fn unknown_blob_is_404_blob_unknown() {
    let reg = TestRegistry::start().await;
    let missing = sha256(b"never pushed");
    let path = format!("/v2/{REPO}/blobs/{missing}");
    reg.get(&path).await.expect_error(404, "BLOB_UNKNOWN");
    reg.head(&path).await.expect_status(404);
    // A repository that does not exist at all.
    reg.get(&format!("/v2/nobody/here/blobs/{missing}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn blobs_are_scoped_to_their_repository() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(500, 5);
    let digest = reg.push_blob("team/a", &data).await;
    reg.get(&format!("/v2/team/b/blobs/{digest}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.head(&format!("/v2/team/b/blobs/{digest}"))
        .await
        .expect_status(404);
    reg.get(&format!("/v2/team/a/blobs/{digest}"))
        .await
        .expect_status(200);
}

#[tokio::test]
async fn delete_is_202_then_blob_unknown() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(2048, 6);
    let digest = reg.push_blob(REPO, &data).await;
    // The same bytes in another repository must survive the delete.
    reg.push_blob("other/repo", &data).await;
    let path = format!("/v2/{REPO}/blobs/{digest}");

    let r = reg.delete(&path).await;
    r.expect_status(202);
    reg.get(&path).await.expect_error(404, "BLOB_UNKNOWN");
    reg.head(&path).await.expect_status(404);
    reg.delete(&path).await.expect_error(404, "BLOB_UNKNOWN");

    let r = reg.get(&format!("/v2/other/repo/blobs/{digest}")).await;
    r.expect_status(200);
    assert_eq!(r.body.as_ref(), data.as_slice());

    // Pushing it again makes it readable again.
    reg.push_blob(REPO, &data).await;
    let r = reg.get(&path).await;
    r.expect_status(200);
    assert_eq!(r.body.as_ref(), data.as_slice());
}

#[tokio::test]
async fn sha512_blob_single_post() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(3000, 7);
    let digest = sha512(&data);
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
    r.expect_status(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(
        r.header("Location"),
        Some(format!("/v2/{REPO}/blobs/{digest}").as_str())
    );
    let r = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    r.expect_status(200);
    assert_eq!(r.body.as_ref(), data.as_slice());
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    let r = reg.head(&format!("/v2/{REPO}/blobs/{digest}")).await;
    r.expect_status(200);
    assert_eq!(r.content_length(), Some(3000));
}

/// Names whose components look like the API's own path words still route correctly.
#[tokio::test]
async fn names_containing_route_words() {
    let reg = TestRegistry::start().await;
    for repo in [
        "x/blobs/uploads",
        "a/manifests/b",
        "t/tags/list",
        "a/b/c/d/e/f",
    ] {
        let data = pseudo_random(100, repo.len() as u64);
        let digest = reg.push_blob(repo, &data).await;
        let r = reg.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        r.expect_status(200);
        assert_eq!(r.body.as_ref(), data.as_slice(), "{repo}");
        let location = reg.start_upload(repo).await;
        assert!(
            location.starts_with(&format!("/v2/{repo}/blobs/uploads/")),
            "{repo}: {location}"
        );
        let r = reg.get(&location).await;
        r.expect_status(204);
    }
}
