//! Loading a policy's keys: cosign/sigstore public keys (PEM `PUBLIC KEY`, ECDSA
//! P-256) and OpenPGP public keys. Read once at start-up; a file that does not parse
//! stops the server with its name.
//!
//! Cosign signatures are verified with `ring` (ECDSA P-256, SHA-256, ASN.1): key-based
//! cosign signing is an ECDSA signature over the payload, which `ring` (already the
//! tree's verifier) checks without the `sigstore` crate's dependency tree (TUF, Rekor
//! and Fulcio clients, an OpenSSL-free but large crypto stack) that keyless signing
//! would need and Wharf does not support.

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

use super::openpgp;

/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, a
/// 66-byte BIT STRING); the uncompressed point follows. DER is canonical, so every
/// P-256 key's SPKI starts with exactly these bytes.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An ECDSA P-256 public key (the uncompressed point).
#[derive(Debug, Clone)]
pub struct CosignKey {
    pub file: String,
    point: Vec<u8>,
}

impl CosignKey {
    pub fn parse(file: &str, pem_text: &[u8]) -> Result<CosignKey, String> {
        let block = pem::parse(pem_text).map_err(|e| format!("{file}: not a PEM file: {e}"))?;
        if block.tag() != "PUBLIC KEY" {
            return Err(format!(
                "{file}: a PEM PUBLIC KEY is needed, not {:?}",
                block.tag()
            ));
        }
        let der = block.contents();
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(CosignKey {
                file: file.to_string(),
                point: point.to_vec(),
            }),
            _ => Err(format!(
                "{file}: not an ECDSA P-256 public key (the only kind cosign key-based \
                 signing and skopeo's sigstore keys use that Wharf verifies)"
            )),
        }
    }

    /// Whether `signature` (ASN.1 DER) is this key's over `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, signature)
            .is_ok()
    }
}

/// The keys of one OpenPGP key file.
#[derive(Debug, Clone)]
pub struct GpgKeys {
    pub file: String,
    pub keys: Vec<openpgp::PublicKey>,
}

impl GpgKeys {
    pub fn parse(file: &str, data: &[u8]) -> Result<GpgKeys, String> {
        let keys = openpgp::parse_public_keys(data).map_err(|e| format!("{file}: {e}"))?;
        Ok(GpgKeys {
            file: file.to_string(),
            keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_p256_key() {
        assert!(CosignKey::parse("x", b"garbage").is_err());
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", vec![0u8; 91]));
        assert!(CosignKey::parse("x", pem.as_bytes()).is_err());
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![0u8; 91]));
        assert!(CosignKey::parse("x", pem.as_bytes()).is_err());
    }

    #[test]
    fn verifies_a_ring_signature() {
        use ring::rand::SystemRandom;
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
        let key = CosignKey::parse("k.pub", pem.as_bytes()).unwrap();
        let sig = pair.sign(&rng, b"payload").unwrap();
        assert!(key.verifies(b"payload", sig.as_ref()));
        assert!(!key.verifies(b"other", sig.as_ref()));
    }
}
