//! What must hold when instances (here: tasks on a multi-threaded runtime) race on the
//! same rows. Every racing call must succeed or lose cleanly: an error here is what a
//! client would see as a 500.

use std::sync::Arc;

use futures_util::future::join_all;
use wharf::metadata::PutManifestOutcome;

use crate::support::*;

const RACERS: usize = 16;

/// Runs `f(i)` for i in 0..RACERS on separate tasks, released together.
async fn race<T, F, Fut>(f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let start = start.clone();
            let fut = f(i);
            tokio::spawn(async move {
                start.wait().await;
                fut.await
            })
        })
        .collect();
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("racing task panicked"))
        .collect()
}

pub async fn race_commit_same_digest(store: Store) {
    let content = "the same layer, pushed by everyone";
    let results = race(|i| {
        let store = store.clone();
        // Two repositories that do not exist yet: their creation races too.
        let r = repo(&format!("race/r{}", i % 2));
        let b = blob(content, &format!("blobs/copy-{i}"));
        async move { store.blobs.commit_blob(&r, &b, None, &[]).await }
    })
    .await;
    let commits: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("commit_blob"))
        .collect();
    let winners: Vec<_> = commits.iter().filter(|c| c.stored_new).collect();
    assert_eq!(winners.len(), 1, "exactly one commit stores the blob");
    let key = &winners[0].blob.storage_key;
    for c in &commits {
        assert_eq!(&c.blob.storage_key, key, "everyone gets the stored record");
        assert_eq!(c.blob.size, content.len() as u64);
    }
    let d = digest_of(content.as_bytes());
    for r in ["race/r0", "race/r1"] {
        let linked = store
            .blobs
            .repo_blob(&repo(r), &d)
            .await
            .unwrap()
            .expect("linked");
        assert_eq!(&linked.storage_key, key);
    }
    assert_eq!(
        store
            .repositories
            .list_repositories(None, 10)
            .await
            .unwrap(),
        ["race/r0", "race/r1"]
    );
}

pub async fn race_tag_push(store: Store) {
    let r = repo("race/tags");
    let (config, layer) = (blob("config", "k/config"), blob("layer", "k/layer"));
    commit(&store, &r, &config).await;
    commit(&store, &r, &layer).await;
    let manifests: Vec<_> = (0..RACERS)
        .map(|i| manifest(&format!("build-{i}"), &[&config, &layer], Some("latest")))
        .collect();
    let results = race(|i| {
        let (store, r, m) = (store.clone(), r.clone(), manifests[i].clone());
        async move { store.manifests.put_manifest(&r, &m, &[]).await }
    })
    .await;
    for res in results {
        assert_eq!(res.expect("put_manifest"), PutManifestOutcome::Stored);
    }
    let latest = store
        .manifests
        .manifest_by_tag(&r, &tag("latest"))
        .await
        .unwrap()
        .expect("tagged");
    assert!(manifests.iter().any(|m| m.record.digest == latest.digest));
    for m in &manifests {
        assert!(store
            .manifests
            .manifest_by_digest(&r, &m.record.digest)
            .await
            .unwrap()
            .is_some());
    }
    assert_eq!(
        store
            .manifests
            .list_tags(&r, None, 10)
            .await
            .unwrap()
            .unwrap(),
        ["latest"]
    );
}

pub async fn race_same_manifest_many_tags(store: Store) {
    let r = repo("race/same");
    let layer = blob("layer", "k/layer");
    commit(&store, &r, &layer).await;
    let results = race(|i| {
        let (store, r) = (store.clone(), r.clone());
        let m = manifest("one", &[&layer], Some(&format!("t{i:02}")));
        async move { store.manifests.put_manifest(&r, &m, &[]).await }
    })
    .await;
    for res in results {
        assert_eq!(res.expect("put_manifest"), PutManifestOutcome::Stored);
    }
    let digest = manifest("one", &[&layer], None).record.digest;
    let tags = store
        .manifests
        .list_tags(&r, None, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tags.len(), RACERS);
    for t in tags {
        let m = store
            .manifests
            .manifest_by_tag(&r, &tag(&t))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.digest, digest);
    }
}

pub async fn race_advance_upload(store: Store) {
    store
        .uploads
        .create_upload(&upload("u", "race/up", 1))
        .await
        .unwrap();
    let results = race(|i| {
        let store = store.clone();
        async move {
            let chunks = vec![chunk(&format!("uploads/u/{i}"), 0, 100 + i as u64)];
            let state = format!("state-{i}").into_bytes();
            store
                .uploads
                .advance_upload("u", 0, 100 + i as u64, &chunks, &state, 2)
                .await
        }
    })
    .await;
    let won: Vec<usize> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.expect("advance_upload").then_some(i))
        .collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one advance from offset 0 succeeds: {won:?}"
    );
    let w = won[0];
    let u = store.uploads.get_upload("u").await.unwrap().unwrap();
    assert_eq!(u.offset, 100 + w as u64);
    assert_eq!(
        u.chunks,
        vec![chunk(&format!("uploads/u/{w}"), 0, 100 + w as u64)]
    );
    assert_eq!(
        u.hash_state,
        format!("state-{w}").into_bytes(),
        "no mixed state"
    );
}

pub async fn race_delete_upload(store: Store) {
    store
        .uploads
        .create_upload(&upload("u", "race/up", 1))
        .await
        .unwrap();
    let results = race(|_| {
        let store = store.clone();
        async move { store.uploads.delete_upload("u").await }
    })
    .await;
    let got: Vec<_> = results
        .into_iter()
        .filter_map(|r| r.expect("delete_upload"))
        .collect();
    assert_eq!(got.len(), 1, "only one caller purges the session");
    assert_eq!(got[0].id, "u");
}

