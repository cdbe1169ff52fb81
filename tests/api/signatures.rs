//! OpenShift's signature API extension (`/extensions/v2/<name>/signatures/<digest>`) as
//! containers/image speaks it, and Wharf's listing of every stored form
//! (`/extensions/wharf/v1/<name>/signatures/<digest>`).

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const REPO: &str = "sig/repo";

fn sig_path(repo: &str, digest: &str) -> String {
    format!("/extensions/v2/{repo}/signatures/{digest}")
}

async fn put_sig(reg: &TestRegistry, repo: &str, digest: &str, body: Value) -> Resp {
    reg.send(
        reg.req(Method::PUT, &sig_path(repo, digest))
            .header("Content-Type", "application/json")
            .body(body.to_string()),
    )
    .await
}

fn atomic(digest: &str, name: &str, content: &str) -> Value {
    json!({"schemaVersion": 2, "name": format!("{digest}@{name}"), "type": "atomic", "content": content})
}

#[tokio::test]
async fn version_check_announces_the_extension() {
    let reg = TestRegistry::start().await;
    let r = reg.get("/v2/").await;
    r.expect_status(200);
    assert_eq!(r.header("X-Registry-Supports-Signatures"), Some("1"));
}

#[tokio::test]
async fn store_and_read_signatures() {
    let reg = TestRegistry::start().await;
    let (_, digest) = reg.push_image(REPO, "v1", 70).await;

    let r = reg.get(&sig_path(REPO, &digest)).await;
    r.expect_status(200);
    assert_eq!(r.json(), json!({"signatures": []}));

    put_sig(
        &reg,
        REPO,
        &digest,
        atomic(&digest, "0123abcd", "c2lnbmF0dXJlIG9uZQ=="),
    )
    .await
    .expect_status(201);
    // `type` may be left out (OpenShift defaults it).
    let mut second = atomic(&digest, "second", "dHdv");
    second.as_object_mut().unwrap().remove("type");
    put_sig(&reg, REPO, &digest, second)
        .await
        .expect_status(201);

    let r = reg.get(&sig_path(REPO, &digest)).await;
    r.expect_status(200);
    let list = r.json()["signatures"].as_array().cloned().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        list[0],
        json!({"schemaVersion": 2, "name": format!("{digest}@0123abcd"), "type": "atomic",
               "content": "c2lnbmF0dXJlIG9uZQ=="})
    );
    assert_eq!(list[1]["content"], json!("dHdv"));

    // Another repository holding the same manifest has none.
    reg.push_image("sig/other", "v1", 70).await;
    let r = reg.get(&sig_path("sig/other", &digest)).await;
    assert_eq!(r.json(), json!({"signatures": []}));

    // Every form at once.
    let r = reg
        .get(&format!("/extensions/wharf/v1/{REPO}/signatures/{digest}"))
        .await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["subject"], json!(digest));
    assert_eq!(v["count"], json!(2));
    assert_eq!(
        v["extension"][0]["name"],
        json!(format!("{digest}@0123abcd"))
    );
    assert_eq!(v["extension"][0]["size"], json!(13));
    assert_eq!(v["sigstoreAttachment"], Value::Null);
    assert_eq!(v["referrers"], json!([]));

    // Deleting the manifest deletes its signatures; pushed again, it has none.
    reg.delete(&format!("/v2/{REPO}/manifests/{digest}"))
        .await
        .expect_status(202);
    reg.get(&sig_path(REPO, &digest))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.push_image(REPO, "v1", 70).await;
    assert_eq!(
        reg.get(&sig_path(REPO, &digest)).await.json(),
        json!({"signatures": []})
    );
}

#[tokio::test]
async fn refusals() {
    let reg = TestRegistry::start().await;
    let (_, digest) = reg.push_image(REPO, "v1", 71).await;
    let bad = |body: Value| put_sig(&reg, REPO, &digest, body);

    bad(json!({"schemaVersion": 2, "name": "no-digest", "type": "atomic", "content": "AA=="}))
        .await
        .expect_error(400, "SIGNATURE_INVALID");
    let other = sha256(b"another manifest");
    bad(atomic(&other, "x", "AA=="))
        .await
        .expect_error(400, "SIGNATURE_INVALID");
    bad(atomic(&digest, "a/b", "AA=="))
        .await
        .expect_error(400, "SIGNATURE_INVALID");
    bad(atomic(&digest, "x", "not base64!"))
        .await
        .expect_error(400, "SIGNATURE_INVALID");
    bad(atomic(&digest, "x", ""))
        .await
        .expect_error(400, "SIGNATURE_INVALID");
    let mut v1 = atomic(&digest, "x", "AA==");
    v1["schemaVersion"] = json!(1);
    bad(v1).await.expect_error(400, "SIGNATURE_INVALID");
    let mut other_type = atomic(&digest, "x", "AA==");
    other_type["type"] = json!("cosign");
    bad(other_type).await.expect_error(400, "SIGNATURE_INVALID");
    reg.send(
        reg.req(Method::PUT, &sig_path(REPO, &digest))
            .body("not json"),
    )
    .await
    .expect_error(400, "SIGNATURE_INVALID");
    let huge = "A".repeat(200 * 1024);
    bad(atomic(&digest, "x", &huge))
        .await
        .expect_error(400, "SIGNATURE_INVALID");

    put_sig(&reg, REPO, &digest, atomic(&digest, "dup", "AA=="))
        .await
        .expect_status(201);
    put_sig(&reg, REPO, &digest, atomic(&digest, "dup", "AQ=="))
        .await
        .expect_error(409, "SIGNATURE_EXISTS");

    // No such manifest, no such repository, a malformed digest.
    let unknown = sha256(b"nothing");
    put_sig(&reg, REPO, &unknown, atomic(&unknown, "x", "AA=="))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get(&sig_path(REPO, &unknown))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get(&sig_path("sig/none", &digest))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get(&sig_path(REPO, "sha256:zz"))
        .await
        .expect_error(400, "DIGEST_INVALID");
    reg.get(&sig_path("Bad..Name", &digest))
        .await
        .expect_error(400, "NAME_INVALID");
    // Methods the extension does not take.
    reg.delete(&sig_path(REPO, &digest))
        .await
        .expect_error(405, "UNSUPPORTED");
}
