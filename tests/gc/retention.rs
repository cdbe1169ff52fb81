//! Retention policies on a repository of 100 tags: each kind keeps exactly what it
//! says; a dry run changes nothing.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use wharf::metadata::gc::PullRecord;
use wharf::metadata::PutManifestOutcome;
use wharf::registry::gc::{GcOptions, RetentionPolicy};
use wharf::registry::{Registry, RegistryOptions};

use crate::support::*;

const REPO: &str = "team/app";
const HOUR: i64 = 3_600_000;

/// Runs one statement on the store's database (to set times the API does not).
pub async fn exec(url: &str, sql: &str) {
    use sqlx::Connection as _;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    }
}

/// A registry over `store` (blobs in a scratch directory) with `policies`.
pub fn registry(store: &Store, policies: Vec<RetentionPolicy>) -> (Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(wharf::blobs::fs::FsBackend::open(dir.path()).unwrap());
    let options = RegistryOptions {
        gc: GcOptions {
            review_delay: Duration::ZERO,
            retention: policies,
            ..GcOptions::default()
        },
        ..RegistryOptions::default()
    };
    (Registry::new(store.clone(), blobs, None, options), dir)
}

/// 100 tags t000..t099, each on a manifest of its own over one shared layer; tag
/// t{i} pushed at i hours after the epoch-ish base, so t099 is the most recent.
async fn hundred_tags(store: &Store, url: &str) -> Vec<wharf::metadata::NewManifest> {
    let r = repo(REPO);
    let layer = blob("shared layer", "blobs/shared");
    store
        .blobs
        .commit_blob(&r, &layer, None, &[])
        .await
        .unwrap();
    let mut manifests = Vec::new();
    for i in 0..100 {
        let m = manifest(&format!("m{i}"), &[&layer], Some(&format!("t{i:03}")));
        assert_eq!(
            store.manifests.put_manifest(&r, &m, &[]).await.unwrap(),
            PutManifestOutcome::Stored
        );
        manifests.push(m);
    }
    let now = wharf::clock::now_ms();
    exec(
        url,
        &format!(
            "UPDATE tags SET updated_at = {now} - (100 - CAST(substr(name, 2) AS INTEGER)) * 60000"
        ),
    )
    .await;
    manifests
}

async fn tags(store: &Store) -> Vec<String> {
    store
        .manifests
        .list_tags(&repo(REPO), None, 1000)
        .await
        .unwrap()
        .unwrap()
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("t{i:03}")).collect()
}

fn policy() -> RetentionPolicy {
    RetentionPolicy {
        repositories: vec!["team/*".into()],
        ..RetentionPolicy::default()
    }
}

pub async fn keep_tags(store: Store, url: String) {
    hundred_tags(&store, &url).await;
    let (reg, _dir) = registry(
        &store,
        vec![
            RetentionPolicy {
                repositories: vec!["other/*".into()],
                keep_tags: Some(1),
                ..RetentionPolicy::default()
            },
            RetentionPolicy {
                keep_tags: Some(10),
                ..policy()
            },
        ],
    );
    let plans = reg.apply_retention(false).await.unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].1.tags.len(), 90);
    assert!(plans[0].1.manifests.is_empty());
    assert_eq!(tags(&store).await, names(90..100));
    // The untagged manifests are queued; collection takes them (and keeps the layer).
    let report = reg.gc_collect_due().await.unwrap();
    assert_eq!(report.manifests.len(), 90);
    assert!(report.blobs.is_empty());
}

pub async fn keep_matching(store: Store, url: String) {
    hundred_tags(&store, &url).await;
    let (reg, _dir) = registry(
        &store,
        vec![RetentionPolicy {
            keep_matching: vec![
                Regex::new("^t0[0-4][0-9]$").unwrap(),
                Regex::new("^t077$").unwrap(),
            ],
            ..policy()
        }],
    );
    reg.apply_retention(false).await.unwrap();
    let mut want = names(0..50);
    want.push("t077".into());
    assert_eq!(tags(&store).await, want);
}

