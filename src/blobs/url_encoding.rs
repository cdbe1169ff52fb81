//! Object names in the URLs the server-side composers build by hand (S3's
//! `x-amz-copy-source`, GCS's JSON API paths): everything but RFC 3986's unreserved
//! characters percent-encoded, with or without `/`.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but `A-Z a-z 0-9 - . _ ~`.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// As [`NOT_UNRESERVED`], keeping `/` (a key whose slashes stay path separators).
const NOT_UNRESERVED_OR_SLASH: &AsciiSet = &NOT_UNRESERVED.remove(b'/');

/// `name` as one path segment (`/` encoded too).
pub fn encode_segment(name: &str) -> String {
    utf8_percent_encode(name, NOT_UNRESERVED).to_string()
}

/// `key` as a path whose `/`s are kept.
pub fn encode_path(key: &str) -> String {
    utf8_percent_encode(key, NOT_UNRESERVED_OR_SLASH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_stay() {
        assert_eq!(
            encode_segment("root dir/blobs/a.0.b~c_d-e"),
            "root%20dir%2Fblobs%2Fa.0.b~c_d-e"
        );
        assert_eq!(encode_segment("é+?#"), "%C3%A9%2B%3F%23");
        assert_eq!(
            encode_path("root dir/blobs/a.0.b"),
            "root%20dir/blobs/a.0.b"
        );
    }
}
