//! The metadata cache in front of a store, against a real `redis-server` (and the
//! in-process cache): reads answered from the cache, every write through it seen at
//! once, a fill that raced a write never served, and Redis frozen, killed and restarted
//! without a request failing or a stale entry coming back.
//!
//! "Served from the cache" is shown by changing the database *behind* the cache (through
//! the undecorated store, as another registry not sharing the cache would) and reading
//! the old value back.

use std::sync::Arc;
use std::time::Duration;

use wharf::cache::memory::MemoryCache;
use wharf::cache::redis::RedisCache;
use wharf::cache::{keys, CacheBackend, CachedMetadata};
use wharf::config::RedisConfig;

use crate::redis_server::RedisServer;
use crate::support::*;

const TTL: Duration = Duration::from_secs(60);

async fn redis_cache(addrs: &[String]) -> Arc<dyn CacheBackend> {
    let yaml = format!(
        "addrs: [{}]\nreadtimeout: 100ms\nwritetimeout: 100ms\ndialtimeout: 200ms\n",
        addrs.join(", ")
    );
    let config: RedisConfig = serde_norway::from_str(&yaml).expect("redis config");
    Arc::new(RedisCache::connect(&config).await.expect("redis cache"))
}

/// A SQLite store and the same store behind `backend`.
async fn stores(backend: Arc<dyn CacheBackend>) -> (tempfile::TempDir, Store, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/wharf.db", dir.path().display());
    let inner = wharf::metadata::open(&url, 4).await.expect("sqlite");
    let cached = CachedMetadata::wrap(inner.clone(), backend, TTL);
    (dir, inner, cached)
}

/// Waits for the background probe to find the backend answering again.
async fn past_bypass() {
    tokio::time::sleep(wharf::cache::cached_metadata::PROBE_INTERVAL * 6).await;
}

async fn tag_target(store: &Store, repository: &str, name: &str) -> Option<String> {
    store
        .manifests
        .manifest_by_tag(&repo(repository), &tag(name))
        .await
        .expect("read tag")
        .map(|m| m.digest.to_string())
}

