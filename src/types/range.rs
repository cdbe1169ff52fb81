//! Byte ranges as clients send them: a blob read's `Range` and an upload chunk's
//! `Content-Range`, parsed at the edge and resolved here against a blob's size.

use std::ops::Range;

/// A byte range a client asked for, before it is resolved against the blob's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive) or `bytes=a-` (`end` None).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

/// A range that selects nothing of a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("requested range is not satisfiable for a blob of {size} bytes")]
pub struct RangeNotSatisfiable {
    pub size: u64,
}

impl ByteRange {
    /// The half-open range this selects in a blob of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<Range<u64>, RangeNotSatisfiable> {
        let unsatisfiable = RangeNotSatisfiable { size };
        match self {
            ByteRange::From { start, end } => {
                if start >= size {
                    return Err(unsatisfiable);
                }
                let end = end.map_or(size, |e| e.saturating_add(1).min(size));
                if end <= start {
                    return Err(unsatisfiable);
                }
                Ok(start..end)
            }
            // An empty blob has no byte to select: `0..0` would be a 206 with no range
            // to name (`bytes 0--1/0`, and an overflow computing it).
            ByteRange::Suffix(0) => Err(unsatisfiable),
            ByteRange::Suffix(_) if size == 0 => Err(unsatisfiable),
            ByteRange::Suffix(n) => Ok(size.saturating_sub(n)..size),
        }
    }

    /// True for `bytes=-n`.
    pub fn is_suffix(&self) -> bool {
        matches!(self, ByteRange::Suffix(_))
    }
}

/// The `Content-Range` a client declared for a chunk (inclusive bounds, `start <= end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub end: u64,
}

impl ChunkRange {
    /// The chunk's length (never 0: both bounds are inclusive).
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve() {
        let from = |start, end| ByteRange::From { start, end };
        assert_eq!(from(0, Some(9)).resolve(100).unwrap(), 0..10);
        assert_eq!(from(90, Some(200)).resolve(100).unwrap(), 90..100);
        assert_eq!(from(5, None).resolve(100).unwrap(), 5..100);
        assert_eq!(ByteRange::Suffix(10).resolve(100).unwrap(), 90..100);
        assert_eq!(ByteRange::Suffix(1000).resolve(100).unwrap(), 0..100);
        assert!(from(100, None).resolve(100).is_err());
        assert!(from(5, Some(4)).resolve(100).is_err());
        assert!(ByteRange::Suffix(0).resolve(100).is_err());
        assert!(from(0, None).resolve(0).is_err());
    }

    /// Regression (scripts/fuzz, `ranges`: a resolved range must select at least one
    /// byte): `bytes=-n` of an empty blob resolved to `0..0`, answered 206 with
    /// `Content-Range: bytes 0--1/0` computed by an overflowing `end - 1`.
    #[test]
    fn suffix_of_an_empty_blob_is_unsatisfiable() {
        assert!(ByteRange::Suffix(5).resolve(0).is_err());
        assert!(ByteRange::Suffix(u64::MAX).resolve(0).is_err());
        assert_eq!(ByteRange::Suffix(5).resolve(1).unwrap(), 0..1);
    }
}
