//! Request signatures: with an endpoint `secret`, every request carries
//!
//! ```text
//! X-Wharf-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//! ```
//!
//! (Stripe's scheme). A receiver recomputes the HMAC over the timestamp, a dot and the
//! raw body, compares in constant time, and refuses timestamps outside its replay
//! window (5 minutes is usual). The timestamp is the sending time, so a retry carries a
//! new one; the events' ids stay the same, for de-duplication.

use ring::hmac;

pub const HEADER: &str = "X-Wharf-Signature";

/// The header value for `body` sent at `unix_seconds`.
pub fn signature(secret: &[u8], unix_seconds: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(unix_seconds.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={unix_seconds},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Checks a header value as a receiver would: the HMAC matches and the timestamp is
/// within `window_seconds` of `now`.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64, window_seconds: u64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if now.abs_diff(t) > window_seconds {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut msg = t.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    hmac::verify(&key, &msg, &v1).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let h = signature(b"s3cret", 1_700_000_000, b"{\"events\":[]}");
        assert!(h.starts_with("t=1700000000,v1="));
        // Known answer: python3 -c 'import hmac,hashlib;print(hmac.new(b"s3cret",b"1700000000.{\"events\":[]}",hashlib.sha256).hexdigest())'
        assert_eq!(
            h,
            "t=1700000000,v1=41b4d3f6c59a79e37d083fb3cbe77f82807c4369fd469fb70cfa75e02d2e2775"
        );
        assert!(verify(
            b"s3cret",
            &h,
            b"{\"events\":[]}",
            1_700_000_100,
            300
        ));
        assert!(!verify(
            b"s3cret",
            &h,
            b"{\"events\":[1]}",
            1_700_000_100,
            300
        ));
        assert!(!verify(
            b"other",
            &h,
            b"{\"events\":[]}",
            1_700_000_100,
            300
        ));
        assert!(!verify(
            b"s3cret",
            &h,
            b"{\"events\":[]}",
            1_700_001_000,
            300
        ));
        assert!(!verify(b"s3cret", "v1=00", b"", 0, 300));
    }
}
