//! The GC store's contract, one call at a time: what each event queues, what a review
//! keeps and what it deletes, tombstones, push-backs, and the reads GC needs.

use std::time::Duration;

use wharf::metadata::gc::PullRecord;
use wharf::metadata::PutManifestOutcome;

use crate::support::*;

/// Runs review batches (delay 0) until nothing is due; returns (manifests deleted,
/// links removed, blobs tombstoned).
pub async fn collect_all(store: &Store) -> (usize, usize, Vec<wharf::metadata::gc::Tombstone>) {
    let (mut manifests, mut links, mut blobs) = (0, 0, Vec::new());
    loop {
        let m = store.gc.review_manifests(0, 100).await.unwrap();
        let b = store.gc.review_blobs(0, 100).await.unwrap();
        manifests += m.manifests.len();
        links += b.unlinked.len();
        blobs.extend(b.tombstones);
        if m.reviewed == 0 && b.reviewed == 0 {
            return (manifests, links, blobs);
        }
    }
}

async fn commit(store: &Store, r: &str, b: &wharf::types::BlobRecord) {
    store
        .blobs
        .commit_blob(&repo(r), b, None, &[])
        .await
        .unwrap();
}

async fn put(store: &Store, r: &str, m: &wharf::metadata::NewManifest) {
    assert_eq!(
        store
            .manifests
            .put_manifest(&repo(r), m, &[])
            .await
            .unwrap(),
        PutManifestOutcome::Stored
    );
}

pub async fn tag_move_collects_old_image(store: Store, _url: String) {
    let (c1, l1, l2) = (
        blob("config 1", "k/c1"),
        blob("layer 1", "k/l1"),
        blob("layer 2", "k/l2"),
    );
    for b in [&c1, &l1, &l2] {
        commit(&store, "app", b).await;
    }
    let m1 = manifest("one", &[&c1, &l1], Some("latest"));
    let m2 = manifest("two", &[&c1, &l2], Some("latest"));
    put(&store, "app", &m1).await;
    put(&store, "app", &m2).await;
    // The tag moved: M1 is queued; L1 only M1 referenced.
    let (manifests, links, blobs) = collect_all(&store).await;
    assert_eq!(manifests, 1);
    assert_eq!(links, 1);
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0].digest, l1.digest);
    assert_eq!(blobs[0].storage_key, "k/l1");
    assert_eq!(blobs[0].size, l1.size);
    let app = repo("app");
    assert!(store
        .manifests
        .manifest_by_digest(&app, &m1.record.digest)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .manifests
            .manifest_by_tag(&app, &tag("latest"))
            .await
            .unwrap()
            .unwrap()
            .digest,
        m2.record.digest
    );
    assert!(store
        .blobs
        .repo_blob(&app, &l1.digest)
        .await
        .unwrap()
        .is_none());
    assert!(store.blobs.any_blob(&l1.digest).await.unwrap().is_none());
    for b in [&c1, &l2] {
        assert!(store
            .blobs
            .repo_blob(&app, &b.digest)
            .await
            .unwrap()
            .is_some());
    }
    assert!(store.gc.is_tombstoned(&l1.digest).await.unwrap());
    assert!(!store.gc.is_tombstoned(&l2.digest).await.unwrap());
}

pub async fn delay_is_respected(store: Store, _url: String) {
    let b = blob("never referenced", "k/n");
    commit(&store, "app", &b).await;
    let hour = 3_600_000;
    let m = store.gc.review_manifests(hour, 100).await.unwrap();
    let r = store.gc.review_blobs(hour, 100).await.unwrap();
    assert_eq!((m.reviewed, r.reviewed), (0, 0));
    let depth = store.gc.queue_depth(hour).await.unwrap();
    assert_eq!((depth.blob_reviews, depth.blob_reviews_due), (1, 0));
    let depth = store.gc.queue_depth(0).await.unwrap();
    assert_eq!(depth.blob_reviews_due, 1);
    assert!(store.blobs.any_blob(&b.digest).await.unwrap().is_some());
}

