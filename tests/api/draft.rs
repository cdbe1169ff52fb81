//! The draft spec's features: tags on a push by digest (`?tag=`, all or none, one
//! `OCI-Tag` header per tag, sha512 manifests) and sparse manifests
//! (`validation.manifests.sparse`), off by default.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

const REPO: &str = "draft/tags";

/// `PUT /v2/<repo>/manifests/<reference>?<query>` with the OCI manifest type.
async fn put_with_query(
    reg: &TestRegistry,
    repo: &str,
    reference: &str,
    query: &str,
    body: &[u8],
) -> Resp {
    reg.send(
        reg.req(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}?{query}"),
        )
        .header("Content-Type", OCI_MANIFEST)
        .body(body.to_vec()),
    )
    .await
}

fn oci_tags(r: &Resp) -> Vec<String> {
    let mut tags: Vec<String> = r
        .headers
        .get_all("OCI-Tag")
        .iter()
        .map(|v| v.to_str().expect("ASCII").to_string())
        .collect();
    tags.sort();
    tags
}

async fn tag_list(reg: &TestRegistry, repo: &str) -> serde_json::Value {
    let r = reg.get(&format!("/v2/{repo}/tags/list")).await;
    r.expect_status(200);
    r.json()["tags"].clone()
}

#[tokio::test]
async fn push_by_digest_with_several_tags() {
    let reg = TestRegistry::start().await;
    let config = b"{\"seed\":1}";
    let layer = pseudo_random(3000, 1);
    reg.push_blob(REPO, config).await;
    reg.push_blob(REPO, &layer).await;
    let body = image_manifest(config, &[&layer], None);
    let digest = sha256(&body);

    let r = put_with_query(&reg, REPO, &digest, "tag=a&tag=b&tag=c", &body).await;
    r.expect_status(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(oci_tags(&r), ["a", "b", "c"]);
    assert_eq!(tag_list(&reg, REPO).await, json!(["a", "b", "c"]));
    for tag in ["a", "b", "c"] {
        let r = reg.get(&format!("/v2/{REPO}/manifests/{tag}")).await;
        r.expect_status(200);
        assert_eq!(r.body.as_ref(), body.as_slice());
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    }

    // A tag that points elsewhere moves; a repeated tag counts once.
    let other = image_manifest(config, &[&layer], Some(json!({"annotations": {"v": "2"}})));
    let other_digest = sha256(&other);
    let r = put_with_query(&reg, REPO, &other_digest, "tag=b&tag=d&tag=d", &other).await;
    r.expect_status(201);
    assert_eq!(oci_tags(&r), ["b", "d"]);
    let r = reg.get(&format!("/v2/{REPO}/manifests/b")).await;
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(other_digest.as_str())
    );
    let r = reg.get(&format!("/v2/{REPO}/manifests/a")).await;
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
}

