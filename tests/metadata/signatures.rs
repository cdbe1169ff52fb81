//! The signature extension's store (`SignatureStore`): stored by manifest, names unique
//! per manifest, refused for a manifest that is not there, deleted with the manifest;
//! the sigstore attachment tag follows its subject (`0007_signatures.sql`); an index's
//! children know their parents.

use wharf::metadata::signatures::{PutSignatureOutcome, StoredSignature};

use crate::support::*;

fn sig(digest: &wharf::types::Digest, name: &str, at: i64) -> StoredSignature {
    StoredSignature {
        name: format!("{digest}@{name}"),
        content: format!("signature {name}").into_bytes(),
        created_at: at,
    }
}

pub async fn signatures_follow_their_manifest(store: Store) {
    let r = repo("signed/app");
    let m = manifest("signed", &[], Some("v1"));
    let d = m.record.digest.clone();

    // No manifest yet: nothing stored.
    assert_eq!(
        store
            .signatures
            .put_signature(&r, &d, &sig(&d, "a", 1))
            .await
            .unwrap(),
        PutSignatureOutcome::ManifestUnknown
    );
    store.manifests.put_manifest(&r, &m, &[]).await.unwrap();
    assert!(store
        .signatures
        .signatures(&r, &d)
        .await
        .unwrap()
        .is_empty());

    for (name, at) in [("b", 2), ("a", 1)] {
        assert_eq!(
            store
                .signatures
                .put_signature(&r, &d, &sig(&d, name, at))
                .await
                .unwrap(),
            PutSignatureOutcome::Stored
        );
    }
    // The same name again: refused, the first one kept.
    let mut again = sig(&d, "a", 3);
    again.content = b"another".to_vec();
    assert_eq!(
        store
            .signatures
            .put_signature(&r, &d, &again)
            .await
            .unwrap(),
        PutSignatureOutcome::Exists
    );
    let got = store.signatures.signatures(&r, &d).await.unwrap();
    assert_eq!(
        got,
        vec![sig(&d, "a", 1), sig(&d, "b", 2)],
        "in the order stored"
    );

    // Another repository holding the same manifest has its own signatures.
    let other = repo("other/app");
    store.manifests.put_manifest(&other, &m, &[]).await.unwrap();
    assert!(store
        .signatures
        .signatures(&other, &d)
        .await
        .unwrap()
        .is_empty());

    // The sigstore attachment tag of the manifest, pointing at an attachment manifest.
    let attachment = manifest("attachment", &[], None);
    let mut attachment = attachment;
    attachment.tags = vec![tag(&format!("sha256-{}.sig", d.hex()))];
    store
        .manifests
        .put_manifest(&r, &attachment, &[])
        .await
        .unwrap();
    let unrelated = {
        let mut u = manifest("unrelated", &[], None);
        u.tags = vec![tag(&format!("sha256-{}.sig", "0".repeat(64)))];
        u
    };
    store
        .manifests
        .put_manifest(&r, &unrelated, &[])
        .await
        .unwrap();

    // Deleting the manifest takes its signatures and its attachment tag.
    assert!(store.manifests.delete_manifest(&r, &d, &[]).await.unwrap());
    assert!(store
        .signatures
        .signatures(&r, &d)
        .await
        .unwrap()
        .is_empty());
    let attachment_tag = tag(&format!("sha256-{}.sig", d.hex()));
    assert!(store
        .manifests
        .manifest_by_tag(&r, &attachment_tag)
        .await
        .unwrap()
        .is_none());
    // The attachment manifest itself stays until garbage collection reviews it.
    assert!(store
        .manifests
        .manifest_by_digest(&r, &attachment.record.digest)
        .await
        .unwrap()
        .is_some());
    // Another manifest's attachment tag is untouched.
    let unrelated_tag = tag(&format!("sha256-{}.sig", "0".repeat(64)));
    assert!(store
        .manifests
        .manifest_by_tag(&r, &unrelated_tag)
        .await
        .unwrap()
        .is_some());
    // Pushed again, the manifest has no signatures left over.
    store.manifests.put_manifest(&r, &m, &[]).await.unwrap();
    assert!(store
        .signatures
        .signatures(&r, &d)
        .await
        .unwrap()
        .is_empty());
}

pub async fn parents_of_a_manifest(store: Store) {
    let r = repo("multi/arch");
    let child = manifest("child", &[], None);
    store.manifests.put_manifest(&r, &child, &[]).await.unwrap();
    let d = child.record.digest.clone();
    assert!(store.signatures.parents(&r, &d).await.unwrap().is_empty());
    let idx = index("idx", &[&d], Some("v1"));
    store.manifests.put_manifest(&r, &idx, &[]).await.unwrap();
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
