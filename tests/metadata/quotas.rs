//! Storage quotas' counters, quotas and reservations (`QuotaStore`), on every engine:
//! shared layers charged once per scope, a repository's deletion leaving the shared
//! charge until the last reference goes, garbage collection lowering usage, and
//! `recompute` finding the counters right after each step and after racing writers; a
//! commit charged to its quotas in its own transaction, and the room check that reads.

use wharf::metadata::quota::{
    ChargedCommit, QuotaCharge, QuotaLimit, QuotaOutcome, Reservation, RoomCheck, ScopeUsage,
};

use crate::support::{blob, collect, commit, delete, manifest, put, repo, upload, Store};

async fn usage(store: &Store, scope: &str) -> ScopeUsage {
    store.quotas.scope_usage(scope).await.unwrap()
}

/// (logical, stored, blobs, manifests)
async fn figures(store: &Store, scope: &str) -> (u64, u64, u64, u64) {
    let u = usage(store, scope).await;
    (u.logical_bytes, u.stored_bytes, u.blobs, u.manifests)
}

async fn reserve(store: &Store, r: &Reservation, limits: &[(String, u64)]) -> QuotaOutcome {
    store.quotas.reserve(r, limits).await.unwrap()
}

async fn assert_exact(store: &Store) {
    let drift = store.quotas.recompute(false).await.unwrap();
    assert!(drift.is_empty(), "counters drifted: {drift:?}");
}

pub async fn quota_shared_layers_charged_once(store: Store) {
    let (a, b, other) = (repo("team/a"), repo("team/b"), repo("elsewhere/c"));
    let shared = blob("a shared base layer, 32 bytes..", "k/shared");
    let only_a = blob("layer of a", "k/a");
    let s = shared.size;
    let oa = only_a.size;
    for (r, bl) in [
        (&a, &shared),
        (&a, &only_a),
        (&b, &shared),
        (&other, &shared),
    ] {
        commit(&store, r, bl).await;
    }
    assert_exact(&store).await;
    // Before any manifest: stored counts, logical does not.
    assert_eq!(figures(&store, "team/").await, (0, s + oa, 2, 0));
    let ma = manifest("a", &[&shared, &only_a], Some("v1"));
    let ma2 = manifest("a2", &[&shared], Some("v2"));
    let mb = manifest("b", &[&shared], Some("v1"));
    put(&store, &a, &ma).await;
    put(&store, &a, &ma2).await;
    put(&store, &b, &mb).await;
    assert_exact(&store).await;
    // The namespace holds each blob once; its manifests reference the base three times.
    assert_eq!(figures(&store, "team/").await, (3 * s + oa, s + oa, 2, 3));
    assert_eq!(figures(&store, "team/a").await, (2 * s + oa, s + oa, 2, 2));
    assert_eq!(figures(&store, "team/b").await, (s, s, 1, 1));
    assert_eq!(figures(&store, "elsewhere/").await, (0, s, 1, 0));
    assert_eq!(usage(&store, "team/").await.repositories, 2);
    assert_eq!(
        usage(&store, "nothing/").await,
        ScopeUsage {
            scope: "nothing/".into(),
            ..ScopeUsage::default()
        }
    );

    // Folding the counters' deltas (PostgreSQL) changes no figure.
    store.quotas.compact().await.unwrap();
    assert_eq!(figures(&store, "team/").await, (3 * s + oa, s + oa, 2, 3));

    // team/a goes: its manifests deleted, then garbage collection takes its links.
    for m in [&ma, &ma2] {
        assert!(delete(&store, &a, &m.record.digest).await);
    }
    assert_exact(&store).await;
    assert_eq!(figures(&store, "team/").await, (s, s + oa, 2, 1));
    collect(&store).await;
    assert_exact(&store).await;
    // The shared layer stays charged (team/b references it); a's own layer is gone.
    assert_eq!(figures(&store, "team/a").await, (0, 0, 0, 0));
    assert_eq!(figures(&store, "team/").await, (s, s, 1, 1));

    // The last reference goes: so does the charge (the blob stays for elsewhere/c).
    assert!(delete(&store, &b, &mb.record.digest).await);
    collect(&store).await;
    assert_exact(&store).await;
    assert_eq!(figures(&store, "team/").await, (0, 0, 0, 0));
    assert_eq!(
        figures(&store, "elsewhere/").await,
        (0, 0, 0, 0),
        "unreferenced: collected"
    );

    // A blob DELETE (unlink) lowers usage at once; a mount (link) charges it.
    let layer = blob("mounted layer", "k/m");
    commit(&store, &b, &layer).await;
    assert!(store.blobs.link_blob(&a, &layer.digest, &[]).await.unwrap());
    assert_eq!(figures(&store, "team/").await, (0, layer.size, 1, 0));
    assert_eq!(figures(&store, "team/a").await, (0, layer.size, 1, 0));
    assert!(store
        .blobs
        .unlink_blob(&b, &layer.digest, &[])
        .await
        .unwrap());
    assert_eq!(figures(&store, "team/").await, (0, layer.size, 1, 0));
    assert!(store
        .blobs
        .unlink_blob(&a, &layer.digest, &[])
        .await
        .unwrap());
    assert_eq!(figures(&store, "team/").await, (0, 0, 0, 0));
    assert_exact(&store).await;
}