/// Every kind of cached read, and every write that must invalidate it.
async fn reads_and_writes(cached: Store, inner: Store, repository: &str) {
    let r = repo(repository);
    let layer = blob("layer", "blobs/layer");
    cached
        .blobs
        .commit_blob(&r, &layer, None, &[])
        .await
        .unwrap();
    let one = manifest("one", &[&layer], Some("latest"));
    cached.manifests.put_manifest(&r, &one, &[]).await.unwrap();
    let one_digest = Some(one.record.digest.to_string());
    assert_eq!(tag_target(&cached, repository, "latest").await, one_digest);

    // Moved behind the cache's back: the cached target is still served.
    let two = manifest("two", &[&layer], Some("latest"));
    inner.manifests.put_manifest(&r, &two, &[]).await.unwrap();
    assert_eq!(tag_target(&cached, repository, "latest").await, one_digest);
    assert_eq!(
        tag_target(&inner, repository, "latest").await,
        Some(two.record.digest.to_string())
    );

    // Moved through it: seen at once.
    let three = manifest("three", &[&layer], Some("latest"));
    cached
        .manifests
        .put_manifest(&r, &three, &[])
        .await
        .unwrap();
    let three_digest = Some(three.record.digest.to_string());
    assert_eq!(
        tag_target(&cached, repository, "latest").await,
        three_digest
    );

    // Manifests by digest, payload byte for byte.
    let got = cached
        .manifests
        .manifest_by_digest(&r, &three.record.digest)
        .await
        .unwrap()
        .expect("by digest");
    assert_eq!(got.payload, three.record.payload);
    assert_eq!(got.media_type, three.record.media_type);

    // Tag deleted through the cache.
    assert!(cached
        .manifests
        .delete_tag(&r, &tag("latest"), &[])
        .await
        .unwrap());
    assert_eq!(tag_target(&cached, repository, "latest").await, None);

    // Manifest deleted through the cache: by digest and its tags are gone.
    cached
        .manifests
        .put_manifest(&r, &manifest("three", &[&layer], Some("v3")), &[])
        .await
        .unwrap();
    assert_eq!(tag_target(&cached, repository, "v3").await, three_digest);
    assert!(cached
        .manifests
        .delete_manifest(&r, &three.record.digest, &[])
        .await
        .unwrap());
    assert!(cached
        .manifests
        .manifest_by_digest(&r, &three.record.digest)
        .await
        .unwrap()
        .is_none());
    assert_eq!(tag_target(&cached, repository, "v3").await, None);

    // Blob links: cached, then unlinked behind the back (still served), then unlinked
    // through the cache (gone).
    assert_eq!(
        cached.blobs.repo_blob(&r, &layer.digest).await.unwrap(),
        Some(layer.clone())
    );
    assert!(inner
        .blobs
        .unlink_blob(&r, &layer.digest, &[])
        .await
        .unwrap());
    assert_eq!(
        cached.blobs.repo_blob(&r, &layer.digest).await.unwrap(),
        Some(layer.clone())
    );
    assert!(inner.blobs.link_blob(&r, &layer.digest, &[]).await.unwrap());
    assert!(cached
        .blobs
        .unlink_blob(&r, &layer.digest, &[])
        .await
        .unwrap());
    assert_eq!(
        cached.blobs.repo_blob(&r, &layer.digest).await.unwrap(),
        None
    );

    // A miss is not cached: a blob committed behind the back is found at once.
    let other = blob("other", "blobs/other");
    assert_eq!(
        cached.blobs.repo_blob(&r, &other.digest).await.unwrap(),
        None
    );
    inner
        .blobs
        .commit_blob(&r, &other, None, &[])
        .await
        .unwrap();
    assert_eq!(
        cached.blobs.repo_blob(&r, &other.digest).await.unwrap(),
        Some(other)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_reads_and_writes() {
    let server = RedisServer::start("redis_reads_and_writes");
    let (_dir, inner, cached) = stores(redis_cache(&[server.addr()]).await).await;
    reads_and_writes(cached, inner, "library/app").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inmemory_reads_and_writes() {
    let (_dir, inner, cached) = stores(Arc::new(MemoryCache::new(TTL))).await;
    reads_and_writes(cached, inner, "library/app").await;
}

/// The mechanism: an entry stored under the generation a reader saw before a write
/// renewed it is not current afterwards, whichever instance reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_fill_that_raced_a_write_is_never_current() {
    let server = RedisServer::start("redis_fill_that_raced_a_write_is_never_current");
    let a = redis_cache(&[server.addr()]).await;
    let b = redis_cache(&[server.addr()]).await;
    let r = repo("race/app");
    let (g, k) = (keys::generation(&r), keys::entry(&r, 't', "latest"));
    let before = a.lookup(&g, &k).await.unwrap();
    assert_eq!(before.entry, None);
    // Instance b writes and renews while a is still reading the database...
    b.renew(&g).await.unwrap();
    // ...then a stores what it read, under the generation it saw.
    a.store(&k, b"stale".to_vec(), TTL).await.unwrap();
    let after = b.lookup(&g, &k).await.unwrap();
    assert_eq!(after.entry.as_deref(), Some(&b"stale"[..]));
    assert_ne!(
        after.generation, before.generation,
        "the stale fill must not be current"
    );
    // The generation is shared: a sees what b renewed.
    assert_eq!(a.lookup(&g, &k).await.unwrap().generation, after.generation);
}

/// Redis stops answering (SIGSTOP): every request still succeeds from the database; a
/// tag moved meanwhile is right once Redis answers again, although the old entry is
/// still in Redis; then the cache is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frozen_redis_fails_open_and_writes_meanwhile_invalidate() {
    let server = RedisServer::start("frozen_redis");
    let (_dir, inner, cached) = stores(redis_cache(&[server.addr()]).await).await;
    let r = repo("frozen/app");
    let v1 = manifest("v1", &[], Some("latest"));
    cached.manifests.put_manifest(&r, &v1, &[]).await.unwrap();
    let d1 = Some(v1.record.digest.to_string());
    assert_eq!(tag_target(&cached, "frozen/app", "latest").await, d1);
    assert_eq!(tag_target(&cached, "frozen/app", "latest").await, d1);

    server.freeze();
    assert_eq!(tag_target(&cached, "frozen/app", "latest").await, d1);
    let v2 = manifest("v2", &[], Some("latest"));
    cached.manifests.put_manifest(&r, &v2, &[]).await.unwrap();
    let d2 = Some(v2.record.digest.to_string());
    for _ in 0..5 {
        assert_eq!(tag_target(&cached, "frozen/app", "latest").await, d2);
    }
    let keys_while_frozen = server.ping();
    assert!(
        !keys_while_frozen,
        "the server should not answer while frozen"
    );

    server.thaw();
    past_bypass().await;
    assert_eq!(tag_target(&cached, "frozen/app", "latest").await, d2);
    // Cache in use again: a move behind its back is not seen.
    inner
        .manifests
        .put_manifest(&r, &manifest("v3", &[], Some("latest")), &[])
        .await
        .unwrap();
    assert_eq!(tag_target(&cached, "frozen/app", "latest").await, d2);
}

/// Redis killed: requests succeed from the database; started again (empty): the cache
/// fills and serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted() {
    let mut server = RedisServer::start("redis_killed_and_restarted");
    let (_dir, inner, cached) = stores(redis_cache(&[server.addr()]).await).await;
    let r = repo("killed/app");
    let v1 = manifest("v1", &[], Some("latest"));
    cached.manifests.put_manifest(&r, &v1, &[]).await.unwrap();
    let d1 = Some(v1.record.digest.to_string());
    assert_eq!(tag_target(&cached, "killed/app", "latest").await, d1);

    server.kill();
    for _ in 0..5 {
        assert_eq!(tag_target(&cached, "killed/app", "latest").await, d1);
    }
    let v2 = manifest("v2", &[], Some("latest"));
    cached.manifests.put_manifest(&r, &v2, &[]).await.unwrap();
    let d2 = Some(v2.record.digest.to_string());
    assert_eq!(tag_target(&cached, "killed/app", "latest").await, d2);

    server.restart();
    past_bypass().await;
    assert_eq!(tag_target(&cached, "killed/app", "latest").await, d2);
    // Filled again, then moved behind the cache's back: the cached target is served.
    inner
        .manifests
        .put_manifest(&r, &manifest("v3", &[], Some("latest")), &[])
        .await
        .unwrap();
    assert_eq!(
        tag_target(&cached, "killed/app", "latest").await,
        d2,
        "the cache should serve again after the restart"
    );
}

