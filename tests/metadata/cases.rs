//! What every store must do, one request at a time: upload sessions, blobs and links,
//! manifests and tags, listings, referrers.

use wharf::metadata::PutManifestOutcome;

use crate::support::*;

pub async fn upload_lifecycle(store: Store) {
    let u = upload("u-1", "library/alpine", 1_000);
    store.uploads.create_upload(&u).await.unwrap();

    let got = store
        .uploads
        .get_upload("u-1")
        .await
        .unwrap()
        .expect("created");
    assert_eq!(got.id, "u-1");
    assert_eq!(got.repository, repo("library/alpine"));
    assert_eq!(got.offset, 0);
    assert_eq!(got.storage_key, "uploads/u-1");
    assert!(got.chunks.is_empty());
    assert_eq!(got.hash_state, vec![1, 2, 3, 0, 255]);
    assert_eq!((got.created_at, got.updated_at), (1_000, 1_000));
    assert!(store.uploads.get_upload("u-2").await.unwrap().is_none());

    // Advancing is conditional on the offset the caller read.
    let chunks = vec![chunk("uploads/u-1/0", 0, 10)];
    assert!(!store
        .uploads
        .advance_upload("u-1", 5, 15, &chunks, b"x", 2_000)
        .await
        .unwrap());
    assert_eq!(
        store
            .uploads
            .get_upload("u-1")
            .await
            .unwrap()
            .unwrap()
            .offset,
        0
    );
    assert!(store
        .uploads
        .advance_upload("u-1", 0, 10, &chunks, b"state-10", 2_000)
        .await
        .unwrap());
    let got = store.uploads.get_upload("u-1").await.unwrap().unwrap();
    assert_eq!(got.offset, 10);
    assert_eq!(got.chunks, chunks);
    assert_eq!(got.hash_state, b"state-10");
    assert_eq!((got.created_at, got.updated_at), (1_000, 2_000));
    // The old offset no longer matches.
    assert!(!store
        .uploads
        .advance_upload("u-1", 0, 20, &chunks, b"x", 3_000)
        .await
        .unwrap());
    let two = vec![
        chunk("uploads/u-1/0", 0, 10),
        chunk("uploads/u-1/10", 10, 6),
    ];
    assert!(store
        .uploads
        .advance_upload("u-1", 10, 16, &two, b"state-16", 3_000)
        .await
        .unwrap());
    assert_eq!(
        store
            .uploads
            .get_upload("u-1")
            .await
            .unwrap()
            .unwrap()
            .chunks,
        two
    );
    assert!(!store
        .uploads
        .advance_upload("nope", 0, 1, &[], b"", 3_000)
        .await
        .unwrap());

    let deleted = store
        .uploads
        .delete_upload("u-1")
        .await
        .unwrap()
        .expect("existed");
    assert_eq!(deleted.id, "u-1");
    assert_eq!(deleted.offset, 16);
    assert_eq!(deleted.chunks, two);
    assert!(store.uploads.delete_upload("u-1").await.unwrap().is_none());
    assert!(store.uploads.get_upload("u-1").await.unwrap().is_none());
}

/// Upload ids come from the URL unvalidated: odd ones are simply unknown.
pub async fn upload_ids_from_clients(store: Store) {
    store
        .uploads
        .create_upload(&upload("u-1", "a", 1))
        .await
        .unwrap();
    for id in ["u-1\0", "\0", "", "u-1 ", "U-1", "u-1'; --", "ü"] {
        assert!(
            store.uploads.get_upload(id).await.unwrap().is_none(),
            "{id:?}"
        );
        assert!(!store
            .uploads
            .advance_upload(id, 0, 1, &[], b"", 2)
            .await
            .unwrap());
        assert!(
            store.uploads.delete_upload(id).await.unwrap().is_none(),
            "{id:?}"
        );
    }
    assert!(store.uploads.get_upload("u-1").await.unwrap().is_some());
}

