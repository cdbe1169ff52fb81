//! Docker token auth: JWT bearer tokens checked with `jsonwebtoken`.
//!
//! A token is accepted when its `alg` is an allowed asymmetric algorithm (never `none`
//! or HMAC), its `kid` names a trusted key of the matching kind, its signature holds, its
//! issuer and audience are the configured ones, and `exp`/`nbf` hold within the leeway.
//! Trusted keys come from a JWK set (under the JWK's `kid` and its RFC 7638
//! thumbprint), from the certificates of `rootcertbundle` (under the libtrust-style key
//! id distribution uses and the thumbprint), and from the built-in token server.
//! Not supported: `x5c` chains in the token header.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{unauthorized, Action, AuthSetupError, Need};
use crate::config::TokenConfig;
use crate::http::error::ApiError;

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

/// The claims Wharf reads (issuer, audience and times are checked by `jsonwebtoken`).
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub access: Vec<ResourceActions>,
}

impl Claims {
    fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == kind && a.name == name && a.actions.iter().any(|x| x == action || x == "*")
        })
    }

    pub fn allows_repository(&self, name: &str, action: Action) -> bool {
        self.grants("repository", name, action.as_str())
    }

    pub fn allows_catalog(&self) -> bool {
        self.grants("registry", "catalog", "*")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm {0} not accepted")]
    Algorithm(String),
    #[error("no trusted key with kid {0:?}")]
    UnknownKey(Option<String>),
    #[error("{0}")]
    Invalid(String),
}

/// The kind of a public key, which fixes the algorithms it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Family {
    fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm as A;
        match self {
            Family::Rsa => matches!(
                alg,
                A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
            ),
            Family::P256 => alg == A::ES256,
            Family::P384 => alg == A::ES384,
            Family::Ed25519 => alg == A::EdDSA,
        }
    }
}

/// A trusted public key.
#[derive(Clone)]
pub struct PublicKey {
    pub family: Family,
    key: DecodingKey,
    /// RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub thumbprint: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("family", &self.family)
            .field("thumbprint", &self.thumbprint)
            .finish()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64url_decode(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("bad base64url: {e}"))
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&x| x == 0).count();
    &b[n.min(b.len().saturating_sub(1))..]
}

fn thumbprint(canonical: String) -> String {
    b64url(&Sha256::digest(canonical.as_bytes()))
}

