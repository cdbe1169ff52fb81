//! Bad input: malformed names, digests, ranges, `Content-Range`, manifests, query strings
//! and header values. Each must be a 4xx with the spec's JSON error body, never a 5xx
//! (`TestRegistry::send` checks both on every response) — and leave no trace.

use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

const REPO: &str = "errors/repo";

/// A name of exactly `len` characters made of valid components (`ab/ab/…`).
fn long_name(len: usize) -> String {
    let mut s = "ab/".repeat(len / 3 + 1);
    s.truncate(len);
    if s.ends_with('/') {
        s.pop();
        s.push('c');
    }
    s
}

/// Repository names the grammar refuses, as they appear in a URL path.
fn bad_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "UPPER",
        "Mixed/case",
        "-lead",
        "trail-",
        "a..b",
        "a___b",
        "a//b",
        "a/_b",
        ".hidden",
        "a%20b",
        "a%2Fb",
        "a%FF",
        "%C3%A9t%C3%A9",
        "a%00b",
        "a;b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(long_name(256));
    v.push(long_name(4000));
    v
}

#[tokio::test]
async fn malformed_names_are_name_invalid() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob("valid/repo", b"x").await;
    assert_eq!(long_name(256).len(), 256);
    for name in bad_names() {
        let short: String = name.chars().take(40).collect();
        let requests = [
            reg.req(Method::GET, &format!("/v2/{name}/tags/list")),
            reg.req(Method::GET, &format!("/v2/{name}/manifests/latest")),
            reg.req(Method::PUT, &format!("/v2/{name}/manifests/latest"))
                .header("Content-Type", OCI_MANIFEST)
                .body(image_manifest(b"x", &[], None)),
            reg.req(Method::GET, &format!("/v2/{name}/blobs/{digest}")),
            reg.req(Method::POST, &format!("/v2/{name}/blobs/uploads/")),
            reg.req(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
            )
            .body("x"),
            reg.req(Method::GET, &format!("/v2/{name}/referrers/{digest}")),
        ];
        for rb in requests {
            let r = reg.send(rb).await;
            assert_eq!(
                r.status,
                400,
                "{short}: {}: {} {}",
                r.what,
                r.status,
                r.text()
            );
            assert_eq!(r.error_code(), "NAME_INVALID", "{short}: {}", r.what);
        }
    }
    // Nothing was created by any of them.
    let r = reg.get("/v2/_catalog").await;
    assert_eq!(r.json()["repositories"], json!(["valid/repo"]));
}

fn bad_digests() -> Vec<String> {
    let hex64 = "a".repeat(64);
    vec![
        "sha256:xyz".into(),
        format!("sha256:{}", &hex64[..63]),
        format!("sha256:{hex64}0"),
        format!("sha256:{}", hex64.to_uppercase()),
        format!("sha512:{hex64}"),
        "md5:d41d8cd98f00b204e9800998ecf8427e".into(),
        format!("sha384:{}", "a".repeat(96)),
        format!("SHA256:{hex64}"),
        format!(":{hex64}"),
        "sha256:".into(),
        format!("sha256:{}g", &hex64[..63]),
        format!("sha256:{hex64}%00"),
        "notadigest".into(),
    ]
}

