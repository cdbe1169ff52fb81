//! How cached records are written as bytes: the repository generation the entry was read
//! under (8 bytes, big-endian), then a JSON header line, then — for manifests — the
//! payload bytes exactly as pushed (kept raw: they are served byte for byte, and JSON
//! would inflate them).

use serde::{Deserialize, Serialize};

use crate::types::digest::Digest;
use crate::types::{BlobRecord, ManifestRecord};

/// Manifests bigger than this are not cached (they may be up to 4 MiB; such manifests
/// are rare, and one would crowd out thousands of entries).
pub const MAX_CACHED_MANIFEST: usize = 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct BlobEntry {
    digest: Digest,
    size: u64,
    key: String,
}

#[derive(Serialize, Deserialize)]
struct ManifestHeader {
    digest: Digest,
    media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<String>,
}

fn with_generation(generation: u64, header: &impl Serialize, tail: &[u8]) -> Vec<u8> {
    let mut out = generation.to_be_bytes().to_vec();
    serde_json::to_writer(&mut out, header).expect("records serialize");
    out.push(b'\n');
    out.extend_from_slice(tail);
    out
}

/// The header and tail of an entry stored under `generation`; None if it was stored
/// under another one or is not an entry at all.
fn split(generation: u64, entry: &[u8]) -> Option<(&[u8], &[u8])> {
    let (stored, rest) = entry.split_first_chunk::<8>()?;
    if u64::from_be_bytes(*stored) != generation {
        return None;
    }
    let newline = rest.iter().position(|&b| b == b'\n')?;
    Some((&rest[..newline], &rest[newline + 1..]))
}

pub fn encode_blob(generation: u64, blob: &BlobRecord) -> Vec<u8> {
    let entry = BlobEntry {
        digest: blob.digest.clone(),
        size: blob.size,
        key: blob.storage_key.clone(),
    };
    with_generation(generation, &entry, &[])
}

pub fn decode_blob(generation: u64, entry: &[u8]) -> Option<BlobRecord> {
    let (header, _) = split(generation, entry)?;
    let e: BlobEntry = serde_json::from_slice(header).ok()?;
    Some(BlobRecord {
        digest: e.digest,
        size: e.size,
        storage_key: e.key,
    })
}

/// None if the manifest is too big to cache.
pub fn encode_manifest(generation: u64, m: &ManifestRecord) -> Option<Vec<u8>> {
    if m.payload.len() > MAX_CACHED_MANIFEST {
        return None;
    }
    let header = ManifestHeader {
        digest: m.digest.clone(),
        media_type: m.media_type.clone(),
        subject: m.subject.clone(),
        artifact_type: m.artifact_type.clone(),
        annotations: m.annotations.clone(),
    };
    Some(with_generation(generation, &header, &m.payload))
}

pub fn decode_manifest(generation: u64, entry: &[u8]) -> Option<ManifestRecord> {
    let (header, payload) = split(generation, entry)?;
    let h: ManifestHeader = serde_json::from_slice(header).ok()?;
    Some(ManifestRecord {
        digest: h.digest,
        media_type: h.media_type,
        payload: payload.to_vec(),
        subject: h.subject,
        artifact_type: h.artifact_type,
        annotations: h.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(b: &[u8]) -> Digest {
        crate::types::digest::Algorithm::Sha256.digest_of(b)
    }

    #[test]
    fn records_round_trip_under_their_generation_only() {
        let blob = BlobRecord {
            digest: digest(b"x"),
            size: 1,
            storage_key: "blobs/ab/cd".into(),
        };
        let e = encode_blob(7, &blob);
        assert_eq!(decode_blob(7, &e), Some(blob));
        assert_eq!(decode_blob(8, &e), None);

        let payload = b"{\"schemaVersion\":2,\n \"x\": \"\xff\"}".to_vec();
        let m = ManifestRecord {
            digest: digest(&payload),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            payload: payload.clone(),
            subject: Some(digest(b"s")),
            artifact_type: None,
            annotations: Some("{\"a\":\"b\"}".into()),
        };
        let e = encode_manifest(u64::MAX >> 1, &m).unwrap();
        let back = decode_manifest(u64::MAX >> 1, &e).unwrap();
        assert_eq!(back.payload, payload);
        assert_eq!(back.subject, m.subject);
        assert_eq!(back.annotations, m.annotations);
        assert!(decode_manifest(1, &e).is_none());
    }

    #[test]
    fn garbage_is_a_miss() {
        assert!(decode_blob(0, b"").is_none());
        assert!(decode_blob(0, &[0; 8]).is_none());
        assert!(decode_manifest(0, b"\0\0\0\0\0\0\0\0{not json\n").is_none());
    }

    #[test]
    fn big_manifests_are_not_cached() {
        let m = ManifestRecord {
            digest: digest(b"m"),
            media_type: "x".into(),
            payload: vec![b' '; MAX_CACHED_MANIFEST + 1],
            subject: None,
            artifact_type: None,
            annotations: None,
        };
        assert!(encode_manifest(1, &m).is_none());
    }
}