pub async fn quota_reservations(store: Store) {
    let r = repo("team/app");
    let limits = vec![
        ("team/".to_string(), 1000u64),
        ("team/app".to_string(), 5000),
    ];
    let far = wharf::clock::now_ms() + 600_000;
    let res = |id: &str, bytes: u64, expires_at: i64| Reservation {
        id: id.into(),
        repository: r.clone(),
        bytes,
        expires_at,
        digest: None,
    };
    assert_eq!(
        reserve(&store, &res("u1", 600, far), &limits).await,
        QuotaOutcome::Allowed
    );
    assert_eq!(
        reserve(&store, &res("u2", 500, far), &limits).await,
        QuotaOutcome::Exceeded {
            scope: "team/".into(),
            quota: 1000,
            usage: 600,
            requested: 500
        }
    );
    assert_eq!(usage(&store, "team/").await.reserved_bytes, 600);
    // A reservation only grows.
    reserve(&store, &res("u1", 100, far), &limits).await;
    assert_eq!(usage(&store, "team/").await.reserved_bytes, 600);
    // Stored bytes count: a 300-byte blob leaves room for 100 more.
    let stored = blob(&"x".repeat(300), "k/x");
    commit(&store, &r, &stored).await;
    assert_eq!(
        reserve(&store, &res("u2", 101, far), &limits).await,
        QuotaOutcome::Exceeded {
            scope: "team/".into(),
            quota: 1000,
            usage: 900,
            requested: 101
        }
    );
    assert_eq!(
        reserve(&store, &res("u2", 100, far), &limits).await,
        QuotaOutcome::Allowed
    );
    // Releasing, expiring, or ending the session frees the room.
    store.quotas.release("u1").await.unwrap();
    assert_eq!(usage(&store, "team/").await.reserved_bytes, 100);
    store
        .quotas
        .reserve(&res("old", 500, wharf::clock::now_ms() - 1), &limits)
        .await
        .unwrap();
    assert_eq!(usage(&store, "team/").await.reserved_bytes, 100, "expired");
    store
        .uploads
        .create_upload(&upload("u3", "team/app", 1))
        .await
        .unwrap();
    assert_eq!(
        reserve(&store, &res("u3", 600, far), &limits).await,
        QuotaOutcome::Allowed
    );
    assert_eq!(usage(&store, "team/").await.reserved_bytes, 700);
    store.uploads.delete_upload("u3").await.unwrap();
    assert_eq!(usage(&store, "team/").await.reserved_bytes, 100);
    // Another repository's reservation counts in the namespace, not in the repository.
    let other = Reservation {
        repository: repo("team/other"),
        ..res("u4", 50, far)
    };
    store.quotas.reserve(&other, &limits).await.unwrap();
    assert_eq!(usage(&store, "team/").await.reserved_bytes, 150);
    assert_eq!(usage(&store, "team/app").await.reserved_bytes, 100);

    // A manifest's check: only blobs new to the scope count.
    let fresh = blob(&"y".repeat(800), "k/y");
    store
        .blobs
        .commit_blob(&repo("outside"), &fresh, None, &[])
        .await
        .unwrap();
    assert_eq!(
        store
            .quotas
            .check_blobs(&r, std::slice::from_ref(&stored.digest), &limits)
            .await
            .unwrap(),
        QuotaOutcome::Allowed
    );
    assert_eq!(
        store
            .quotas
            .check_blobs(&r, &[stored.digest.clone(), fresh.digest.clone()], &limits)
            .await
            .unwrap(),
        QuotaOutcome::Exceeded {
            scope: "team/".into(),
            quota: 1000,
            usage: 300,
            requested: 800
        }
    );
}

