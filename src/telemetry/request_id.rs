//! New request ids (for requests no trusted proxy gave an `X-Request-Id`): shaped as a
//! version 4 UUID (`8-4-4-4-12` lower-case hex, the version and variant bits set), as
//! distribution's are, but made without a random draw per request.
//!
//! The first 64 bits are drawn at random once per process (60 of them random: the
//! version takes 4); the last 64 are a counter shared by the process's threads (62 of
//! them: the variant takes 2). So the ids of one process never repeat (the counter would
//! need 2^62 requests to wrap), and two processes' ids can only meet if both drew the
//! same 60 bits: with k processes (restarts included) about k²/2^61, one in 10^12 for
//! a thousand. Unlike a UUID v4, consecutive ids of one process differ only in their
//! last digits: they say the order requests arrived in, and are not secrets (they never
//! were: they are echoed and logged).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static PREFIX: OnceLock<u64> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A new request id (36 characters).
pub fn new() -> String {
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    let bits = (u128::from(prefix) << 64) | u128::from(count);
    // Sets the version (4) and variant (RFC 4122) bits over bits of the prefix and the
    // counter's top two.
    let id = uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text).to_owned()
}

#[cfg(test)]
mod tests {
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