#[tokio::test]
async fn malformed_digests_are_digest_invalid() {
    let reg = TestRegistry::start().await;
    reg.push_image(REPO, "latest", 70).await;
    let location = reg.start_upload(REPO).await;
    for d in bad_digests() {
        let mut requests = vec![
            reg.req(
                Method::POST,
                &format!("/v2/{REPO}/blobs/uploads/?digest={d}"),
            )
            .body("x"),
            reg.req(Method::PUT, &format!("{location}?digest={d}"))
                .body("x"),
            reg.req(Method::GET, &format!("/v2/{REPO}/referrers/{d}")),
        ];
        // In a path, a string without ':' is not a digest-shaped reference.
        if d.contains(':') {
            requests.push(reg.req(Method::GET, &format!("/v2/{REPO}/blobs/{d}")));
            requests.push(reg.req(Method::DELETE, &format!("/v2/{REPO}/blobs/{d}")));
            requests.push(reg.req(Method::GET, &format!("/v2/{REPO}/manifests/{d}")));
            requests.push(reg.req(Method::DELETE, &format!("/v2/{REPO}/manifests/{d}")));
            requests.push(
                reg.req(Method::PUT, &format!("/v2/{REPO}/manifests/{d}"))
                    .header("Content-Type", OCI_MANIFEST)
                    .body(image_manifest(b"x", &[], None)),
            );
        }
        for rb in requests {
            let r = reg.send(rb).await;
            r.expect_error(400, "DIGEST_INVALID");
        }
        let r = reg.head(&format!("/v2/{REPO}/blobs/{d}")).await;
        assert!((400..500).contains(&r.status), "{}: {}", r.what, r.status);
    }
    // The session the bad PUTs named is still usable.
    let r = reg.get(&location).await;
    r.expect_status(204);
}

