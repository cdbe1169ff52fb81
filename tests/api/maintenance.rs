//! `storage.maintenance`: upload purging (stale sessions and their data removed on a
//! schedule; `dryrun` only reports them) and read-only mode (every write refused with
//! `405 UNSUPPORTED`, reads answered as usual).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::support::*;

const REPO: &str = "maint/repo";

/// Polls the upload's status until it answers `want` (or `deadline` passes); returns
/// the last status seen.
async fn upload_status_until(
    reg: &TestRegistry,
    location: &str,
    want: u16,
    deadline: Duration,
) -> u16 {
    let start = Instant::now();
    loop {
        let status = reg.get(location).await.status;
        if status == want || start.elapsed() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `wharf_uploads_purged_total` until it is at least `want` (or `deadline`
/// passes); returns the last value read.
async fn purged_until(reg: &TestRegistry, want: u64, deadline: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let metrics = reg.get("/metrics").await.text();
        let purged: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("wharf_uploads_purged_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("wharf_uploads_purged_total in /metrics");
        if purged >= want || start.elapsed() > deadline {
            return purged;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stale_upload_sessions_are_purged_and_fresh_ones_kept() {
    let reg = TestRegistry::start_with(Options {
        maintenance: Some(json!({ "uploadpurging": { "age": "2s", "interval": "500ms" } })),
        ..Options::default()
    })
    .await;
    let stale = reg.start_upload(REPO).await;
    let r = reg
        .send(
            reg.req(Method::PATCH, &stale)
                .header("Content-Type", "application/octet-stream")
                .body(vec![7u8; 4096]),
        )
        .await;
    r.expect_status(202);
    let stale = r.must_header("Location").to_string();

    // Gone once it has been idle for 2 s and a sweep has run.
    assert_eq!(
        upload_status_until(&reg, &stale, 404, Duration::from_secs(30)).await,
        404,
        "the idle upload session was not purged"
    );
    reg.get(&stale)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    // The sweep counts what it purged once its purge has returned, a moment after the
    // session's row went: wait for that count rather than race it.
    let purged = purged_until(&reg, 1, Duration::from_secs(30)).await;
    assert!(purged >= 1, "wharf_uploads_purged_total is {purged}");

    // A session opened now is younger than the age: the next sweeps leave it.
    let fresh = reg.start_upload(REPO).await;
    reg.get(&fresh).await.expect_status(204);
}

/// `dryrun: true` and `enabled: false` both leave a stale session alone.
#[tokio::test]
async fn dry_run_and_disabled_purging_purge_nothing() {
    for purging in [
        json!({ "age": "1s", "interval": "300ms", "dryrun": true }),
        json!({ "enabled": false, "age": "1s", "interval": "300ms" }),
    ] {
        let reg = TestRegistry::start_with(Options {
            maintenance: Some(json!({ "uploadpurging": purging.clone() })),
            ..Options::default()
        })
        .await;
        let location = reg.start_upload(REPO).await;
        // Several sweeps would run after the session has become stale.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = reg.get(&location).await;
        assert_eq!(r.status, 204, "{purging}: the stale session was purged");
    }
}

#[tokio::test]
async fn read_only_refuses_every_write_with_405_and_still_reads() {
    let reg = TestRegistry::start_with(Options {
        maintenance: Some(json!({ "readonly": { "enabled": true } })),
        ..Options::default()
    })
    .await;
    let blob = sha256(b"a blob");
    let upload = format!("/v2/{REPO}/blobs/uploads/3fa85f64-5717-4562-b3fc-2c963f66afa6");
    let manifest = image_manifest(b"{}", &[b"a layer"], None);
    let writes = [
        reg.req(Method::POST, &format!("/v2/{REPO}/blobs/uploads/")),
        reg.req(
            Method::POST,
            &format!("/v2/{REPO}/blobs/uploads/?digest={blob}"),
        )
        .body(b"a blob".to_vec()),
        reg.req(
            Method::POST,
            &format!("/v2/{REPO}/blobs/uploads/?mount={blob}&from=other/repo"),
        ),
        reg.req(Method::PATCH, &upload).body(b"x".to_vec()),
        reg.req(Method::PUT, &format!("{upload}?digest={blob}")),
        reg.req(Method::DELETE, &upload),
        reg.req(Method::PUT, &format!("/v2/{REPO}/manifests/latest"))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.clone()),
        reg.req(Method::DELETE, &format!("/v2/{REPO}/manifests/latest")),
        reg.req(Method::DELETE, &format!("/v2/{REPO}/blobs/{blob}")),
    ];
    for rb in writes {
        reg.send(rb).await.expect_error(405, "UNSUPPORTED");
    }
    // Reads are answered as usual, and nothing was written.
    reg.get("/v2/").await.expect_status(200);
    reg.get(&format!("/v2/{REPO}/manifests/latest"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get(&format!("/v2/{REPO}/blobs/{blob}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    let r = reg.get("/v2/_catalog").await;
    r.expect_status(200);
    assert_eq!(r.json()["repositories"], json!([]));
}
