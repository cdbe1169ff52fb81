//! Blob GETs redirected to the object store (`storage.redirect`): on S3 (moto) and Azure
//! (Azurite) a `307` to a presigned URL of that store, which serves the bytes and
//! `Range`; `HEAD` answered by the registry; `storage.redirect.disable` and the
//! filesystem stream. The `cloudfront` middleware needs S3; elsewhere it is refused.

use reqwest::Method;
use serde_json::json;

use crate::support::{need, pseudo_random, storage_kind, Options, TestRegistry};

const REPO: &str = "library/redirect-test";

/// The store endpoint redirects must point at, if this storage redirects.
fn store_endpoint() -> Option<String> {
    match storage_kind().as_str() {
        "s3" => Some(need("WHARF_TEST_S3_ENDPOINT")),
        "azure" => Some(need("WHARF_TEST_AZURE_ENDPOINT")),
        _ => None,
    }
}

/// `wharf_blob_redirects_total{target="presigned"}` (process-wide: only grows).
async fn presigned_redirects(reg: &TestRegistry) -> u64 {
    let r = reg.get("/metrics").await;
    r.expect_status(200);
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix("wharf_blob_redirects_total{target=\"presigned\"} "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn blob_get_redirects_to_the_store() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(200_000, 41);
    let digest = reg.push_blob(REPO, &data).await;
    let path = format!("/v2/{REPO}/blobs/{digest}");
    let before = presigned_redirects(&reg).await;

    // The registry's own answer, not followed.
    let r = reg
        .client
        .get(reg.url(&path))
        .send()
        .await
        .expect("GET blob");
    let Some(endpoint) = store_endpoint() else {
        // Filesystem / in-memory: streamed by the registry.
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers().get("Location").is_none());
        assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
        return;
    };
    assert_eq!(r.status().as_u16(), 307, "{:?}", r.headers());
    let h = r.headers().clone();
    assert_eq!(h["Docker-Content-Digest"], digest.as_str());
    assert_eq!(h["Docker-Distribution-API-Version"], "registry/2.0");
    let location = h["Location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{endpoint}/")),
        "Location {location} is not on the store {endpoint}"
    );
    assert!(location.contains('?'), "unsigned Location {location}");
    // Never the blob's size: the bytes come from the store.
    assert_ne!(
        h.get("Content-Length").map(|v| v.to_str().unwrap()),
        Some(data.len().to_string().as_str())
    );
    assert!(r.bytes().await.unwrap().is_empty());
    assert!(presigned_redirects(&reg).await > before);

    // HEAD: answered by the registry itself.
    let head = reg.head(&path).await;
    head.expect_status(200);
    assert_eq!(head.content_length(), Some(data.len() as u64));
    assert_eq!(head.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert!(head.header("Location").is_none());

    // Following the Location yields the bytes, and honours Range.
    let got = reg.client.get(&location).send().await.unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
    let ranged = reg
        .client
        .get(&location)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status().as_u16(), 206);
    assert_eq!(
        ranged.headers()["Content-Range"],
        format!("bytes 1000-1999/{}", data.len()).as_str()
    );
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &data[1000..2000]);

    // A ranged GET is redirected too; an unsatisfiable one is refused by the registry.
    let r = reg
        .client
        .get(reg.url(&path))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 307);
    let r = reg
        .send(reg.req(Method::GET, &path).header("Range", "bytes=300000-"))
        .await;
    r.expect_status(416);
    // Through the harness (which follows like a client): the bytes of the range.
    let r = reg
        .send(reg.req(Method::GET, &path).header("Range", "bytes=10-19"))
        .await;
    r.expect_status(206);
    assert!(r.redirected_to.is_some());
    assert_eq!(r.body.as_ref(), &data[10..20]);
}

#[tokio::test]
async fn redirect_disable_streams() {
    let reg = TestRegistry::start_with(Options {
        redirect_disable: true,
        ..Options::default()
    })
    .await;
    let data = pseudo_random(50_000, 42);
    let digest = reg.push_blob(REPO, &data).await;
    let r = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    r.expect_status(200);
    assert!(
        r.redirected_to.is_none(),
        "redirected to {:?}",
        r.redirected_to
    );
    assert!(r.header("Location").is_none());
    assert_eq!(r.body.as_ref(), data.as_slice());
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
}

#[test]
fn cloudfront_needs_s3() {
    let tree = json!({
        "storage": { "filesystem": { "rootdirectory": "/tmp/x" } },
        "middleware": { "storage": [{ "name": "cloudfront", "options": {
            "baseurl": "https://d1.cloudfront.net", "privatekey": "/k.pem", "keypairid": "K1" } }] },
    });
    let e = wharf::config::Config::from_tree(serde_norway::to_value(tree).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("middleware.storage[0].name"), "{e}");
    let tree = json!({
        "middleware": { "storage": [{ "name": "redirect", "options": {} }] },
    });
    let e = wharf::config::Config::from_tree(serde_norway::to_value(tree).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("middleware.storage[0]") && e.contains("redirect"),
        "{e}"
    );
}