/// A commit charged in its transaction: refused (writing nothing, the session kept)
/// when the blob does not fit besides the stored bytes and the other live
/// reservations; committed, ending the push's own reservation, when it does; a blob the
/// scope holds needs no room. `check_room` reads the same figures and records nothing.
pub async fn quota_charged_commits(store: Store) {
    let r = repo("team/app");
    let limits = vec![("team/".to_string(), 1000u64)];
    let far = wharf::clock::now_ms() + 600_000;
    let res = |id: &str, bytes: u64| Reservation {
        id: id.into(),
        repository: r.clone(),
        bytes,
        expires_at: far,
        digest: None,
    };
    let charge = |reservation: Option<&str>| QuotaCharge {
        limits: limits.clone(),
        reservation: reservation.map(str::to_string),
    };
    // Another push holds 600 of the 1000.
    store
        .quotas
        .reserve(&res("other", 600), &limits)
        .await
        .unwrap();
    assert_eq!(
        store
            .quotas
            .check_room(&res("me", 400), &limits)
            .await
            .unwrap(),
        RoomCheck {
            outcome: QuotaOutcome::Allowed,
            used: vec![("team/".into(), 600)]
        }
    );
    assert_eq!(
        store
            .quotas
            .check_room(&res("me", 401), &limits)
            .await
            .unwrap()
            .outcome,
        QuotaOutcome::Exceeded {
            scope: "team/".into(),
            quota: 1000,
            usage: 600,
            requested: 401
        }
    );
    assert_eq!(
        usage(&store, "team/").await.reserved_bytes,
        600,
        "a check records nothing"
    );

    // 401 bytes through a session: refused at commit, nothing written, the session kept.
    let big = blob(&"b".repeat(401), "k/big");
    store
        .uploads
        .create_upload(&upload("s1", "team/app", 1))
        .await
        .unwrap();
    let refused = store
        .quotas
        .commit_blob_charged(&r, &big, Some("s1"), &[], &charge(None))
        .await
        .unwrap();
    let ChargedCommit::Refused(outcome) = refused else {
        panic!("committed over the quota: {refused:?}")
    };
    assert_eq!(
        outcome,
        QuotaOutcome::Exceeded {
            scope: "team/".into(),
            quota: 1000,
            usage: 600,
            requested: 401
        }
    );
    assert!(store.blobs.any_blob(&big.digest).await.unwrap().is_none());
    assert!(store.uploads.get_upload("s1").await.unwrap().is_some());
    assert_eq!(figures(&store, "team/").await, (0, 0, 0, 0));
    // The session's own reservation does not count against it: 500 reserved by
    // another push and 500 by s1, whose 500-byte blob then commits (500 + 500 = 1000);
    // the session's end ends its reservation.
    store.quotas.release("other").await.unwrap();
    store
        .quotas
        .reserve(&res("other", 500), &limits)
        .await
        .unwrap();
    store
        .quotas
        .reserve(&res("s1", 500), &limits)
        .await
        .unwrap();
    let fits = blob(&"f".repeat(500), "k/fits");
    let done = store
        .quotas
        .commit_blob_charged(&r, &fits, Some("s1"), &[], &charge(None))
        .await
        .unwrap();
    assert!(
        matches!(&done, ChargedCommit::Committed(c) if c.stored_new && c.blob.digest == fits.digest),
        "{done:?}"
    );
    assert!(store.uploads.get_upload("s1").await.unwrap().is_none());
    assert_eq!(usage(&store, "team/").await.stored_bytes, 500);
    assert_eq!(usage(&store, "team/").await.reserved_bytes, 500);
    // A push's own reservation (no session): not counted, and ended by the commit.
    store.quotas.release("other").await.unwrap();
    store
        .quotas
        .reserve(&res("mono", 500), &limits)
        .await
        .unwrap();
    let last = blob(&"l".repeat(500), "k/last");
    let done = store
        .quotas
        .commit_blob_charged(&r, &last, None, &[], &charge(Some("mono")))
        .await
        .unwrap();
    assert!(matches!(done, ChargedCommit::Committed(_)), "{done:?}");
    assert_eq!(usage(&store, "team/").await.reserved_bytes, 0);
    assert_eq!(usage(&store, "team/").await.stored_bytes, 1000);
    // Full: a new blob is refused, one the scope holds needs no room (another
    // repository of the namespace links it).
    let one = blob("1", "k/one");
    let refused = store
        .quotas
        .commit_blob_charged(&r, &one, None, &[], &charge(None))
        .await
        .unwrap();
    assert!(matches!(refused, ChargedCommit::Refused(_)), "{refused:?}");
    let shared = store
        .quotas
        .commit_blob_charged(&repo("team/b"), &fits, None, &[], &charge(None))
        .await
        .unwrap();
    assert!(
        matches!(&shared, ChargedCommit::Committed(c) if !c.stored_new),
        "{shared:?}"
    );
    assert_eq!(
        store
            .quotas
            .check_room(
                &Reservation {
                    digest: Some(last.digest.clone()),
                    ..res("again", last.size)
                },
                &limits
            )
            .await
            .unwrap()
            .outcome,
        QuotaOutcome::Allowed,
        "a blob the scope holds fits"
    );
    assert_eq!(usage(&store, "team/").await.stored_bytes, 1000);
    assert_exact(&store).await;
}

