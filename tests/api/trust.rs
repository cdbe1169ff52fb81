//! Trust policies over the API: concurrent pulls of one image on a cold verdict cache
//! share one verification, and a pull the policy refuses is not recorded as a pull.
//! Images are signed here as cosign signs them with a key (a sigstore attachment
//! `sha256-<hex>.sig` whose simple-signing layer carries an ECDSA P-256 signature over
//! the payload); `tests/e2e/signatures.sh` has the real clients.

use std::time::Duration;

use base64::Engine as _;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::{json, Value};

use crate::receiver::{Mode, Receiver};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

/// A cosign key pair: the public key's PEM file (for the policy) and the signer.
struct CosignKey {
    file: String,
    pair: EcdsaKeyPair,
}

impl CosignKey {
    fn new(dir: &tempfile::TempDir) -> CosignKey {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let file = dir.path().join("cosign.pub");
        std::fs::write(&file, key.public_key_pem()).unwrap();
        let rng = ring::rand::SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der(), &rng)
                .unwrap();
        CosignKey {
            file: file.display().to_string(),
            pair,
        }
    }

    /// Pushes the sigstore attachment signing `digest` in `repo`.
    async fn sign(&self, reg: &TestRegistry, repo: &str, digest: &str) {
        let host = reg.base.trim_start_matches("http://");
        let payload = json!({
            "critical": {
                "identity": { "docker-reference": format!("{host}/{repo}") },
                "image": { "docker-manifest-digest": digest },
                "type": "cosign container image signature",
            },
            "optional": null,
        })
        .to_string();
        let rng = ring::rand::SystemRandom::new();
        let signature = self.pair.sign(&rng, payload.as_bytes()).unwrap();
        let config = b"{}";
        reg.push_blob(repo, config).await;
        reg.push_blob(repo, payload.as_bytes()).await;
        let mut layer = descriptor(
            "application/vnd.dev.cosign.simplesigning.v1+json",
            payload.as_bytes(),
        );
        layer["annotations"] = json!({
            "dev.cosignproject.cosign/signature":
                base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
        });
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [layer],
        })
        .to_string();
        let tag = format!("{}.sig", digest.replace(':', "-"));
        reg.push_manifest(repo, &tag, OCI_MANIFEST, manifest.as_bytes())
            .await;
    }
}

/// A registry whose policy `name` covers `trusted/*` on pull with `key`; `more` are
/// more top-level sections.
async fn registry_with_policy(name: &str, key: &CosignKey, more: Value) -> TestRegistry {
    let mut extra = json!({ "trust": { "policies": [{
        "name": name,
        "repositories": ["trusted/*"],
        "keys": { "cosign": [key.file] },
    }]}});
    if let Value::Object(more) = more {
        for (k, v) in more {
            extra[k] = v;
        }
    }
    TestRegistry::start_with(Options {
        extra: Some(extra),
        ..Options::default()
    })
    .await
}

/// A counter's value in `/metrics` (0 when the series is not there yet).
async fn counter(reg: &TestRegistry, series: &str) -> u64 {
    let text = reg.get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_pulls_verify_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = CosignKey::new(&dir);
    let reg = registry_with_policy("coalesce", &key, json!({})).await;
    let (_, digest) = reg.push_image("trusted/app", "v1", 1).await;
    key.sign(&reg, "trusted/app", &digest).await;
    let (_, unsigned) = reg.push_image("trusted/bare", "v1", 2).await;

    let verified = r#"wharf_trust_verifications_total{policy="coalesce",result="verified"}"#;
    let refused = r#"wharf_trust_verifications_total{policy="coalesce",result="unsigned"}"#;
    assert_eq!(counter(&reg, verified).await, 0);
    assert_eq!(counter(&reg, refused).await, 0);

    // 32 pulls of the signed image and 32 of the unsigned one at once, the verdict
    // cache cold for both.
    let pulls = (0..64).map(|i| {
        let repo = if i % 2 == 0 {
            "trusted/app"
        } else {
            "trusted/bare"
        };
        reg.send(
            reg.req(reqwest::Method::GET, &format!("/v2/{repo}/manifests/v1"))
                .header("Accept", OCI_MANIFEST),
        )
    });
    let answers = futures_util::future::join_all(pulls).await;
    for (i, r) in answers.iter().enumerate() {
        if i % 2 == 0 {
            r.expect_status(200);
            assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
        } else {
            r.expect_error(403, "DENIED");
            assert!(r
                .text()
                .contains(&format!("manifest {unsigned} has no signature")));
        }
    }
    // One verification per image: the other requests shared it or found it cached.
    assert_eq!(counter(&reg, verified).await, 1);
    assert_eq!(counter(&reg, refused).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pull_is_not_a_pull_event() {
    let receiver = Receiver::start(Mode::Ok);
    let dir = tempfile::tempdir().unwrap();
    let key = CosignKey::new(&dir);
    let reg = registry_with_policy(
        "events",
        &key,
        json!({ "notifications": { "endpoints": [{
            "name": "hook",
            "url": receiver.url,
            "timeout": "2s",
            "threshold": 3,
            "backoff": "100ms",
        }]}}),
    )
    .await;
    let (_, refused) = reg.push_image("trusted/refused", "v1", 1).await;
    let (_, allowed) = reg.push_image("trusted/allowed", "v1", 2).await;
    key.sign(&reg, "trusted/allowed", &allowed).await;

    // Refused (unsigned), then a pull the policy lets through: events go out in order,
    // so once the second pull's event is delivered, the first would have been too.
    reg.send(
        reg.req(reqwest::Method::GET, "/v2/trusted/refused/manifests/v1")
            .header("Accept", OCI_MANIFEST),
    )
    .await
    .expect_error(403, "DENIED");
    reg.send(
        reg.req(reqwest::Method::GET, "/v2/trusted/allowed/manifests/v1")
            .header("Accept", OCI_MANIFEST),
    )
    .await
    .expect_status(200);

    let is_pull =
        |e: &Value, repo: &str| e["action"] == "pull" && e["target"]["repository"] == repo;
    let events = receiver
        .wait_for(WAIT, |events| {
            events.iter().any(|e| is_pull(e, "trusted/allowed"))
        })
        .await;
    let pull = events
        .iter()
        .find(|e| is_pull(e, "trusted/allowed"))
        .unwrap();
    assert_eq!(pull["target"]["digest"], allowed);
    assert_eq!(pull["target"]["tag"], "v1");
    assert!(
        !events.iter().any(|e| is_pull(e, "trusted/refused")
            || e["target"]["digest"] == refused.as_str() && e["action"] == "pull"),
        "a refused pull was sent as a pull event: {events:#?}"
    );
    // The refused image's push was delivered (the receiver saw its repository).
    assert!(events
        .iter()
        .any(|e| e["action"] == "push" && e["target"]["repository"] == "trusted/refused"));
}
