//! `GET /v2/<name>/referrers/<digest>`: the OCI 1.1 referrers API.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const REPO: &str = "ref/repo";
const SBOM: &str = "application/vnd.example.sbom.v1";
const SIG: &str = "application/vnd.example.signature.v1";
const SIG_CONFIG: &str = "application/vnd.example.sig.config.v1+json";

async fn referrers(reg: &TestRegistry, repo: &str, digest: &str, query: &str) -> Resp {
    let r = reg
        .get(&format!("/v2/{repo}/referrers/{digest}{query}"))
        .await;
    r.expect_status(200);
    assert_eq!(r.header("Content-Type"), Some(OCI_INDEX), "{}", r.what);
    let v = r.json();
    assert_eq!(v["schemaVersion"], json!(2), "{}", r.what);
    assert_eq!(v["mediaType"], json!(OCI_INDEX), "{}", r.what);
    assert!(v["manifests"].is_array(), "{}: {v}", r.what);
    r
}

fn manifests(r: &Resp) -> Vec<Value> {
    r.json()["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The descriptor for `digest` in a referrers response, or a panic.
fn find<'a>(list: &'a [Value], digest: &str) -> &'a Value {
    list.iter()
        .find(|d| d["digest"] == json!(digest))
        .unwrap_or_else(|| panic!("{digest} not among referrers {list:?}"))
}

#[tokio::test]
async fn no_referrers_is_an_empty_index() {
    let reg = TestRegistry::start().await;
    let (_, digest) = reg.push_image(REPO, "app", 60).await;
    let r = referrers(&reg, REPO, &digest, "").await;
    assert_eq!(manifests(&r), Vec::<Value>::new());
    assert!(r.header("OCI-Filters-Applied").is_none());
    // A digest nothing has: still 200 and empty (the API must not 404).
    let r = referrers(&reg, REPO, &sha256(b"unknown subject"), "").await;
    assert_eq!(manifests(&r), Vec::<Value>::new());
    let r = referrers(&reg, REPO, &sha512(b"unknown subject"), "").await;
    assert_eq!(manifests(&r), Vec::<Value>::new());
}

struct Pushed {
    subject: String,
    sbom: (Vec<u8>, String),
    sig: (Vec<u8>, String),
    index: (Vec<u8>, String),
}

async fn push_referrers(reg: &TestRegistry) -> Pushed {
    let (subject_body, subject) = reg.push_image(REPO, "app", 61).await;
    let subject_desc = descriptor(OCI_MANIFEST, &subject_body);
    let empty = b"{}";
    reg.push_blob(REPO, empty).await;
    let sig_config = b"{\"sig\":true}";
    reg.push_blob(REPO, sig_config).await;
    let payload = b"sbom payload";
    reg.push_blob(REPO, payload).await;

    // An artifact with artifactType and annotations (one non-ASCII, to check `size`
    // counts bytes).
    let sbom = image_manifest(
        empty,
        &[payload],
        Some(json!({
            "artifactType": SBOM,
            "subject": subject_desc,
            "annotations": {"org.example.format": "spdx", "org.example.note": "résumé 🐳"},
        })),
    );
    let sbom_digest = sha256(&sbom);
    reg.push_manifest(REPO, &sbom_digest, OCI_MANIFEST, &sbom)
        .await;

    // An image manifest without artifactType: its config media type stands in.
    let mut sig: Value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(SIG_CONFIG, sig_config),
        "layers": [],
        "subject": subject_desc,
    });
    sig["annotations"] = json!({"org.example.signer": "me"});
    let sig = serde_json::to_vec(&sig).unwrap();
    let sig_digest = sha256(&sig);
    reg.push_manifest(REPO, &sig_digest, OCI_MANIFEST, &sig)
        .await;

    // An index without artifactType: the descriptor has none.
    let (child, _) = reg.push_image(REPO, "child", 62).await;
    let index = index_manifest(
        &[(&child, OCI_MANIFEST)],
        Some(json!({"subject": subject_desc, "annotations": {"org.example.kind": "bundle"}})),
    );
    let index_digest = sha256(&index);
    reg.push_manifest(REPO, &index_digest, OCI_INDEX, &index)
        .await;

    Pushed {
        subject,
        sbom: (sbom, sbom_digest),
        sig: (sig, sig_digest),
        index: (index, index_digest),
    }
}

