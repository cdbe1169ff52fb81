//! Verifying a manifest's signatures against one policy: every stored form the policy
//! has keys for is tried until one signature verifies.
//!
//! - OpenPGP simple signing through the extension (`keys.gpg`): the signed message
//!   verifies with a policy key ([`super::openpgp`]) and its payload names the manifest
//!   and repository ([`super::payload`]);
//! - sigstore attachments and cosign OCI 1.1 referrers (`keys.cosign`): the layer's
//!   `dev.cosignproject.cosign/signature` verifies over the payload blob with a policy
//!   key (ECDSA P-256), and the payload names the manifest and repository;
//! - notation signatures (referrers of type `application/vnd.cncf.notary.signature`):
//!   listed but **not verified** (no X.509 trust store yet): they never satisfy a
//!   policy, and a refusal says so.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::{openpgp, payload, Policy};
use crate::registry::signatures::{MAX_PAYLOAD, SIGNATURE_ARTIFACT_TYPES};
use crate::registry::{Registry, RegistryError};
use crate::types::{Digest, RepoName};

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A signature verified: its form and the key (fingerprint or key file).
    Verified { form: &'static str, key: String },
    /// No signature in any form.
    Unsigned,
    /// Signatures, none valid: why the first one failed, and how many there were.
    Invalid { found: usize, reason: String },
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Verified { .. } => "verified",
            Verdict::Unsigned => "unsigned",
            Verdict::Invalid { .. } => "invalid",
        }
    }
}

#[tracing::instrument(level = "debug", skip_all, fields(policy = %policy.name, repo = %repo, digest = %digest, verdict = tracing::field::Empty))]
pub async fn verify(
    registry: &Registry,
    policy: &Policy,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Verdict, RegistryError> {
    let verdict = run(registry, policy, repo, digest).await?;
    tracing::Span::current().record("verdict", verdict.label());
    Ok(verdict)
}

async fn run(
    registry: &Registry,
    policy: &Policy,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Verdict, RegistryError> {
    let listing = registry.signatures_of(repo, digest).await?;
    let mut reasons: Vec<String> = Vec::new();
    for s in &listing.extension {
        if policy.gpg.is_empty() {
            reasons.push("an OpenPGP signature, and the policy has no gpg keys".into());
            break;
        }
        match openpgp::verify_message(&s.content, &policy.gpg) {
            Ok((data, fingerprint)) => match payload::check(&data, digest, repo, policy.identity) {
                Ok(()) => {
                    return Ok(Verdict::Verified {
                        form: "atomic",
                        key: fingerprint,
                    })
                }
                Err(why) => reasons.push(format!("OpenPGP signature by {fingerprint}: {why}")),
            },
            Err(e) => reasons.push(format!("OpenPGP signature {}: {e}", s.name)),
        }
    }
    let cosign = listing
        .attachment
        .iter()
        .map(|a| ("sigstore attachment", a))
        .chain(
            listing
                .cosign_referrers
                .iter()
                .map(|r| ("cosign referrer", r)),
        );
    for (form, m) in cosign {
        for layer in &m.layers {
            if policy.cosign.is_empty() {
                reasons.push(format!("a {form}, and the policy has no cosign keys"));
                break;
            }
            let Some(sig) = layer.signature.as_deref() else {
                reasons.push(format!(
                    "{form} layer {} carries no signature annotation (keyless signatures are not verified)",
                    layer.digest
                ));
                continue;
            };
            let Ok(sig) = B64.decode(sig.trim()) else {
                reasons.push(format!(
                    "{form} layer {}: the signature is not base64",
                    layer.digest
                ));
                continue;
            };
            let body = match registry
                .read_small_blob(repo, &layer.digest, MAX_PAYLOAD)
                .await
            {
                Ok(Some(body)) => body,
                Ok(None) => {
                    reasons.push(format!(
                        "{form} payload {} is not in the repository",
                        layer.digest
                    ));
                    continue;
                }
                Err(RegistryError::SignatureInvalid(why)) => {
                    reasons.push(why);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match policy.cosign.iter().find(|k| k.verifies(&body, &sig)) {
                Some(key) => match payload::check(&body, digest, repo, policy.identity) {
                    Ok(()) => {
                        return Ok(Verdict::Verified {
                            form: if form == "cosign referrer" {
                                "cosign-referrer"
                            } else {
                                "sigstore"
                            },
                            key: key.file.clone(),
                        })
                    }
                    Err(why) => reasons.push(format!("{form} signed by {}: {why}", key.file)),
                },
                None => reasons.push(format!(
                    "{form} {}: no cosign key of the policy verifies it",
                    layer.digest
                )),
            }
        }
    }
    for r in &listing.referrers {
        if r.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT_TYPES[0]) {
            reasons.push(format!(
                "notation signature {}: not verified (Wharf does not verify notation's X.509 signatures yet)",
                r.digest
            ));
        }
    }
    let found = listing.count();
    Ok(match (found, reasons.into_iter().next()) {
        (0, _) => Verdict::Unsigned,
        (found, Some(reason)) => Verdict::Invalid { found, reason },
        (found, None) => Verdict::Invalid {
            found,
            reason: "no signature of a kind the policy verifies".into(),
        },
    })
}
