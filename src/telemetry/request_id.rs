//! New request ids (for requests no trusted proxy gave an `X-Request-Id`): shaped as a
//! version 4 UUID (`8-4-4-4-12` lower-case hex, the version and variant bits set), as
//! distribution's are, but made without a random draw per request.
//!
//! The first 64 bits are drawn at random once per process (60 of them random: the
//! version takes 4); the last 64 are a counter shared by the process's threads, 62 bits
//! wide (the variant takes 2), passed through a fixed permutation of those 62 bits so
//! that consecutive ids do not read as a count of requests. So the ids of one process
//! never repeat (the counter would need 2^62 requests to wrap, and a permutation maps
//! distinct counts to distinct bits), and two processes' ids can only meet if both drew
//! the same 60 bits: with k processes (restarts included) about k²/2^61, one in 10^12
//! for a thousand. They are not secrets (they never were: they are echoed and logged),
//! and one process's ids share their first 64 bits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static PREFIX: OnceLock<u64> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A new request id (36 characters).
pub fn new() -> String {
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    let bits = (u128::from(prefix) << 64) | u128::from(scramble(count));
    // Sets the version (4) and variant (RFC 4122) bits over bits of the prefix and the
    // counter's top two.
    let id = uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text).to_owned()
}

/// The low 62 bits.
const MASK: u64 = (1 << 62) - 1;

/// A permutation of the 62-bit numbers (each step is invertible modulo 2^62: a product
/// by an odd number, a right shift by more than half the width xored in), so distinct
/// counts give distinct results.
fn scramble(count: u64) -> u64 {
    let mut x = count & MASK;
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15) & MASK;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9) & MASK;
    x ^= x >> 31;
    x
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_scramble_is_a_permutation_of_62_bits() {
        // Invert each step: distinct inputs give distinct outputs.
        fn unshift(y: u64) -> u64 {
            // x ^ (x >> 31) on 62 bits: the top 31 bits are y's, then the rest follow.
            y ^ (y >> 31)
        }
        fn inverse_mul(a: u64) -> u64 {
            // Newton's iteration for a⁻¹ modulo 2^64 (then 2^62).
            let mut inv = a;
            for _ in 0..6 {
                inv = inv.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(inv)));
            }
            inv
        }
        let unscramble = |y: u64| {
            let mut x = unshift(y);
            x = x.wrapping_mul(inverse_mul(0xbf58_476d_1ce4_e5b9)) & super::MASK;
            x = unshift(x);
            x.wrapping_mul(inverse_mul(0x9e37_79b9_7f4a_7c15)) & super::MASK
        };
        for count in (0..100_000u64).chain([super::MASK, super::MASK - 1, 1 << 40]) {
            let y = super::scramble(count);
            assert!(y <= super::MASK);
            assert_eq!(unscramble(y), count);
        }
        // Consecutive counts look unrelated.
        assert_ne!(super::scramble(1) >> 32, super::scramble(2) >> 32);
    }

    use std::collections::HashSet;

    #[test]
    fn ids_are_version_4_uuids() {
        let id = super::new();
        assert_eq!(id.len(), 36, "{id}");
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 4, "{id}");
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
        assert_eq!(
            parsed.hyphenated().to_string(),
            id,
            "lower-case, hyphenated"
        );
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let ids: Vec<Vec<String>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..20_000).map(|_| super::new()).collect::<Vec<_>>()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let all: HashSet<&String> = ids.iter().flatten().collect();
        assert_eq!(all.len(), 8 * 20_000);
        // One process's ids share their first 64 bits (the part drawn once).
        let prefixes: HashSet<&str> = all.iter().map(|id| &id[..18]).collect();
        assert_eq!(prefixes.len(), 1, "{prefixes:?}");
    }
}
