//! Manifest parsing and validation: what a registry accepts as an image manifest or index.
//!
//! Accepted: the OCI image manifest and image index, and Docker's schema 2 manifest and
//! manifest list. Docker schema 1 is refused (it is deprecated and signed in-band).
//! Validation checks the structure and extracts what the registry must enforce and
//! index: the blobs and child manifests it references (which must exist in the
//! repository), its subject, its artifact type and annotations for the referrers API.

use serde::Deserialize;
use serde_json::Value;

use crate::types::digest::{Algorithm, Digest};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: [&str; 3] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.container.image.rootfs.diff+x-gtar",
];
/// Layers whose bytes clients fetch from elsewhere (`urls`); they need not be in the registry.
const FOREIGN_LAYER_PREFIXES: [&str; 2] = [
    "application/vnd.oci.image.layer.nondistributable.",
    "application/vnd.docker.image.rootfs.foreign.",
];

/// The largest manifest accepted (the spec's recommended minimum limit).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {0} bytes; the limit is {MAX_MANIFEST_BYTES}")]
    TooLarge(usize),
    #[error("Docker schema 1 manifests are not supported; push schema 2 or OCI (e.g. `docker push` from Docker ≥ 1.10, `skopeo copy --format v2s2`)")]
    Schema1,
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest media type is missing: send it in Content-Type or the mediaType field")]
    MissingMediaType,
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
    #[error("Content-Type {header:?} does not match the manifest's mediaType {body:?}")]
    MediaTypeMismatch { header: String, body: String },
    #[error("manifest is invalid: {0}")]
    Invalid(String),
}

/// What a stored manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildKind {
    Blob,
    Manifest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub digest: Digest,
    pub kind: ChildKind,
}

/// A manifest that passed validation.
#[derive(Debug, Clone)]
pub struct ValidManifest {
    pub media_type: String,
    pub digest: Digest,
    /// Children that must be present in the repository.
    pub required: Vec<Child>,
    pub subject: Option<Digest>,
    /// For the referrers API: `artifactType`, else the config media type of an image manifest.
    pub artifact_type: Option<String>,
    pub annotations: Option<Value>,
    /// The `urls` of its non-distributable layers.
    pub foreign_urls: Vec<String>,
}

