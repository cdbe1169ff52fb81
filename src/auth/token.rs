//! Docker token auth: JWT bearer tokens checked with `jsonwebtoken`.
//!
//! A token is accepted when its `alg` is an allowed asymmetric algorithm (never `none`
//! or HMAC), its `kid` names a trusted key of the matching kind, its signature holds, its
//! issuer and audience are the configured ones, and `exp`/`nbf` hold within the leeway.
//! Trusted keys come from a JWK set (under the JWK's `kid` and its RFC 7638
//! thumbprint), from the certificates of `rootcertbundle` (under the libtrust-style key
//! id distribution uses and the thumbprint), and from the built-in token server; or,
//! when the header carries an `x5c` chain, from the chain's leaf once `x5c.rs` has
//! verified it up to a certificate of `rootcertbundle`.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use x509_parser::prelude::FromDer as _;

use super::{unauthorized, x5c, Action, AuthError, AuthSetupError, Need};
use crate::config::TokenConfig;

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

    /// The quota admin API: reading, or (`write`) changing quotas.
    pub fn allows_quotas(&self, write: bool) -> bool {
        self.grants("registry", "quota", if write { "write" } else { "read" })
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
    #[error("x5c chain refused: {0}")]
    Certificate(String),
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
    pub fn from_jwk(jwk: &Jwk) -> Result<PublicKey, String> {
        use jsonwebtoken::jwk::{AlgorithmParameters as P, EllipticCurve as C};
        match &jwk.algorithm {
            P::RSA(rsa) => Ok(PublicKey::rsa(
                &b64url_decode(&rsa.n)?,
                &b64url_decode(&rsa.e)?,
            )),
            P::EllipticCurve(ec) => {
                let family = match ec.curve {
                    C::P256 => Family::P256,
                    C::P384 => Family::P384,
                    ref other => return Err(format!("unsupported curve {other:?}")),
                };
                let mut point = vec![4u8];
                point.extend(b64url_decode(&ec.x)?);
                point.extend(b64url_decode(&ec.y)?);
                PublicKey::ec(family, &point)
            }
            P::OctetKeyPair(okp) if okp.curve == C::Ed25519 => {
                PublicKey::ed25519(&b64url_decode(&okp.x)?)
            }
            P::OctetKeyPair(okp) => Err(format!("unsupported curve {:?}", okp.curve)),
            P::OctetKey(_) => Err("symmetric (oct) keys are not accepted".into()),
        }
    }

    /// A key from a DER SubjectPublicKeyInfo (RSA, EC P-256/P-384, Ed25519).
    pub fn from_spki(spki: &[u8]) -> Result<PublicKey, String> {
        use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_SIG_ED25519};
        use x509_parser::public_key::PublicKey as Parsed;
        use x509_parser::x509::SubjectPublicKeyInfo;
        let bad = || "malformed SubjectPublicKeyInfo".to_string();
        let info = match SubjectPublicKeyInfo::from_der(spki) {
            Ok(([], info)) => info,
            _ => return Err(bad()),
        };
        if info.algorithm.algorithm == OID_SIG_ED25519 {
            return PublicKey::ed25519(&info.subject_public_key.data);
        }
        match info.parsed().map_err(|_| bad())? {
            Parsed::RSA(rsa) => Ok(PublicKey::rsa(rsa.modulus, rsa.exponent)),
            Parsed::EC(point) => {
                let curve = info
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok());
                let family = match curve {
                    Some(c) if c == OID_EC_P256 => Family::P256,
                    Some(c) if c == OID_NIST_EC_P384 => Family::P384,
                    _ => return Err("unsupported EC curve".into()),
                };
                PublicKey::ec(family, point.data())
            }
            _ => Err("unsupported public key algorithm".into()),
        }
    }
}