pub async fn unreferenced_upload_is_collected(store: Store, _url: String) {
    let b = blob("pushed, then nothing", "k/u");
    commit(&store, "app", &b).await;
    let batch = store.gc.review_blobs(0, 100).await.unwrap();
    assert_eq!(batch.reviewed, 1);
    assert_eq!(batch.unlinked, vec![(repo("app"), b.digest.clone())]);
    assert_eq!(batch.tombstones.len(), 1);
    assert_eq!(batch.repositories().len(), 1);
    assert!(store.blobs.any_blob(&b.digest).await.unwrap().is_none());
    // Settled: the review is gone (the unlink's own trigger did not leave one).
    assert_eq!(store.gc.queue_depth(0).await.unwrap().blob_reviews, 0);
}

pub async fn shared_blob_unlinked_per_repository(store: Store, _url: String) {
    let b = blob("shared layer", "k/s");
    commit(&store, "a", &b).await;
    commit(&store, "b", &b).await;
    put(&store, "a", &manifest("uses it", &[&b], Some("v1"))).await;
    let (_, links, blobs) = collect_all(&store).await;
    assert_eq!(links, 1, "only b's link goes");
    assert!(blobs.is_empty());
    assert!(store
        .blobs
        .repo_blob(&repo("a"), &b.digest)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .blobs
        .repo_blob(&repo("b"), &b.digest)
        .await
        .unwrap()
        .is_none());
    // Now the tag goes too: the manifest, then the blob.
    assert!(store
        .manifests
        .delete_tag(&repo("a"), &tag("v1"), &[])
        .await
        .unwrap());
    let (manifests, _, blobs) = collect_all(&store).await;
    assert_eq!((manifests, blobs.len()), (1, 1));
}

pub async fn referrers_go_with_their_subject_unless_tagged(store: Store, _url: String) {
    let l = blob("image layer", "k/i");
    commit(&store, "app", &l).await;
    let m = manifest("image", &[&l], Some("v1"));
    put(&store, "app", &m).await;
    let s1 = referrer("signature", &m.record.digest, Some("application/sig"));
    let mut s2 = referrer("sbom", &m.record.digest, Some("application/sbom"));
    s2.tags = vec![tag("sbom")];
    put(&store, "app", &s1).await;
    put(&store, "app", &s2).await;
    // Nothing is due while the subject is tagged.
    assert_eq!(collect_all(&store).await.0, 0);
    assert!(store
        .manifests
        .delete_tag(&repo("app"), &tag("v1"), &[])
        .await
        .unwrap());
    let (manifests, _, blobs) = collect_all(&store).await;
    assert_eq!(manifests, 2, "the image and its untagged signature");
    assert_eq!(blobs.len(), 1);
    let app = repo("app");
    let by = |d| store.manifests.manifest_by_digest(&app, d);
    assert!(by(&s1.record.digest).await.unwrap().is_none());
    assert!(by(&s2.record.digest).await.unwrap().is_some());
}

pub async fn index_children_follow_the_index(store: Store, _url: String) {
    let (a, b) = (blob("amd64 layer", "k/a"), blob("arm64 layer", "k/b"));
    commit(&store, "multi", &a).await;
    commit(&store, "multi", &b).await;
    let ma = manifest("amd64", &[&a], None);
    let mb = manifest("arm64", &[&b], None);
    put(&store, "multi", &ma).await;
    put(&store, "multi", &mb).await;
    let idx = index("index", &[&ma.record.digest, &mb.record.digest], Some("v1"));
    put(&store, "multi", &idx).await;
    assert_eq!(collect_all(&store).await, (0, 0, Vec::new()));
    assert!(store
        .manifests
        .delete_tag(&repo("multi"), &tag("v1"), &[])
        .await
        .unwrap());
    let (manifests, links, blobs) = collect_all(&store).await;
    assert_eq!((manifests, links, blobs.len()), (3, 2, 2));
}