#[tokio::test]
async fn referrers_are_listed_with_artifact_type_and_annotations() {
    let reg = TestRegistry::start().await;
    let p = push_referrers(&reg).await;
    let r = referrers(&reg, REPO, &p.subject, "").await;
    assert!(r.header("OCI-Filters-Applied").is_none());
    let list = manifests(&r);
    assert_eq!(list.len(), 3, "{list:?}");

    let d = find(&list, &p.sbom.1);
    assert_eq!(d["mediaType"], json!(OCI_MANIFEST));
    assert_eq!(d["size"], json!(p.sbom.0.len()));
    assert_eq!(d["artifactType"], json!(SBOM));
    assert_eq!(
        d["annotations"],
        json!({"org.example.format": "spdx", "org.example.note": "résumé 🐳"})
    );

    let d = find(&list, &p.sig.1);
    assert_eq!(d["mediaType"], json!(OCI_MANIFEST));
    assert_eq!(d["size"], json!(p.sig.0.len()));
    assert_eq!(d["artifactType"], json!(SIG_CONFIG));
    assert_eq!(d["annotations"], json!({"org.example.signer": "me"}));

    let d = find(&list, &p.index.1);
    assert_eq!(d["mediaType"], json!(OCI_INDEX));
    assert_eq!(d["size"], json!(p.index.0.len()));
    assert!(d.get("artifactType").is_none(), "index descriptor: {d}");
    assert_eq!(d["annotations"], json!({"org.example.kind": "bundle"}));

    // Nothing refers to the referrers themselves.
    let r = referrers(&reg, REPO, &p.sbom.1, "").await;
    assert!(manifests(&r).is_empty());
}

#[tokio::test]
async fn artifact_type_filter_sets_oci_filters_applied() {
    let reg = TestRegistry::start().await;
    let p = push_referrers(&reg).await;
    let query = format!("?artifactType={}", SBOM.replace('+', "%2B"));
    let r = referrers(&reg, REPO, &p.subject, &query).await;
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    let list = manifests(&r);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["digest"], json!(p.sbom.1));

    // The config-derived artifact type filters too ('+' percent-encoded).
    let query = format!("?artifactType={}", SIG_CONFIG.replace('+', "%2B"));
    let r = referrers(&reg, REPO, &p.subject, &query).await;
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    let list = manifests(&r);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["digest"], json!(p.sig.1));

    // A type nothing has: empty, filter still reported.
    let r = referrers(&reg, REPO, &p.subject, "?artifactType=application/x-none").await;
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    assert!(manifests(&r).is_empty());
}

#[tokio::test]
async fn deleted_referrers_disappear() {
    let reg = TestRegistry::start().await;
    let p = push_referrers(&reg).await;
    reg.delete(&format!("/v2/{REPO}/manifests/{}", p.sig.1))
        .await
        .expect_status(202);
    let r = referrers(&reg, REPO, &p.subject, "").await;
    let digests: Vec<Value> = manifests(&r).iter().map(|d| d["digest"].clone()).collect();
    assert_eq!(digests.len(), 2, "{digests:?}");
    assert!(!digests.contains(&json!(p.sig.1)));
}

#[tokio::test]
async fn referrers_are_scoped_to_the_repository() {
    let reg = TestRegistry::start().await;
    let p = push_referrers(&reg).await;
    reg.push_image("other/repo", "x", 63).await;
    let r = referrers(&reg, "other/repo", &p.subject, "").await;
    assert!(manifests(&r).is_empty());
}

#[tokio::test]
async fn referrers_of_a_subject_pushed_later() {
    let reg = TestRegistry::start().await;
    let config = b"{}";
    reg.push_blob(REPO, config).await;
    let subject_config = b"{\"late\":1}";
    let subject = image_manifest(subject_config, &[], None);
    let referrer = image_manifest(
        config,
        &[],
        Some(json!({"artifactType": SIG, "subject": descriptor(OCI_MANIFEST, &subject)})),
    );
    let referrer_digest = reg
        .push_manifest(REPO, &sha256(&referrer), OCI_MANIFEST, &referrer)
        .await;
    let r = referrers(&reg, REPO, &sha256(&subject), "").await;
    assert_eq!(manifests(&r).len(), 1);
    assert_eq!(manifests(&r)[0]["digest"], json!(referrer_digest));

    // Pushing the subject afterwards changes nothing.
    reg.push_blob(REPO, subject_config).await;
    reg.push_manifest(REPO, "late", OCI_MANIFEST, &subject)
        .await;
    let r = referrers(&reg, REPO, &sha256(&subject), "").await;
    assert_eq!(manifests(&r).len(), 1);
}

#[tokio::test]
async fn referrers_with_invalid_digest_is_400() {
    let reg = TestRegistry::start().await;
    for bad in [
        "latest",
        "sha256:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ] {
        reg.get(&format!("/v2/{REPO}/referrers/{bad}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
    // Only GET is defined.
    let r = reg
        .send(reg.req(
            Method::DELETE,
            &format!("/v2/{REPO}/referrers/{}", sha256(b"x")),
        ))
        .await;
    r.expect_error(405, "UNSUPPORTED");
}
