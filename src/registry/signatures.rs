//! Signatures, in every form they are stored in, by the digest of the manifest they
//! sign (the subject):
//!
//! - OpenShift's signature API extension (`/extensions/v2/<name>/signatures/<digest>`),
//!   which containers/image (skopeo, podman) uses for simple signing (`--sign-by`):
//!   blobs kept in the metadata store by manifest (`metadata::signatures`);
//! - sigstore attachments: cosign's and containers/image's `sha256-<hex>.sig` tag beside
//!   the manifest, an OCI manifest whose layers are simple-signing payloads with the
//!   signature in an annotation;
//! - OCI 1.1 referrers whose artifact type is a signature's (notation, cosign with
//!   `--registry-referrers-mode=oci-1-1`, sigstore bundles).
//!
//! Every form is found by subject digest: the extension's table by its key, the
//! attachment by its tag name, referrers through the store's subject index. All go with
//! their subject: the extension's rows and the attachment's tag are deleted with the
//! manifest (`0007_signatures.sql`), referrers are collected with their subject.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde::Deserialize;

use super::{Registry, RegistryError, Result};
use crate::metadata::signatures::{PutSignatureOutcome, StoredSignature};
use crate::types::{Digest, ReferrerRecord, RepoName, Tag};

/// The layer media type of a simple-signing payload in a sigstore attachment or a
/// cosign referrer.
pub const SIMPLE_SIGNING_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding the base64 signature of such a layer.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Artifact types of referrers that are signatures.
pub const SIGNATURE_ARTIFACT_TYPES: &[&str] = &[
    // notation (Notary Project)
    "application/vnd.cncf.notary.signature",
    // cosign with OCI 1.1 referrers
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    // sigstore bundles (cosign 2.4+ `--new-bundle-format`)
    "application/vnd.dev.sigstore.bundle.v0.3+json",
];
/// The largest extension signature accepted (a simple-signing signature is well under
/// 4 KiB; a signature with a certificate chain a few).
pub const MAX_EXTENSION_SIGNATURE: usize = 64 * 1024;
/// The largest signature payload read back for verification.
pub const MAX_PAYLOAD: u64 = 256 * 1024;

/// A simple-signing layer of a sigstore attachment or a cosign referrer.
#[derive(Debug, Clone)]
pub struct SigningLayer {
    pub digest: Digest,
    pub size: u64,
    /// The signature annotation, still base64 (absent: a keyless bundle or garbage).
    pub signature: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// A manifest holding simple-signing layers: a sigstore attachment (tag
/// `sha256-<hex>.sig`) or a cosign OCI 1.1 referrer.
#[derive(Debug, Clone)]
pub struct SigningManifest {
    /// The attachment's tag, for an attachment.
    pub tag: Option<String>,
    pub digest: Digest,
    pub layers: Vec<SigningLayer>,
}

/// Every signature of one manifest, by form.
#[derive(Debug, Clone, Default)]
pub struct SignatureListing {
    pub extension: Vec<StoredSignature>,
    pub attachment: Option<SigningManifest>,
    /// Referrers whose artifact type is a signature's.
    pub referrers: Vec<ReferrerRecord>,
    /// The cosign referrers among them, with their layers.
    pub cosign_referrers: Vec<SigningManifest>,
}

impl SignatureListing {
    pub fn count(&self) -> usize {
        self.extension.len()
            + self.attachment.as_ref().map_or(0, |a| a.layers.len())
            + self.referrers.len()
    }
}

#[derive(Deserialize)]
struct LayerJson {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ManifestJson {
    #[serde(default)]
    layers: Vec<LayerJson>,
}

/// The simple-signing layers of a manifest (none when it has none or is not JSON).
fn signing_layers(payload: &[u8]) -> Vec<SigningLayer> {
    let Ok(m) = serde_json::from_slice::<ManifestJson>(payload) else {
        return Vec::new();
    };
    m.layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_LAYER)
        .filter_map(|l| {
            Some(SigningLayer {
                digest: l.digest.parse().ok()?,
                size: l.size,
                signature: l.annotations.get(SIGNATURE_ANNOTATION).cloned(),
                annotations: l.annotations,
            })
        })
        .collect()
}

/// The sigstore attachment tag of a manifest: `sha256-<hex>.sig`.
pub fn attachment_tag(digest: &Digest) -> Option<Tag> {
    Tag::parse(&format!(
        "{}-{}.sig",
        digest.algorithm().name(),
        digest.hex()
    ))
    .ok()
}

/// Whether `tag` names a sigstore attachment (signature, attestation or SBOM) rather
/// than an image: `sha256-<64 hex>.{sig,att,sbom}`.
pub fn is_attachment_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let Some((hex, kind)) = rest.split_once('.') else {
        return false;
    };
    hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(kind, "sig" | "att" | "sbom")
}

