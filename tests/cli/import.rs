//! `wharf import` on a distribution layout written by hand with what a real store can
//! hold besides good images: a schema 1 manifest, a manifest whose layer was never
//! linked, links whose blob data is gone, a tag link that is not a digest, a repository
//! name Wharf refuses, a key that is not distribution's. Each is reported and skipped;
//! the good image is imported; the exit status is 0. (`tests/e2e/import.sh` imports
//! what docker-registry itself wrote.)

use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::{run, text, wharf};

const V2: &str = "docker/registry/v2";

fn write(root: &Path, key: &str, data: &[u8]) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Stores `data` as a blob; its digest.
fn blob(root: &Path, data: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(data));
    write(
        root,
        &format!("{V2}/blobs/sha256/{}/{hex}/data", &hex[..2]),
        data,
    );
    format!("sha256:{hex}")
}

fn link(root: &Path, repo: &str, tail: &str, digest: &str) {
    write(
        root,
        &format!("{V2}/repositories/{repo}/{tail}"),
        digest.as_bytes(),
    );
}

fn hex_of(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn manifest(config: &str, config_len: usize, layer: &str, layer_len: usize) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_len}]
    })
    .to_string()
    .into_bytes()
}

#[test]
fn import_reports_and_skips_what_it_cannot_import() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let repo = "lib/app";
    // The good image, tagged v1.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"layer bytes";
    let (c, l) = (blob(&root, config), blob(&root, layer));
    for d in [&c, &l] {
        link(
            &root,
            repo,
            &format!("_layers/sha256/{}/link", hex_of(d)),
            d,
        );
    }
    let good = blob(&root, &manifest(&c, config.len(), &l, layer.len()));
    link(
        &root,
        repo,
        &format!("_manifests/revisions/sha256/{}/link", hex_of(&good)),
        &good,
    );
    link(&root, repo, "_manifests/tags/v1/current/link", &good);
    link(
        &root,
        repo,
        &format!("_manifests/tags/v1/index/sha256/{}/link", hex_of(&good)),
        &good,
    );
    // A schema 1 manifest.
    let schema1 = blob(
        &root,
        br#"{"schemaVersion":1,"name":"lib/app","tag":"old","fsLayers":[]}"#,
    );
    link(
        &root,
        repo,
        &format!("_manifests/revisions/sha256/{}/link", hex_of(&schema1)),
        &schema1,
    );
    // A manifest whose layer is in the store but was never linked to the repository.
    let stray = blob(&root, b"a layer of another repository");
    let orphan = blob(&root, &manifest(&c, config.len(), &stray, 29));
    link(
        &root,
        repo,
        &format!("_manifests/revisions/sha256/{}/link", hex_of(&orphan)),
        &orphan,
    );
    // Links whose blob data is gone.
    let gone = format!("sha256:{}", "ab".repeat(32));
    link(
        &root,
        repo,
        &format!("_manifests/revisions/sha256/{}/link", hex_of(&gone)),
        &gone,
    );
    link(
        &root,
        repo,
        &format!("_layers/sha256/{}/link", hex_of(&gone)),
        &gone,
    );
    // A tag link that holds no digest, a key that is not distribution's, a bad name.
    write(
        &root,
        &format!("{V2}/repositories/{repo}/_manifests/tags/junk/current/link"),
        b"not a digest",
    );
    write(
        &root,
        &format!("{V2}/repositories/{repo}/_manifests/stray-file"),
        b"?",
    );
    link(
        &root,
        "Upper/Case",
        &format!("_layers/sha256/{}/link", hex_of(&l)),
        &l,
    );

    let config_path = dir.path().join("wharf.yml");
    std::fs::write(
        &config_path,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\ndatabase:\n  url: sqlite://{}/wharf.db\n",
            root.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let out = run(wharf()
        .args(["import", "--json", "--quiet", "--config"])
        .arg(&config_path));
    assert!(
        out.status.success(),
        "exit 0; stderr: {}",
        text(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {summary}"))
    };
    assert_eq!(n("repositories"), 1);
    assert_eq!(n("repositories_invalid"), 1, "Upper/Case");
    assert_eq!(n("manifests"), 1);
    assert_eq!(
        n("manifests_invalid"),
        2,
        "schema 1, and the unlinked layer"
    );
    assert_eq!(n("tags"), 1);
    assert_eq!(n("tags_invalid"), 1, "junk");
    assert_eq!(
        n("dangling_links"),
        2,
        "a revision and a layer link without data"
    );
    assert_eq!(n("unknown_keys"), 1);
    assert_eq!(n("blob_links"), 2);
    assert_eq!(n("blobs_new"), 2);
    let problems = summary["problems"].to_string();
    for needle in [
        format!("lib/app@{schema1}"),
        format!("lib/app@{orphan}: references {stray}"),
        format!("revision link {gone} has no blob data"),
        format!("layer link {gone} has no blob data"),
        "tag junk's link".to_string(),
        "stray-file".to_string(),
        "\\\"Upper/Case\\\"".to_string(),
    ] {
        assert!(problems.contains(&needle), "{needle} in {problems}");
    }

    // Nothing left to do on a second run; an empty store is no error either.
    let again = run(wharf()
        .args(["import", "--json", "--quiet", "--config"])
        .arg(&config_path));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        again["repositories_resumed"], 2,
        "lib/app and Upper/Case are checkpointed"
    );
    assert_eq!(again["repositories"], 0);
}