impl PublicKey {
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    pub fn rsa(n: &[u8], e: &[u8]) -> PublicKey {
        let (n, e) = (strip_zeros(n), strip_zeros(e));
        PublicKey {
            family: Family::Rsa,
            key: DecodingKey::from_rsa_raw_components(n, e),
            thumbprint: thumbprint(format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64url(e),
                b64url(n)
            )),
        }
    }

    /// An EC key from its uncompressed point (`04 || x || y`).
    pub fn ec(family: Family, point: &[u8]) -> Result<PublicKey, String> {
        let (crv, len) = match family {
            Family::P256 => ("P-256", 32),
            Family::P384 => ("P-384", 48),
            _ => return Err("not an EC curve".into()),
        };
        if point.len() != 1 + 2 * len || point[0] != 4 {
            return Err(format!("not an uncompressed {crv} point"));
        }
        let (x, y) = point[1..].split_at(len);
        Ok(PublicKey {
            family,
            key: DecodingKey::from_ec_der(point),
            thumbprint: thumbprint(format!(
                r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                b64url(x),
                b64url(y)
            )),
        })
    }

    pub fn ed25519(x: &[u8]) -> Result<PublicKey, String> {
        if x.len() != 32 {
            return Err("not an Ed25519 key".into());
        }
        Ok(PublicKey {
            family: Family::Ed25519,
            key: DecodingKey::from_ed_der(x),
            thumbprint: thumbprint(format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                b64url(x)
            )),
        })
    }

    /// A key from a JWK (`RSA`, `EC` P-256/P-384, `OKP` Ed25519); `oct` keys are refused.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<PublicKey, String> {
        let field = |name: &str| -> Result<Vec<u8>, String> {
            b64url_decode(
                jwk.get(name)
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| format!("missing {name}"))?,
            )
        };
        match jwk.get("kty").and_then(|v| v.as_str()) {
            Some("RSA") => Ok(PublicKey::rsa(&field("n")?, &field("e")?)),
            Some("EC") => {
                let family = match jwk.get("crv").and_then(|v| v.as_str()) {
                    Some("P-256") => Family::P256,
                    Some("P-384") => Family::P384,
                    other => return Err(format!("unsupported curve {other:?}")),
                };
                let mut point = vec![4u8];
                point.extend(field("x")?);
                point.extend(field("y")?);
                PublicKey::ec(family, &point)
            }
            Some("OKP") if jwk.get("crv").and_then(|v| v.as_str()) == Some("Ed25519") => {
                PublicKey::ed25519(&field("x")?)
            }
            other => Err(format!("unsupported key type {other:?}")),
        }
    }

    /// A key from a DER SubjectPublicKeyInfo.
    pub fn from_spki(spki: &[u8]) -> Result<PublicKey, String> {
        const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
        const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
        let bad = || "malformed SubjectPublicKeyInfo".to_string();
        let (seq, _) = der::expect(spki, 0x30).ok_or_else(bad)?;
        let (alg, rest) = der::expect(seq, 0x30).ok_or_else(bad)?;
        let (bits, _) = der::expect(rest, 0x03).ok_or_else(bad)?;
        let key = bits.get(1..).ok_or_else(bad)?; // skip the unused-bits byte
        let (oid, params) = der::expect(alg, 0x06).ok_or_else(bad)?;
        if oid == RSA {
            let (rsa, _) = der::expect(key, 0x30).ok_or_else(bad)?;
            let (n, rest) = der::expect(rsa, 0x02).ok_or_else(bad)?;
            let (e, _) = der::expect(rest, 0x02).ok_or_else(bad)?;
            Ok(PublicKey::rsa(n, e))
        } else if oid == EC {
            let (curve, _) = der::expect(params, 0x06).ok_or_else(bad)?;
            let family = match curve {
                c if c == P256 => Family::P256,
                c if c == P384 => Family::P384,
                _ => return Err("unsupported EC curve".into()),
            };
            PublicKey::ec(family, key)
        } else if oid == ED25519 {
            PublicKey::ed25519(key)
        } else {
            Err("unsupported public key algorithm".into())
        }
    }
}

/// The key id distribution (libtrust) gives a key: the first 240 bits of the SHA-256 of
/// its DER SubjectPublicKeyInfo, base32, in twelve groups of four joined by `:`.
pub fn libtrust_key_id(spki: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = Sha256::digest(spki);
    let mut out = String::with_capacity(59);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in &hash[..30] {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            if !out.is_empty() && out.len() % 5 == 4 {
                out.push(':');
            }
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// The SubjectPublicKeyInfo (DER) of a DER X.509 certificate.
pub fn certificate_spki(cert: &[u8]) -> Option<&[u8]> {
    let (cert, _) = der::expect(cert, 0x30)?;
    let (mut tbs, _) = der::expect(cert, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der::next(tbs)?.2;
    }
    // serial, signature algorithm, issuer, validity, subject
    for _ in 0..5 {
        tbs = der::next(tbs)?.2;
    }
    let (tag, _, _, whole) = der::next(tbs)?;
    (tag == 0x30).then_some(whole)
}

/// Just enough DER to find a certificate's key.
pub(crate) mod der {
    /// (tag, contents, rest, whole element)
    pub type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

    /// (tag, contents, rest, whole element)
    pub fn next(input: &[u8]) -> Option<Element<'_>> {
        let tag = *input.first()?;
        let first = *input.get(1)?;
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *input.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let end = header.checked_add(len)?;
        if end > input.len() {
            return None;
        }
        Some((tag, &input[header..end], &input[end..], &input[..end]))
    }

    /// The contents of the next element if it has `tag`, and what follows it.
    pub fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (t, contents, rest, _) = next(input)?;
        (t == tag).then_some((contents, rest))
    }
}

const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Checks bearer tokens against the configured issuer, service and keys.
pub struct TokenValidator {
    realm: String,
    service: String,
    issuer: String,
    leeway: u64,
    algorithms: Vec<Algorithm>,
    keys: HashMap<String, Arc<PublicKey>>,
}