/// Checks an extension signature's name: `<manifest digest>@<per-image name>`, the
/// digest the one in the path, the rest non-empty, printable and short.
fn check_name(digest: &Digest, name: &str) -> Result<()> {
    let Some((d, rest)) = name.split_once('@') else {
        return Err(RegistryError::SignatureInvalid(format!(
            "signature name {:?} is not <digest>@<name>",
            name.chars().take(200).collect::<String>()
        )));
    };
    if d != digest.to_string() {
        return Err(RegistryError::SignatureInvalid(format!(
            "signature name {:?} names another manifest than {digest}",
            name.chars().take(200).collect::<String>()
        )));
    }
    if rest.is_empty()
        || rest.len() > 128
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(RegistryError::SignatureInvalid(
            "the part of a signature name after '@' must be 1 to 128 of [A-Za-z0-9._-]".into(),
        ));
    }
    Ok(())
}

/// `wharf_signatures_stored_total{form}`: signatures stored through the extension
/// (`form="extension"`; the other forms are manifest pushes).
fn stored_metric() -> &'static prometheus::IntCounterVec {
    static M: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        crate::telemetry::lazy_counter_vec(
            "signatures_stored_total",
            "Signatures stored through OpenShift's signature API extension",
            &["form"],
        )
    })
}

impl Registry {
    /// Stores a signature through the extension: the manifest must be in `repo`, the
    /// name unused (`SIGNATURE_EXISTS`), the content non-empty and bounded.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %digest))]
    pub async fn put_extension_signature(
        &self,
        repo: &RepoName,
        digest: &Digest,
        name: &str,
        content: Vec<u8>,
    ) -> Result<()> {
        self.require_writable()?;
        check_name(digest, name)?;
        if content.is_empty() {
            return Err(RegistryError::SignatureInvalid(
                "the signature's content is empty".into(),
            ));
        }
        if content.len() > MAX_EXTENSION_SIGNATURE {
            return Err(RegistryError::SignatureInvalid(format!(
                "the signature is {} bytes; the limit is {MAX_EXTENSION_SIGNATURE}",
                content.len()
            )));
        }
        let signature = StoredSignature {
            name: name.to_string(),
            content,
            created_at: super::now_ms(),
        };
        match self
            .meta
            .signatures
            .put_signature(repo, digest, &signature)
            .await?
        {
            PutSignatureOutcome::Stored => {
                stored_metric().with_label_values(&["extension"]).inc();
                Ok(())
            }
            PutSignatureOutcome::Exists => Err(RegistryError::SignatureExists(name.to_string())),
            PutSignatureOutcome::ManifestUnknown => {
                Err(RegistryError::ManifestUnknown(digest.to_string()))
            }
        }
    }

