//! Deterministic pseudo-random blob contents.
//!
//! A [`Pattern`] is a counter-based generator: the 8 bytes at word index `i` are a mix of the
//! pattern's key and `i`, so any byte range of a stream can be produced on its own. That is what
//! lets the bench stream a 1 GiB request body without holding it, compute its digest up front by
//! a first pass over the same stream, and check the bytes of a ranged response.

use bytes::Bytes;
use sha2::{Digest, Sha256};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser: a cheap bijective mix with good avalanche.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One endless pseudo-random byte stream, chosen by a seed and a stream number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern {
    key: u64,
}

impl Pattern {
    pub fn new(seed: u64, stream: u64) -> Self {
        Pattern {
            key: mix(seed ^ mix(stream.wrapping_add(GOLDEN))),
        }
    }

    #[inline]
    fn word(&self, i: u64) -> [u8; 8] {
        mix(self.key.wrapping_add(i.wrapping_mul(GOLDEN))).to_le_bytes()
    }

    /// Fills `buf` with the stream's bytes starting at byte `offset`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let mut out = buf;
        let mut pos = offset;
        let skew = (pos % 8) as usize;
        if skew != 0 && !out.is_empty() {
            let w = self.word(pos / 8);
            let n = (8 - skew).min(out.len());
            out[..n].copy_from_slice(&w[skew..skew + n]);
            pos += n as u64;
            out = &mut out[n..];
        }
        let mut idx = pos / 8;
        let mut words = out.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.word(idx));
            idx += 1;
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let n = tail.len();
            tail.copy_from_slice(&self.word(idx)[..n]);
        }
    }

    /// The `len` bytes at `offset`, freshly allocated.
    pub fn bytes(&self, offset: u64, len: usize) -> Bytes {
        let mut v = vec![0u8; len];
        self.fill(offset, &mut v);
        Bytes::from(v)
    }

    /// `sha256:<hex>` of the first `len` bytes, computed by streaming through a 1 MiB buffer.
    pub fn sha256(&self, len: u64) -> String {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(buf.len() as u64) as usize;
            self.fill(pos, &mut buf[..n]);
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }
}

/// `sha256:<hex>` of a byte slice.
pub fn sha256_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A small xorshift generator for choosing things (range offsets), not for blob contents.
pub struct Picker(u64);

impl Picker {
    pub fn new(seed: u64) -> Self {
        Picker(mix(seed ^ 0x5151_5151) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        mix(x)
    }

    /// Uniform-enough value in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_window_matches_the_whole() {
        let p = Pattern::new(7, 3);
        let whole = p.bytes(0, 4096);
        for (off, len) in [
            (0, 1),
            (1, 7),
            (3, 8),
            (5, 100),
            (8, 16),
            (13, 3000),
            (4095, 1),
        ] {
            let part = p.bytes(off as u64, len);
            assert_eq!(&part[..], &whole[off..off + len], "offset {off} len {len}");
        }
    }

    #[test]
    fn streams_differ_and_repeat() {
        let a = Pattern::new(1, 1).bytes(0, 64);
        let b = Pattern::new(1, 2).bytes(0, 64);
        let c = Pattern::new(2, 1).bytes(0, 64);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, Pattern::new(1, 1).bytes(0, 64));
    }

    #[test]
    fn streamed_digest_matches_one_shot() {
        let p = Pattern::new(9, 9);
        let len = (1 << 20) * 2 + 12345;
        let all = p.bytes(0, len);
        assert_eq!(p.sha256(len as u64), sha256_of(&all));
    }

    #[test]
    fn picker_stays_in_bounds() {
        let mut r = Picker::new(42);
        for _ in 0..10_000 {
            assert!(r.below(1000) < 1000);
        }
    }
}
