//! Three instances sharing PostgreSQL, the blob store and one Redis metadata cache:
//! a tag moved through one is seen at once through the others, a blob deleted through
//! one is 404 through the others, Redis killed in the middle of a run fails no request,
//! and once it is back the instances' hit counters grow again.

use std::time::Duration;

use crate::redis_server::RedisServer;
use crate::{data, digest, Cluster};

const REPO: &str = "multi/cached";

fn manifest(config: &[u8], layer: &[u8], n: u32) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}],"annotations":{{"n":"{n}"}}}}"#,
        digest(config),
        config.len(),
        digest(layer),
        layer.len()
    )
}

impl Cluster {
    async fn push_blob(&self, i: usize, blob: &[u8]) {
        let r = self
            .client
            .post(format!(
                "{}/v2/{REPO}/blobs/uploads/?digest={}",
                self.url(i),
                digest(blob)
            ))
            .body(blob.to_vec())
            .send()
            .await
            .expect("push blob");
        assert_eq!(r.status(), 201, "blob push through instance {i}");
    }

    /// Tags `body` as `tag` through instance `i`; returns its digest.
    async fn put_tag(&self, i: usize, tag: &str, body: &str) -> String {
        let r = self
            .client
            .put(format!("{}/v2/{REPO}/manifests/{tag}", self.url(i)))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(body.to_string())
            .send()
            .await
            .expect("put manifest");
        assert_eq!(r.status(), 201, "manifest push through instance {i}");
        digest(body.as_bytes())
    }

    /// The digest `tag` resolves to through instance `i`, with the payload checked.
    async fn tag_digest(&self, i: usize, tag: &str) -> String {
        let r = self
            .client
            .get(format!("{}/v2/{REPO}/manifests/{tag}", self.url(i)))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .expect("get manifest");
        assert_eq!(r.status(), 200, "GET {tag} through instance {i}");
        let header = r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string();
        let body = r.bytes().await.unwrap();
        assert_eq!(
            digest(&body),
            header,
            "payload and digest through instance {i}"
        );
        header
    }

    async fn blob_status(&self, i: usize, blob: &[u8]) -> u16 {
        self.client
            .head(format!("{}/v2/{REPO}/blobs/{}", self.url(i), digest(blob)))
            .send()
            .await
            .expect("head blob")
            .status()
            .as_u16()
    }

    /// `wharf_cache_lookups_total{entry, result}` of instance `i`.
    async fn lookups(&self, i: usize, entry: &str, result: &str) -> u64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.url(i)))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap();
        let series = format!("wharf_cache_lookups_total{{entry=\"{entry}\",result=\"{result}\"}}");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse().expect("counter value"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cache_shared_by_three_instances() {
    let mut redis = RedisServer::start("redis_cache_shared_by_three_instances");
    let top = format!(
        "redis:\n  addr: {}\n  readtimeout: 100ms\n  writetimeout: 100ms\n  dialtimeout: 200ms\n",
        redis.addr()
    );
    let c = Cluster::start_with(3, "  cache:\n    blobdescriptor: redis\n", &top).await;
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = data(50_000, 9);
    c.push_blob(0, &config).await;
    c.push_blob(1, &layer).await;

    // Warm every instance's view, then move the tag through each in turn: the others
    // see the new target at once.
    let mut latest = c.put_tag(0, "latest", &manifest(&config, &layer, 0)).await;
    for i in 0..3 {
        assert_eq!(c.tag_digest(i, "latest").await, latest);
        assert_eq!(c.tag_digest(i, "latest").await, latest);
    }
    assert!(
        c.lookups(1, "tag", "hit").await >= 1,
        "instance 1 hit the cache"
    );
    for n in 1..4u32 {
        latest = c
            .put_tag(n as usize, "latest", &manifest(&config, &layer, n))
            .await;
        for i in 0..3 {
            assert_eq!(c.tag_digest(i, "latest").await, latest, "after move {n}");
        }
    }

    // A blob deleted through one instance is 404 through the others, cached or not.
    let doomed = data(3_000, 77);
    c.push_blob(2, &doomed).await;
    for i in 0..3 {
        assert_eq!(c.blob_status(i, &doomed).await, 200);
        assert_eq!(c.blob_status(i, &doomed).await, 200);
    }
    let r = c
        .client
        .delete(format!("{}/v2/{REPO}/blobs/{}", c.url(2), digest(&doomed)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for i in 0..3 {
        assert_eq!(
            c.blob_status(i, &doomed).await,
            404,
            "instance {i} after delete"
        );
    }

    // Redis killed in the middle: every request still succeeds, moves still seen.
    redis.kill();
    for n in 10..16u32 {
        latest = c
            .put_tag(n as usize, "latest", &manifest(&config, &layer, n))
            .await;
        for i in 0..3 {
            assert_eq!(
                c.tag_digest(i, "latest").await,
                latest,
                "Redis down, move {n}"
            );
            assert_eq!(c.blob_status(i, &layer).await, 200);
        }
    }

    // Back (empty): hits resume on every instance, and moves are still seen.
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before: Vec<u64> =
        futures_util::future::join_all((0..3).map(|i| c.lookups(i, "tag", "hit"))).await;
    for _ in 0..3 {
        for i in 0..3 {
            assert_eq!(c.tag_digest(i, "latest").await, latest);
        }
    }
    for (i, hits_before) in before.iter().enumerate() {
        let hits_after = c.lookups(i, "tag", "hit").await;
        assert!(
            hits_after >= hits_before + 2,
            "instance {i}: tag hits {hits_before} -> {hits_after} after Redis came back"
        );
    }
    latest = c.put_tag(1, "latest", &manifest(&config, &layer, 99)).await;
    for i in 0..3 {
        assert_eq!(
            c.tag_digest(i, "latest").await,
            latest,
            "after Redis came back"
        );
    }
}