#[tokio::test]
async fn an_invalid_tag_creates_nothing() {
    let reg = TestRegistry::start().await;
    let repo = "draft/invalid";
    let config = b"{\"seed\":2}";
    reg.push_blob(repo, config).await;
    reg.push_blob(repo, b"layer").await;
    // The repository exists with one tag, so "nothing created" is observable.
    let first = image_manifest(config, &[b"layer"], None);
    reg.push_manifest(repo, "keep", OCI_MANIFEST, &first).await;
    let body = image_manifest(
        config,
        &[b"layer"],
        Some(json!({"annotations": {"x": "y"}})),
    );
    let digest = sha256(&body);
    for bad in ["-leading-dash", &"x".repeat(129), "sp%20ace"] {
        let r = put_with_query(
            &reg,
            repo,
            &digest,
            &format!("tag=ok1&tag={bad}&tag=ok2"),
            &body,
        )
        .await;
        r.expect_error(400, "MANIFEST_INVALID");
    }
    assert_eq!(tag_list(&reg, repo).await, json!(["keep"]));
    reg.get(&format!("/v2/{repo}/manifests/{digest}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn sha512_manifest_with_tags() {
    let reg = TestRegistry::start().await;
    let repo = "draft/sha512";
    let config = b"{\"seed\":3}";
    reg.push_blob(repo, config).await;
    let body = image_manifest(config, &[], None);
    let digest = sha512(&body);
    let r = put_with_query(&reg, repo, &digest, "tag=v1&tag=latest", &body).await;
    r.expect_status(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(oci_tags(&r), ["latest", "v1"]);
    let r = reg.get(&format!("/v2/{repo}/manifests/v1")).await;
    r.expect_status(200);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(r.body.as_ref(), body.as_slice());
}

#[tokio::test]
async fn a_push_by_tag_sends_no_oci_tag_header() {
    let reg = TestRegistry::start().await;
    let (_, _) = reg.push_image("draft/plain", "v1", 4).await;
    let config = b"{\"seed\":4}";
    let body = image_manifest(config, &[], None);
    reg.push_blob("draft/plain", config).await;
    let r = reg
        .put_manifest("draft/plain", "v2", Some(OCI_MANIFEST), &body)
        .await;
    r.expect_status(201);
    assert!(r.header("OCI-Tag").is_none());
}

#[tokio::test]
async fn sparse_manifests_off_by_default() {
    let reg = TestRegistry::start().await;
    let config = b"{\"seed\":5}";
    reg.push_blob("draft/dense", config).await;
    let body = image_manifest(config, &[b"never pushed"], None);
    reg.put_manifest("draft/dense", "v1", Some(OCI_MANIFEST), &body)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn sparse_manifests_when_allowed() {
    let reg = TestRegistry::start_with(Options {
        extra: Some(json!({ "validation": { "manifests": { "sparse": true } } })),
        ..Options::default()
    })
    .await;
    let repo = "draft/sparse";
    let missing_config = b"{\"seed\":6}";
    let missing_layer = b"never pushed";
    let body = image_manifest(missing_config, &[missing_layer], None);
    let digest = reg.push_manifest(repo, "v1", OCI_MANIFEST, &body).await;
    let r = reg.get(&format!("/v2/{repo}/manifests/v1")).await;
    r.expect_status(200);
    assert_eq!(r.body.as_ref(), body.as_slice());
    reg.get(&format!("/v2/{repo}/blobs/{}", sha256(missing_layer)))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.head(&format!("/v2/{repo}/blobs/{}", sha256(missing_config)))
        .await
        .expect_status(404);
    // An index over a manifest that is not there is accepted too.
    let index = index_manifest(&[(b"{}", OCI_MANIFEST)], None);
    reg.push_manifest(repo, "index", OCI_INDEX, &index).await;
    // The blob arrives later and is then served.
    reg.push_blob(repo, missing_layer).await;
    let r = reg
        .get(&format!("/v2/{repo}/blobs/{}", sha256(missing_layer)))
        .await;
    r.expect_status(200);
    assert_eq!(r.body.as_ref(), missing_layer);
    reg.delete(&format!("/v2/{repo}/manifests/{digest}"))
        .await
        .expect_status(202);
}

#[tokio::test]
async fn foreign_layer_urls_follow_the_validation_rules() {
    let reg = TestRegistry::start_with(Options {
        extra: Some(json!({ "validation": { "manifests": { "urls": {
            "allow": ["^https://mcr\\.microsoft\\.com/"],
            "deny": ["^https://mcr\\.microsoft\\.com/blocked/"],
        } } } })),
        ..Options::default()
    })
    .await;
    let repo = "draft/foreign";
    let config = b"{\"seed\":7}";
    reg.push_blob(repo, config).await;
    let with_url = |url: &str| {
        let layer = json!({
            "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "digest": sha256(url.as_bytes()), "size": 10, "urls": [url],
        });
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [layer],
        }))
        .unwrap()
    };
    reg.push_manifest(
        repo,
        "ok",
        OCI_MANIFEST,
        &with_url("https://mcr.microsoft.com/layer"),
    )
    .await;
    for url in [
        "https://example.com/layer",
        "https://mcr.microsoft.com/blocked/x",
    ] {
        reg.put_manifest(repo, "no", Some(OCI_MANIFEST), &with_url(url))
            .await
            .expect_error(400, "MANIFEST_INVALID");
    }
}
