//! Just enough OpenPGP (RFC 4880) to verify a simple-signing signature: public keys
//! (armored or binary; RSA and Ed25519, primary keys and subkeys) and signed messages
//! as gpg makes them (`gpg --sign`, what containers/image's `--sign-by` stores: a
//! compressed one-pass-signed literal packet), verified with `ring`.
//!
//! Why not the `pgp` (rPGP) crate: it depends on the `rsa` crate, which `deny.toml`
//! bans (RUSTSEC-2023-0071); `ring`, already the tree's signature verifier, checks RSA
//! PKCS#1 v1.5 and Ed25519 signatures, and the packet format is small.
//!
//! What is checked: the signature packet verifies over the literal data with one of
//! the configured keys (issuer key id or fingerprint matched when given); SHA-1 is
//! refused. What is not: key expiry, revocation, and subkey binding signatures — the
//! configured key file is trusted as it is, as a keyring an operator installs.

use std::io::Read;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::signature::{self as sig, UnparsedPublicKey};

/// Why a key file or a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PgpError {
    #[error("malformed OpenPGP data: {0}")]
    Malformed(String),
    #[error("unsupported OpenPGP data: {0}")]
    Unsupported(String),
    #[error("no key of the policy made this signature")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
}

type Result<T> = std::result::Result<T, PgpError>;

fn malformed(what: &str) -> PgpError {
    PgpError::Malformed(what.to_string())
}

/// The most a decompressed message may hold (a simple-signing payload is < 1 KiB).
const MAX_DECOMPRESSED: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ed25519([u8; 32]),
}

/// One public key (a primary key or a subkey).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub fingerprint: [u8; 20],
    material: Material,
}

impl PublicKey {
    pub fn key_id(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.fingerprint[12..]);
        id
    }

    pub fn fingerprint_hex(&self) -> String {
        hex::encode_upper(self.fingerprint)
    }
}

/// Strips ASCII armor if there is any.
fn dearmor(data: &[u8]) -> Result<Vec<u8>> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(data.to_vec());
    };
    if !text.contains("-----BEGIN PGP") {
        return Ok(data.to_vec());
    }
    let mut lines = text.lines().map(str::trim);
    lines
        .by_ref()
        .find(|l| l.starts_with("-----BEGIN PGP"))
        .ok_or_else(|| malformed("armor without BEGIN"))?;
    // Armor headers end at the first blank line.
    let mut body = String::new();
    let mut in_headers = true;
    for line in lines {
        if line.starts_with("-----END PGP") {
            break;
        }
        if in_headers {
            if line.is_empty() {
                in_headers = false;
            } else if !line.contains(':') {
                in_headers = false;
                body.push_str(line);
            }
            continue;
        }
        if line.starts_with('=') {
            continue; // the CRC-24 checksum
        }
        body.push_str(line);
    }
    B64.decode(body.as_bytes())
        .map_err(|e| PgpError::Malformed(format!("armor is not base64: {e}")))
}

/// Splits `data` into (tag, body) packets; partial body lengths are joined.
fn packets(data: &[u8]) -> Result<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut i = 0usize;
    let take = |i: &mut usize, n: usize| -> Result<&[u8]> {
        let end = i.checked_add(n).filter(|&e| e <= data.len());
        let end = end.ok_or_else(|| malformed("packet runs past the end"))?;
        let s = &data[*i..end];
        *i = end;
        Ok(s)
    };
    while i < data.len() {
        let h = take(&mut i, 1)?[0];
        if h & 0x80 == 0 {
            return Err(malformed("packet header without its high bit"));
        }
        if h & 0x40 != 0 {
            let tag = h & 0x3f;
            let mut body = Vec::new();
            loop {
                let o1 = take(&mut i, 1)?[0] as usize;
                let (len, partial) = match o1 {
                    0..=191 => (o1, false),
                    192..=223 => {
                        let o2 = take(&mut i, 1)?[0] as usize;
                        (((o1 - 192) << 8) + o2 + 192, false)
                    }
                    255 => {
                        let b = take(&mut i, 4)?;
                        (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, false)
                    }
                    _ => (1usize << (o1 & 0x1f), true),
                };
                body.extend_from_slice(take(&mut i, len)?);
                if !partial {
                    break;
                }
            }
            out.push((tag, body));
        } else {
            let tag = (h >> 2) & 0x0f;
            let len = match h & 3 {
                0 => take(&mut i, 1)?[0] as usize,
                1 => {
                    let b = take(&mut i, 2)?;
                    u16::from_be_bytes([b[0], b[1]]) as usize
                }
                2 => {
                    let b = take(&mut i, 4)?;
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
                }
                _ => data.len() - i,
            };
            out.push((tag, take(&mut i, len)?.to_vec()));
        }
    }
    Ok(out)
}

