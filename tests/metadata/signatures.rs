//! The signature extension's store (`SignatureStore`): stored by manifest, names unique
//! per manifest, refused for a manifest that is not there, deleted with the manifest;
//! the sigstore attachment tag follows its subject (`0007_signatures.sql`); an index's
//! children know their parents.

use wharf::metadata::signatures::{PutSignatureOutcome, StoredSignature};

use wharf::types::{Digest, RepoName};

use crate::support::*;

fn sig(digest: &wharf::types::Digest, name: &str, at: i64) -> StoredSignature {
    StoredSignature {
        name: format!("{digest}@{name}"),
        content: format!("signature {name}").into_bytes(),
        created_at: at,
    }
}

async fn listed(store: &Store, r: &RepoName, d: &Digest) -> Vec<StoredSignature> {
    store.signatures.signatures(r, d).await.unwrap()
}

async fn put_sig(
    store: &Store,
    r: &RepoName,
    d: &Digest,
    s: &StoredSignature,
) -> PutSignatureOutcome {
    store.signatures.put_signature(r, d, s).await.unwrap()
}

pub async fn signatures_follow_their_manifest(store: Store) {
    let r = repo("signed/app");
    let m = manifest("signed", &[], Some("v1"));
    let d = m.record.digest.clone();

    // No manifest yet: nothing stored.
    assert_eq!(
        put_sig(&store, &r, &d, &sig(&d, "a", 1)).await,
        PutSignatureOutcome::ManifestUnknown
    );
    put(&store, &r, &m).await;
    assert!(listed(&store, &r, &d).await.is_empty());

    for (name, at) in [("b", 2), ("a", 1)] {
        assert_eq!(
            put_sig(&store, &r, &d, &sig(&d, name, at)).await,
            PutSignatureOutcome::Stored
        );
    }
    // The same name again: refused, the first one kept.
    let mut again = sig(&d, "a", 3);
    again.content = b"another".to_vec();
    assert_eq!(
        put_sig(&store, &r, &d, &again).await,
        PutSignatureOutcome::Exists
    );
    let got = listed(&store, &r, &d).await;
    assert_eq!(
        got,
        vec![sig(&d, "a", 1), sig(&d, "b", 2)],
        "in the order stored"
    );

    // Another repository holding the same manifest has its own signatures.
    let other = repo("other/app");
    put(&store, &other, &m).await;
    assert!(listed(&store, &other, &d).await.is_empty());

    // The sigstore attachment tag of the manifest, pointing at an attachment manifest.
    let attachment = manifest("attachment", &[], None);
    let mut attachment = attachment;
    attachment.tags = vec![tag(&format!("sha256-{}.sig", d.hex()))];
    put(&store, &r, &attachment).await;
    let unrelated = {
        let mut u = manifest("unrelated", &[], None);
        u.tags = vec![tag(&format!("sha256-{}.sig", "0".repeat(64)))];
        u
    };
    put(&store, &r, &unrelated).await;

    // Deleting the manifest takes its signatures and its attachment tag.
    assert!(delete(&store, &r, &d).await);
    assert!(listed(&store, &r, &d).await.is_empty());
    let attachment_tag = format!("sha256-{}.sig", d.hex());
    assert!(tagged(&store, &r, &attachment_tag).await.is_none());
    // The attachment manifest itself stays until garbage collection reviews it.
    assert!(store
        .manifests
        .manifest_by_digest(&r, &attachment.record.digest)
        .await
        .unwrap()
        .is_some());
    // Another manifest's attachment tag is untouched.
    let unrelated_tag = format!("sha256-{}.sig", "0".repeat(64));
    assert!(tagged(&store, &r, &unrelated_tag).await.is_some());
    // Pushed again, the manifest has no signatures left over.
    put(&store, &r, &m).await;
    assert!(listed(&store, &r, &d).await.is_empty());
}

pub async fn parents_of_a_manifest(store: Store) {
    let r = repo("multi/arch");
    let child = manifest("child", &[], None);
    put(&store, &r, &child).await;
    let d = child.record.digest.clone();
    assert!(store.signatures.parents(&r, &d).await.unwrap().is_empty());
    let idx = index("idx", &[&d], Some("v1"));
    put(&store, &r, &idx).await;
    assert_eq!(
        store.signatures.parents(&r, &d).await.unwrap(),
        vec![idx.record.digest.clone()]
    );
    assert!(store
        .signatures
        .parents(&repo("multi/other"), &d)
        .await
        .unwrap()
        .is_empty());
}