pub async fn untagged_older_than(store: Store, url: String) {
    let manifests = hundred_tags(&store, &url).await;
    let r = repo(REPO);
    // Untag t000..t049; of their manifests, m0..m24 are old, m25..m49 young.
    for i in 0..50 {
        assert!(store
            .manifests
            .delete_tag(&r, &tag(&format!("t{i:03}")), &[])
            .await
            .unwrap());
    }
    let now = wharf::clock::now_ms();
    let old: Vec<String> = manifests[..25]
        .iter()
        .map(|m| format!("'{}'", m.record.digest))
        .collect();
    exec(
        &url,
        &format!(
            "UPDATE manifests SET created_at = {} WHERE digest IN ({})",
            now - 2 * HOUR,
            old.join(",")
        ),
    )
    .await;
    // An old index (untagged) over m0: deleted first, then m0. An old child of a tagged
    // index stays.
    let idx = index("old index", &[&manifests[0].record.digest], None);
    let kept_child = manifest("child of a tagged index", &[], None);
    store.manifests.put_manifest(&r, &idx, &[]).await.unwrap();
    store
        .manifests
        .put_manifest(&r, &kept_child, &[])
        .await
        .unwrap();
    let tagged_idx = index("tagged index", &[&kept_child.record.digest], Some("multi"));
    store
        .manifests
        .put_manifest(&r, &tagged_idx, &[])
        .await
        .unwrap();
    exec(
        &url,
        &format!(
            "UPDATE manifests SET created_at = {} WHERE digest IN ('{}', '{}', '{}')",
            now - 3 * HOUR,
            idx.record.digest,
            kept_child.record.digest,
            tagged_idx.record.digest
        ),
    )
    .await;
    let (reg, _dir) = registry(
        &store,
        vec![RetentionPolicy {
            untagged_older_than: Some(Duration::from_secs(3600)),
            ..policy()
        }],
    );
    let plans = reg.apply_retention(false).await.unwrap();
    let deleted: Vec<_> = plans[0]
        .1
        .manifests
        .iter()
        .map(|(d, _)| d.clone())
        .collect();
    assert_eq!(deleted.len(), 26, "m0..m24 and the old index");
    let pos = |d: &wharf::types::Digest| deleted.iter().position(|x| x == d).unwrap();
    assert!(pos(&idx.record.digest) < pos(&manifests[0].record.digest));
    for (i, m) in manifests.iter().enumerate() {
        let present = store
            .manifests
            .manifest_by_digest(&r, &m.record.digest)
            .await
            .unwrap()
            .is_some();
        assert_eq!(present, i >= 25, "m{i}");
    }
    assert!(store
        .manifests
        .manifest_by_digest(&r, &kept_child.record.digest)
        .await
        .unwrap()
        .is_some());
    assert_eq!(tags(&store).await.len(), 51);
}

pub async fn keep_pulled_within(store: Store, url: String) {
    let manifests = hundred_tags(&store, &url).await;
    let now = wharf::clock::now_ms();
    let r = repo(REPO);
    store
        .gc
        .record_pulls(&[
            PullRecord {
                repo: r.clone(),
                digest: manifests[5].record.digest.clone(),
                at: now - 60_000,
            },
            PullRecord {
                repo: r.clone(),
                digest: manifests[6].record.digest.clone(),
                at: now - 3 * HOUR,
            },
        ])
        .await
        .unwrap();
    let (reg, _dir) = registry(
        &store,
        vec![RetentionPolicy {
            keep_tags: Some(10),
            keep_pulled_within: Some(Duration::from_secs(3600)),
            ..policy()
        }],
    );
    reg.apply_retention(false).await.unwrap();
    let mut want = vec!["t005".to_string()];
    want.extend(names(90..100));
    assert_eq!(tags(&store).await, want);
}

pub async fn dry_run_changes_nothing(store: Store, url: String) {
    hundred_tags(&store, &url).await;
    let (reg, _dir) = registry(
        &store,
        vec![RetentionPolicy {
            keep_tags: Some(10),
            untagged_older_than: Some(Duration::from_secs(1)),
            dry_run: true,
            ..policy()
        }],
    );
    let depth = store.gc.queue_depth(0).await.unwrap();
    // The policy's own dry run, and the registry's (as `wharf gc --dry-run` asks).
    for dry in [false, true] {
        let plans = reg.apply_retention(dry).await.unwrap();
        assert!(plans[0].1.dry_run);
        assert_eq!(plans[0].1.tags.len(), 90);
    }
    let preview = reg.gc_preview(false).await.unwrap();
    assert_eq!(preview.retention[0].1.tags.len(), 90);
    assert_eq!(tags(&store).await.len(), 100);
    assert_eq!(store.gc.queue_depth(0).await.unwrap(), depth);
}