/// Reads a multiprecision integer; returns its bytes (no leading zeros) and the rest.
fn mpi(data: &[u8]) -> Result<(Vec<u8>, &[u8])> {
    if data.len() < 2 {
        return Err(malformed("truncated MPI"));
    }
    let bits = u16::from_be_bytes([data[0], data[1]]) as usize;
    let len = bits.div_ceil(8);
    if data.len() < 2 + len {
        return Err(malformed("truncated MPI"));
    }
    let mut v = &data[2..2 + len];
    while v.first() == Some(&0) {
        v = &v[1..];
    }
    Ok((v.to_vec(), &data[2 + len..]))
}

const ED25519_OID: &[u8] = &[0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01];

/// A v4 public key packet body; `None` for a key of another kind (kept out, not an
/// error: a keyring may hold encryption subkeys).
fn public_key(body: &[u8]) -> Result<Option<PublicKey>> {
    if body.len() < 6 {
        return Err(malformed("truncated public key"));
    }
    if body[0] != 4 {
        return Ok(None);
    }
    let algo = body[5];
    let rest = &body[6..];
    let material = match algo {
        1 | 3 => {
            let (n, rest) = mpi(rest)?;
            let (e, _) = mpi(rest)?;
            Material::Rsa { n, e }
        }
        22 => {
            let oid_len = *rest.first().ok_or_else(|| malformed("truncated key"))? as usize;
            let oid = rest
                .get(1..1 + oid_len)
                .ok_or_else(|| malformed("truncated OID"))?;
            if oid != ED25519_OID {
                return Ok(None);
            }
            let (point, _) = mpi(&rest[1 + oid_len..])?;
            match point.as_slice() {
                [0x40, key @ ..] if key.len() == 32 => {
                    let mut k = [0u8; 32];
                    k.copy_from_slice(key);
                    Material::Ed25519(k)
                }
                _ => return Err(malformed("Ed25519 point")),
            }
        }
        27 => {
            let key = rest
                .get(..32)
                .ok_or_else(|| malformed("truncated Ed25519 key"))?;
            let mut k = [0u8; 32];
            k.copy_from_slice(key);
            Material::Ed25519(k)
        }
        _ => return Ok(None),
    };
    let mut hashed = Vec::with_capacity(body.len() + 3);
    hashed.push(0x99);
    hashed.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hashed.extend_from_slice(body);
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &hashed);
    let mut fingerprint = [0u8; 20];
    fingerprint.copy_from_slice(digest.as_ref());
    Ok(Some(PublicKey {
        fingerprint,
        material,
    }))
}

/// The RSA and Ed25519 keys and subkeys of a key file (armored or binary).
pub fn parse_public_keys(data: &[u8]) -> Result<Vec<PublicKey>> {
    let raw = dearmor(data)?;
    let mut keys = Vec::new();
    for (tag, body) in packets(&raw)? {
        if tag == 6 || tag == 14 {
            if let Some(k) = public_key(&body)? {
                keys.push(k);
            }
        }
    }
    if keys.is_empty() {
        return Err(PgpError::Unsupported(
            "no RSA or Ed25519 v4 public key in the file".into(),
        ));
    }
    Ok(keys)
}

struct Signature {
    hash: u8,
    /// What the hash covers after the data: the hashed part and the trailer.
    hashed_suffix: Vec<u8>,
    left16: [u8; 2],
    issuer_id: Option<[u8; 8]>,
    issuer_fpr: Option<[u8; 20]>,
    values: Vec<Vec<u8>>,
    algo: u8,
}

/// Subpackets: (type, data).
fn subpackets(mut data: &[u8]) -> Result<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let o1 = data[0] as usize;
        let (len, skip) = match o1 {
            0..=191 => (o1, 1),
            192..=254 => {
                let o2 = *data.get(1).ok_or_else(|| malformed("subpacket"))? as usize;
                (((o1 - 192) << 8) + o2 + 192, 2)
            }
            _ => {
                let b = data.get(1..5).ok_or_else(|| malformed("subpacket"))?;
                (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, 5)
            }
        };
        let sub = data
            .get(skip..skip + len)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| malformed("subpacket length"))?;
        out.push((sub[0] & 0x7f, &sub[1..]));
        data = &data[skip + len..];
    }
    Ok(out)
}