/// `openssl genrsa` into `dir`: the CloudFront key pair's private key.
fn cloudfront_key(dir: &std::path::Path) -> String {
    let key = dir.join("cf.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genrsa", "-out", key.to_str().unwrap(), "2048"])
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl genrsa failed");
    key.display().to_string()
}

/// The `cloudfront` middleware through HTTP on S3: clients outside the AWS ranges get
/// CloudFront, clients inside get S3; `X-Forwarded-For` counts only from a trusted
/// proxy. (Signatures are checked against the public key in `src/redirect/tests.rs`.)
/// The middleware needs S3: on other storages `cloudfront_needs_s3` covers the refusal,
/// and this test is left out (`#[ignore]`: nextest reports it skipped); scripts/test runs
/// it in the S3 step with `--run-ignored all`. Asked for off S3, it fails.
#[tokio::test]
#[ignore = "S3 only: WHARF_TEST_STORAGE=s3 and --run-ignored all (scripts/test's S3 step)"]
async fn cloudfront_or_s3_by_client_address() {
    assert_eq!(
        storage_kind(),
        "s3",
        "the cloudfront middleware needs WHARF_TEST_STORAGE=s3 (scripts/test's S3 step)"
    );
    let dir = tempfile::tempdir().unwrap();
    let key = cloudfront_key(dir.path());
    let ranges = dir.path().join("ip-ranges.json");
    std::fs::write(
        &ranges,
        r#"{"prefixes": [{"ip_prefix": "52.94.0.0/22", "region": "us-east-1", "service": "AMAZON"}]}"#,
    )
    .unwrap();
    let middleware = json!({ "storage": [{ "name": "cloudfront", "options": {
        "baseurl": "https://d111111abcdef8.cloudfront.net",
        "privatekey": key, "keypairid": "K2JCJMDEHXQW5F", "duration": "600s",
        "ipfilteredby": "aws", "iprangesfile": ranges.display().to_string(),
    } }] });
    let start = |trusted: bool| {
        let mut extra = json!({ "middleware": middleware.clone() });
        if trusted {
            extra["http"] = json!({ "trustedproxies": ["127.0.0.1/32"] });
        }
        TestRegistry::start_with(Options {
            extra: Some(extra),
            ..Options::default()
        })
    };
    let s3 = need("WHARF_TEST_S3_ENDPOINT");
    let location = |reg: &TestRegistry, path: &str, xff: Option<&'static str>| {
        let mut rb = reg.client.get(reg.url(path));
        if let Some(xff) = xff {
            rb = rb.header("X-Forwarded-For", xff);
        }
        async move {
            let r = rb.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 307);
            r.headers()["Location"].to_str().unwrap().to_string()
        }
    };

    let reg = start(true).await;
    let data = pseudo_random(3000, 43);
    let digest = reg.push_blob(REPO, &data).await;
    let path = format!("/v2/{REPO}/blobs/{digest}");
    // The peer (a trusted proxy, no header) is outside AWS: CloudFront.
    let cf = location(&reg, &path, None).await;
    assert!(
        cf.starts_with("https://d111111abcdef8.cloudfront.net/") && cf.contains("/blobs/"),
        "{cf}"
    );
    for param in ["Expires=", "&Signature=", "&Key-Pair-Id=K2JCJMDEHXQW5F"] {
        assert!(cf.contains(param), "{cf} lacks {param}");
    }
    // A client in AWS behind the trusted proxy: S3, which serves the bytes.
    let direct = location(&reg, &path, Some("198.51.100.1, 52.94.1.2")).await;
    assert!(direct.starts_with(&format!("{s3}/")), "{direct}");
    let got = reg.client.get(&direct).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
    // An outside client claiming an AWS address behind it: the right-most one counts.
    let spoofed = location(&reg, &path, Some("52.94.1.2, 198.51.100.1")).await;
    assert!(
        spoofed.starts_with("https://d111111abcdef8.cloudfront.net/"),
        "{spoofed}"
    );
    drop(reg);

    // Without trusted proxies, the header is ignored.
    let reg = start(false).await;
    reg.push_blob(REPO, &data).await;
    let ignored = location(&reg, &path, Some("52.94.1.2")).await;
    assert!(
        ignored.starts_with("https://d111111abcdef8.cloudfront.net/"),
        "{ignored}"
    );
}
