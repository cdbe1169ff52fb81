//! The retry policy of the HTTP calls the server-side composers make themselves
//! (Azure's `Put Block From URL`, GCS's compose and delete), beside object_store's own
//! for everything else: a few attempts, waits growing threefold, and only what may
//! succeed when tried again — throttling, timeouts, connection failures, 5xx but 501.

use std::time::Duration;

use reqwest::StatusCode;

/// Attempts per call, the first included.
pub const ATTEMPTS: u32 = 5;
/// The wait before the first retry; each further one waits [`GROWTH`] times longer.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
pub const GROWTH: u32 = 3;

/// An answer worth trying again: 408, 429, and 5xx except 501 (not implemented, which
/// no retry changes).
pub fn retryable_status(status: StatusCode) -> bool {
    (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// A failure to get an answer at all that is worth trying again.
pub fn retryable_error(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_answers_are_retried() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(
                retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 409, 412, 501] {
            assert!(
                !retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }
}