#[tokio::test]
async fn missing_or_empty_digest_parameters() {
    let reg = TestRegistry::start().await;
    let location = reg.start_upload(REPO).await;
    for query in ["?digest=", "?digest", "?foo=bar", "?digest=&digest="] {
        let r = reg
            .send(
                reg.req(Method::PUT, &format!("{location}{query}"))
                    .body("x"),
            )
            .await;
        r.expect_error(400, "DIGEST_INVALID");
    }
    let r = reg
        .send(
            reg.req(Method::POST, &format!("/v2/{REPO}/blobs/uploads/?digest="))
                .body("x"),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn malformed_ranges_are_4xx() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(100, 71);
    let digest = reg.push_blob(REPO, &data).await;
    let path = format!("/v2/{REPO}/blobs/{digest}");
    for range in [
        "bytes=abc",
        "bytes=",
        "bytes=-",
        "bytes=--1",
        "bytes=1-2-3",
        "bytes=5-1",
        "items=0-1",
        "0-1",
        "bytes=99999999999999999999-",
        "bytes=0-99999999999999999999",
        "bytes=-99999999999999999999",
        "bytes= 1 2-3",
    ] {
        let r = reg
            .send(reg.req(Method::GET, &path).header("Range", range))
            .await;
        r.expect_client_error();
    }
    // Valid but extreme values.
    let r = reg
        .send(
            reg.req(Method::GET, &path)
                .header("Range", "bytes=0-18446744073709551615"),
        )
        .await;
    r.expect_status(206);
    assert_eq!(r.header("Content-Range"), Some("bytes 0-99/100"));
    assert_eq!(r.body.as_ref(), data.as_slice());
    let r = reg
        .send(
            reg.req(Method::GET, &path)
                .header("Range", "bytes=18446744073709551615-"),
        )
        .await;
    r.expect_status(416);
    assert_eq!(r.header("Content-Range"), Some("bytes */100"));
    // Several ranges: served whole (200) or as the first range, never an error.
    let r = reg
        .send(reg.req(Method::GET, &path).header("Range", "bytes=0-1,4-5"))
        .await;
    assert!(
        r.status == 200 || r.status == 206,
        "{}: {}",
        r.what,
        r.status
    );
    if r.status == 200 {
        assert_eq!(r.body.as_ref(), data.as_slice());
    }
    // A header value that is not ASCII.
    let r = reg
        .send(reg.req(Method::GET, &path).header(
            "Range",
            HeaderValue::from_bytes(b"bytes=0-\xff").expect("obs-text header"),
        ))
        .await;
    r.expect_client_error();
}

#[tokio::test]
async fn malformed_content_ranges_are_4xx_and_leave_the_session() {
    let reg = TestRegistry::start().await;
    let location = reg.start_upload(REPO).await;
    let r = reg
        .send(
            reg.req(Method::PATCH, &location)
                .header("Content-Range", "0-4")
                .body("01234"),
        )
        .await;
    r.expect_status(202);
    let location = r.must_header("Location").to_string();
    for cr in [
        "garbage",
        "5-1",
        "-1",
        "5-",
        "-",
        "5",
        "bytes=5-9",
        "5 - 9 - 1",
        "x5-9",
        "5-99999999999999999999",
        "99999999999999999999-5",
        "5-18446744073709551615",
        "0-18446744073709551615",
    ] {
        for method in [Method::PATCH, Method::PUT] {
            let mut path = location.clone();
            if method == Method::PUT {
                path = format!("{location}?digest={}", sha256(b"0123456789"));
            }
            let r = reg
                .send(
                    reg.req(method.clone(), &path)
                        .header("Content-Range", cr)
                        .body("56789"),
                )
                .await;
            let code = r.expect_client_error();
            assert!(
                code == "BLOB_UPLOAD_INVALID" || r.status == 416,
                "{} with Content-Range {cr:?}: {} {code}",
                r.what,
                r.status
            );
            let r = reg.get(&location).await;
            r.expect_status(204);
            assert_eq!(r.header("Range"), Some("0-4"), "after Content-Range {cr:?}");
        }
    }
    // On a fresh session (offset 0) the largest end: its length does not fit in u64.
    // (With and without a body: a length computed modulo 2^64 is 0.)
    let fresh = reg.start_upload(REPO).await;
    for (method, path, body) in [
        (Method::PATCH, fresh.clone(), "56789"),
        (Method::PATCH, fresh.clone(), ""),
        (
            Method::PUT,
            format!("{fresh}?digest={}", sha256(b"56789")),
            "56789",
        ),
        (Method::PUT, format!("{fresh}?digest={}", sha256(b"")), ""),
    ] {
        let r = reg
            .send(
                reg.req(method, &path)
                    .header("Content-Range", "0-18446744073709551615")
                    .body(body),
            )
            .await;
        r.expect_client_error();
        let r = reg.get(&fresh).await;
        r.expect_status(204);
        assert_eq!(r.header("Range"), Some("0-0"));
    }
    // Non-ASCII value.
    let r = reg
        .send(
            reg.req(Method::PATCH, &location)
                .header(
                    "Content-Range",
                    HeaderValue::from_bytes(b"5-9\xff").expect("obs-text header"),
                )
                .body("56789"),
        )
        .await;
    r.expect_client_error();
    // The session still completes.
    let r = reg
        .send(
            reg.req(
                Method::PUT,
                &format!("{location}?digest={}", sha256(b"0123456789")),
            )
            .header("Content-Range", "5-9")
            .body("56789"),
        )
        .await;
    r.expect_status(201);
}

#[tokio::test]
async fn malformed_manifests_are_manifest_invalid() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;
    let d = sha256(config);
    let good_config = json!({"mediaType": OCI_CONFIG, "digest": d, "size": 2});
    let image = |extra: serde_json::Value| {
        let mut m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": good_config, "layers": []});
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                m.as_object_mut().expect("object").remove(k);
            } else {
                m[k] = v.clone();
            }
        }
        serde_json::to_vec(&m).expect("json")
    };
    let mut nested = "[".repeat(100_000);
    nested.push_str(&"]".repeat(100_000));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", vec![]),
        ("not JSON", b"this is not json".to_vec()),
        ("truncated JSON", image(json!({}))[..40].to_vec()),
        ("JSON array", b"[]".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("JSON string", b"\"manifest\"".to_vec()),
        ("deeply nested", nested.into_bytes()),
        ("not UTF-8", b"{\"schemaVersion\":2,\"x\":\"\xff\xfe\"}".to_vec()),
        ("no schemaVersion", image(json!({"schemaVersion": null}))),
        ("schemaVersion 3", image(json!({"schemaVersion": 3}))),
        ("schemaVersion string", image(json!({"schemaVersion": "2"}))),
        ("no config", image(json!({"config": null}))),
        ("config not an object", image(json!({"config": "x"}))),
        ("config without digest", image(json!({"config": {"mediaType": OCI_CONFIG, "size": 2}}))),
        ("config without size", image(json!({"config": {"mediaType": OCI_CONFIG, "digest": d}}))),
        ("config without mediaType", image(json!({"config": {"digest": d, "size": 2}}))),
        ("negative size", image(json!({"config": {"mediaType": OCI_CONFIG, "digest": d, "size": -1}}))),
        ("huge size", format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"{OCI_CONFIG}\",\"digest\":\"{d}\",\"size\":1e400}},\"layers\":[]}}").into_bytes()),
        ("fractional size", image(json!({"config": {"mediaType": OCI_CONFIG, "digest": d, "size": 2.5}}))),
        ("bad config digest", image(json!({"config": {"mediaType": OCI_CONFIG, "digest": "sha256:zz", "size": 2}}))),
        ("md5 config digest", image(json!({"config": {"mediaType": OCI_CONFIG, "digest": "md5:d41d8cd98f00b204e9800998ecf8427e", "size": 2}}))),
        ("layers not an array", image(json!({"layers": {"a": 1}}))),
        ("layer without digest", image(json!({"layers": [{"mediaType": OCI_LAYER, "size": 1}]}))),
        ("manifest with manifests", image(json!({"manifests": []}))),
        ("bad subject digest", image(json!({"subject": {"mediaType": OCI_MANIFEST, "digest": "sha256:1", "size": 1}}))),
        ("unknown mediaType", image(json!({"mediaType": "application/x-unknown"}))),
    ];
    for (what, body) in bodies {
        for ct in [Some(OCI_MANIFEST), None] {
            let r = reg.put_manifest(REPO, "bad", ct, &body).await;
            assert_eq!(
                r.status,
                400,
                "{what} (Content-Type {ct:?}): {} {}",
                r.status,
                r.text()
            );
            assert_eq!(r.error_code(), "MANIFEST_INVALID", "{what}: {}", r.text());
        }
    }
    // An index with image-manifest fields.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "config": good_config,
    }))
    .unwrap();
    reg.put_manifest(REPO, "bad", Some(OCI_INDEX), &index)
        .await
        .expect_error(400, "MANIFEST_INVALID");
    // Unknown Content-Type with no mediaType in the body.
    let no_type =
        serde_json::to_vec(&json!({"schemaVersion": 2, "config": good_config, "layers": []}))
            .unwrap();
    reg.put_manifest(REPO, "bad", Some("application/x-unknown"), &no_type)
        .await
        .expect_error(400, "MANIFEST_INVALID");
    reg.get(&format!("/v2/{REPO}/manifests/bad"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // A Content-Type that is not ASCII.
    let r = reg
        .send(
            reg.req(Method::PUT, &format!("/v2/{REPO}/manifests/bad"))
                .header(
                    "Content-Type",
                    HeaderValue::from_bytes(b"application/vnd.oci.image.manifest.v1+json\xff")
                        .expect("obs-text header"),
                )
                .body(image(json!({}))),
        )
        .await;
    r.expect_client_error();
}

#[tokio::test]
async fn malformed_tags_on_push_are_refused() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;
    let body = image_manifest(config, &[], None);
    for tag in [
        ".dot".to_string(),
        "-dash".to_string(),
        "a".repeat(129),
        "t%20x".into(),
        "t%FF".into(),
    ] {
        let r = reg
            .put_manifest(REPO, &tag, Some(OCI_MANIFEST), &body)
            .await;
        assert_eq!(r.status, 400, "{tag}: {} {}", r.status, r.text());
        r.error_code();
        // Reading such a tag finds nothing.
        let r = reg.get(&format!("/v2/{REPO}/manifests/{tag}")).await;
        r.expect_client_error();
    }
    // The longest valid tag works.
    let tag = format!("_{}", "a".repeat(127));
    reg.push_manifest(REPO, &tag, OCI_MANIFEST, &body).await;
    let r = reg.get(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(r.json()["tags"], json!([tag]));
}

#[tokio::test]
async fn malformed_pagination_is_4xx() {
    let reg = TestRegistry::start().await;
    reg.push_image(REPO, "latest", 72).await;
    for q in [
        "n=abc",
        "n=-1",
        "n=1.5",
        "n=99999999999999999999",
        "n=%FF",
        "n=1e3",
        "n= 1",
    ] {
        for path in [
            format!("/v2/{REPO}/tags/list?{q}"),
            format!("/v2/_catalog?{q}"),
        ] {
            let r = reg.get(&path).await;
            assert_eq!(r.status, 400, "{}: {} {}", r.what, r.status, r.text());
            r.error_code();
        }
    }
    // Odd but well-formed `last` values are just strings to compare.
    for q in [
        "last=%FF%FE",
        "last=%00",
        "last=&n=1",
        "last=a%26b",
        "last=%ZZ",
    ] {
        for path in [
            format!("/v2/{REPO}/tags/list?{q}"),
            format!("/v2/_catalog?{q}"),
        ] {
            let r = reg.get(&path).await;
            r.expect_status(200);
        }
    }
}

#[tokio::test]
async fn malformed_upload_queries() {
    let reg = TestRegistry::start().await;
    let r = reg
        .send(reg.req(
            Method::POST,
            &format!("/v2/{REPO}/blobs/uploads/?digest-algorithm=md5"),
        ))
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    // An upload id that cannot exist.
    for id in ["..", "%2e%2e", "a%2Fb", &"x".repeat(3000), "%FF"] {
        let r = reg.get(&format!("/v2/{REPO}/blobs/uploads/{id}")).await;
        assert!((400..500).contains(&r.status), "{}: {}", r.what, r.status);
    }
}

/// The spec: a mount that cannot be done (here: arguments that name nothing valid)
/// SHOULD fall back to an ordinary upload session, `202 Accepted` (distribution does).
#[tokio::test]
async fn mount_with_malformed_arguments_falls_back_to_an_upload() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob("source/repo", b"mount me").await;
    for query in [
        format!("mount={digest}&from=NOT/Valid"),
        format!("mount={digest}&from="),
        "mount=sha256:nope&from=source/repo".to_string(),
        "mount=&from=source/repo".to_string(),
    ] {
        let r = reg
            .send(reg.req(
                Method::POST,
                &format!("/v2/target/repo/blobs/uploads/?{query}"),
            ))
            .await;
        assert_eq!(r.status, 202, "{}: {} {}", r.what, r.status, r.text());
        assert!(r.header("Location").is_some(), "{}: no Location", r.what);
    }
}

