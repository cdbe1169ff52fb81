//! Manifests: OCI image manifest and index, Docker schema 2 manifest and manifest list;
//! `GET`/`HEAD`/`PUT`/`DELETE` by tag and by digest; exact bytes; validation refusals;
//! `subject` and `OCI-Subject`.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

const REPO: &str = "library/manifests";

/// GET and HEAD of `reference` serve exactly `body` with its media type and digest.
async fn expect_manifest(
    reg: &TestRegistry,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) {
    let digest = sha256(body);
    let path = format!("/v2/{repo}/manifests/{reference}");
    let r = reg.get(&path).await;
    r.expect_status(200);
    assert!(
        r.body.as_ref() == body,
        "{}: bytes differ from those pushed:\n{}",
        r.what,
        r.text()
    );
    assert_eq!(r.header("Content-Type"), Some(media_type), "{}", r.what);
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(digest.as_str()),
        "{}",
        r.what
    );
    assert_eq!(r.content_length(), Some(body.len() as u64), "{}", r.what);

    let r = reg.head(&path).await;
    r.expect_status(200);
    assert_eq!(r.header("Content-Type"), Some(media_type), "{}", r.what);
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(digest.as_str()),
        "{}",
        r.what
    );
    assert_eq!(r.content_length(), Some(body.len() as u64), "{}", r.what);
}

#[tokio::test]
async fn oci_image_manifest_by_tag_and_digest() {
    let reg = TestRegistry::start().await;
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = pseudo_random(5000, 30);
    reg.push_blob(REPO, config).await;
    reg.push_blob(REPO, &layer).await;
    let body = image_manifest(config, &[&layer], None);
    let digest = sha256(&body);

    let r = reg
        .put_manifest(REPO, "v1.0", Some(OCI_MANIFEST), &body)
        .await;
    r.expect_status(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(
        r.header("Location"),
        Some(format!("/v2/{REPO}/manifests/{digest}").as_str())
    );
    assert!(
        r.header("OCI-Subject").is_none(),
        "OCI-Subject without a subject"
    );

    expect_manifest(&reg, REPO, "v1.0", OCI_MANIFEST, &body).await;
    expect_manifest(&reg, REPO, &digest, OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn bytes_are_served_exactly_as_pushed() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    let layer = b"layer bytes";
    reg.push_blob(REPO, config).await;
    reg.push_blob(REPO, layer).await;
    // Odd whitespace, key order, escapes and a trailing newline: none may be normalised.
    let body = format!(
        "  {{\r\n\t\"layers\" :[ {{\"size\":{ls},\"digest\":\"{ld}\",   \"mediaType\":\"{OCI_LAYER}\"}} ],\n\
         \"schemaVersion\"  :  2 ,\"annotations\":{{\"x\":\"caf\\u00e9 \u{1F40B}\"}},\n\
         \"config\":{{\"mediaType\":\"{OCI_CONFIG}\",\"size\":{cs},\"digest\":\"{cd}\"}},\
         \"mediaType\":\"{OCI_MANIFEST}\"   }}\n\n",
        ls = layer.len(),
        ld = sha256(layer),
        cs = config.len(),
        cd = sha256(config),
    );
    let digest = reg
        .push_manifest(REPO, "spaced", OCI_MANIFEST, body.as_bytes())
        .await;
    expect_manifest(&reg, REPO, "spaced", OCI_MANIFEST, body.as_bytes()).await;
    expect_manifest(&reg, REPO, &digest, OCI_MANIFEST, body.as_bytes()).await;
}

#[tokio::test]
async fn oci_index_over_image_manifests() {
    let reg = TestRegistry::start().await;
    let (amd64, amd64_digest) = reg.push_image(REPO, "amd64-only", 1).await;
    let (arm64, _) = reg.push_image(REPO, "arm64-only", 2).await;
    let index = index_manifest(&[(&amd64, OCI_MANIFEST), (&arm64, OCI_MANIFEST)], None);
    let digest = reg.push_manifest(REPO, "multi", OCI_INDEX, &index).await;
    expect_manifest(&reg, REPO, "multi", OCI_INDEX, &index).await;
    expect_manifest(&reg, REPO, &digest, OCI_INDEX, &index).await;
    // Children stay addressable by digest.
    expect_manifest(&reg, REPO, &amd64_digest, OCI_MANIFEST, &amd64).await;
}

#[tokio::test]
async fn docker_schema2_manifest_and_manifest_list() {
    let reg = TestRegistry::start().await;
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}"#;
    let layer = pseudo_random(2000, 31);
    reg.push_blob(REPO, config).await;
    reg.push_blob(REPO, &layer).await;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER, &layer)],
    }))
    .unwrap();
    let m_digest = reg
        .push_manifest(REPO, "docker", DOCKER_MANIFEST, &manifest)
        .await;
    expect_manifest(&reg, REPO, "docker", DOCKER_MANIFEST, &manifest).await;

    let list = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{
            "mediaType": DOCKER_MANIFEST,
            "digest": m_digest,
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }))
    .unwrap();
    let l_digest = reg
        .push_manifest(REPO, "docker-list", DOCKER_LIST, &list)
        .await;
    expect_manifest(&reg, REPO, "docker-list", DOCKER_LIST, &list).await;
    expect_manifest(&reg, REPO, &l_digest, DOCKER_LIST, &list).await;
}