/// Three masters of a Redis Cluster: every repository's keys on one slot, repositories
/// spread over the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_reads_and_writes() {
    let opts = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let n = RedisServer::start_with("redis_cluster_reads_and_writes", &opts);
        nodes.push(n);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addrs.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    nodes[0].cli(&create);
    let mut ok = false;
    for _ in 0..100 {
        ok = nodes
            .iter()
            .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"));
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "cluster did not form");
    let (_dir, inner, cached) = stores(redis_cache(&addrs).await).await;
    // Hash slots 5002, 8776 and 11505: one repository on each node.
    for name in ["alpha/app", "zeta/app", "omega/app"] {
        reads_and_writes(cached.clone(), inner.clone(), name).await;
    }
    // The keys really are spread over more than one node.
    let holding = nodes
        .iter()
        .filter(|n| n.cli(&["dbsize"]).trim().parse::<u64>().unwrap_or(0) > 0)
        .count();
    assert_eq!(holding, 3, "every node should hold one repository's keys");
}

/// The whole store contract holds through the cache (run by the suite macro).
pub async fn with_redis<F, Fut>(test: &str, case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let server = RedisServer::start(test);
    let (_dir, _inner, cached) = stores(redis_cache(&[server.addr()]).await).await;
    case(cached).await;
}
