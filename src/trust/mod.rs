//! Trust policies: per repository pattern, a pull by tag (and, if configured, a push of
//! a tag) of a manifest without a valid signature from the policy's keys is refused
//! with `403 DENIED` naming the policy.
//!
//! What a policy covers (`trust.policies[].on`):
//! - `pull`: `GET` of a manifest by tag, for every caller; `HEAD` by tag and fetches
//!   by digest for callers without push scope on the repository (those with it can
//!   still resolve and fetch what they sign: `cosign sign`, `skopeo --sign-by`). A
//!   platform manifest fetched by digest passes when an index of the repository that
//!   holds it verifies (a multi-arch pull resolves the signed index by tag first).
//! - `push`: `PUT` of a manifest with a tag: the manifest must already verify (push it
//!   by digest, sign it, then tag it).
//!
//! Signatures themselves (a manifest with a `subject`, or whose layers are all
//! simple-signing payloads or DSSE envelopes: sigstore attachments, cosign referrers)
//! are never refused: clients read them to verify.
//!
//! Verification ([`verify`]) is cached by (repository, manifest digest, policy
//! version): the version is a hash of the policy's configuration and key files, so a
//! changed policy never reuses a verdict. Verified verdicts are kept
//! [`VERIFIED_TTL`], refusals [`REFUSED_TTL`] (a signature pushed after a refused pull
//! counts within seconds). The cache is per process. Concurrent verifications of one
//! key are coalesced ([`flight`]): on a cold cache, 64 pulls of one image verify once.

mod flight;
pub mod keys;
mod metrics;
pub mod openpgp;
pub mod payload;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::config::{IdentityCheck, TrustAction, TrustConfig};
use crate::registry::signatures::{is_attachment_tag, SIMPLE_SIGNING_LAYER};
use crate::registry::{Registry, RegistryError};
use crate::types::{Digest, ManifestRecord, Reference, RepoName};

pub use verify::Verdict;

/// How long a verified verdict is reused.
pub const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// How long a refusal is reused.
pub const REFUSED_TTL: Duration = Duration::from_secs(5);
const CACHE_CAPACITY: u64 = 100_000;

/// One policy, its keys loaded.
pub struct Policy {
    pub name: String,
    repositories: Vec<String>,
    pull: bool,
    push: bool,
    pub(crate) cosign: Vec<keys::CosignKey>,
    pub(crate) gpg: Vec<openpgp::PublicKey>,
    pub(crate) identity: IdentityCheck,
    /// A hash of the policy's configuration and key files.
    pub version: u64,
}

impl Policy {
    fn matches(&self, repo: &RepoName) -> bool {
        self.repositories
            .iter()
            .any(|g| crate::types::glob::glob(g, repo.as_str()))
    }
}

type CacheKey = (RepoName, Digest, u64);

/// The configured policies, with the verdict cache.
pub struct Trust {
    policies: Vec<Policy>,
    registry: Registry,
    verified: moka::sync::Cache<CacheKey, Arc<Verdict>>,
    refused: moka::sync::Cache<CacheKey, Arc<Verdict>>,
    /// The verifications running now, shared by concurrent pulls of one key.
    flights: flight::Flights<CacheKey, Arc<Verdict>>,
}

/// Whether a manifest is a signature (or another accessory a verifier reads): it has a
/// subject, or every layer is a simple-signing payload or a DSSE envelope.
fn is_accessory(m: &ManifestRecord) -> bool {
    if m.subject.is_some() {
        return true;
    }
    #[derive(serde::Deserialize)]
    struct Layer {
        #[serde(rename = "mediaType", default)]
        media_type: String,
    }
    #[derive(serde::Deserialize)]
    struct Layers {
        #[serde(default)]
        layers: Vec<Layer>,
    }
    serde_json::from_slice::<Layers>(&m.payload).is_ok_and(|l| {
        !l.layers.is_empty()
            && l.layers.iter().all(|x| {
                x.media_type == SIMPLE_SIGNING_LAYER
                    || x.media_type == "application/vnd.dsse.envelope.v1+json"
            })
    })
}

