//! The orphan sweep: objects no row names, older than the safety age, are deleted;
//! everything a row names (blobs, upload sessions and their chunks, tombstones) and
//! everything young stays.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use wharf::blobs::BlobBackend;
use wharf::registry::{Registry, RegistryOptions};

use crate::support::*;

async fn put(backend: &dyn BlobBackend, key: &str, data: &str) -> String {
    let mut w = backend.chunk_writer(key, 0).await.unwrap();
    w.write(Bytes::from(data.to_string())).await.unwrap();
    let done = w.finish().await.unwrap();
    done.chunk.unwrap().key
}

async fn listed(backend: &dyn BlobBackend) -> Vec<String> {
    let mut keys: Vec<String> = backend
        .list("blobs/")
        .await
        .unwrap()
        .map(|o| o.unwrap().key)
        .collect()
        .await;
    keys.sort();
    keys
}

/// Objects: a blob's, an upload session's, a tombstoned one, and two orphans. Returns
/// the keys (blob, session, tombstoned, orphan).
async fn scene(store: &Store, backend: &dyn BlobBackend) -> [String; 4] {
    let blob_key = put(backend, "blobs/aa/blob", "blob bytes").await;
    let session_key = put(backend, "blobs/bb/session", "partial").await;
    let gone_key = put(backend, "blobs/cc/gone", "gone").await;
    let orphan_key = put(backend, "blobs/dd/orphan", "nobody's").await;
    let r = repo("app");
    let kept = blob("blob bytes", &blob_key);
    store.blobs.commit_blob(&r, &kept, None, &[]).await.unwrap();
    store
        .manifests
        .put_manifest(&r, &manifest("keeps", &[&kept], Some("v1")), &[])
        .await
        .unwrap();
    let mut u = upload("sess", "app", wharf::clock::now_ms());
    u.storage_key = session_key.clone();
    store.uploads.create_upload(&u).await.unwrap();
    let gone = blob("gone", &gone_key);
    store.blobs.commit_blob(&r, &gone, None, &[]).await.unwrap();
    // Collected (rows gone), its tombstone left as by a pass that stopped before the
    // object delete.
    let batch = store.gc.review_blobs(0, 100).await.unwrap();
    assert_eq!(batch.tombstones.len(), 1);
    [blob_key, session_key, gone_key, orphan_key]
}

pub async fn orphans_on_the_filesystem(store: Store, _url: String) {
    let dir = tempfile::tempdir().unwrap();
    let fs = wharf::blobs::fs::FsBackend::open(dir.path()).unwrap();
    let [blob_key, session_key, gone_key, orphan_key] = scene(&store, &fs).await;
    let young_key = put(&fs, "blobs/ee/young", "just written").await;
    let two_days_ago = SystemTime::now() - Duration::from_secs(48 * 3600);
    for key in [&blob_key, &session_key, &gone_key, &orphan_key] {
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join(key))
            .unwrap();
        f.set_modified(two_days_ago).unwrap();
    }
    let backend: Arc<dyn BlobBackend> = Arc::new(fs);
    let reg = Registry::new(
        store.clone(),
        backend.clone(),
        None,
        RegistryOptions::default(),
    );
    let dry = reg
        .sweep_orphans(Duration::from_secs(3600), true)
        .await
        .unwrap();
    assert_eq!(dry.listed, 5);
    assert_eq!(dry.young, 1);
    let found: Vec<&str> = dry.orphans.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(found, [orphan_key.as_str()]);
    assert_eq!(dry.bytes(), "nobody's".len() as u64);
    assert_eq!(
        listed(backend.as_ref()).await.len(),
        5,
        "a dry run deletes nothing"
    );
    let done = reg
        .sweep_orphans(Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert_eq!(done.orphans.len(), 1);
    let mut want = vec![blob_key, session_key, gone_key, young_key];
    want.sort();
    assert_eq!(listed(backend.as_ref()).await, want);
    // The tombstone's object goes with the next pass, not the sweep.
    let report = reg.gc_leftover_tombstones(Duration::ZERO).await.unwrap();
    assert_eq!(report.blobs.len(), 1);
    assert_eq!(listed(backend.as_ref()).await.len(), 3);
    assert!(store.gc.tombstones(0, 10).await.unwrap().is_empty());
}

pub async fn orphans_in_an_object_store(store: Store, _url: String) {
    let backend: Arc<dyn BlobBackend> = Arc::new(wharf::blobs::object::ObjectBackend::new(
        "inmemory",
        Arc::new(object_store::memory::InMemory::new()),
        "root/dir",
    ));
    let [blob_key, session_key, gone_key, orphan_key] = scene(&store, backend.as_ref()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let reg = Registry::new(
        store.clone(),
        backend.clone(),
        None,
        RegistryOptions::default(),
    );
    let done = reg.sweep_orphans(Duration::ZERO, false).await.unwrap();
    let found: Vec<&str> = done.orphans.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(found, [orphan_key.as_str()]);
    let mut want = vec![blob_key, session_key, gone_key];
    want.sort();
    assert_eq!(listed(backend.as_ref()).await, want);
}