/// A real interruption: `wharf import` killed with SIGKILL once it has finished a
/// repository; the next run resumes after the checkpoints, imports the rest, and
/// together they import every repository; a third run has nothing left to do.
#[test]
fn an_import_killed_mid_way_resumes() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    const REPOS: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    for r in 0..REPOS {
        let repo = format!("many/r{r:03}");
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"r":{r}}}"#
        );
        let layer = format!("layer {r}");
        let (c, l) = (
            blob(&root, config.as_bytes()),
            blob(&root, layer.as_bytes()),
        );
        for d in [&c, &l] {
            link(
                &root,
                &repo,
                &format!("_layers/sha256/{}/link", hex_of(d)),
                d,
            );
        }
        let m = blob(&root, &manifest(&c, config.len(), &l, layer.len()));
        link(
            &root,
            &repo,
            &format!("_manifests/revisions/sha256/{}/link", hex_of(&m)),
            &m,
        );
        link(&root, &repo, "_manifests/tags/latest/current/link", &m);
    }
    let config_path = dir.path().join("wharf.yml");
    std::fs::write(
        &config_path,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\ndatabase:\n  url: sqlite://{}/wharf.db\n",
            root.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    // Plain progress lines on stderr (not a terminal): kill at the first.
    let mut child = wharf()
        .args(["import", "--jobs", "1", "--config"])
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.starts_with("wharf import: ") && line.contains(" repositories") {
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed mid-way; stderr: {seen:?}");

    let import = || {
        let out = run(wharf()
            .args(["import", "--json", "--quiet", "--config"])
            .arg(&config_path));
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let resumed = import();
    let (done, before) = (
        resumed["repositories"].as_u64().unwrap(),
        resumed["repositories_resumed"].as_u64().unwrap(),
    );
    assert!(
        before >= 1,
        "the killed run checkpointed what it finished: {resumed}"
    );
    assert!(
        before < REPOS as u64,
        "it was killed before the end: {resumed}"
    );
    assert_eq!(done + before, REPOS as u64, "{resumed}");
    assert_eq!(resumed["manifests"], done, "one manifest per repository");
    assert_eq!(resumed["tags"], done);
    let third = import();
    assert_eq!(third["repositories"], 0);
    assert_eq!(third["repositories_resumed"], REPOS as u64);
}