impl Trust {
    /// Loads every policy's keys; `None` when no policy is configured.
    pub fn from_config(
        config: &TrustConfig,
        registry: Registry,
    ) -> Result<Option<Arc<Trust>>, String> {
        let policies = load_policies(config)?;
        if policies.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Trust {
            policies,
            registry,
            verified: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
            refused: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(REFUSED_TTL)
                .build(),
            flights: flight::Flights::default(),
        })))
    }

    /// The first policy whose globs match `repo`.
    pub fn policy_for(&self, repo: &RepoName) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches(repo))
    }

    /// Whether a verified verdict for the manifest is cached (counted as a hit).
    fn cached_verified(&self, policy: &Policy, repo: &RepoName, digest: &Digest) -> bool {
        let key = (repo.clone(), digest.clone(), policy.version);
        let hit = self.verified.contains_key(&key);
        if hit {
            metrics::cache(true);
        }
        hit
    }

    /// The verdict for a manifest under a policy, from the cache or verified now.
    pub async fn verdict(
        &self,
        policy: &Policy,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Arc<Verdict>, RegistryError> {
        let key = (repo.clone(), digest.clone(), policy.version);
        if let Some(v) = self.cached(&key) {
            metrics::cache(true);
            return Ok(v);
        }
        metrics::cache(false);
        let ran = std::sync::atomic::AtomicBool::new(false);
        let v = self
            .flights
            .run(key.clone(), || async {
                ran.store(true, std::sync::atomic::Ordering::Relaxed);
                // A flight for this key may have ended between the lookup and now.
                if let Some(v) = self.cached(&key) {
                    return Ok::<_, RegistryError>(v);
                }
                let v = Arc::new(verify::verify(&self.registry, policy, repo, digest).await?);
                metrics::verification(&policy.name, v.label());
                match *v {
                    Verdict::Verified { .. } => self.verified.insert(key.clone(), v.clone()),
                    _ => self.refused.insert(key.clone(), v.clone()),
                }
                Ok(v)
            })
            .await?;
        if !ran.load(std::sync::atomic::Ordering::Relaxed) {
            metrics::coalesced();
        }
        Ok(v)
    }

    fn cached(&self, key: &CacheKey) -> Option<Arc<Verdict>> {
        self.verified.get(key).or_else(|| self.refused.get(key))
    }

    /// Whether a pull of `manifest` (found by `reference`) may go ahead.
    pub async fn check_pull(
        &self,
        repo: &RepoName,
        reference: &Reference,
        manifest: &ManifestRecord,
        head: bool,
        push_scope: bool,
    ) -> Result<(), RegistryError> {
        let Some(policy) = self.policy_for(repo).filter(|p| p.pull) else {
            return Ok(());
        };
        let by_tag = matches!(reference, Reference::Tag(_));
        if push_scope && (head || !by_tag) {
            return Ok(());
        }
        // The common case first and cheapest: a verdict already cached as verified (no
        // parsing, no query). Then signatures themselves, then verification.
        if manifest.subject.is_some() || self.cached_verified(policy, repo, &manifest.digest) {
            return Ok(());
        }
        if is_accessory(manifest) {
            return Ok(());
        }
        let verdict = self.verdict(policy, repo, &manifest.digest).await?;
        if matches!(*verdict, Verdict::Verified { .. }) {
            return Ok(());
        }
        if !by_tag {
            for parent in self.registry.parent_indexes(repo, &manifest.digest).await? {
                let v = self.verdict(policy, repo, &parent).await?;
                if matches!(*v, Verdict::Verified { .. }) {
                    return Ok(());
                }
            }
        }
        metrics::refusal(&policy.name, "pull");
        Err(refusal(
            "pull",
            policy,
            repo,
            reference,
            &manifest.digest,
            &verdict,
        ))
    }

    /// Whether a push of `body` under `tags` may go ahead (nothing to check without a
    /// tag, or for a signature).
    pub async fn check_push(
        &self,
        repo: &RepoName,
        reference: &Reference,
        tagged: bool,
        body: &[u8],
    ) -> Result<(), RegistryError> {
        let Some(policy) = self.policy_for(repo).filter(|p| p.push) else {
            return Ok(());
        };
        if !tagged {
            return Ok(());
        }
        if let Reference::Tag(t) = reference {
            if is_attachment_tag(t.as_str()) {
                return Ok(());
            }
        }
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => crate::types::digest::Algorithm::Sha256,
        };
        let record = ManifestRecord {
            digest: algorithm.digest_of(body),
            media_type: String::new(),
            payload: body.to_vec(),
            subject: serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("subject")?.get("digest")?.as_str()?.parse().ok()),
            artifact_type: None,
            annotations: None,
        };
        if is_accessory(&record) {
            return Ok(());
        }
        let verdict = self.verdict(policy, repo, &record.digest).await?;
        if matches!(*verdict, Verdict::Verified { .. }) {
            return Ok(());
        }
        metrics::refusal(&policy.name, "push");
        Err(refusal(
            "push",
            policy,
            repo,
            reference,
            &record.digest,
            &verdict,
        ))
    }
}