pub async fn quota_limits_seeded_and_set(store: Store) {
    let l = |scope: &str, bytes: u64, source: &str| QuotaLimit {
        scope: scope.into(),
        bytes,
        source: source.into(),
    };
    store
        .quotas
        .seed_quota_limits(&[l("a/", 10, "config"), l("b/", 20, "config")])
        .await
        .unwrap();
    store
        .quotas
        .set_quota_limit(&l("b/", 25, "api"))
        .await
        .unwrap();
    store
        .quotas
        .set_quota_limit(&l("c/x", 5, "api"))
        .await
        .unwrap();
    // The configuration changes: b/ keeps its run-time value, a/ is gone, * is new.
    store
        .quotas
        .seed_quota_limits(&[l("b/", 30, "config"), l("*", 7, "config")])
        .await
        .unwrap();
    assert_eq!(
        store.quotas.quota_limits().await.unwrap(),
        vec![l("*", 7, "config"), l("b/", 25, "api"), l("c/x", 5, "api")]
    );
    assert!(store.quotas.delete_quota_limit("c/x").await.unwrap());
    assert!(!store.quotas.delete_quota_limit("c/x").await.unwrap());
}

/// Writers racing on one namespace's shared blobs (16 tasks, links and unlinks into
/// eight repositories): the counters equal the recomputation afterwards.
pub async fn quota_race_counters(store: Store) {
    let shared: Vec<_> = (0..4)
        .map(|i| blob(&format!("shared layer {i}"), &format!("k/{i}")))
        .collect();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let r = repo(&format!("race/r{}", i % 8));
                for round in 0..6 {
                    let b = &shared[(i + round) % shared.len()];
                    commit(&store, &r, b).await;
                    let m = manifest(&format!("{i}-{round}"), &[b], None);
                    put(&store, &r, &m).await;
                    if round % 2 == 1 {
                        delete(&store, &r, &m.record.digest).await;
                        store.blobs.unlink_blob(&r, &b.digest, &[]).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for t in futures_util::future::join_all(tasks).await {
        t.unwrap();
    }
    assert_exact(&store).await;
    let stored = usage(&store, "race/").await.stored_bytes;
    assert!(stored <= shared.iter().map(|b| b.size).sum::<u64>());
}

/// Commits `n` blobs of `size` bytes into `r` at once (each on whichever connection the
/// pool gives it: on PostgreSQL every connection takes a slice of the scope's room),
/// charged to `limits`; every one must commit. Returns their total size.
async fn commit_many(
    store: &Store,
    r: &wharf::types::RepoName,
    tag: &str,
    n: usize,
    size: usize,
    limits: &[(String, u64)],
) -> u64 {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (store, r) = (store.clone(), r.clone());
            let charge = QuotaCharge {
                limits: limits.to_vec(),
                reservation: None,
            };
            let content = format!("{tag}-{i:06}-").repeat(size)[..size].to_string();
            let b = blob(&content, &format!("k/{tag}/{i}"));
            tokio::spawn(async move {
                store
                    .quotas
                    .commit_blob_charged(&r, &b, None, &[], &charge)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in futures_util::future::join_all(tasks).await {
        let done = t.unwrap();
        assert!(matches!(done, ChargedCommit::Committed(_)), "{done:?}");
    }
    (n * size) as u64
}

/// Charged commits through a pool's many connections (PostgreSQL: each takes its own
/// slice of the scope's room, then commits touch only their slice): the room the other
/// connections hold unused never refuses a blob that fits — the top-up takes it back —
/// and the commit that would pass the quota by one byte is refused, naming the exact
/// usage; usage and `recompute` agree throughout.
pub async fn quota_slices_refuse_exactly_at_the_quota(store: Store) {
    let r = repo("sliced/app");
    let quota = 100_000u64;
    let limits = vec![("sliced/".to_string(), quota)];
    let charge = QuotaCharge {
        limits: limits.clone(),
        reservation: None,
    };
    // Many small commits at once: slices on every connection.
    let mut stored = commit_many(&store, &r, "warm", 32, 100, &limits).await;
    assert_eq!(usage(&store, "sliced/").await.stored_bytes, stored);
    assert_exact(&store).await;
    // Another 16 at once, then one that takes the scope to exactly its quota less one
    // byte: it fits only if the unused slices are taken back.
    stored += commit_many(&store, &r, "more", 16, 1000, &limits).await;
    let fill = (quota - stored - 1) as usize;
    let big = blob(&"f".repeat(fill), "k/fill");
    let done = store
        .quotas
        .commit_blob_charged(&r, &big, None, &[], &charge)
        .await
        .unwrap();
    assert!(matches!(done, ChargedCommit::Committed(_)), "{done:?}");
    stored += fill as u64;
    assert_eq!(stored, quota - 1);
    // A reservation sees the same room: one byte, not two.
    let res = |id: &str, bytes: u64| Reservation {
        id: id.into(),
        repository: r.clone(),
        bytes,
        expires_at: wharf::clock::now_ms() + 600_000,
        digest: None,
    };
    assert!(matches!(
        reserve(&store, &res("two", 2), &limits).await,
        QuotaOutcome::Exceeded { usage, .. } if usage == quota - 1
    ));
    // Two bytes do not fit; one does, exactly at the quota; then nothing does.
    let two = blob("22", "k/two");
    let refused = store
        .quotas
        .commit_blob_charged(&r, &two, None, &[], &charge)
        .await
        .unwrap();
    let ChargedCommit::Refused(outcome) = refused else {
        panic!("committed over the quota: {refused:?}")
    };
    assert_eq!(
        outcome,
        QuotaOutcome::Exceeded {
            scope: "sliced/".into(),
            quota,
            usage: quota - 1,
            requested: 2
        }
    );
    let one = blob("1", "k/one");
    let done = store
        .quotas
        .commit_blob_charged(&r, &one, None, &[], &charge)
        .await
        .unwrap();
    assert!(matches!(done, ChargedCommit::Committed(_)), "{done:?}");
    // Full: every connection is refused now, whichever slice it held.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, r, charge) = (store.clone(), r.clone(), charge.clone());
            let b = blob(&format!("late {i}"), &format!("k/late/{i}"));
            tokio::spawn(async move {
                store
                    .quotas
                    .commit_blob_charged(&r, &b, None, &[], &charge)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in futures_util::future::join_all(tasks).await {
        let done = t.unwrap();
        assert!(
            matches!(&done, ChargedCommit::Refused(QuotaOutcome::Exceeded { usage, .. }) if *usage == quota),
            "{done:?}"
        );
    }
    assert_eq!(usage(&store, "sliced/").await.stored_bytes, quota);
    assert_exact(&store).await;
}

/// PostgreSQL's slices themselves (migration `0011_quota_slices`), read and written
/// from outside the store: recompute agrees with the counters while slices are
/// outstanding; a slice whose connection is gone (an instance killed) is reclaimed by
/// the compaction, and until then its room is taken back by the first top-up that
/// needs it; a quota change drops every slice; usage stays exact throughout.
pub async fn quota_slices_reclaimed(url: String) {
    let store = wharf::metadata::open(&url, 8).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let slices = |pool: sqlx::PgPool| async move {
        let rows: Vec<(String, i32, i64)> =
            sqlx::query_as("SELECT scope, holder, room FROM quota_slices ORDER BY holder")
                .fetch_all(&pool)
                .await
                .unwrap();
        rows
    };
    let r = repo("reclaim/app");
    let quota = 1_000_000u64;
    let limits = vec![("reclaim/".to_string(), quota)];
    let stored = commit_many(&store, &r, "a", 24, 500, &limits).await;
    let held = slices(pool.clone()).await;
    assert!(!held.is_empty(), "no slice was granted");
    assert!(held.iter().all(|(s, _, room)| s == "reclaim/" && *room > 0));
    let unused: i64 = held.iter().map(|(_, _, room)| room).sum();
    assert!(
        stored as i64 + unused <= quota as i64,
        "stored {stored} + slices {unused} over the quota {quota}"
    );
    // Recompute with slices outstanding: the counters are right, and usage is the
    // stored bytes alone (a slice is room, not bytes).
    assert_exact(&store).await;
    assert_eq!(usage(&store, "reclaim/").await.stored_bytes, stored);

    // A slice of a connection that is gone, holding what room is left: a commit that
    // fits takes it back rather than being refused.
    let free = quota as i64 - stored as i64 - unused;
    sqlx::query(
        "INSERT INTO quota_slices (scope, holder, room, quota, expires_at)
         VALUES ('reclaim/', 0, $1, $2, gc_now() + 3600000)",
    )
    .bind(free)
    .bind(quota as i64)
    .execute(&pool)
    .await
    .unwrap();
    let stored = stored + commit_many(&store, &r, "b", 4, 2000, &limits).await;
    assert_exact(&store).await;
    assert_eq!(usage(&store, "reclaim/").await.stored_bytes, stored);
    // The compaction deletes it (no backend has pid 0), and leaves the live ones.
    sqlx::query(
        "INSERT INTO quota_slices (scope, holder, room, quota, expires_at)
         VALUES ('reclaim/', 0, 1, $1, gc_now() + 3600000)
         ON CONFLICT (scope, holder) DO UPDATE SET room = 1",
    )
    .bind(quota as i64)
    .execute(&pool)
    .await
    .unwrap();
    store.quotas.compact().await.unwrap();
    let after = slices(pool.clone()).await;
    assert!(after.iter().all(|(_, h, _)| *h != 0), "{after:?}");
    assert!(!after.is_empty(), "live connections' slices were swept");
    assert_exact(&store).await;
    assert_eq!(usage(&store, "reclaim/").await.stored_bytes, stored);
    // A quota change drops every slice.
    store
        .quotas
        .set_quota_limit(&QuotaLimit {
            scope: "reclaim/".into(),
            bytes: quota,
            source: "api".into(),
        })
        .await
        .unwrap();
    assert_eq!(slices(pool.clone()).await, vec![]);
    pool.close().await;
}

/// PostgreSQL's charge in the link's own statement (migration `0013_quota_link_charged`),
/// on one connection so that every commit takes the same slices: a commit that fits
/// its slices is charged there and then, exactly once per scope; one whose second
/// scope's slice is short is charged from the first scope's slice in the statement
/// and topped up in the second at its COMMIT (not charged twice in the first); a
/// commit with events is charged in the link's statement too (its events' inserts wait
/// for nothing, migration 0016), the same bytes; an existing link, and
/// a blob the scope holds already, take nothing; usage is exact throughout.
pub async fn quota_link_charged(url: String) {
    let store = wharf::metadata::open(&url, 1).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let room = |pool: sqlx::PgPool, scope: &'static str| async move {
        let room: i64 = sqlx::query_scalar("SELECT room FROM quota_slices WHERE scope = $1")
            .bind(scope)
            .fetch_one(&pool)
            .await
            .unwrap();
        room
    };
    let r = repo("linked/app");
    let limits = vec![
        ("linked/".to_string(), 1_000_000u64),
        ("linked/app".to_string(), 500_000u64),
    ];
    let charge = QuotaCharge {
        limits: limits.clone(),
        reservation: None,
    };
    let commit_charged = |b: wharf::types::BlobRecord, events: Vec<wharf::types::EventRecord>| {
        let (store, r, charge) = (store.clone(), r.clone(), charge.clone());
        async move {
            let done = store
                .quotas
                .commit_blob_charged(&r, &b, None, &events, &charge)
                .await
                .unwrap();
            assert!(matches!(done, ChargedCommit::Committed(_)), "{done:?}");
        }
    };
    // No slice yet: both scopes topped up at the COMMIT.
    commit_charged(blob(&"a".repeat(1000), "k/a"), vec![]).await;
    let (ns, app) = (
        room(pool.clone(), "linked/").await,
        room(pool.clone(), "linked/app").await,
    );
    assert!(ns > 0 && app > 0, "no slices granted: {ns} {app}");
    // Fits both slices: charged in the link's statement, once each.
    commit_charged(blob(&"b".repeat(300), "k/b"), vec![]).await;
    assert_eq!(room(pool.clone(), "linked/").await, ns - 300);
    assert_eq!(room(pool.clone(), "linked/app").await, app - 300);
    // The repository's slice short: the namespace's charged now, the repository's
    // topped up at the COMMIT — the namespace's slice pays once.
    sqlx::query("UPDATE quota_slices SET room = 10 WHERE scope = 'linked/app'")
        .execute(&pool)
        .await
        .unwrap();
    commit_charged(blob(&"c".repeat(200), "k/c"), vec![]).await;
    assert_eq!(room(pool.clone(), "linked/").await, ns - 500);
    let app = room(pool.clone(), "linked/app").await;
    assert!(app > 10, "not topped up: {app}");
    // With events: charged in the link's statement, the same bytes.
    let events = vec![crate::events::event(
        "linked/app",
        wharf::types::EventAction::Push,
        "t",
    )];
    commit_charged(blob(&"d".repeat(50), "k/d"), events).await;
    assert_eq!(room(pool.clone(), "linked/").await, ns - 550);
    assert_eq!(room(pool.clone(), "linked/app").await, app - 50);
    // Linked again, or held by the scope already: nothing taken.
    commit_charged(blob(&"d".repeat(50), "k/d"), vec![]).await;
    let other = repo("linked/other");
    let done = store
        .quotas
        .commit_blob_charged(
            &other,
            &blob(&"d".repeat(50), "k/d"),
            None,
            &[],
            &QuotaCharge {
                limits: vec![limits[0].clone()],
                reservation: None,
            },
        )
        .await
        .unwrap();
    assert!(matches!(done, ChargedCommit::Committed(_)), "{done:?}");
    assert_eq!(room(pool.clone(), "linked/").await, ns - 550);
    assert_eq!(room(pool.clone(), "linked/app").await, app - 50);
    assert_eq!(usage(&store, "linked/").await.stored_bytes, 1550);
    assert_eq!(usage(&store, "linked/app").await.stored_bytes, 1550);
    assert_exact(&store).await;
    pool.close().await;
}
