//! `storage.delete.enabled: false`: blob and manifest deletes are refused with
//! `405 UNSUPPORTED` and change nothing; everything else still works.

use crate::support::*;

const REPO: &str = "nodelete/repo";

#[tokio::test]
async fn deletes_are_405_unsupported_when_disabled() {
    let reg = TestRegistry::start_with(Options {
        delete_enabled: false,
        ..Options::default()
    })
    .await;
    let (body, digest) = reg.push_image(REPO, "latest", 80).await;
    let blob = reg.push_blob(REPO, b"a blob").await;

    reg.delete(&format!("/v2/{REPO}/blobs/{blob}"))
        .await
        .expect_error(405, "UNSUPPORTED");
    reg.delete(&format!("/v2/{REPO}/manifests/{digest}"))
        .await
        .expect_error(405, "UNSUPPORTED");
    reg.delete(&format!("/v2/{REPO}/manifests/latest"))
        .await
        .expect_error(405, "UNSUPPORTED");

    // Nothing was deleted.
    let r = reg.get(&format!("/v2/{REPO}/blobs/{blob}")).await;
    r.expect_status(200);
    assert_eq!(r.body.as_ref(), b"a blob");
    for reference in ["latest", digest.as_str()] {
        let r = reg.get(&format!("/v2/{REPO}/manifests/{reference}")).await;
        r.expect_status(200);
        assert!(r.body.as_ref() == body.as_slice());
    }
    let r = reg.get(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(r.json()["tags"], serde_json::json!(["latest"]));
}

#[tokio::test]
async fn unknown_targets_are_still_refused_as_unsupported_or_unknown() {
    let reg = TestRegistry::start_with(Options {
        delete_enabled: false,
        ..Options::default()
    })
    .await;
    reg.push_image(REPO, "latest", 81).await;
    let missing = sha256(b"missing");
    for path in [
        format!("/v2/{REPO}/blobs/{missing}"),
        format!("/v2/{REPO}/manifests/{missing}"),
        format!("/v2/{REPO}/manifests/nope"),
    ] {
        let r = reg.delete(&path).await;
        let code = r.expect_client_error();
        assert!(
            (r.status == 405 && code == "UNSUPPORTED") || r.status == 404,
            "{}: {} {code}",
            r.what,
            r.status
        );
    }
}

#[tokio::test]
async fn uploads_and_their_cancel_still_work_when_deletes_are_disabled() {
    let reg = TestRegistry::start_with(Options {
        delete_enabled: false,
        ..Options::default()
    })
    .await;
    // Cancelling an upload is not a content delete.
    let location = reg.start_upload(REPO).await;
    reg.delete(&location).await.expect_status(204);
    reg.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    // Pushes and mounts are unaffected.
    let digest = reg.push_blob(REPO, b"data").await;
    let r = reg
        .send(reg.req(
            reqwest::Method::POST,
            &format!("/v2/other/repo/blobs/uploads/?mount={digest}&from={REPO}"),
        ))
        .await;
    r.expect_status(201);
}