/// The key id distribution (libtrust) gives a key: the first 240 bits of the SHA-256 of
/// its DER SubjectPublicKeyInfo, base32, in twelve groups of four joined by `:`.
pub fn libtrust_key_id(spki: &[u8]) -> String {
    let hash = Sha256::digest(spki);
    let b32 = data_encoding::BASE32_NOPAD.encode(&hash[..30]);
    let groups: Vec<&str> = (0..b32.len())
        .step_by(4)
        .map(|i| &b32[i..(i + 4).min(b32.len())])
        .collect();
    groups.join(":")
}

/// The SubjectPublicKeyInfo (DER) of a DER X.509 certificate.
pub fn certificate_spki(cert: &[u8]) -> Option<&[u8]> {
    x5c::parse(cert)
        .ok()
        .map(|c| c.tbs_certificate.subject_pki.raw)
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
    roots: x5c::Roots,
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
        let mut roots = x5c::Roots::default();
        if let Some(path) = &config.jwks {
            let key = "auth.token.jwks";
            let text =
                std::fs::read_to_string(path).map_err(|e| setup(key, format!("{path}: {e}")))?;
            let set: JwkSet = serde_json::from_str(&text)
                .map_err(|e| setup(key, format!("{path}: not a JWK set: {e}")))?;
            for (i, jwk) in set.keys.iter().enumerate() {
                let public = Arc::new(
                    PublicKey::from_jwk(jwk)
                        .map_err(|e| setup(key, format!("{path}: key {i}: {e}")))?,
                );
                if let Some(kid) = &jwk.common.key_id {
                    keys.insert(kid.clone(), public.clone());
                }
                keys.insert(public.thumbprint.clone(), public);
            }
        }
        if let Some(path) = &config.rootcertbundle {
            let key = "auth.token.rootcertbundle";
            let text = std::fs::read(path).map_err(|e| setup(key, format!("{path}: {e}")))?;
            let blocks = pem::parse_many(&text).map_err(|e| setup(key, format!("{path}: {e}")))?;
            let mut ders = Vec::new();
            for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
                let spki = certificate_spki(block.contents())
                    .ok_or_else(|| setup(key, format!("{path}: malformed certificate")))?;
                let public = Arc::new(
                    PublicKey::from_spki(spki).map_err(|e| setup(key, format!("{path}: {e}")))?,
                );
                keys.insert(libtrust_key_id(spki), public.clone());
                keys.insert(public.thumbprint.clone(), public);
                ders.push(block.contents().to_vec());
            }
            if ders.is_empty() {
                return Err(setup(key, format!("{path}: no certificates")));
            }
            roots = x5c::Roots::new(ders).map_err(|e| setup(key, format!("{path}: {e}")))?;
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
            roots,
        })
    }

    /// Validates a token and returns its claims.
    pub fn validate(&self, token: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) || !DEFAULT_ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        // As distribution: an `x5c` chain, when present, decides the key (not `kid`).
        let key = match &header.x5c {
            Some(chain) => {
                let spki = self
                    .roots
                    .verify(chain, x509_parser::time::ASN1Time::now())
                    .map_err(TokenError::Certificate)?;
                Arc::new(PublicKey::from_spki(&spki).map_err(TokenError::Certificate)?)
            }
            None => header
                .kid
                .as_ref()
                .and_then(|kid| self.keys.get(kid))
                .cloned()
                .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?,
        };
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
    pub fn challenge(&self, need: &Need, error: Option<&str>, message: &str) -> AuthError {
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
        let key = PublicKey::from_jwk(&serde_json::from_value(jwk).unwrap()).unwrap();
        assert_eq!(
            key.thumbprint,
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    // Published pairs of (public key, libtrust key id): the fixtures of libtrust-py
    // (github.com/realityone/libtrust-py, tests/fixtures/{ec-public,public}.pem and
    // tests/test_{ec,rsa}_key.py), a port of docker/libtrust whose tests assert these ids;
    // `openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | head -c 30 |
    // base32` gives the same.
    const LIBTRUST_EC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE4pBqYlc5IU5pJh5AOvijtEccStyJ
u0dSAiz4OlDGGFk5PvSlSh+wqUcSyp1ZRSP5kX7Pluof72g5MniaoFrLKg==
-----END PUBLIC KEY-----
";
    const LIBTRUST_RSA: &str = "-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAwq1mCmgn460MC6MnCqra
nQNTgmKuKPl7bNH7Qc6hBDGHlnIjU6q/h2KXF37TC5Y9tsKvQ4b8jd0Sf0dXFHml
8qunSvNnqsSvoD8tSPUKqXS6jrlbGSQXhya7BL1RPGccD5K1xrV73QlI6uFPd3AP
RQYij5EOB8IOWEQujJk/8Mjc0EC9zvk5TUJb59hkOUPZ3CkvSBNLNS8wpQI98FRn
IzHjuaNicqve8054oxmDKifHWy0nnF135cXW8zkH3Zto1q89zD2g+zcVxLcRP84U
he0nSQyg7vEYl4Wl74Eo6/89qL2yE0mEiQN245ACA5B8WFV/t3j/OD3ydOCaAOg2
8vQtzcZ1gh2Ev4RxeR7bKq58g+R0+MMwl7nnW29mbCkcgdVVR4YPmglP7Vb6w7/N
bqFhnxx4E3A05AeevHdMdYCrtgQwogvIhdOHLcVQxJgwy1d2Lg/mv9rovhCJ7d3X
aNEYym6CplCHPMtfnU1LCVkA6b44pFaOVjsAQ8FviFtGXQAToRtwoszSarzslHKY
dPoSGFOsgNJgW67iViOYqGPD97rgJA0VPm0POMNHGw/R6o+08KhDF/OI1EDckmjX
hUggY/WCqWDxD77Ezd/wr9Zlbv/uSIEL9ifvBLq06lLcXMLrQbJrwMbDrngMZMAc
UkTzThmtxNs4uwu45R+zfKcCAwEAAQ==
-----END PUBLIC KEY-----
";

    #[test]
    fn libtrust_key_ids_of_published_keys() {
        for (pem_text, id) in [
            (
                LIBTRUST_EC,
                "UEV2:PPF2:4DMU:WZYF:WOWU:677P:B7XU:SGFA:BMUG:NCTC:R7CL:XFKZ",
            ),
            (
                LIBTRUST_RSA,
                "IIYO:OWAZ:MBMG:2SIK:IK2I:OP5Z:H6QR:KN6Y:QUGO:BUWN:TYW3:JXVW",
            ),
        ] {
            let spki = pem::parse(pem_text).unwrap().into_contents();
            assert_eq!(libtrust_key_id(&spki), id);
            PublicKey::from_spki(&spki).expect("a supported key");
        }
        // libtrust-py's JWK of the EC key (x, y) gives the same key.
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": "4pBqYlc5IU5pJh5AOvijtEccStyJu0dSAiz4OlDGGFk",
            "y": "OT70pUofsKlHEsqdWUUj-ZF-z5bqH-9oOTJ4mqBayyo",
        });
        let spki = pem::parse(LIBTRUST_EC).unwrap().into_contents();
        assert_eq!(
            PublicKey::from_jwk(&serde_json::from_value(jwk).unwrap())
                .unwrap()
                .thumbprint,
            PublicKey::from_spki(&spki).unwrap().thumbprint
        );
    }

    #[test]
    fn libtrust_key_id_shape() {
        let id = libtrust_key_id(b"anything");
        assert_eq!(id.len(), 59);
        assert_eq!(id.split(':').count(), 12);
        assert!(id.split(':').all(|g| g.len() == 4));
    }

    #[test]
    fn malformed_keys_are_errors() {
        for bad in [
            &b""[..],
            b"\x30\x00",
            b"\x30\x03\x30\x01\x00",
            &[0xff; 40][..],
        ] {
            assert!(PublicKey::from_spki(bad).is_err());
            assert!(certificate_spki(bad).is_none());
        }
    }
}