/// A manifest put racing the unlink of a blob it needs: either the put wins (and the
/// unlink comes after it) or it refuses with MissingChild; never an error, never a
/// half-stored manifest. "After": a put that reports Stored had committed by the time
/// the unlink returned; one that read the link, let the unlink commit, then stored the
/// manifest anyway (the check not holding a lock) shows up as Stored but not yet visible.
pub async fn race_put_against_unlink(store: Store) {
    let r = repo("race/unlink");
    for round in 0..30 {
        let (config, layer) = (blob("config", "k/c"), blob(&format!("layer{round}"), "k/l"));
        commit(&store, &r, &config).await;
        commit(&store, &r, &layer).await;
        let m = manifest(&format!("m{round}"), &[&config, &layer], Some("t"));
        let results = race(|i| {
            let (store, r, m, d) = (store.clone(), r.clone(), m.clone(), layer.digest.clone());
            async move {
                if i == 0 {
                    let unlinked = store.blobs.unlink_blob(&r, &d, &[]).await?;
                    let visible = store
                        .manifests
                        .manifest_by_digest(&r, &m.record.digest)
                        .await?;
                    Ok((None, Some((unlinked, visible.is_some()))))
                } else {
                    store
                        .manifests
                        .put_manifest(&r, &m, &[])
                        .await
                        .map(|p| (Some(p), None))
                }
            }
        })
        .await;
        let (mut unlinked, mut visible_then) = (false, false);
        let mut stored = 0;
        for res in results {
            match res.expect("no racing call fails") {
                (_, Some((u, v))) => (unlinked, visible_then) = (u, v),
                (Some(PutManifestOutcome::Stored), _) => stored += 1,
                (Some(PutManifestOutcome::MissingChild(d)), _) => assert_eq!(d, layer.digest),
                (None, None) => unreachable!(),
            }
        }
        assert!(unlinked, "the unlink found its link");
        let present = store
            .manifests
            .manifest_by_digest(&r, &m.record.digest)
            .await
            .unwrap();
        assert_eq!(present.is_some(), stored > 0, "round {round}");
        assert!(
            stored == 0 || visible_then,
            "round {round}: a put stored its manifest after the unlink of its layer committed"
        );
        assert!(store
            .blobs
            .repo_blob(&r, &layer.digest)
            .await
            .unwrap()
            .is_none());
    }
}

/// The same manifest pushed with a tag while it is being deleted: no call fails, and
/// a tag never points at a manifest that is gone.
pub async fn race_put_against_delete_manifest(store: Store) {
    let r = repo("race/delete");
    let layer = blob("layer", "k/l");
    commit(&store, &r, &layer).await;
    let m = manifest("m", &[&layer], None);
    put(&store, &r, &m).await;
    for round in 0..8 {
        let results = race(|i| {
            let (store, r) = (store.clone(), r.clone());
            let tagged = manifest("m", &[&layer], Some(&format!("t{i}")));
            async move {
                if i % 4 == 0 {
                    store
                        .manifests
                        .delete_manifest(&r, &tagged.record.digest, &[])
                        .await
                        .map(|_| ())
                } else {
                    store
                        .manifests
                        .put_manifest(&r, &tagged, &[])
                        .await
                        .map(|p| {
                            assert_eq!(p, PutManifestOutcome::Stored);
                        })
                }
            }
        })
        .await;
        for res in results {
            res.unwrap_or_else(|e| panic!("round {round}: a racing call failed: {e}"));
        }
        let tags = store
            .manifests
            .list_tags(&r, None, 100)
            .await
            .unwrap()
            .unwrap();
        for t in &tags {
            assert!(
                store
                    .manifests
                    .manifest_by_tag(&r, &tag(t))
                    .await
                    .unwrap()
                    .is_some(),
                "round {round}: tag {t} points at nothing"
            );
        }
        if !tags.is_empty() {
            assert!(store
                .manifests
                .manifest_by_digest(&r, &m.record.digest)
                .await
                .unwrap()
                .is_some());
        }
    }
}

/// An index put racing the delete of a child manifest it needs.
pub async fn race_index_against_child_delete(store: Store) {
    let r = repo("race/index");
    for round in 0..8 {
        let child = manifest(&format!("child{round}"), &[], None);
        put(&store, &r, &child).await;
        let idx = index(
            &format!("idx{round}"),
            &[&child.record.digest],
            Some("multi"),
        );
        let results = race(|i| {
            let (store, r, idx) = (store.clone(), r.clone(), idx.clone());
            let d = child.record.digest.clone();
            async move {
                if i == 0 {
                    store
                        .manifests
                        .delete_manifest(&r, &d, &[])
                        .await
                        .map(|_| None)
                } else {
                    store.manifests.put_manifest(&r, &idx, &[]).await.map(Some)
                }
            }
        })
        .await;
        let mut stored = false;
        for res in results {
            match res.expect("no racing call fails") {
                Some(PutManifestOutcome::Stored) => stored = true,
                Some(PutManifestOutcome::MissingChild(d)) => assert_eq!(d, child.record.digest),
                None => {}
            }
        }
        let present = store
            .manifests
            .manifest_by_digest(&r, &idx.record.digest)
            .await
            .unwrap();
        assert_eq!(present.is_some(), stored, "round {round}");
    }
}
