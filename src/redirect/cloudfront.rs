//! CloudFront signed URLs with a canned policy, as CloudFront checks them: the policy
//! `{"Statement":[{"Resource":"<url>","Condition":{"DateLessThan":{"AWS:EpochTime":<expires>}}}]}`
//! (no whitespace) signed with RSA PKCS#1 v1.5 over SHA-256, in CloudFront's URL-safe
//! base64 (`+` → `-`, `=` → `_`, `/` → `~`), appended as `Expires`, `Signature`,
//! `Key-Pair-Id` and `Hash-Algorithm=SHA256` (accepted by CloudFront since April 2026;
//! without it CloudFront expects SHA-1).
//!
//! ring signs, in constant time. (SHA-1 signing would need the `rsa` crate, whose
//! private-key arithmetic is not constant-time: RUSTSEC-2023-0071, no fixed release.)
//! No crate implements CloudFront's policy or its base64 alphabet (the AWS SDK's signer
//! needs the whole SDK), so those few lines are written here.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use url::Url;

/// An RSA private key that signs CloudFront policies.
pub struct CloudFrontKey(RsaKeyPair);

/// Signs URLs under one CloudFront distribution.
pub struct CloudFrontSigner {
    base: Url,
    key: CloudFrontKey,
    rng: SystemRandom,
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
/// (`BEGIN PRIVATE KEY`), 2048 to 8192 bits.
pub fn read_private_key(path: &Path) -> Result<CloudFrontKey, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let not_rsa = || {
        format!(
            "{}: not an RSA private key in PEM (PKCS#1 or PKCS#8), 2048 bits or more",
            path.display()
        )
    };
    let block = pem::parse(&text).map_err(|_| not_rsa())?;
    let key = match block.tag() {
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(block.contents()),
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(block.contents()),
        _ => return Err(not_rsa()),
    };
    key.map(CloudFrontKey).map_err(|_| not_rsa())
}

impl CloudFrontSigner {
    pub fn new(base: Url, key: CloudFrontKey, key_pair_id: String, duration: Duration) -> Self {
        CloudFrontSigner {
            base,
            key,
            rng: SystemRandom::new(),
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
        let mut signature = vec![0u8; self.key.0.public().modulus_len()];
        self.key
            .0
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                policy.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "RSA signing failed".to_string())?;
        // Set as a whole: form encoding would turn CloudFront's `~` into `%7E`.
        url.set_query(Some(&format!(
            "Expires={expires}&Signature={}&Key-Pair-Id={}&Hash-Algorithm=SHA256",
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
