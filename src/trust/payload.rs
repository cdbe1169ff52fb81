//! The simple-signing payload both signature kinds sign (containers/image's "atomic
//! container signature", cosign's "cosign container image signature"):
//! `critical.image.docker-manifest-digest` must be the manifest's digest and
//! `critical.identity.docker-reference` must name the repository (unless the policy
//! checks the digest only).

use serde::Deserialize;

use crate::config::IdentityCheck;
use crate::types::{Digest, RepoName};

const TYPES: &[&str] = &[
    "atomic container signature",
    "cosign container image signature",
];

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The repository path of a docker reference: tag or digest dropped, and the registry
/// host when the first component is one (it has a `.` or a `:`, or is `localhost`).
pub fn reference_repository(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let without_tag = match without_digest.rsplit_once(':') {
        Some((head, tag)) if !tag.contains('/') => head,
        _ => without_digest,
    };
    match without_tag.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            rest
        }
        _ => without_tag,
    }
}

/// Checks a payload against the manifest and repository; `Err` says why not.
pub fn check(
    payload: &[u8],
    digest: &Digest,
    repo: &RepoName,
    identity: IdentityCheck,
) -> Result<(), String> {
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| format!("the signed payload is not a simple-signing payload: {e}"))?;
    if !TYPES.contains(&p.critical.kind.as_str()) {
        return Err(format!(
            "the signed payload's type {:?} is not a container signature's",
            p.critical.kind.chars().take(80).collect::<String>()
        ));
    }
    if p.critical.image.docker_manifest_digest != digest.to_string() {
        return Err(format!(
            "the signature is for {}, not {digest}",
            p.critical
                .image
                .docker_manifest_digest
                .chars()
                .take(80)
                .collect::<String>()
        ));
    }
    if identity == IdentityCheck::Repository {
        let claimed = reference_repository(&p.critical.identity.docker_reference);
        if claimed != repo.as_str() {
            return Err(format!(
                "the signature names the image {:?}, not repository {repo}",
                p.critical
                    .identity
                    .docker_reference
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_references() {
        assert_eq!(reference_repository("127.0.0.1:5000/e2e/a:v1"), "e2e/a");
        assert_eq!(reference_repository("registry.example/ns/a"), "ns/a");
        assert_eq!(reference_repository("localhost/a@sha256:00"), "a");
        assert_eq!(reference_repository("ns/a:v1"), "ns/a");
        assert_eq!(reference_repository("host:5000/a"), "a");
    }

    #[test]
    fn payload_checks() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let repo = RepoName::parse("e2e/a").unwrap();
        let p = |r: &str, dig: &str, t: &str| {
            serde_json::json!({"critical": {"identity": {"docker-reference": r},
                "image": {"docker-manifest-digest": dig}, "type": t}, "optional": null})
            .to_string()
        };
        let ok = p("h:1/e2e/a:v1", &d.to_string(), "atomic container signature");
        assert!(check(ok.as_bytes(), &d, &repo, IdentityCheck::Repository).is_ok());
        let other = p("h:1/e2e/b:v1", &d.to_string(), "atomic container signature");
        assert!(check(other.as_bytes(), &d, &repo, IdentityCheck::Repository).is_err());
        assert!(check(other.as_bytes(), &d, &repo, IdentityCheck::Digest).is_ok());
        let wrong = p("h:1/e2e/a", "sha256:00", "cosign container image signature");
        assert!(check(wrong.as_bytes(), &d, &repo, IdentityCheck::Digest).is_err());
        let kind = p("h:1/e2e/a", &d.to_string(), "something");
        assert!(check(kind.as_bytes(), &d, &repo, IdentityCheck::Digest).is_err());
        assert!(check(b"{", &d, &repo, IdentityCheck::Digest).is_err());
    }
}