pub async fn stale_uploads(store: Store) {
    for (id, t) in [("c", 300), ("a", 100), ("d", 400), ("b", 200)] {
        store
            .uploads
            .create_upload(&upload(id, "r", t))
            .await
            .unwrap();
    }
    let ids = |v: Vec<wharf::types::UploadRecord>| -> Vec<String> {
        v.into_iter().map(|u| u.id).collect()
    };
    assert_eq!(
        ids(store.uploads.stale_uploads(350, 10).await.unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        ids(store.uploads.stale_uploads(350, 2).await.unwrap()),
        ["a", "b"]
    );
    assert!(store
        .uploads
        .stale_uploads(100, 10)
        .await
        .unwrap()
        .is_empty());
    // Progress makes a session fresh again.
    assert!(store
        .uploads
        .advance_upload("a", 0, 1, &[chunk("k", 0, 1)], b"", 500)
        .await
        .unwrap());
    assert_eq!(
        ids(store.uploads.stale_uploads(350, 10).await.unwrap()),
        ["b", "c"]
    );
    assert_eq!(
        ids(store.uploads.stale_uploads(1_000, 10).await.unwrap()),
        ["b", "c", "d", "a"]
    );
}

pub async fn commit_blob_new_and_existing(store: Store) {
    let (one, two) = (repo("one"), repo("two"));
    store
        .uploads
        .create_upload(&upload("up", "one", 1))
        .await
        .unwrap();
    let b = blob("layer", "blobs/first");

    let first = store
        .blobs
        .commit_blob(&one, &b, Some("up"), &[])
        .await
        .unwrap();
    assert!(first.stored_new);
    assert_eq!(first.blob, b);
    assert!(
        store.uploads.get_upload("up").await.unwrap().is_none(),
        "session deleted"
    );
    assert_eq!(
        store.blobs.repo_blob(&one, &b.digest).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(
        store.blobs.any_blob(&b.digest).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(store.blobs.repo_blob(&two, &b.digest).await.unwrap(), None);

    // The same digest again, from another upload: the first record stays.
    let again = blob("layer", "blobs/second");
    let second = commit(&store, &two, &again).await;
    assert!(!second.stored_new);
    assert_eq!(second.blob, b, "the stored record, not the caller's copy");
    assert_eq!(
        store.blobs.repo_blob(&two, &b.digest).await.unwrap(),
        Some(b.clone())
    );
    // Closing a session that no longer exists (cancelled, purged, committed by another
    // request) fails and writes nothing.
    let two_only = repo("only-two");
    let gone = store
        .blobs
        .commit_blob(&two_only, &again, Some("gone"), &[])
        .await;
    assert!(
        matches!(gone, Err(wharf::metadata::MetadataError::UploadGone)),
        "{gone:?}"
    );
    assert_eq!(
        store
            .blobs
            .repo_blob(&two_only, &again.digest)
            .await
            .unwrap(),
        None
    );
    assert!(store
        .manifests
        .list_tags(&two_only, None, 10)
        .await
        .unwrap()
        .is_none());

    let unknown = digest_of(b"never stored");
    assert_eq!(store.blobs.repo_blob(&one, &unknown).await.unwrap(), None);
    assert_eq!(store.blobs.any_blob(&unknown).await.unwrap(), None);

    // A large size survives the trip (i64 in both engines).
    let big = wharf::types::BlobRecord {
        size: 5 << 40,
        ..blob("big", "blobs/big")
    };
    commit(&store, &one, &big).await;
    assert_eq!(
        store.blobs.repo_blob(&one, &big.digest).await.unwrap(),
        Some(big)
    );
}

pub async fn link_and_unlink(store: Store) {
    let (src, dst, other) = (repo("src"), repo("dst"), repo("other"));
    let b = blob("shared", "blobs/shared");
    assert!(
        !store.blobs.link_blob(&dst, &b.digest, &[]).await.unwrap(),
        "no such blob"
    );
    assert_eq!(store.blobs.repo_blob(&dst, &b.digest).await.unwrap(), None);

    commit(&store, &src, &b).await;
    assert!(store.blobs.link_blob(&dst, &b.digest, &[]).await.unwrap());
    assert!(
        store.blobs.link_blob(&dst, &b.digest, &[]).await.unwrap(),
        "idempotent"
    );
    assert_eq!(
        store.blobs.repo_blob(&dst, &b.digest).await.unwrap(),
        Some(b.clone())
    );
    assert!(store
        .repositories
        .list_repositories(None, 10)
        .await
        .unwrap()
        .contains(&"dst".to_string()));

    assert!(store.blobs.unlink_blob(&dst, &b.digest, &[]).await.unwrap());
    assert!(!store.blobs.unlink_blob(&dst, &b.digest, &[]).await.unwrap());
    assert!(
        !store
            .blobs
            .unlink_blob(&other, &b.digest, &[])
            .await
            .unwrap(),
        "unknown repository"
    );
    assert_eq!(store.blobs.repo_blob(&dst, &b.digest).await.unwrap(), None);
    assert_eq!(
        store.blobs.repo_blob(&src, &b.digest).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(
        store.blobs.any_blob(&b.digest).await.unwrap(),
        Some(b.clone())
    );

    // Linked nowhere: no longer mountable from "any repository".
    assert!(store.blobs.unlink_blob(&src, &b.digest, &[]).await.unwrap());
    assert_eq!(store.blobs.any_blob(&b.digest).await.unwrap(), None);
    // The record itself remains (garbage collection's business), so it can be linked.
    assert!(store.blobs.link_blob(&src, &b.digest, &[]).await.unwrap());
    assert_eq!(store.blobs.any_blob(&b.digest).await.unwrap(), Some(b));
}

pub async fn put_manifest_missing_child(store: Store) {
    let r = repo("app");
    let (a, missing, also_missing) = (blob("a", "k/a"), blob("b", "k/b"), blob("c", "k/c"));
    commit(&store, &r, &a).await;
    let before = manifest("before", &[&a], Some("latest"));
    assert_eq!(put(&store, &r, &before).await, PutManifestOutcome::Stored);

    // The first missing child, in the order given.
    let m = manifest("m", &[&a, &missing, &also_missing], Some("latest"));
    assert_eq!(
        put(&store, &r, &m).await,
        PutManifestOutcome::MissingChild(missing.digest.clone())
    );
    // Nothing written: no manifest, the tag unmoved.
    assert!(store
        .manifests
        .manifest_by_digest(&r, &m.record.digest)
        .await
        .unwrap()
        .is_none());
    let latest = store
        .manifests
        .manifest_by_tag(&r, &tag("latest"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.digest, before.record.digest);

    // A blob linked to another repository does not count.
    store
        .blobs
        .commit_blob(&repo("elsewhere"), &missing, None, &[])
        .await
        .unwrap();
    assert_eq!(
        put(&store, &r, &m).await,
        PutManifestOutcome::MissingChild(missing.digest.clone())
    );

    // An index whose child manifest is missing; a tag it would create does not appear.
    let absent = digest_of(b"no such manifest");
    let idx = index("idx", &[&before.record.digest, &absent], Some("multi"));
    assert_eq!(
        put(&store, &r, &idx).await,
        PutManifestOutcome::MissingChild(absent)
    );
    assert!(store
        .manifests
        .manifest_by_digest(&r, &idx.record.digest)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .manifests
        .manifest_by_tag(&r, &tag("multi"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .manifests
            .list_tags(&r, None, 10)
            .await
            .unwrap()
            .unwrap(),
        ["latest"]
    );

    // Once the children are there, the same manifest is accepted.
    commit(&store, &r, &missing).await;
    commit(&store, &r, &also_missing).await;
    assert_eq!(put(&store, &r, &m).await, PutManifestOutcome::Stored);
}

pub async fn manifests_and_tags(store: Store) {
    let r = repo("library/app");
    let (config, layer) = (blob("config", "k/config"), blob("layer", "k/layer"));
    commit(&store, &r, &config).await;
    commit(&store, &r, &layer).await;

    let mut m1 = manifest("one", &[&config, &layer], Some("latest"));
    m1.record.artifact_type = Some("application/vnd.example+type".into());
    m1.record.annotations = Some(r#"{"a":"b"}"#.into());
    assert_eq!(put(&store, &r, &m1).await, PutManifestOutcome::Stored);
    let got = store
        .manifests
        .manifest_by_digest(&r, &m1.record.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.digest, m1.record.digest);
    assert_eq!(got.media_type, OCI_MANIFEST);
    assert_eq!(got.payload, m1.record.payload);
    assert_eq!(got.subject, None);
    assert_eq!(
        got.artifact_type.as_deref(),
        Some("application/vnd.example+type")
    );
    assert_eq!(got.annotations.as_deref(), Some(r#"{"a":"b"}"#));
    let by_tag = store
        .manifests
        .manifest_by_tag(&r, &tag("latest"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_tag.digest, m1.record.digest);
    assert!(store
        .manifests
        .manifest_by_digest(&repo("other"), &m1.record.digest)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .manifests
        .manifest_by_tag(&r, &tag("nope"))
        .await
        .unwrap()
        .is_none());

    // The tag moves to a new manifest; the old one stays by digest.
    let m2 = manifest("two", &[&config], Some("latest"));
    assert_eq!(put(&store, &r, &m2).await, PutManifestOutcome::Stored);
    let latest = store
        .manifests
        .manifest_by_tag(&r, &tag("latest"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.digest, m2.record.digest);
    assert!(store
        .manifests
        .manifest_by_digest(&r, &m1.record.digest)
        .await
        .unwrap()
        .is_some());

    // Pushing an existing manifest again is fine; by digest it moves no tag.
    let m1_again = manifest("one", &[&config, &layer], None);
    assert_eq!(put(&store, &r, &m1_again).await, PutManifestOutcome::Stored);
    let latest = store
        .manifests
        .manifest_by_tag(&r, &tag("latest"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.digest, m2.record.digest);
    // ... and with a tag, it tags the stored one.
    let m1_v1 = manifest("one", &[&config, &layer], Some("v1"));
    assert_eq!(put(&store, &r, &m1_v1).await, PutManifestOutcome::Stored);
    let v1 = store
        .manifests
        .manifest_by_tag(&r, &tag("v1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v1.digest, m1.record.digest);
    assert_eq!(v1.payload, m1.record.payload);
    assert_eq!(
        v1.annotations.as_deref(),
        Some(r#"{"a":"b"}"#),
        "first record kept"
    );

    // delete_tag removes only the tag.
    assert!(store
        .manifests
        .delete_tag(&r, &tag("latest"), &[])
        .await
        .unwrap());
    assert!(!store
        .manifests
        .delete_tag(&r, &tag("latest"), &[])
        .await
        .unwrap());
    assert!(!store
        .manifests
        .delete_tag(&repo("other"), &tag("v1"), &[])
        .await
        .unwrap());
    assert!(store
        .manifests
        .manifest_by_tag(&r, &tag("latest"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .manifests
        .manifest_by_digest(&r, &m2.record.digest)
        .await
        .unwrap()
        .is_some());

    // An index over both, then delete_manifest cascades to the manifest's tags.
    let idx = index(
        "idx",
        &[&m1.record.digest, &m2.record.digest],
        Some("multi"),
    );
    assert_eq!(put(&store, &r, &idx).await, PutManifestOutcome::Stored);
    let also = manifest("one", &[&config, &layer], Some("also"));
    put(&store, &r, &also).await;
    assert_eq!(
        store
            .manifests
            .list_tags(&r, None, 10)
            .await
            .unwrap()
            .unwrap(),
        ["also", "multi", "v1"]
    );
    assert!(delete(&store, &r, &m1.record.digest).await);
    assert!(!delete(&store, &r, &m1.record.digest).await);
    assert!(!store
        .manifests
        .delete_manifest(&repo("other"), &m2.record.digest, &[])
        .await
        .unwrap());
    assert!(store
        .manifests
        .manifest_by_digest(&r, &m1.record.digest)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .manifests
        .manifest_by_tag(&r, &tag("v1"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .manifests
            .list_tags(&r, None, 10)
            .await
            .unwrap()
            .unwrap(),
        ["multi"]
    );
    // The blobs stay linked; the manifest can be pushed again.
    assert!(store
        .blobs
        .repo_blob(&r, &layer.digest)
        .await
        .unwrap()
        .is_some());
    assert_eq!(put(&store, &r, &m1).await, PutManifestOutcome::Stored);
    assert_eq!(
        store
            .manifests
            .manifest_by_tag(&r, &tag("latest"))
            .await
            .unwrap()
            .unwrap()
            .digest,
        m1.record.digest
    );

    // A manifest with no children creates its repository.
    let empty = manifest("empty", &[], Some("t"));
    let fresh = repo("fresh/repo");
    assert_eq!(
        put(&store, &fresh, &empty).await,
        PutManifestOutcome::Stored
    );
    assert_eq!(
        store
            .manifests
            .list_tags(&fresh, None, 10)
            .await
            .unwrap()
            .unwrap(),
        ["t"]
    );
}

/// Names chosen so that byte order and a natural-language collation disagree.
const AWKWARD: [&str; 10] = ["B", "_a", "a", "a-b", "a.b", "a_b", "ab", "Z9", "0", "a0"];

fn byte_sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

pub async fn list_tags_order_and_pages(store: Store) {
    let r = repo("tags");
    let m = manifest("m", &[], None);
    put(&store, &r, &m).await;
    assert_eq!(
        store.manifests.list_tags(&r, None, 10).await.unwrap(),
        Some(vec![])
    );
    assert_eq!(
        store
            .manifests
            .list_tags(&repo("unknown"), None, 10)
            .await
            .unwrap(),
        None
    );

    for t in AWKWARD {
        let tagged = manifest("m", &[], Some(t));
        put(&store, &r, &tagged).await;
    }
    let all = byte_sorted(&AWKWARD);
    assert_eq!(
        store
            .manifests
            .list_tags(&r, None, 100)
            .await
            .unwrap()
            .unwrap(),
        all
    );

    // Page through, three at a time.
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = store
            .manifests
            .list_tags(&r, last.as_deref(), 3)
            .await
            .unwrap()
            .unwrap();
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        last = page.last().cloned();
        seen.extend(page);
    }
    assert_eq!(seen, all);

    // `last` need not be a tag; past the end there is nothing.
    let after_a = store
        .manifests
        .list_tags(&r, Some("a-"), 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after_a, ["a-b", "a.b"]);
    assert_eq!(
        store
            .manifests
            .list_tags(&r, Some("zzz"), 10)
            .await
            .unwrap(),
        Some(vec![])
    );
    // A `last` with a NUL in it (from a client) compares as the text before it.
    assert_eq!(
        store
            .manifests
            .list_tags(&r, Some("a\0junk"), 2)
            .await
            .unwrap()
            .unwrap(),
        ["a-b", "a.b"]
    );
    assert_eq!(
        store.manifests.list_tags(&r, None, 0).await.unwrap(),
        Some(vec![])
    );
    // Tags are per repository.
    let other = repo("tags/other");
    store
        .manifests
        .put_manifest(&other, &manifest("x", &[], Some("only")), &[])
        .await
        .unwrap();
    assert_eq!(
        store
            .manifests
            .list_tags(&other, None, 10)
            .await
            .unwrap()
            .unwrap(),
        ["only"]
    );
}

pub async fn list_repositories_order_and_pages(store: Store) {
    assert!(store
        .repositories
        .list_repositories(None, 10)
        .await
        .unwrap()
        .is_empty());
    let names = [
        "a/b", "a-b", "a.b", "a_b", "ab", "a", "b/c", "0x", "a0", "a__b",
    ];
    for (i, n) in names.iter().enumerate() {
        let b = blob(&format!("b{i}"), &format!("k/{i}"));
        store
            .blobs
            .commit_blob(&repo(n), &b, None, &[])
            .await
            .unwrap();
    }
    let all = byte_sorted(&names);
    assert_eq!(
        store
            .repositories
            .list_repositories(None, 100)
            .await
            .unwrap(),
        all
    );
    assert_eq!(
        store.repositories.list_repositories(None, 4).await.unwrap(),
        all[..4]
    );
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = store
            .repositories
            .list_repositories(last.as_deref(), 4)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        last = page.last().cloned();
        seen.extend(page);
    }
    assert_eq!(seen, all);
    assert_eq!(
        store
            .repositories
            .list_repositories(Some("a-"), 2)
            .await
            .unwrap(),
        ["a-b", "a.b"]
    );
    assert_eq!(
        store
            .repositories
            .list_repositories(Some("a/"), 1)
            .await
            .unwrap(),
        ["a/b"]
    );
    assert!(store
        .repositories
        .list_repositories(Some("zz"), 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn referrers(store: Store) {
    let r = repo("signed");
    let subject = manifest("subject", &[], Some("v1"));
    put(&store, &r, &subject).await;
    let s = subject.record.digest.clone();

    assert!(store
        .manifests
        .referrers(&r, &s, None)
        .await
        .unwrap()
        .is_empty());
    let sig = referrer("sig", &s, Some("application/vnd.example.signature"));
    let sbom = referrer("sbom", &s, Some("application/vnd.example.sbom"));
    let plain = referrer("plain", &s, None);
    for m in [&sig, &sbom, &plain] {
        assert_eq!(put(&store, &r, m).await, PutManifestOutcome::Stored);
    }
    // A referrer of another subject, and one in another repository.
    let unrelated = referrer("unrelated", &digest_of(b"other subject"), None);
    put(&store, &r, &unrelated).await;
    store
        .manifests
        .put_manifest(&repo("elsewhere"), &referrer("e", &s, None), &[])
        .await
        .unwrap();

    let mut all = store.manifests.referrers(&r, &s, None).await.unwrap();
    all.sort_by(|a, b| a.digest.cmp(&b.digest));
    let mut expected = vec![&sig, &sbom, &plain];
    expected.sort_by(|a, b| a.record.digest.cmp(&b.record.digest));
    assert_eq!(all.len(), 3);
    for (got, want) in all.iter().zip(expected) {
        assert_eq!(got.digest, want.record.digest);
        assert_eq!(got.media_type, OCI_MANIFEST);
        assert_eq!(got.size, want.record.payload.len() as u64);
        assert_eq!(got.artifact_type, want.record.artifact_type);
        assert_eq!(got.annotations, want.record.annotations);
    }

    let sigs = store
        .manifests
        .referrers(&r, &s, Some("application/vnd.example.signature"))
        .await
        .unwrap();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].digest, sig.record.digest);
    assert!(store
        .manifests
        .referrers(&r, &s, Some("text/plain"))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .manifests
        .referrers(&r, &s, Some("application/vnd.example.signature\0"))
        .await
        .unwrap()
        .is_empty());

    // Referrers of a subject that was never pushed are listed too.
    let ghost = digest_of(b"other subject");
    assert_eq!(
        store
            .manifests
            .referrers(&r, &ghost, None)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .manifests
        .referrers(&repo("nowhere"), &s, None)
        .await
        .unwrap()
        .is_empty());

    // Deleting a referrer removes it from the list.
    assert!(delete(&store, &r, &sbom.record.digest).await);
    assert_eq!(
        store.manifests.referrers(&r, &s, None).await.unwrap().len(),
        2
    );
}

pub async fn ping(store: Store) {
    store.repositories.ping().await.unwrap();
}
