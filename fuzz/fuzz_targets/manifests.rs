//! Manifest validation (OCI image manifest and index, Docker v2 schema 2 and manifest
//! list, schema 1 refused): never a panic, whatever the body and Content-Type. The
//! first byte picks the Content-Type, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::registry::manifest_format::{
    validate, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
use wharf::types::Algorithm;

const TYPES: [Option<&str>; 8] = [
    None,
    Some(OCI_MANIFEST),
    Some(OCI_INDEX),
    Some(DOCKER_MANIFEST),
    Some(DOCKER_MANIFEST_LIST),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(pick) % TYPES.len()];
    let algorithm = if pick & 0x80 == 0 {
        Algorithm::Sha256
    } else {
        Algorithm::Sha512
    };
    let _ = validate(body, content_type, algorithm);
});