fn setup(key: &'static str, message: impl Into<String>) -> AuthSetupError {
    AuthSetupError {
        key,
        message: message.into(),
    }
}

impl TokenValidator {
    /// Loads the trusted keys; `extra` is the built-in token server's (kid, key).
    pub fn from_config(
        config: &TokenConfig,
        extra: Option<(String, Arc<PublicKey>)>,
    ) -> Result<TokenValidator, AuthSetupError> {
        let mut keys = HashMap::new();
        if let Some(path) = &config.jwks {
            let key = "auth.token.jwks";
            let text =
                std::fs::read_to_string(path).map_err(|e| setup(key, format!("{path}: {e}")))?;
            let set: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| setup(key, format!("{path}: not JSON: {e}")))?;
            let list = set
                .get("keys")
                .and_then(|k| k.as_array())
                .ok_or_else(|| setup(key, format!("{path}: no \"keys\" array")))?;
            for (i, jwk) in list.iter().enumerate() {
                let public = Arc::new(
                    PublicKey::from_jwk(jwk)
                        .map_err(|e| setup(key, format!("{path}: key {i}: {e}")))?,
                );
                if let Some(kid) = jwk.get("kid").and_then(|k| k.as_str()) {
                    keys.insert(kid.to_string(), public.clone());
                }
                keys.insert(public.thumbprint.clone(), public);
            }
        }
        if let Some(path) = &config.rootcertbundle {
            let key = "auth.token.rootcertbundle";
            let text = std::fs::read(path).map_err(|e| setup(key, format!("{path}: {e}")))?;
            let blocks = pem::parse_many(&text).map_err(|e| setup(key, format!("{path}: {e}")))?;
            let mut found = 0;
            for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
                let spki = certificate_spki(block.contents())
                    .ok_or_else(|| setup(key, format!("{path}: malformed certificate")))?;
                let public = Arc::new(
                    PublicKey::from_spki(spki).map_err(|e| setup(key, format!("{path}: {e}")))?,
                );
                keys.insert(libtrust_key_id(spki), public.clone());
                keys.insert(public.thumbprint.clone(), public);
                found += 1;
            }
            if found == 0 {
                return Err(setup(key, format!("{path}: no certificates")));
            }
        }
        if let Some((kid, public)) = extra {
            keys.insert(public.thumbprint.clone(), public.clone());
            keys.insert(kid, public);
        }
        let algorithms = match &config.signingalgorithms {
            Some(list) => list
                .iter()
                .map(|a| {
                    a.parse::<Algorithm>()
                        .map_err(|_| setup("auth.token.signingalgorithms", a.clone()))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => DEFAULT_ALGORITHMS.to_vec(),
        };
        Ok(TokenValidator {
            realm: config.realm.clone(),
            service: config.service.clone(),
            issuer: config.issuer.clone(),
            leeway: config.leeway,
            algorithms,
            keys,
        })
    }

    /// Validates a token and returns its claims.
    pub fn validate(&self, token: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) || !DEFAULT_ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let key = header
            .kid
            .as_ref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?;
        if !key.family.verifies(header.alg) {
            return Err(TokenError::Algorithm(format!(
                "{:?} with a {:?} key",
                header.alg, key.family
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => {
                        TokenError::Malformed(e.to_string())
                    }
                    _ => TokenError::Invalid(e.to_string()),
                }
            })
    }

    /// A 401 with the `Bearer` challenge for `need`.
    pub fn challenge(&self, need: &Need, error: Option<&str>, message: &str) -> ApiError {
        let mut value = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            super::quote(&self.realm),
            super::quote(&self.service)
        );
        if let Some(scope) = need.scope() {
            value.push_str(&format!(",scope=\"{}\"", super::quote(&scope)));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        unauthorized(message, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = PublicKey::from_jwk(&jwk).unwrap();
        assert_eq!(
            key.thumbprint,
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn libtrust_key_id_shape() {
        let id = libtrust_key_id(b"anything");
        assert_eq!(id.len(), 59);
        assert_eq!(id.split(':').count(), 12);
        assert!(id.split(':').all(|g| g.len() == 4));
    }
}
