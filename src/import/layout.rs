//! distribution's storage layout, read from object keys (relative to the store's root,
//! which is `rootdirectory` in both registries):
//!
//! ```text
//! docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data                   blob bytes
//! docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link      blob linked to <name>
//! docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
//! docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link   (its content: the digest)
//! docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
//! docker/registry/v2/repositories/<name>/_uploads/<id>/…                unfinished uploads
//! ```
//!
//! A revision or layer link's content is the digest its path names (distribution writes
//! it so), so only tag links are read. Deleting a manifest removes its revision link; a
//! tag's `index/` keeps every digest the tag pointed at.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::digest::Digest;

/// Where distribution's tree starts under the store's root.
pub const ROOT: &str = "docker/registry/v2/";
/// The repositories' tree.
pub const REPOSITORIES: &str = "docker/registry/v2/repositories/";
/// The blobs' tree.
pub const BLOBS: &str = "docker/registry/v2/blobs/";

/// The key of a blob's bytes.
pub fn blob_data_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!(
        "{BLOBS}{}/{}/{hex}/data",
        digest.algorithm().name(),
        hex.get(..2).unwrap_or(hex)
    )
}

/// The digest whose bytes `key` holds, if it is a blob's `data` object.
pub fn parse_blob_key(key: &str) -> Option<Digest> {
    let rest = key.strip_prefix(BLOBS)?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [algorithm, two, hex, "data"] if hex.starts_with(two) && two.len() == 2 => {
            format!("{algorithm}:{hex}").parse().ok()
        }
        _ => None,
    }
}

/// What one key under `repositories/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `_manifests/revisions/<alg>/<hex>/link`: the manifest is in the repository.
    Revision(Digest),
    /// `_manifests/tags/<tag>/current/link`: the tag; the link holds its digest.
    TagCurrent(String),
    /// `_manifests/tags/<tag>/index/<alg>/<hex>/link`: the tag pointed at this once.
    TagIndex(String, Digest),
    /// `_layers/<alg>/<hex>/link`: the blob is linked to the repository.
    Layer(Digest),
    /// Anything under `_uploads/<id>/`: an upload never finished.
    Upload(String),
}

/// A key under `repositories/` split into its repository name and what it is; `Err`
/// with the key's tail for what is not distribution's (reported, never guessed at).
pub fn parse_repository_key(key: &str) -> Option<(String, Result<Entry, String>)> {
    let rest = key.strip_prefix(REPOSITORIES)?;
    let parts: Vec<&str> = rest.split('/').collect();
    // A name's components never start with `_`; distribution's own directories do.
    let at = parts.iter().position(|p| p.starts_with('_'))?;
    if at == 0 {
        return None;
    }
    let name = parts[..at].join("/");
    let tail = &parts[at..];
    let digest = |alg: &str, hex: &str| format!("{alg}:{hex}").parse::<Digest>().ok();
    let entry = match tail {
        ["_manifests", "revisions", alg, hex, "link"] => digest(alg, hex).map(Entry::Revision),
        ["_manifests", "tags", tag, "current", "link"] => Some(Entry::TagCurrent(tag.to_string())),
        ["_manifests", "tags", tag, "index", alg, hex, "link"] => {
            digest(alg, hex).map(|d| Entry::TagIndex(tag.to_string(), d))
        }
        ["_layers", alg, hex, "link"] => digest(alg, hex).map(Entry::Layer),
        ["_uploads", id, ..] if !id.is_empty() => Some(Entry::Upload(id.to_string())),
        _ => None,
    };
    Some((name, entry.ok_or_else(|| tail.join("/"))))
}

/// One repository as the layout has it.
#[derive(Debug, Clone, Default)]
pub struct RepoLayout {
    pub revisions: BTreeSet<Digest>,
    /// Tag → the key of its `current/link`.
    pub tags: BTreeMap<String, String>,
    /// Every digest some tag's index names.
    pub tag_history: BTreeSet<Digest>,
    pub layers: BTreeSet<Digest>,
    pub uploads: BTreeSet<String>,
    /// Keys that are not distribution's layout.
    pub unknown: Vec<String>,
}

impl RepoLayout {
    pub fn add(&mut self, key: &str, entry: Result<Entry, String>) {
        match entry {
            Ok(Entry::Revision(d)) => {
                self.revisions.insert(d);
            }
            Ok(Entry::TagCurrent(t)) => {
                self.tags.insert(t, key.to_string());
            }
            Ok(Entry::TagIndex(_, d)) => {
                self.tag_history.insert(d);
            }
            Ok(Entry::Layer(d)) => {
                self.layers.insert(d);
            }
            Ok(Entry::Upload(id)) => {
                self.uploads.insert(id);
            }
            Err(_) => self.unknown.push(key.to_string()),
        }
    }

    /// Manifests a tag pointed at whose revision link is gone (deleted in distribution).
    pub fn deleted_manifests(&self) -> usize {
        self.tag_history.difference(&self.revisions).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c";

    fn d() -> Digest {
        format!("sha256:{HEX}").parse().unwrap()
    }

    #[test]
    fn blob_keys_round_trip() {
        let key = blob_data_key(&d());
        assert_eq!(
            key,
            format!("docker/registry/v2/blobs/sha256/b5/{HEX}/data")
        );
        assert_eq!(parse_blob_key(&key), Some(d()));
        assert_eq!(parse_blob_key(&key.replace("/b5/", "/b6/")), None);
        assert_eq!(parse_blob_key(&key.replace("/data", "/other")), None);
    }

    #[test]
    fn repository_keys() {
        let k = |tail: &str| format!("{REPOSITORIES}lib/alpine/{tail}");
        let p = |tail: &str| parse_repository_key(&k(tail)).unwrap();
        assert_eq!(
            p(&format!("_manifests/revisions/sha256/{HEX}/link")),
            ("lib/alpine".into(), Ok(Entry::Revision(d())))
        );
        assert_eq!(
            p("_manifests/tags/v1.2_rc-1/current/link").1,
            Ok(Entry::TagCurrent("v1.2_rc-1".into()))
        );
        assert_eq!(
            p(&format!("_manifests/tags/v1/index/sha256/{HEX}/link")).1,
            Ok(Entry::TagIndex("v1".into(), d()))
        );
        assert_eq!(
            p(&format!("_layers/sha256/{HEX}/link")).1,
            Ok(Entry::Layer(d()))
        );
        assert_eq!(
            p("_uploads/0d6c/hashstates/sha256/0").1,
            Ok(Entry::Upload("0d6c".into()))
        );
        assert_eq!(
            p("_layers/sha256/zz/link").1,
            Err("_layers/sha256/zz/link".into())
        );
        assert_eq!(
            parse_repository_key("docker/registry/v2/repositories/_x/y"),
            None
        );
        assert_eq!(parse_repository_key("elsewhere/x"), None);
    }
}
