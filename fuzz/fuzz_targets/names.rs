//! Repository names, tags, references, digests and the routes built of them: never a
//! panic; what is accepted reads back as it was written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::http::route::Endpoint;
use wharf::types::{Digest, Reference, RepoName, Tag};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = RepoName::parse(s) {
        assert_eq!(name.as_str(), s);
    }
    if let Ok(tag) = Tag::parse(s) {
        assert_eq!(tag.as_str(), s);
    }
    if let Ok(r) = Reference::parse(s) {
        assert_eq!(r.to_string(), s);
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
    }
    let _ = Endpoint::parse(s);
    let _ = Endpoint::parse(&format!("/v2/{s}"));
});
