//! The interleavings of the safety argument (`registry::gc`), forced: one side paused
//! at a race point while the other runs, then released. PostgreSQL only (row locks);
//! each asserts that the side that must wait does wait, and the outcome.

use std::time::Duration;

use wharf::metadata::PutManifestOutcome;

use crate::hooks::{still_blocked, Gate};
use crate::support::*;

const BLOCKED: Duration = Duration::from_millis(500);

/// Case 1(a): a put holds its child's link FOR SHARE; the review of that blob waits,
/// then sees the put's references and keeps the blob.
pub async fn put_holding_the_link_makes_the_review_wait(store: Store, _url: String) {
    let l = blob("layer being referenced", "k/l");
    store
        .blobs
        .commit_blob(&repo("r1a"), &l, None, &[])
        .await
        .unwrap();
    let gate = Gate::arm("put_manifest.children_locked", "r1a");
    let m = manifest("image", &[&l], Some("v1"));
    let put = {
        let (store, m) = (store.clone(), m.clone());
        tokio::spawn(async move { store.manifests.put_manifest(&repo("r1a"), &m, &[]).await })
    };
    gate.reached().await;
    let mut review = {
        let store = store.clone();
        tokio::spawn(async move { store.gc.review_blobs(0, 100).await })
    };
    assert!(
        still_blocked(&mut review, BLOCKED).await,
        "the review must wait for the put"
    );
    gate.release();
    assert_eq!(put.await.unwrap().unwrap(), PutManifestOutcome::Stored);
    let batch = review.await.unwrap().unwrap();
    assert_eq!(batch.reviewed, 1);
    assert!(batch.tombstones.is_empty() && batch.unlinked.is_empty());
    assert!(store
        .blobs
        .repo_blob(&repo("r1a"), &l.digest)
        .await
        .unwrap()
        .is_some());
}

/// Case 1(b): the review has deleted the link (not yet committed); the put waits for
/// it, then answers MissingChild and writes nothing.
pub async fn review_first_refuses_the_put(store: Store, _url: String) {
    let l = blob("layer being collected", "k/l");
    store
        .blobs
        .commit_blob(&repo("r1b"), &l, None, &[])
        .await
        .unwrap();
    let gate = Gate::arm("gc.blob.decided", l.digest.to_string());
    let review = {
        let store = store.clone();
        tokio::spawn(async move { store.gc.review_blobs(0, 100).await })
    };
    gate.reached().await;
    let m = manifest("image", &[&l], Some("v1"));
    let mut put = {
        let (store, m) = (store.clone(), m.clone());
        tokio::spawn(async move { store.manifests.put_manifest(&repo("r1b"), &m, &[]).await })
    };
    assert!(
        still_blocked(&mut put, BLOCKED).await,
        "the put must wait for the review"
    );
    gate.release();
    assert_eq!(review.await.unwrap().unwrap().tombstones.len(), 1);
    assert_eq!(
        put.await.unwrap().unwrap(),
        PutManifestOutcome::MissingChild(l.digest.clone())
    );
    assert!(store
        .manifests
        .manifest_by_digest(&repo("r1b"), &m.record.digest)
        .await
        .unwrap()
        .is_none());
    assert!(store.gc.is_tombstoned(&l.digest).await.unwrap());
}

/// Case 3: an upload of the digest commits while a review is deleting it: the commit
/// waits, then stores its own bytes under its own key.
pub async fn commit_waits_for_the_review(store: Store, _url: String) {
    let old = blob("same bytes", "k/old");
    store
        .blobs
        .commit_blob(&repo("r3"), &old, None, &[])
        .await
        .unwrap();
    let gate = Gate::arm("gc.blob.decided", old.digest.to_string());
    let review = {
        let store = store.clone();
        tokio::spawn(async move { store.gc.review_blobs(0, 100).await })
    };
    gate.reached().await;
    let new = blob("same bytes", "k/new");
    let mut commit = {
        let (store, new) = (store.clone(), new.clone());
        tokio::spawn(async move { store.blobs.commit_blob(&repo("r3"), &new, None, &[]).await })
    };
    assert!(
        still_blocked(&mut commit, BLOCKED).await,
        "the commit must wait"
    );
    gate.release();
    let batch = review.await.unwrap().unwrap();
    assert_eq!(batch.tombstones[0].storage_key, "k/old");
    let c = commit.await.unwrap().unwrap();
    assert!(
        c.stored_new,
        "the old row is gone: these bytes are stored anew"
    );
    assert_eq!(c.blob.storage_key, "k/new");
    let keys = store.gc.referenced_keys().await.unwrap();
    assert!(keys.contains("k/new") && keys.contains("k/old"), "{keys:?}");
    // The new commit queued a review of its own, not yet settled by the old batch.
    assert_eq!(store.gc.queue_depth(0).await.unwrap().blob_reviews, 1);
}