pub async fn touch_pushes_reviews_back(store: Store, _url: String) {
    let b = blob("headed often", "k/h");
    commit(&store, "app", &b).await;
    let delay = 1_500;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    store
        .gc
        .touch_blobs(std::slice::from_ref(&b.digest))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // 2 s after the commit, 1 s after the touch: not due.
    assert_eq!(store.gc.review_blobs(delay, 100).await.unwrap().reviewed, 0);
    // A commit of the same digest (an upload again) pushes back too.
    commit(&store, "app", &b).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(store.gc.review_blobs(delay, 100).await.unwrap().reviewed, 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(store.gc.review_blobs(delay, 100).await.unwrap().reviewed, 1);
    // Touching what has no review does nothing.
    store
        .gc
        .touch_blobs(std::slice::from_ref(&b.digest))
        .await
        .unwrap();
    assert_eq!(store.gc.queue_depth(0).await.unwrap().blob_reviews, 0);
}

pub async fn tombstones_and_referenced_keys(store: Store, _url: String) {
    let kept = blob("kept", "blobs/kept");
    let gone = blob("gone", "blobs/gone");
    commit(&store, "app", &kept).await;
    commit(&store, "app", &gone).await;
    put(&store, "app", &manifest("keeps", &[&kept], Some("v1"))).await;
    let mut u = upload("u-1", "app", wharf::clock::now_ms());
    u.storage_key = "blobs/u-1".into();
    store.uploads.create_upload(&u).await.unwrap();
    let chunks = vec![chunk("blobs/u-1.0.x", 0, 3)];
    assert!(store
        .uploads
        .advance_upload("u-1", 0, 3, &chunks, b"s", 1)
        .await
        .unwrap());
    let (_, _, blobs) = collect_all(&store).await;
    assert_eq!(blobs.len(), 1);
    let keys = store.gc.referenced_keys().await.unwrap();
    for k in ["blobs/kept", "blobs/gone", "blobs/u-1", "blobs/u-1.0.x"] {
        assert!(keys.contains(k), "{k} in {keys:?}");
    }
    assert_eq!(keys.len(), 4);
    let left = store.gc.tombstones(0, 10).await.unwrap();
    assert_eq!(left, blobs);
    assert!(store.gc.tombstones(3_600_000, 10).await.unwrap().is_empty());
    store
        .gc
        .clear_tombstones(&["blobs/gone".to_string()])
        .await
        .unwrap();
    assert!(store.gc.tombstones(0, 10).await.unwrap().is_empty());
    assert!(!store.gc.is_tombstoned(&gone.digest).await.unwrap());
    assert!(!store
        .gc
        .referenced_keys()
        .await
        .unwrap()
        .contains("blobs/gone"));
}

pub async fn collected_blob_is_refused_then_stored_anew(store: Store, _url: String) {
    let b = blob("collected then wanted", "k/old");
    commit(&store, "app", &b).await;
    assert_eq!(collect_all(&store).await.2.len(), 1);
    let m = manifest("wants it", &[&b], Some("v1"));
    assert_eq!(
        store
            .manifests
            .put_manifest(&repo("app"), &m, &[])
            .await
            .unwrap(),
        PutManifestOutcome::MissingChild(b.digest.clone())
    );
    // A mount finds nothing; a new upload stores its own bytes under its own key.
    assert!(!store
        .blobs
        .link_blob(&repo("other"), &b.digest, &[])
        .await
        .unwrap());
    let again = wharf::types::BlobRecord {
        storage_key: "k/new".into(),
        ..b.clone()
    };
    let c = store
        .blobs
        .commit_blob(&repo("app"), &again, None, &[])
        .await
        .unwrap();
    assert!(c.stored_new);
    assert_eq!(c.blob.storage_key, "k/new");
    put(&store, "app", &m).await;
    // The old object's tombstone is still there until its delete is done.
    assert!(store.gc.is_tombstoned(&b.digest).await.unwrap());
    assert!(store.gc.referenced_keys().await.unwrap().contains("k/new"));
    assert_eq!(collect_all(&store).await.2.len(), 0);
}

pub async fn pulls_snapshot_and_conditional_deletes(store: Store, _url: String) {
    let l = blob("layer", "k/l");
    commit(&store, "app", &l).await;
    let m1 = manifest("m1", &[&l], Some("v1"));
    let m2 = manifest("m2", &[&l], Some("v2"));
    put(&store, "app", &m1).await;
    put(&store, "app", &m2).await;
    let idx = index("idx", &[&m1.record.digest], None);
    put(&store, "app", &idx).await;
    let app = repo("app");
    store
        .gc
        .record_pulls(&[
            PullRecord {
                repo: app.clone(),
                digest: m1.record.digest.clone(),
                at: 5_000,
            },
            PullRecord {
                repo: repo("nope"),
                digest: m1.record.digest.clone(),
                at: 5_000,
            },
        ])
        .await
        .unwrap();
    // Never backwards.
    store
        .gc
        .record_pulls(&[PullRecord {
            repo: app.clone(),
            digest: m1.record.digest.clone(),
            at: 4_000,
        }])
        .await
        .unwrap();
    let snap = store.gc.repository_snapshot(&app).await.unwrap().unwrap();
    assert_eq!(snap.tags.len(), 2);
    assert_eq!(snap.manifests.len(), 3);
    let pulled = snap
        .manifests
        .iter()
        .find(|m| m.digest == m1.record.digest)
        .unwrap();
    assert_eq!(pulled.last_pulled_at, Some(5_000));
    assert_eq!(pulled.size, m1.record.payload.len() as u64);
    assert_eq!(
        snap.children,
        vec![(idx.record.digest.clone(), m1.record.digest.clone())]
    );
    assert!(store
        .gc
        .repository_snapshot(&repo("nope"))
        .await
        .unwrap()
        .is_none());

    // A tag is deleted only where it still points.
    assert!(!store
        .gc
        .delete_tag_if(&app, &tag("v1"), &m2.record.digest)
        .await
        .unwrap());
    assert!(store
        .gc
        .delete_tag_if(&app, &tag("v1"), &m1.record.digest)
        .await
        .unwrap());
    // M1 is an index's child: reachable. M2 is tagged. The index is unreachable.
    for (d, want) in [
        (&m1.record.digest, false),
        (&m2.record.digest, false),
        (&idx.record.digest, true),
    ] {
        assert_eq!(
            store
                .gc
                .delete_manifest_if_unreachable(&app, d)
                .await
                .unwrap(),
            want,
            "{d}"
        );
    }
    assert!(store
        .gc
        .delete_manifest_if_unreachable(&app, &m1.record.digest)
        .await
        .unwrap());
}

pub async fn preview_changes_nothing(store: Store, _url: String) {
    let (a, b) = (blob("a", "k/a"), blob("b", "k/b"));
    commit(&store, "app", &a).await;
    commit(&store, "app", &b).await;
    let m = manifest("m", &[&a], Some("v1"));
    put(&store, "app", &m).await;
    put(&store, "app", &manifest("m2", &[&a], Some("v1"))).await;
    let preview = store.gc.preview_reviews(0, 100).await.unwrap();
    assert_eq!(preview.manifests.len(), 1);
    assert_eq!(preview.manifests[0].1, m.record.digest);
    assert_eq!(preview.manifests[0].2, m.record.payload.len() as u64);
    assert_eq!(preview.blobs, vec![(b.digest.clone(), 1)]);
    assert_eq!(preview.unlinked, vec![(repo("app"), b.digest.clone())]);
    assert_eq!(preview.kept, 1, "a is referenced");
    let depth = store.gc.queue_depth(0).await.unwrap();
    assert_eq!(depth.manifest_reviews, 1);
    assert_eq!(depth.blob_reviews, 2);
    assert!(store.blobs.any_blob(&b.digest).await.unwrap().is_some());
}

/// Through the metadata cache: what a review deletes is not served from the cache
/// afterwards (the decorator renews the repository's generation after the commit).
pub async fn cache_forgets_what_reviews_delete(store: Store, _url: String) {
    let ttl = Duration::from_secs(600);
    let cached = wharf::cache::CachedMetadata::wrap(
        store.clone(),
        std::sync::Arc::new(wharf::cache::memory::MemoryCache::new(ttl)),
        ttl,
    );
    let app = repo("app");
    let b = blob("cached, then collected", "k/c");
    cached.blobs.commit_blob(&app, &b, None, &[]).await.unwrap();
    let m = manifest("cached manifest", &[&b], Some("v1"));
    put(&cached, "app", &m).await;
    put(&cached, "app", &manifest("other", &[], Some("v1"))).await;
    // Fill the cache (twice: the second read is a hit).
    for _ in 0..2 {
        assert!(cached
            .blobs
            .repo_blob(&app, &b.digest)
            .await
            .unwrap()
            .is_some());
        assert!(cached
            .manifests
            .manifest_by_digest(&app, &m.record.digest)
            .await
            .unwrap()
            .is_some());
    }
    let (manifests, links, blobs) = collect_all(&cached).await;
    assert_eq!((manifests, links, blobs.len()), (1, 1, 1));
    assert!(cached
        .blobs
        .repo_blob(&app, &b.digest)
        .await
        .unwrap()
        .is_none());
    assert!(cached
        .manifests
        .manifest_by_digest(&app, &m.record.digest)
        .await
        .unwrap()
        .is_none());
}