fn signature(body: &[u8]) -> Result<Signature> {
    if body.first() != Some(&4) {
        return Err(PgpError::Unsupported("only v4 signatures".into()));
    }
    if body.len() < 6 {
        return Err(malformed("truncated signature"));
    }
    let (kind, algo, hash) = (body[1], body[2], body[3]);
    if kind != 0x00 {
        return Err(PgpError::Unsupported(format!(
            "signature type {kind:#04x} (a binary document signature is 0x00)"
        )));
    }
    let hashed_len = u16::from_be_bytes([body[4], body[5]]) as usize;
    let hashed_end = 6 + hashed_len;
    let hashed = body
        .get(6..hashed_end)
        .ok_or_else(|| malformed("hashed subpackets"))?;
    let ulen = body
        .get(hashed_end..hashed_end + 2)
        .ok_or_else(|| malformed("unhashed length"))?;
    let unhashed_end = hashed_end + 2 + u16::from_be_bytes([ulen[0], ulen[1]]) as usize;
    let unhashed = body
        .get(hashed_end + 2..unhashed_end)
        .ok_or_else(|| malformed("unhashed subpackets"))?;
    let left = body
        .get(unhashed_end..unhashed_end + 2)
        .ok_or_else(|| malformed("hash prefix"))?;
    let mut rest = &body[unhashed_end + 2..];
    let mut issuer_id = None;
    let mut issuer_fpr = None;
    for (t, d) in subpackets(hashed)?.into_iter().chain(subpackets(unhashed)?) {
        match (t, d.len()) {
            (16, 8) => {
                let mut id = [0u8; 8];
                id.copy_from_slice(d);
                issuer_id = Some(id);
            }
            (33, 21) if d[0] == 4 => {
                let mut f = [0u8; 20];
                f.copy_from_slice(&d[1..]);
                issuer_fpr = Some(f);
            }
            _ => {}
        }
    }
    let mut values = Vec::new();
    if algo == 27 {
        values.push(
            rest.get(..64)
                .ok_or_else(|| malformed("Ed25519 signature"))?
                .to_vec(),
        );
    } else {
        while !rest.is_empty() {
            let (v, r) = mpi(rest)?;
            values.push(v);
            rest = r;
        }
    }
    let mut hashed_suffix = body[..hashed_end].to_vec();
    hashed_suffix.extend_from_slice(&[0x04, 0xFF]);
    hashed_suffix.extend_from_slice(&(hashed_end as u32).to_be_bytes());
    Ok(Signature {
        hash,
        hashed_suffix,
        left16: [left[0], left[1]],
        issuer_id,
        issuer_fpr,
        values,
        algo,
    })
}

/// The literal data packet's contents.
fn literal(body: &[u8]) -> Result<Vec<u8>> {
    let name_len = *body.get(1).ok_or_else(|| malformed("literal packet"))? as usize;
    let start = 2 + name_len + 4;
    Ok(body
        .get(start..)
        .ok_or_else(|| malformed("literal packet"))?
        .to_vec())
}

fn decompress(body: &[u8]) -> Result<Vec<u8>> {
    let (&algo, data) = body
        .split_first()
        .ok_or_else(|| malformed("empty compressed packet"))?;
    let mut out = Vec::new();
    let read = match algo {
        0 => {
            out.extend_from_slice(data);
            Ok(data.len())
        }
        1 => flate2::read::DeflateDecoder::new(data)
            .take(MAX_DECOMPRESSED + 1)
            .read_to_end(&mut out),
        2 => flate2::read::ZlibDecoder::new(data)
            .take(MAX_DECOMPRESSED + 1)
            .read_to_end(&mut out),
        other => {
            return Err(PgpError::Unsupported(format!(
                "compression algorithm {other} (ZIP and ZLIB are)"
            )))
        }
    };
    read.map_err(|e| PgpError::Malformed(format!("compressed packet: {e}")))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(malformed("compressed packet expands too far"));
    }
    Ok(out)
}