/// Case 3, the other order: a commit that has touched the review (and read the
/// existing record) holds the review row: a review running meanwhile skips it.
pub async fn commit_first_makes_the_review_skip(store: Store, _url: String) {
    let old = blob("linked twice", "k/old");
    store
        .blobs
        .commit_blob(&repo("r3b"), &old, None, &[])
        .await
        .unwrap();
    let gate = Gate::arm("commit_blob.existing_read", old.digest.to_string());
    let again = blob("linked twice", "k/again");
    let commit = {
        let (store, again) = (store.clone(), again.clone());
        tokio::spawn(async move {
            store
                .blobs
                .commit_blob(&repo("r3b-other"), &again, None, &[])
                .await
        })
    };
    gate.reached().await;
    let batch = store.gc.review_blobs(0, 100).await.unwrap();
    assert_eq!(
        batch.reviewed, 0,
        "the claimed review is skipped (SKIP LOCKED)"
    );
    gate.release();
    let c = commit.await.unwrap().unwrap();
    assert!(!c.stored_new);
    assert_eq!(c.blob.storage_key, "k/old");
    assert!(store
        .blobs
        .repo_blob(&repo("r3b-other"), &old.digest)
        .await
        .unwrap()
        .is_some());
    assert!(!store.gc.is_tombstoned(&old.digest).await.unwrap());
}

/// Case 6: a manifest review has decided (row locked FOR UPDATE); a push of the same
/// manifest with a tag waits, its tag's foreign key fails once the row is gone, and the
/// retried put stores the manifest again: the tag points at a manifest that exists.
pub async fn tag_push_against_manifest_review(store: Store, _url: String) {
    let l = blob("layer", "k/l");
    store
        .blobs
        .commit_blob(&repo("r6"), &l, None, &[])
        .await
        .unwrap();
    let m = manifest("m", &[&l], Some("v1"));
    let r6 = repo("r6");
    assert_eq!(
        store.manifests.put_manifest(&r6, &m, &[]).await.unwrap(),
        PutManifestOutcome::Stored
    );
    assert!(store
        .manifests
        .delete_tag(&r6, &tag("v1"), &[])
        .await
        .unwrap());
    let gate = Gate::arm("gc.manifest.decided", m.record.digest.to_string());
    let review = {
        let store = store.clone();
        tokio::spawn(async move { store.gc.review_manifests(0, 100).await })
    };
    gate.reached().await;
    let mut put = {
        let (store, m) = (store.clone(), m.clone());
        tokio::spawn(async move { store.manifests.put_manifest(&repo("r6"), &m, &[]).await })
    };
    assert!(
        still_blocked(&mut put, BLOCKED).await,
        "the tag push must wait"
    );
    gate.release();
    assert_eq!(review.await.unwrap().unwrap().manifests.len(), 1);
    assert_eq!(put.await.unwrap().unwrap(), PutManifestOutcome::Stored);
    let got = store
        .manifests
        .manifest_by_tag(&r6, &tag("v1"))
        .await
        .unwrap();
    assert_eq!(got.unwrap().digest, m.record.digest);
}

/// Case 5: reviewers on several connections at once settle each review once.
pub async fn many_reviewers_one_outcome(store: Store, url: String) {
    let others: Vec<Store> =
        futures_util::future::join_all((0..3).map(|_| wharf::metadata::open(&url, 4)))
            .await
            .into_iter()
            .map(|s| s.unwrap())
            .collect();
    let r = repo("r5");
    let mut blobs = Vec::new();
    for i in 0..200 {
        let b = blob(&format!("blob {i}"), &format!("k/{i}"));
        store.blobs.commit_blob(&r, &b, None, &[]).await.unwrap();
        blobs.push(b);
    }
    let keep: Vec<&_> = blobs.iter().step_by(2).collect();
    assert_eq!(
        store
            .manifests
            .put_manifest(&r, &manifest("keeps half", &keep, Some("v1")), &[])
            .await
            .unwrap(),
        PutManifestOutcome::Stored
    );
    let tasks: Vec<_> = others
        .iter()
        .chain(std::iter::once(&store))
        .cloned()
        .map(|s| {
            tokio::spawn(async move {
                let mut t = Vec::new();
                loop {
                    let b = s.gc.review_blobs(0, 7).await.unwrap();
                    if b.reviewed == 0 {
                        return t;
                    }
                    t.extend(b.tombstones);
                }
            })
        })
        .collect();
    let mut tombstones: Vec<_> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .flat_map(|t| t.unwrap())
        .map(|t| t.storage_key)
        .collect();
    tombstones.sort();
    let before = tombstones.len();
    tombstones.dedup();
    assert_eq!(before, tombstones.len(), "a blob collected twice");
    assert_eq!(tombstones.len(), 100);
    for (i, b) in blobs.iter().enumerate() {
        let linked = store
            .blobs
            .repo_blob(&r, &b.digest)
            .await
            .unwrap()
            .is_some();
        assert_eq!(linked, i % 2 == 0, "blob {i}");
    }
}
