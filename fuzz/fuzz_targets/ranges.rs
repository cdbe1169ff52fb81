//! `Range` (blob GETs) and `Content-Range` (upload chunks): never a panic; a range
//! that resolves selects a non-empty part of the blob; a chunk's length never
//! overflows. The first 8 bytes are the blob's size (the rest the header value).
#![no_main]

use actix_web::http::header::{HeaderMap, HeaderValue, CONTENT_RANGE, RANGE};
use libfuzzer_sys::fuzz_target;
use wharf::http::headers::{byte_range, chunk_range};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (size, value) = data.split_at(8);
    let raw = u64::from_le_bytes(size.try_into().unwrap_or([0; 8]));
    // Small sizes, where the edges are, as often as large ones.
    let size = if raw & 1 == 0 { raw >> 1 } else { (raw >> 1) % 64 };
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(RANGE, value.clone());
    headers.insert(CONTENT_RANGE, value);
    if let Ok(Some(range)) = byte_range(&headers) {
        if let Ok(r) = range.resolve(size) {
            assert!(r.start < r.end && r.end <= size, "{range:?} of {size}: {r:?}");
        }
    }
    if let Ok(Some(chunk)) = chunk_range(&headers) {
        assert!(chunk.start <= chunk.end);
        assert!(chunk.len() >= 1);
    }
});
