//! `x5c` certificate chains in token headers (RFC 7515 §4.1.6), checked as distribution
//! checks them (Go's `x509.Verify` with the `rootcertbundle` as roots and any key usage):
//! the chain is `[leaf, intermediate…]`; each certificate is signed by the next and names
//! it as its issuer; the last is a certificate of the bundle or is signed by one; every
//! certificate, roots included, is within its validity period; every issuer is a CA
//! (basic constraints, path length, and `keyCertSign` when a key usage is given); SHA-1
//! signatures and unknown critical extensions are refused. The leaf's key then verifies
//! the token.
//!
//! Parsing and signature checks are `x509-parser`'s (with `ring`). The walk itself is
//! written here: `rustls-webpki`, the other well-kept verifier, checks TLS server/client
//! usage and refuses a CA certificate as the end of a chain, which distribution allows.

use base64::Engine as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;
use x509_parser::x509::X509Version;

/// The longest chain accepted (leaf included).
pub const MAX_CHAIN: usize = 8;
/// The largest certificate accepted in a header, in bytes of DER.
const MAX_CERTIFICATE: usize = 16 * 1024;

/// The trusted roots: the certificates of `auth.token.rootcertbundle`, as DER.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    ders: Vec<Vec<u8>>,
}

/// Parses one DER certificate, refusing trailing bytes.
pub fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing bytes after the certificate".into()),
        Err(e) => Err(format!("malformed certificate: {e}")),
    }
}

fn check_alone(cert: &X509Certificate<'_>, what: &str, now: ASN1Time) -> Result<(), String> {
    if !cert.validity().is_valid_at(now) {
        return Err(format!("{what} is outside its validity period"));
    }
    let unknown_critical = cert.extensions().iter().any(|e| {
        e.critical
            && matches!(
                e.parsed_extension(),
                ParsedExtension::UnsupportedExtension { .. } | ParsedExtension::ParseError { .. }
            )
    });
    if unknown_critical {
        return Err(format!("{what} has an unsupported critical extension"));
    }
    Ok(())
}

/// Checks that `issuer` (a root of the bundle when `root`) issued `child`, with `below`
/// intermediate CAs under `issuer`.
fn check_issued(
    child: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    below: usize,
    root: bool,
    what: &str,
) -> Result<(), String> {
    if child.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(format!(
            "{what}: issuer name does not match the next certificate"
        ));
    }
    match issuer.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {
            if let Some(max) = bc.value.path_len_constraint {
                if below > max as usize {
                    return Err(format!("{what}: issuer's path length constraint exceeded"));
                }
            }
        }
        // X.509 v1 certificates have no extensions; Go accepts them as roots only.
        Ok(None) if root && issuer.version() == X509Version::V1 => {}
        Ok(_) => return Err(format!("{what}: issuer is not a CA")),
        Err(e) => return Err(format!("{what}: issuer's basic constraints: {e}")),
    }
    match issuer.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => {
            return Err(format!("{what}: issuer may not sign certificates"))
        }
        Ok(_) => {}
        Err(e) => return Err(format!("{what}: issuer's key usage: {e}")),
    }
    let alg = &child.signature_algorithm.algorithm;
    if *alg == OID_PKCS1_SHA1WITHRSA || *alg == OID_SHA1_WITH_RSA {
        return Err(format!("{what}: SHA-1 signatures are not accepted"));
    }
    child
        .verify_signature(Some(issuer.public_key()))
        .map_err(|e| format!("{what}: signature does not verify: {e}"))
}

impl Roots {
    /// Parses the roots now, so a bad bundle stops start-up.
    pub fn new(ders: Vec<Vec<u8>>) -> Result<Roots, String> {
        for der in &ders {
            parse(der)?;
        }
        Ok(Roots { ders })
    }

    pub fn is_empty(&self) -> bool {
        self.ders.is_empty()
    }

    /// Verifies an `x5c` header at `now` and returns the leaf's SubjectPublicKeyInfo (DER).
    pub fn verify(&self, x5c: &[String], now: ASN1Time) -> Result<Vec<u8>, String> {
        let _span = tracing::debug_span!("x5c_verify", certificates = x5c.len()).entered();
        if self.ders.is_empty() {
            return Err("x5c chains need auth.token.rootcertbundle".into());
        }
        if x5c.is_empty() || x5c.len() > MAX_CHAIN {
            return Err(format!("x5c must hold 1 to {MAX_CHAIN} certificates"));
        }
        let ders = x5c
            .iter()
            .enumerate()
            .map(|(i, b64)| {
                // Standard base64 with padding (RFC 7515 §4.1.6); the length bound comes first.
                if b64.len() > MAX_CERTIFICATE * 4 / 3 + 4 {
                    return Err(format!("x5c[{i}] is too large"));
                }
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("x5c[{i}]: not base64: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let certs = ders
            .iter()
            .enumerate()
            .map(|(i, der)| parse(der).map_err(|e| format!("x5c[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, cert) in certs.iter().enumerate() {
            check_alone(cert, &format!("x5c[{i}]"), now)?;
        }
        for (i, pair) in certs.windows(2).enumerate() {
            check_issued(&pair[0], &pair[1], i, false, &format!("x5c[{i}]"))?;
        }
        let last = certs.len() - 1;
        let tail = &ders[last];
        if self.ders.iter().any(|root| root == tail) {
            return Ok(certs[0].public_key().raw.to_vec());
        }
        let mut why = format!("x5c[{last}] is not signed by a root of the bundle");
        for root_der in &self.ders {
            let Ok(root) = parse(root_der) else { continue };
            if root.subject().as_raw() != certs[last].issuer().as_raw() {
                continue;
            }
            let what = format!("x5c[{last}]");
            match check_alone(&root, "root", now)
                .and_then(|()| check_issued(&certs[last], &root, last, true, &what))
            {
                Ok(()) => return Ok(certs[0].public_key().raw.to_vec()),
                Err(e) => why = e,
            }
        }
        Err(why)
    }
}