fn check(sig: &Signature, key: &PublicKey, data: &[u8]) -> bool {
    let mut message = Vec::with_capacity(data.len() + sig.hashed_suffix.len());
    message.extend_from_slice(data);
    message.extend_from_slice(&sig.hashed_suffix);
    let algorithm = match sig.hash {
        8 => &ring::digest::SHA256,
        9 => &ring::digest::SHA384,
        10 => &ring::digest::SHA512,
        _ => return false,
    };
    let digest = ring::digest::digest(algorithm, &message);
    if digest.as_ref()[..2] != sig.left16 {
        return false;
    }
    match (&key.material, sig.algo) {
        (Material::Rsa { n, e }, 1 | 3) => {
            let Some(s) = sig.values.first() else {
                return false;
            };
            if s.len() > n.len() {
                return false;
            }
            let mut padded = vec![0u8; n.len() - s.len()];
            padded.extend_from_slice(s);
            let params = match sig.hash {
                8 => &sig::RSA_PKCS1_2048_8192_SHA256,
                9 => &sig::RSA_PKCS1_2048_8192_SHA384,
                _ => &sig::RSA_PKCS1_2048_8192_SHA512,
            };
            sig::RsaPublicKeyComponents { n, e }
                .verify(params, &message, &padded)
                .is_ok()
        }
        (Material::Ed25519(k), 22) => {
            let (Some(r), Some(s)) = (sig.values.first(), sig.values.get(1)) else {
                return false;
            };
            if r.len() > 32 || s.len() > 32 {
                return false;
            }
            let mut rs = [0u8; 64];
            rs[32 - r.len()..32].copy_from_slice(r);
            rs[64 - s.len()..].copy_from_slice(s);
            UnparsedPublicKey::new(&sig::ED25519, k)
                .verify(digest.as_ref(), &rs)
                .is_ok()
        }
        (Material::Ed25519(k), 27) => sig.values.first().is_some_and(|s| {
            UnparsedPublicKey::new(&sig::ED25519, k)
                .verify(digest.as_ref(), s)
                .is_ok()
        }),
        _ => false,
    }
}

/// Verifies a signed message with `keys`; returns the signed data and the signing key's
/// fingerprint.
pub fn verify_message(message: &[u8], keys: &[PublicKey]) -> Result<(Vec<u8>, String)> {
    let raw = dearmor(message)?;
    let mut list = packets(&raw)?;
    if let [(8, body)] = list.as_slice() {
        list = packets(&decompress(body)?)?;
    }
    let mut data = None;
    let mut sigs = Vec::new();
    for (tag, body) in &list {
        match tag {
            11 => data = Some(literal(body)?),
            2 => sigs.push(signature(body)?),
            4 | 8 => {}
            other => return Err(PgpError::Unsupported(format!("packet type {other}"))),
        }
    }
    let data = data.ok_or_else(|| malformed("no literal data"))?;
    if sigs.is_empty() {
        return Err(malformed("no signature packet"));
    }
    let mut known = false;
    for s in &sigs {
        let candidates = keys.iter().filter(|k| match (s.issuer_fpr, s.issuer_id) {
            (Some(f), _) => k.fingerprint == f,
            (None, Some(id)) => k.key_id() == id,
            (None, None) => true,
        });
        for key in candidates {
            known = true;
            if check(s, key, &data) {
                return Ok((data, key.fingerprint_hex()));
            }
        }
    }
    Err(if known {
        PgpError::BadSignature
    } else {
        PgpError::UnknownKey
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_old_packet_lengths() {
        // new format, one-octet length; old format, one-octet length.
        let data = [0xC0 | 11, 2, b'a', b'b', 0x80 | (2 << 2), 1, b'z'];
        let p = packets(&data).unwrap();
        assert_eq!(p, vec![(11, b"ab".to_vec()), (2, b"z".to_vec())]);
        // partial body lengths: 2 bytes then 1
        let data = [0xC0 | 11, 0xE1, b'a', b'b', 1, b'c'];
        assert_eq!(packets(&data).unwrap(), vec![(11, b"abc".to_vec())]);
        assert!(packets(&[0xC0 | 11, 5, b'a']).is_err());
        assert!(packets(&[0x00]).is_err());
    }

    #[test]
    fn garbage_is_refused_not_panicked() {
        assert!(parse_public_keys(b"not a key").is_err());
        assert!(verify_message(b"", &[]).is_err());
        assert!(verify_message(&[0xC0 | 8, 1, 3], &[]).is_err());
        assert!(parse_public_keys(
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n-----END PGP PUBLIC KEY BLOCK-----\n"
        )
        .is_err());
    }
}