#[tokio::test]
async fn media_type_comes_from_the_body_without_content_type() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;
    let body = image_manifest(config, &[], None);
    let r = reg.put_manifest(REPO, "no-ct", None, &body).await;
    r.expect_status(201);
    expect_manifest(&reg, REPO, "no-ct", OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn put_by_digest() {
    let reg = TestRegistry::start().await;
    let config = b"{\"by\":\"digest\"}";
    reg.push_blob(REPO, config).await;
    let body = image_manifest(config, &[], None);
    let digest = sha256(&body);
    let r = reg
        .put_manifest(REPO, &digest, Some(OCI_MANIFEST), &body)
        .await;
    r.expect_status(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(
        r.header("Location"),
        Some(format!("/v2/{REPO}/manifests/{digest}").as_str())
    );
    expect_manifest(&reg, REPO, &digest, OCI_MANIFEST, &body).await;
    // Pushed by digest: no tag was created.
    let r = reg.get(&format!("/v2/{REPO}/tags/list")).await;
    r.expect_status(200);
    assert_eq!(r.json()["tags"], json!([]));
}

#[tokio::test]
async fn put_by_digest_with_other_body_is_digest_invalid() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;
    let body = image_manifest(config, &[], None);
    let other = image_manifest(config, &[], Some(json!({"annotations": {"a": "b"}})));
    let r = reg
        .put_manifest(REPO, &sha256(&other), Some(OCI_MANIFEST), &body)
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    for d in [sha256(&other), sha256(&body)] {
        reg.head(&format!("/v2/{REPO}/manifests/{d}"))
            .await
            .expect_status(404);
    }
}

#[tokio::test]
async fn sha512_manifest_by_digest() {
    let reg = TestRegistry::start().await;
    let config = b"{\"sha\":512}";
    reg.push_blob(REPO, config).await;
    let body = image_manifest(config, &[], None);
    let digest = sha512(&body);
    let r = reg
        .put_manifest(REPO, &digest, Some(OCI_MANIFEST), &body)
        .await;
    r.expect_status(201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(
        r.header("Location"),
        Some(format!("/v2/{REPO}/manifests/{digest}").as_str())
    );
    let path = format!("/v2/{REPO}/manifests/{digest}");
    let r = reg.get(&path).await;
    r.expect_status(200);
    assert!(r.body.as_ref() == body.as_slice());
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(r.header("Content-Type"), Some(OCI_MANIFEST));
    let r = reg.head(&path).await;
    r.expect_status(200);
    assert_eq!(r.content_length(), Some(body.len() as u64));

    // A different body under that sha512 digest is refused.
    let other = image_manifest(config, &[], Some(json!({"annotations": {"k": "v"}})));
    reg.put_manifest(REPO, &digest, Some(OCI_MANIFEST), &other)
        .await
        .expect_error(400, "DIGEST_INVALID");

    // It can be deleted by that digest.
    reg.delete(&path).await.expect_status(202);
    reg.get(&path).await.expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn retagging_moves_the_tag() {
    let reg = TestRegistry::start().await;
    let (first, first_digest) = reg.push_image(REPO, "latest", 3).await;
    let (second, _) = reg.push_image(REPO, "latest", 4).await;
    expect_manifest(&reg, REPO, "latest", OCI_MANIFEST, &second).await;
    expect_manifest(&reg, REPO, &first_digest, OCI_MANIFEST, &first).await;
    // Pushing the same manifest again under the same tag is fine (idempotent).
    reg.push_manifest(REPO, "latest", OCI_MANIFEST, &second)
        .await;
    expect_manifest(&reg, REPO, "latest", OCI_MANIFEST, &second).await;
}

#[tokio::test]
async fn unknown_manifests_are_404() {
    let reg = TestRegistry::start().await;
    reg.push_image(REPO, "exists", 5).await;
    for reference in ["nope".to_string(), sha256(b"no such manifest")] {
        let path = format!("/v2/{REPO}/manifests/{reference}");
        reg.get(&path).await.expect_error(404, "MANIFEST_UNKNOWN");
        reg.head(&path).await.expect_status(404);
        reg.delete(&path)
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
    // Unknown repository.
    let r = reg.get("/v2/no/such/repo/manifests/latest").await;
    r.expect_status(404);
    let code = r.error_code();
    assert!(
        code == "MANIFEST_UNKNOWN" || code == "NAME_UNKNOWN",
        "{}: {code}",
        r.what
    );
}

#[tokio::test]
async fn schema1_is_refused() {
    let reg = TestRegistry::start().await;
    let schema1 = serde_json::to_vec(&json!({
        "schemaVersion": 1,
        "name": REPO,
        "tag": "old",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(b"x")}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [],
    }))
    .unwrap();
    for ct in [
        Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
        Some("application/vnd.docker.distribution.manifest.v1+json"),
        Some("application/json"),
        None,
    ] {
        let r = reg.put_manifest(REPO, "old", ct, &schema1).await;
        r.expect_error(400, "MANIFEST_INVALID");
    }
    reg.get(&format!("/v2/{REPO}/manifests/old"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

/// Pads an image manifest with whitespace (which keeps it valid JSON) to `len` bytes.
fn padded_manifest(config: &[u8], len: usize) -> Vec<u8> {
    let mut body = image_manifest(config, &[], None);
    assert!(body.len() < len);
    let close = body.pop().expect("closing brace");
    body.resize(len - 1, b' ');
    body.push(close);
    body
}

#[tokio::test]
async fn manifest_of_4_mib_is_accepted_and_larger_is_413() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;

    let exactly = padded_manifest(config, 4 * 1024 * 1024);
    let digest = reg
        .push_manifest(REPO, "four-mib", OCI_MANIFEST, &exactly)
        .await;
    let r = reg.get(&format!("/v2/{REPO}/manifests/{digest}")).await;
    r.expect_status(200);
    assert!(r.body.as_ref() == exactly.as_slice());

    let too_big = padded_manifest(config, 4 * 1024 * 1024 + 1);
    let r = reg
        .put_manifest(REPO, "too-big", Some(OCI_MANIFEST), &too_big)
        .await;
    r.expect_status(413);
    r.error_code();
    reg.get(&format!("/v2/{REPO}/manifests/too-big"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");

    // Much larger, sent without Content-Length (chunked): refused without reading it all.
    let huge = padded_manifest(config, 16 * 1024 * 1024);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        huge.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = reg
        .send(
            reg.req(Method::PUT, &format!("/v2/{REPO}/manifests/huge"))
                .header("Content-Type", OCI_MANIFEST)
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
        )
        .await;
    r.expect_status(413);
}

#[tokio::test]
async fn missing_blobs_are_manifest_blob_unknown() {
    let reg = TestRegistry::start().await;
    let config = b"{\"c\":1}";
    let layer = b"a layer";
    // Neither pushed: config missing.
    let body = image_manifest(config, &[layer], None);
    let r = reg.put_manifest(REPO, "t", Some(OCI_MANIFEST), &body).await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // Config present, layer missing.
    reg.push_blob(REPO, config).await;
    let r = reg.put_manifest(REPO, "t", Some(OCI_MANIFEST), &body).await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // The layer exists, but only in another repository.
    reg.push_blob("elsewhere/repo", layer).await;
    let r = reg.put_manifest(REPO, "t", Some(OCI_MANIFEST), &body).await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.get(&format!("/v2/{REPO}/manifests/t"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // Once it is here, the same manifest is accepted.
    reg.push_blob(REPO, layer).await;
    reg.push_manifest(REPO, "t", OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn foreign_layers_need_not_be_in_the_registry() {
    let reg = TestRegistry::start().await;
    let config = b"{\"os\":\"windows\"}";
    reg.push_blob(REPO, config).await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config),
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": sha256(b"windows base layer"),
            "size": 18,
            "urls": ["https://example.com/layer"],
        }],
    }))
    .unwrap();
    reg.push_manifest(REPO, "windows", DOCKER_MANIFEST, &body)
        .await;
}

#[tokio::test]
async fn index_with_missing_child_is_manifest_blob_unknown() {
    let reg = TestRegistry::start().await;
    let (present, _) = reg.push_image(REPO, "present", 6).await;
    let absent = image_manifest(b"{\"absent\":true}", &[], None);
    let index = index_manifest(&[(&present, OCI_MANIFEST), (&absent, OCI_MANIFEST)], None);
    let r = reg.put_manifest(REPO, "idx", Some(OCI_INDEX), &index).await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // A child that is only a blob (not a manifest) does not count either.
    let blob_child = b"{\"not\":\"a manifest\"}";
    reg.push_blob(REPO, blob_child).await;
    let index = index_manifest(&[(blob_child, OCI_MANIFEST)], None);
    let r = reg.put_manifest(REPO, "idx", Some(OCI_INDEX), &index).await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn content_type_must_match_media_type() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;
    let body = image_manifest(config, &[], None);
    for ct in [OCI_INDEX, DOCKER_MANIFEST] {
        let r = reg.put_manifest(REPO, "mismatch", Some(ct), &body).await;
        r.expect_error(400, "MANIFEST_INVALID");
    }
}

#[tokio::test]
async fn tag_delete_leaves_the_manifest_reachable_by_digest() {
    let reg = TestRegistry::start().await;
    let (body, digest) = reg.push_image(REPO, "doomed", 7).await;
    reg.push_manifest(REPO, "kept", OCI_MANIFEST, &body).await;

    let r = reg.delete(&format!("/v2/{REPO}/manifests/doomed")).await;
    r.expect_status(202);
    reg.get(&format!("/v2/{REPO}/manifests/doomed"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.head(&format!("/v2/{REPO}/manifests/doomed"))
        .await
        .expect_status(404);
    expect_manifest(&reg, REPO, &digest, OCI_MANIFEST, &body).await;
    expect_manifest(&reg, REPO, "kept", OCI_MANIFEST, &body).await;
    let r = reg.get(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(r.json()["tags"], json!(["kept"]));
    // The tag is gone: deleting it again is 404.
    reg.delete(&format!("/v2/{REPO}/manifests/doomed"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn manifest_delete_removes_its_tags() {
    let reg = TestRegistry::start().await;
    let (body, digest) = reg.push_image(REPO, "one", 8).await;
    reg.push_manifest(REPO, "two", OCI_MANIFEST, &body).await;
    let (other, _) = reg.push_image(REPO, "other", 9).await;

    reg.delete(&format!("/v2/{REPO}/manifests/{digest}"))
        .await
        .expect_status(202);
    for reference in ["one", "two", digest.as_str()] {
        let path = format!("/v2/{REPO}/manifests/{reference}");
        reg.get(&path).await.expect_error(404, "MANIFEST_UNKNOWN");
        reg.head(&path).await.expect_status(404);
    }
    let r = reg.get(&format!("/v2/{REPO}/tags/list")).await;
    r.expect_status(200);
    assert_eq!(r.json()["tags"], json!(["other"]));
    expect_manifest(&reg, REPO, "other", OCI_MANIFEST, &other).await;
    reg.delete(&format!("/v2/{REPO}/manifests/{digest}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // It can be pushed again afterwards.
    reg.push_manifest(REPO, "one", OCI_MANIFEST, &body).await;
    expect_manifest(&reg, REPO, "one", OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn manifests_are_scoped_to_their_repository() {
    let reg = TestRegistry::start().await;
    let (_, digest) = reg.push_image("first/repo", "t", 10).await;
    reg.push_image("second/repo", "other", 11).await;
    reg.get(&format!("/v2/second/repo/manifests/{digest}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get("/v2/second/repo/manifests/t")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn subject_gives_oci_subject_header() {
    let reg = TestRegistry::start().await;
    let (subject, subject_digest) = reg.push_image(REPO, "app", 12).await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;
    let referrer = image_manifest(
        config,
        &[],
        Some(json!({
            "artifactType": "application/vnd.example.sig",
            "subject": descriptor(OCI_MANIFEST, &subject),
        })),
    );
    let r = reg
        .put_manifest(REPO, &sha256(&referrer), Some(OCI_MANIFEST), &referrer)
        .await;
    r.expect_status(201);
    assert_eq!(r.header("OCI-Subject"), Some(subject_digest.as_str()));
    expect_manifest(&reg, REPO, &sha256(&referrer), OCI_MANIFEST, &referrer).await;
}

#[tokio::test]
async fn subject_that_does_not_exist_yet_is_accepted() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;
    let future_subject = image_manifest(b"{\"later\":1}", &[], None);
    let referrer = image_manifest(
        config,
        &[],
        Some(json!({
            "artifactType": "application/vnd.example.sbom",
            "subject": descriptor(OCI_MANIFEST, &future_subject),
        })),
    );
    let r = reg
        .put_manifest(REPO, "sbom", Some(OCI_MANIFEST), &referrer)
        .await;
    r.expect_status(201);
    assert_eq!(
        r.header("OCI-Subject"),
        Some(sha256(&future_subject).as_str())
    );
    // An index may have a subject too.
    let (child, _) = reg.push_image(REPO, "child", 13).await;
    let index = index_manifest(
        &[(&child, OCI_MANIFEST)],
        Some(json!({"subject": descriptor(OCI_MANIFEST, &future_subject)})),
    );
    let r = reg.put_manifest(REPO, "idx", Some(OCI_INDEX), &index).await;
    r.expect_status(201);
    assert_eq!(
        r.header("OCI-Subject"),
        Some(sha256(&future_subject).as_str())
    );
}

#[tokio::test]
async fn content_type_parameters_are_ignored() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;
    let body = image_manifest(config, &[], None);
    let ct = format!("{OCI_MANIFEST}; charset=utf-8");
    let r = reg.put_manifest(REPO, "params", Some(&ct), &body).await;
    r.expect_status(201);
    expect_manifest(&reg, REPO, "params", OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn media_type_comes_from_content_type_when_the_body_has_none() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [],
    }))
    .unwrap();
    let r = reg
        .put_manifest(REPO, "typed", Some(OCI_MANIFEST), &body)
        .await;
    r.expect_status(201);
    expect_manifest(&reg, REPO, "typed", OCI_MANIFEST, &body).await;
}