impl ValidManifest {
    /// The digests of the blobs and of the child manifests it requires, each list
    /// sorted without repeats (the order the store links and locks them in).
    pub fn required_digests(&self) -> (Vec<Digest>, Vec<Digest>) {
        let mut blobs = Vec::new();
        let mut manifests = Vec::new();
        for child in &self.required {
            match child.kind {
                ChildKind::Blob => blobs.push(child.digest.clone()),
                ChildKind::Manifest => manifests.push(child.digest.clone()),
            }
        }
        for list in [&mut blobs, &mut manifests] {
            list.sort();
            list.dedup();
        }
        (blobs, manifests)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<i64>,
    #[serde(default)]
    urls: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<Value>,
    // Schema 1 markers.
    fs_layers: Option<Value>,
    signatures: Option<Value>,
}

fn descriptor(d: &RawDescriptor, what: &str) -> Result<Digest, ManifestError> {
    let digest = d
        .digest
        .as_deref()
        .ok_or_else(|| ManifestError::Invalid(format!("{what} has no digest")))?;
    let digest: Digest = digest
        .parse()
        .map_err(|e| ManifestError::Invalid(format!("{what}: {e}")))?;
    match d.size {
        Some(s) if s >= 0 => {}
        Some(_) => {
            return Err(ManifestError::Invalid(format!(
                "{what} has a negative size"
            )))
        }
        None => return Err(ManifestError::Invalid(format!("{what} has no size"))),
    }
    match d.media_type.as_deref() {
        Some(m) if !m.is_empty() => Ok(digest),
        _ => Err(ManifestError::Invalid(format!("{what} has no mediaType"))),
    }
}

fn is_foreign(d: &RawDescriptor) -> bool {
    let foreign_type = d
        .media_type
        .as_deref()
        .is_some_and(|m| FOREIGN_LAYER_PREFIXES.iter().any(|p| m.starts_with(p)));
    foreign_type && d.urls.as_ref().is_some_and(|u| !u.is_empty())
}

/// RFC 6838 `type/subtype` (no parameters): what `artifactType` must be.
fn is_media_type(s: &str) -> bool {
    let name = |p: &str| {
        !p.is_empty()
            && p.len() <= 127
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    matches!(s.split_once('/'), Some((t, sub)) if name(t) && name(sub))
}

/// Validates a manifest body. `content_type` is the request's Content-Type, if any;
/// `digest_algorithm` is the algorithm the manifest will be addressed by.
pub fn validate(
    body: &[u8],
    content_type: Option<&str>,
    digest_algorithm: Algorithm,
) -> Result<ValidManifest, ManifestError> {
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge(body.len()));
    }
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "application/octet-stream");
    if content_type.is_some_and(|c| DOCKER_SCHEMA1.contains(&c)) {
        return Err(ManifestError::Schema1);
    }
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
    if raw.schema_version == Some(1) || raw.fs_layers.is_some() || raw.signatures.is_some() {
        return Err(ManifestError::Schema1);
    }
    if raw.schema_version != Some(2) {
        return Err(ManifestError::Invalid("schemaVersion must be 2".into()));
    }
    let media_type = match (content_type, raw.media_type.as_deref()) {
        (Some(h), Some(b)) if h != b => {
            return Err(ManifestError::MediaTypeMismatch {
                header: h.to_string(),
                body: b.to_string(),
            })
        }
        (Some(h), _) => h.to_string(),
        (None, Some(b)) => b.to_string(),
        // Without a declared type, the shape decides (as distribution does for OCI).
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if raw.config.is_some() => OCI_MANIFEST.to_string(),
        (None, None) => return Err(ManifestError::MissingMediaType),
    };

    let mut required = Vec::new();
    let mut foreign_urls = Vec::new();
    let mut artifact_type = raw.artifact_type.clone().filter(|a| !a.is_empty());
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            if raw.manifests.is_some() {
                return Err(ManifestError::Invalid(
                    "an image manifest cannot have a manifests list".into(),
                ));
            }
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| ManifestError::Invalid("config descriptor is missing".into()))?;
            required.push(Child {
                digest: descriptor(config, "config")?,
                kind: ChildKind::Blob,
            });
            if artifact_type.is_none() {
                artifact_type = config.media_type.clone();
            }
            let layers = match (&raw.layers, media_type.as_str()) {
                (Some(l), _) => l.as_slice(),
                (None, OCI_MANIFEST) => &[],
                (None, _) => return Err(ManifestError::Invalid("layers are missing".into())),
            };
            for (i, layer) in layers.iter().enumerate() {
                let digest = descriptor(layer, &format!("layers[{i}]"))?;
                if is_foreign(layer) {
                    foreign_urls.extend(layer.urls.iter().flatten().cloned());
                } else {
                    required.push(Child {
                        digest,
                        kind: ChildKind::Blob,
                    });
                }
            }
        }
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(ManifestError::Invalid(
                    "an index cannot have config or layers".into(),
                ));
            }
            let manifests = raw
                .manifests
                .as_ref()
                .ok_or_else(|| ManifestError::Invalid("manifests list is missing".into()))?;
            for (i, m) in manifests.iter().enumerate() {
                required.push(Child {
                    digest: descriptor(m, &format!("manifests[{i}]"))?,
                    kind: ChildKind::Manifest,
                });
            }
        }
        other if DOCKER_SCHEMA1.contains(&other) => return Err(ManifestError::Schema1),
        other => return Err(ManifestError::UnsupportedMediaType(other.to_string())),
    }
    if let Some(a) = &artifact_type {
        if !is_media_type(a) {
            return Err(ManifestError::Invalid(format!(
                "artifact type {:?} is not a media type (type/subtype)",
                a.chars().take(128).collect::<String>()
            )));
        }
    }
    let subject = match &raw.subject {
        Some(s) => Some(descriptor(s, "subject")?),
        None => None,
    };
    let annotations = raw.annotations.filter(|a| a.is_object());
    Ok(ValidManifest {
        media_type,
        digest: digest_algorithm.digest_of(body),
        required,
        subject,
        artifact_type,
        annotations,
        foreign_urls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":3}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest_children_and_artifact_type() {
        let m = validate(image("").as_bytes(), Some(OCI_MANIFEST), Algorithm::Sha256).unwrap();
        assert_eq!(m.required.len(), 2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        let with_subject = image(&format!(
            r#","artifactType":"application/x-sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":9}}"#
        ));
        let m = validate(with_subject.as_bytes(), None, Algorithm::Sha256).unwrap();
        assert_eq!(m.subject.unwrap().to_string(), D1);
        assert_eq!(m.artifact_type.as_deref(), Some("application/x-sig"));
    }

    #[test]
    fn refusals() {
        let s1 = r#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(matches!(
            validate(s1.as_bytes(), None, Algorithm::Sha256),
            Err(ManifestError::Schema1)
        ));
        assert!(matches!(
            validate(b"{", None, Algorithm::Sha256),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            validate(image("").as_bytes(), Some(OCI_INDEX), Algorithm::Sha256),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let bad_type = image(r#","artifactType":"a\u0000b/c""#);
        assert!(matches!(
            validate(bad_type.as_bytes(), None, Algorithm::Sha256),
            Err(ManifestError::Invalid(_))
        ));
        let bad_digest = image("").replace(D2, "sha256:zz");
        assert!(matches!(
            validate(bad_digest.as_bytes(), None, Algorithm::Sha256),
            Err(ManifestError::Invalid(_))
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            validate(&big, None, Algorithm::Sha256),
            Err(ManifestError::TooLarge(_))
        ));
    }
}
