//! Parsing of the request headers and query parameters the API uses: `Range`,
//! `Content-Range`, pagination. Malformed values become clear 4xx errors.

use actix_web::http::header::{HeaderMap, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use actix_web::http::StatusCode;

use super::error::{ApiError, ErrorCode};
use crate::types::{ByteRange, ChunkRange};

/// The request's query parameters, or a clear error if the query string is malformed.
pub fn query(qs: &str) -> Result<Vec<(String, String)>, ApiError> {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(qs)
        .map(|q| q.into_inner())
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                format!("malformed query string: {e}"),
            )
        })
}

/// The first value of query parameter `name`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn header_str<'a>(
    headers: &'a HeaderMap,
    name: &actix_web::http::header::HeaderName,
) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                format!("{name} header is not ASCII"),
            )
        }),
    }
}

pub fn content_type(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    header_str(headers, &CONTENT_TYPE)
}

/// A blob GET's `Range: bytes=…` (one range; several are served as the whole blob).
pub fn byte_range(headers: &HeaderMap) -> Result<Option<ByteRange>, ApiError> {
    let Some(value) = header_str(headers, &RANGE)? else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::SizeInvalid,
            format!("malformed Range header {value:?}; expected bytes=start-end"),
        )
    };
    let spec = value.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let (start, end) = (start.trim(), end.trim());
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
    match (start.is_empty(), end.is_empty()) {
        (true, false) => Ok(Some(ByteRange::Suffix(num(end)?))),
        (false, true) => Ok(Some(ByteRange::From {
            start: num(start)?,
            end: None,
        })),
        (false, false) => {
            let (s, e) = (num(start)?, num(end)?);
            if e < s {
                return Err(bad());
            }
            Ok(Some(ByteRange::From {
                start: s,
                end: Some(e),
            }))
        }
        (true, true) => Err(bad()),
    }
}

/// An upload chunk's `Content-Range: start-end` (inclusive; `bytes ` prefix tolerated).
pub fn chunk_range(headers: &HeaderMap) -> Result<Option<ChunkRange>, ApiError> {
    let Some(value) = header_str(headers, &CONTENT_RANGE)? else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BlobUploadInvalid,
            format!("malformed Content-Range {value:?}; expected start-end"),
        )
    };
    let spec = value.trim();
    let spec = spec.strip_prefix("bytes ").unwrap_or(spec);
    let spec = spec.split('/').next().unwrap_or(spec);
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    // end == u64::MAX would make the length overflow.
    if end < start || end == u64::MAX {
        return Err(bad());
    }
    Ok(Some(ChunkRange { start, end }))
}

/// Pagination `n`: a non-negative integer.
pub fn page_size(params: &[(String, String)]) -> Result<Option<u32>, ApiError> {
    match param(params, "n") {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                format!("pagination parameter n={v:?} is not a non-negative integer"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn with(name: actix_web::http::header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(
            byte_range(&with(RANGE, "bytes=0-9")).unwrap(),
            Some(ByteRange::From {
                start: 0,
                end: Some(9)
            })
        );
        assert_eq!(
            byte_range(&with(RANGE, "bytes=5-")).unwrap(),
            Some(ByteRange::From {
                start: 5,
                end: None
            })
        );
        assert_eq!(
            byte_range(&with(RANGE, "bytes=-5")).unwrap(),
            Some(ByteRange::Suffix(5))
        );
        assert_eq!(byte_range(&with(RANGE, "bytes=0-1,4-5")).unwrap(), None);
        for bad in ["bytes=", "bytes=a-b", "items=0-1", "bytes=9-1", "bytes=-"] {
            assert!(byte_range(&with(RANGE, bad)).is_err(), "{bad}");
        }
        assert_eq!(
            chunk_range(&with(CONTENT_RANGE, "0-99")).unwrap(),
            Some(ChunkRange { start: 0, end: 99 })
        );
        assert_eq!(
            chunk_range(&with(CONTENT_RANGE, "bytes 10-19/*")).unwrap(),
            Some(ChunkRange { start: 10, end: 19 })
        );
        for bad in ["x", "5-1", "-1", "1-", "0-18446744073709551615"] {
            assert!(chunk_range(&with(CONTENT_RANGE, bad)).is_err(), "{bad}");
        }
    }
}