/// Reads and parses every policy's key files (`wharf serve` and `wharf check-config`):
/// an unreadable or unparsable file is an error naming the policy and the file.
pub fn load_policies(config: &TrustConfig) -> Result<Vec<Policy>, String> {
    let mut policies = Vec::new();
    for p in &config.policies {
        let mut hash = Sha256::new();
        hash.update(serde_json::to_vec(p).map_err(|e| e.to_string())?);
        let read = |file: &str, hash: &mut Sha256| -> Result<Vec<u8>, String> {
            let data = std::fs::read(file).map_err(|e| {
                format!(
                    "trust policy {:?}: cannot read key file {file}: {e}",
                    p.name
                )
            })?;
            hash.update(&data);
            Ok(data)
        };
        let mut cosign = Vec::new();
        for file in &p.keys.cosign {
            let data = read(file, &mut hash)?;
            cosign.push(
                keys::CosignKey::parse(file, &data)
                    .map_err(|e| format!("trust policy {:?}: {e}", p.name))?,
            );
        }
        let mut gpg = Vec::new();
        for file in &p.keys.gpg {
            let data = read(file, &mut hash)?;
            gpg.extend(
                keys::GpgKeys::parse(file, &data)
                    .map_err(|e| format!("trust policy {:?}: {e}", p.name))?
                    .keys,
            );
        }
        let digest = hash.finalize();
        let mut version = [0u8; 8];
        version.copy_from_slice(&digest[..8]);
        policies.push(Policy {
            name: p.name.clone(),
            repositories: p.repositories.clone(),
            pull: p.on.contains(&TrustAction::Pull),
            push: p.on.contains(&TrustAction::Push),
            cosign,
            gpg,
            identity: p.identity,
            version: u64::from_be_bytes(version),
        });
    }
    Ok(policies)
}

fn refusal(
    action: &str,
    policy: &Policy,
    repo: &RepoName,
    reference: &Reference,
    digest: &Digest,
    verdict: &Verdict,
) -> RegistryError {
    let at = match reference {
        Reference::Tag(t) => format!("{repo}:{t}"),
        Reference::Digest(d) => format!("{repo}@{d}"),
    };
    let why = match verdict {
        Verdict::Unsigned => format!("manifest {digest} has no signature"),
        Verdict::Invalid { found, reason } => format!(
            "none of the {found} signature(s) of manifest {digest} verifies with the policy's keys ({reason})"
        ),
        Verdict::Verified { .. } => String::new(),
    };
    RegistryError::Untrusted(format!(
        "{action} of {at} refused by trust policy {:?}: {why}",
        policy.name
    ))
}