#[tokio::test]
async fn unsupported_methods_are_405_unsupported() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob(REPO, b"x").await;
    let location = reg.start_upload(REPO).await;
    let cases = [
        (Method::PUT, format!("/v2/{REPO}/blobs/{digest}")),
        (Method::POST, format!("/v2/{REPO}/blobs/{digest}")),
        (Method::PATCH, format!("/v2/{REPO}/blobs/{digest}")),
        (Method::POST, format!("/v2/{REPO}/manifests/latest")),
        (Method::PATCH, format!("/v2/{REPO}/manifests/latest")),
        (Method::PUT, format!("/v2/{REPO}/tags/list")),
        (Method::DELETE, format!("/v2/{REPO}/tags/list")),
        (Method::POST, "/v2/_catalog".to_string()),
        (Method::DELETE, "/v2/_catalog".to_string()),
        (Method::GET, format!("/v2/{REPO}/blobs/uploads/")),
        (Method::PUT, format!("/v2/{REPO}/blobs/uploads/")),
        (Method::POST, location.clone()),
        (Method::PUT, format!("/v2/{REPO}/referrers/{digest}")),
    ];
    for (method, path) in cases {
        let r = reg.send(reg.req(method, &path)).await;
        r.expect_error(405, "UNSUPPORTED");
    }
}