    /// The extension's signatures of a manifest (404 when the manifest is not here).
    pub async fn extension_signatures(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<StoredSignature>> {
        if self
            .meta
            .manifests
            .manifest_by_digest(repo, digest)
            .await?
            .is_none()
        {
            return Err(RegistryError::ManifestUnknown(digest.to_string()));
        }
        Ok(self.meta.signatures.signatures(repo, digest).await?)
    }

    /// Every signature of a manifest, in every stored form. A manifest that is not in
    /// the repository has none (and is no error: an attachment may name a digest the
    /// repository does not hold).
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, digest = %digest))]
    pub async fn signatures_of(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<SignatureListing> {
        let extension = self.meta.signatures.signatures(repo, digest).await?;
        let attachment = match attachment_tag(digest) {
            Some(tag) => self
                .meta
                .manifests
                .manifest_by_tag(repo, &tag)
                .await?
                .map(|m| SigningManifest {
                    tag: Some(tag.as_str().to_string()),
                    layers: signing_layers(&m.payload),
                    digest: m.digest,
                }),
            None => None,
        };
        let referrers: Vec<ReferrerRecord> = self
            .meta
            .manifests
            .referrers(repo, digest, None)
            .await?
            .into_iter()
            .filter(|r| {
                r.artifact_type
                    .as_deref()
                    .is_some_and(|a| SIGNATURE_ARTIFACT_TYPES.contains(&a))
            })
            .collect();
        let mut cosign_referrers = Vec::new();
        for r in &referrers {
            if r.artifact_type.as_deref() != Some(SIGNATURE_ARTIFACT_TYPES[1]) {
                continue;
            }
            if let Some(m) = self
                .meta
                .manifests
                .manifest_by_digest(repo, &r.digest)
                .await?
            {
                cosign_referrers.push(SigningManifest {
                    tag: None,
                    layers: signing_layers(&m.payload),
                    digest: m.digest,
                });
            }
        }
        Ok(SignatureListing {
            extension,
            attachment,
            referrers,
            cosign_referrers,
        })
    }

    /// The indexes of `repo` that hold the manifest `digest` (a few).
    pub async fn parent_indexes(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>> {
        Ok(self.meta.signatures.parents(repo, digest).await?)
    }

    /// A small blob of `repo` whole (a signature payload), refusing more than `max`
    /// bytes. `None` when the repository does not hold it.
    pub async fn read_small_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        max: u64,
    ) -> Result<Option<Vec<u8>>> {
        let Some(blob) = self.meta.blobs.repo_blob(repo, digest).await? else {
            return Ok(None);
        };
        if blob.size > max {
            return Err(RegistryError::SignatureInvalid(format!(
                "signature payload {digest} is {} bytes; the limit is {max}",
                blob.size
            )));
        }
        if blob.size == 0 {
            return Ok(Some(Vec::new()));
        }
        let mut stream = self
            .blobs
            .get(&blob.storage_key, Some(0..blob.size))
            .await?;
        let mut out = Vec::with_capacity(blob.size as usize);
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece?);
            if out.len() as u64 > max {
                break;
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_tags() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert_eq!(
            attachment_tag(&d).unwrap().as_str(),
            format!("sha256-{}.sig", "a".repeat(64))
        );
        assert!(is_attachment_tag(&format!("sha256-{}.sig", "0".repeat(64))));
        assert!(is_attachment_tag(&format!("sha256-{}.att", "0".repeat(64))));
        assert!(!is_attachment_tag(&format!(
            "sha256-{}.sig",
            "0".repeat(63)
        )));
        assert!(!is_attachment_tag("latest"));
    }

    #[test]
    fn names() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert!(check_name(&d, &format!("{d}@0123abcd")).is_ok());
        assert!(check_name(&d, "0123abcd").is_err());
        assert!(check_name(&d, &format!("{d}@")).is_err());
        assert!(check_name(&d, &format!("{d}@a/b")).is_err());
        let other = format!("sha256:{}", "b".repeat(64));
        assert!(check_name(&d, &format!("{other}@x")).is_err());
    }
}
