//! CloudFront signed URLs with a canned policy, as CloudFront checks them: the policy
//! `{"Statement":[{"Resource":"<url>","Condition":{"DateLessThan":{"AWS:EpochTime":<expires>}}}]}`
//! (no whitespace) signed with RSA PKCS#1 v1.5 over SHA-1, in CloudFront's URL-safe
//! base64 (`+` → `-`, `=` → `_`, `/` → `~`), appended as `Expires`, `Signature` and
//! `Key-Pair-Id`.
//!
//! The `rsa` crate signs: ring refuses SHA-1 signatures, and CloudFront accepts nothing
//! else for key pairs. No crate implements CloudFront's policy or its base64 alphabet
//! (the AWS SDK's signer needs the whole SDK), so those few lines are written here.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::rand_core::OsRng;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha1::{Digest as _, Sha1};
use url::Url;

/// Signs URLs under one CloudFront distribution.
pub struct CloudFrontSigner {
    base: Url,
    key: RsaPrivateKey,
    key_pair_id: String,
    duration: Duration,
}

impl std::fmt::Debug for CloudFrontSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudFrontSigner")
            .field("base", &self.base.as_str())
            .field("key_pair_id", &self.key_pair_id)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

/// Reads an RSA private key in PEM, PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8
/// (`BEGIN PRIVATE KEY`).
pub fn read_private_key(path: &Path) -> Result<RsaPrivateKey, String> {
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    RsaPrivateKey::from_pkcs1_pem(&pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(&pem))
        .map_err(|_| {
            format!(
                "{}: not an RSA private key in PEM (PKCS#1 or PKCS#8)",
                path.display()
            )
        })
}

impl CloudFrontSigner {
    pub fn new(base: Url, key: RsaPrivateKey, key_pair_id: String, duration: Duration) -> Self {
        CloudFrontSigner {
            base,
            key,
            key_pair_id,
            duration,
        }
    }

    /// The URL of `object_path` under the distribution (its segments percent-encoded).
    pub fn resource(&self, object_path: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(object_path.split('/').filter(|s| !s.is_empty()));
        }
        url
    }

    /// The signed URL for `object_path`, valid until `now` + the configured duration.
    pub fn sign(&self, object_path: &str, now: SystemTime) -> Result<Url, String> {
        let mut url = self.resource(object_path);
        let expires = (now + self.duration)
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let policy = canned_policy(url.as_str(), expires);
        let digest = Sha1::digest(policy.as_bytes());
        // With an RNG, `rsa` blinds the private-key operation: a mitigation for its
        // non-constant-time arithmetic (RUSTSEC-2023-0071, no fixed release yet).
        let signature = self
            .key
            .sign_with_rng(&mut OsRng, Pkcs1v15Sign::new::<Sha1>(), &digest)
            .map_err(|e| format!("RSA signing failed: {e}"))?;
        // Set as a whole: form encoding would turn CloudFront's `~` into `%7E`.
        url.set_query(Some(&format!(
            "Expires={expires}&Signature={}&Key-Pair-Id={}",
            cloudfront_base64(&signature),
            self.key_pair_id
        )));
        Ok(url)
    }
}

/// The canned policy CloudFront rebuilds from a URL and its `Expires`.
pub fn canned_policy(resource: &str, expires: u64) -> String {
    // `resource` is a parsed URL: no `"` or `\` left to escape.
    format!(
        r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// Standard base64 with CloudFront's substitutions for URL-unsafe characters.
pub fn cloudfront_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_and_alphabet() {
        assert_eq!(
            canned_policy("https://d1.cloudfront.net/a/b", 1700000000),
            r#"{"Statement":[{"Resource":"https://d1.cloudfront.net/a/b","Condition":{"DateLessThan":{"AWS:EpochTime":1700000000}}}]}"#
        );
        // 0xfb 0xff → "+/8=" in standard base64.
        assert_eq!(cloudfront_base64(&[0xfb, 0xff]), "-~8_");
    }
}
