//! A SHA-256 / SHA-512 hasher whose mid-state can be saved and restored.
//!
//! An upload's chunks may arrive at different instances; each PATCH continues the hash
//! from the state the previous one stored in the metadata database, and the final `PUT`
//! finishes it without reading the blob back. `sha2` exposes the compression functions
//! but not a serializable state, so the (small) Merkle–Damgård bookkeeping is written
//! here: state words, total length and the partial block not yet compressed.

use sha2::digest::generic_array::{typenum::U128, typenum::U64, GenericArray};

use crate::types::digest::{Algorithm, Digest};

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const SHA512_IV: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

#[derive(Clone, Debug)]
enum State {
    Sha256([u32; 8]),
    Sha512([u64; 8]),
}

/// Why a stored hash state could not be restored.
#[derive(Debug, thiserror::Error)]
#[error("stored hash state is corrupt")]
pub struct CorruptHashState;

/// An incremental hasher with a serializable mid-state.
#[derive(Clone, Debug)]
pub struct ResumableHasher {
    state: State,
    /// Total bytes fed so far.
    length: u64,
    /// Bytes not yet compressed; always shorter than one block.
    tail: Vec<u8>,
}

impl ResumableHasher {
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => State::Sha256(SHA256_IV),
            Algorithm::Sha512 => State::Sha512(SHA512_IV),
        };
        ResumableHasher {
            state,
            length: 0,
            tail: Vec::with_capacity(128),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            State::Sha256(_) => Algorithm::Sha256,
            State::Sha512(_) => Algorithm::Sha512,
        }
    }

    fn block_len(&self) -> usize {
        match self.state {
            State::Sha256(_) => 64,
            State::Sha512(_) => 128,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        let block = self.block_len();
        if !self.tail.is_empty() {
            let take = (block - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < block {
                return;
            }
            let tail = std::mem::take(&mut self.tail);
            self.compress(&tail);
            self.tail = tail;
            self.tail.clear();
        }
        let whole = data.len() - data.len() % block;
        if whole > 0 {
            self.compress(&data[..whole]);
        }
        self.tail.extend_from_slice(&data[whole..]);
    }

    /// Compresses whole blocks; `blocks.len()` is a multiple of the block length.
    fn compress(&mut self, blocks: &[u8]) {
        match &mut self.state {
            State::Sha256(s) => {
                // SAFETY: GenericArray<u8, U64> is #[repr(transparent)] over [u8; 64], so a
                // byte slice whose length is a multiple of 64 has the layout of a slice of
                // them (alignment 1). This lets sha2 hash many blocks per call (SHA-NI).
                let blocks: &[GenericArray<u8, U64>] = unsafe {
                    std::slice::from_raw_parts(blocks.as_ptr().cast(), blocks.len() / 64)
                };
                sha2::compress256(s, blocks);
            }
            State::Sha512(s) => {
                // SAFETY: as above, for 128-byte blocks.
                let blocks: &[GenericArray<u8, U128>] = unsafe {
                    std::slice::from_raw_parts(blocks.as_ptr().cast(), blocks.len() / 128)
                };
                sha2::compress512(s, blocks);
            }
        }
    }

    /// Finishes the hash (standard padding: 0x80, zeros, bit length big-endian).
    pub fn finish(mut self) -> Digest {
        let block = self.block_len();
        let len_bytes = if block == 64 { 8 } else { 16 };
        let bit_len = (self.length as u128) * 8;
        let mut pad = std::mem::take(&mut self.tail);
        pad.push(0x80);
        while !(pad.len() + len_bytes).is_multiple_of(block) {
            pad.push(0);
        }
        pad.extend_from_slice(&bit_len.to_be_bytes()[16 - len_bytes..]);
        self.compress(&pad);
        let algorithm = self.algorithm();
        let raw: Vec<u8> = match self.state {
            State::Sha256(s) => s.iter().flat_map(|w| w.to_be_bytes()).collect(),
            State::Sha512(s) => s.iter().flat_map(|w| w.to_be_bytes()).collect(),
        };
        Digest::from_raw(algorithm, &raw)
    }

    /// Serialized mid-state: algorithm tag, state words, length, tail.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 64 + 8 + self.tail.len());
        match &self.state {
            State::Sha256(s) => {
                out.push(1);
                s.iter()
                    .for_each(|w| out.extend_from_slice(&w.to_be_bytes()));
            }
            State::Sha512(s) => {
                out.push(2);
                s.iter()
                    .for_each(|w| out.extend_from_slice(&w.to_be_bytes()));
            }
        }
        out.extend_from_slice(&self.length.to_be_bytes());
        out.extend_from_slice(&self.tail);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CorruptHashState> {
        let (&tag, rest) = bytes.split_first().ok_or(CorruptHashState)?;
        let (state, rest, block) = match tag {
            1 if rest.len() >= 32 + 8 => {
                let mut s = [0u32; 8];
                for (i, w) in s.iter_mut().enumerate() {
                    *w = u32::from_be_bytes(
                        rest[i * 4..i * 4 + 4]
                            .try_into()
                            .map_err(|_| CorruptHashState)?,
                    );
                }
                (State::Sha256(s), &rest[32..], 64)
            }
            2 if rest.len() >= 64 + 8 => {
                let mut s = [0u64; 8];
                for (i, w) in s.iter_mut().enumerate() {
                    *w = u64::from_be_bytes(
                        rest[i * 8..i * 8 + 8]
                            .try_into()
                            .map_err(|_| CorruptHashState)?,
                    );
                }
                (State::Sha512(s), &rest[64..], 128)
            }
            _ => return Err(CorruptHashState),
        };
        let length = u64::from_be_bytes(rest[..8].try_into().map_err(|_| CorruptHashState)?);
        let tail = rest[8..].to_vec();
        if tail.len() >= block || (length % block as u64) as usize != tail.len() {
            return Err(CorruptHashState);
        }
        Ok(ResumableHasher {
            state,
            length,
            tail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn matches_sha2_across_splits_and_restores() {
        for n in [
            0usize, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000, 70_000,
        ] {
            let d = data(n);
            for split in [0, n / 3, n / 2, n.saturating_sub(1), n] {
                for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                    let mut h = ResumableHasher::new(alg);
                    h.update(&d[..split]);
                    let mut h = ResumableHasher::from_bytes(&h.to_bytes()).unwrap();
                    h.update(&d[split..]);
                    assert_eq!(h.len(), n as u64);
                    let expected = match alg {
                        Algorithm::Sha256 => hex::encode(sha2::Sha256::digest(&d)),
                        Algorithm::Sha512 => hex::encode(sha2::Sha512::digest(&d)),
                    };
                    assert_eq!(h.finish().hex(), expected, "n={n} split={split} {alg:?}");
                }
            }
        }
    }

    #[test]
    fn corrupt_state_is_refused() {
        assert!(ResumableHasher::from_bytes(&[]).is_err());
        assert!(ResumableHasher::from_bytes(&[9; 80]).is_err());
        let mut h = ResumableHasher::new(Algorithm::Sha256);
        h.update(b"abc");
        let mut b = h.to_bytes();
        b.pop();
        assert!(ResumableHasher::from_bytes(&b).is_err());
    }
}
