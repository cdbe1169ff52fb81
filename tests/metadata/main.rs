//! The metadata store suite: one set of async test functions, each taking an
//! `Arc<dyn MetadataStore>`, run once against a fresh SQLite file and once against a
//! fresh PostgreSQL database (the `sqlite::` and `postgres::` tests).
//!
//! PostgreSQL comes from `WHARF_TEST_POSTGRES_URL`, a server URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres` (`scripts/test` starts a throwaway
//! server and sets it); each test creates its own database `wharf_test_<random>` and
//! drops it afterwards. Without it the `postgres::` tests fail, saying how to provide
//! it; `-E 'not test(/^postgres::/)'` leaves them out (nextest reports them skipped).
//!
//! The `sqlite_redis_cached::` tests run the same suite through the Redis metadata cache
//! (a `redis-server` of their own; they fail without the program, and
//! `-E 'not test(/redis/)'` leaves out every test that needs it), and `cache` tests what
//! the cache itself promises.
//!
//! `cases` is the contract one call at a time; `races` is what must hold when
//! instances race on the same rows.

// A test crate: a panic is a failed test, so unwrapping is how it fails.
#![allow(clippy::unwrap_used)]

mod cache;
mod cases;
mod event_claims;
mod event_handoff;
mod event_horizon;
mod event_streams;
mod events;
mod import;
#[path = "../common/postgres_url.rs"]
mod postgres_url;
mod quotas;
mod races;
#[path = "../common/redis_server.rs"]
mod redis_server;
mod signatures;
mod support;

/// Declares every suite function as a test per engine.
macro_rules! suite {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::support::run_sqlite(crate::$module::$case).await;
                }
            )*
        }

        /// SQLite behind the Redis cache: the contract holds through the decorator.
        mod sqlite_redis_cached {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::cache::with_redis(
                        concat!("sqlite_redis_cached::", stringify!($case)),
                        crate::$module::$case,
                    )
                    .await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::support::run_postgres(
                        concat!("postgres::", stringify!($case)),
                        crate::$module::$case,
                    )
                    .await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn quota_slices_reclaimed() {
                crate::support::run_postgres_url(
                    "postgres::quota_slices_reclaimed",
                    crate::quotas::quota_slices_reclaimed,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn quota_link_charged() {
                crate::support::run_postgres_url(
                    "postgres::quota_link_charged",
                    crate::quotas::quota_link_charged,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn open_writers_hold_later_events() {
                crate::support::run_postgres_url(
                    "postgres::open_writers_hold_later_events",
                    crate::event_horizon::open_writers_hold_later_events,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn horizon_moves_past_what_is_final() {
                crate::support::run_postgres_url(
                    "postgres::horizon_moves_past_what_is_final",
                    crate::event_horizon::horizon_moves_past_what_is_final,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn many_instances() {
                crate::support::run_postgres_url("postgres::many_instances", crate::many_instances)
                    .await;
            }
        }
    };
}

suite!(
    cases::ping,
    cases::upload_lifecycle,
    cases::upload_ids_from_clients,
    cases::stale_uploads,
    cases::commit_blob_new_and_existing,
    cases::link_and_unlink,
    cases::put_manifest_missing_child,
    cases::manifests_and_tags,
    cases::list_tags_order_and_pages,
    cases::list_repositories_order_and_pages,
    cases::referrers,
    signatures::signatures_follow_their_manifest,
    signatures::parents_of_a_manifest,
    races::race_commit_same_digest,
    races::race_tag_push,
    races::race_same_manifest_many_tags,
    races::race_advance_upload,
    races::race_delete_upload,
    races::race_put_against_unlink,
    races::race_put_against_delete_manifest,
    races::race_index_against_child_delete,
    events::events_only_with_their_change,
    events::tag_pushes_open_and_extend_a_stream,
    events::cursors_leases_and_failures,
    events::dead_letters_and_replay,
    events::new_endpoints_start_now_and_pruning,
    events::racing_consumer_misses_nothing,
    events::events_after_each_reads_every_cursor,
    event_claims::completions_ride_the_next_claim,
    event_streams::pruning_races_writers_loses_nothing,
    import::import_checkpoints,
    quotas::quota_shared_layers_charged_once,
    quotas::quota_reservations,
    quotas::quota_charged_commits,
    quotas::quota_limits_seeded_and_set,
    quotas::quota_race_counters,
    quotas::quota_slices_refuse_exactly_at_the_quota,
);

/// PostgreSQL only (SQLite is one process): several instances opened at once on one
/// new database — their migrations race — then racing each other through separate
/// pools, as instances behind a load balancer do.
async fn many_instances(url: String) {
    use wharf::metadata::PutManifestOutcome;

    let opened =
        futures_util::future::join_all((0..4).map(|_| wharf::metadata::open(&url, 4))).await;
    let stores: Vec<support::Store> = opened
        .into_iter()
        .map(|s| s.expect("every instance opens (migrations under the advisory lock)"))
        .collect();

    let content = "layer pushed through every instance";
    let r = support::repo("many/instances");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let (r, b) = (r.clone(), support::blob(content, &format!("k/{i}")));
            tokio::spawn(async move { store.blobs.commit_blob(&r, &b, None, &[]).await })
        })
        .collect();
    let commits: Vec<_> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(|t| t.expect("task").expect("commit_blob"))
        .collect();
    assert_eq!(commits.iter().filter(|c| c.stored_new).count(), 1);

    let layer = support::blob(content, "unused");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let r = r.clone();
            let m = support::manifest(&format!("m{i}"), &[&layer], Some("latest"));
            tokio::spawn(async move { store.manifests.put_manifest(&r, &m, &[]).await })
        })
        .collect();
    for t in futures_util::future::join_all(tasks).await {
        assert_eq!(
            t.expect("task").expect("put_manifest"),
            PutManifestOutcome::Stored
        );
    }
    // Every instance sees the same state.
    let latest = support::tag("latest");
    let seen: Vec<_> = futures_util::future::join_all(
        stores
            .iter()
            .map(|s| s.manifests.manifest_by_tag(&r, &latest)),
    )
    .await;
    let first = seen[0].as_ref().unwrap().as_ref().unwrap().digest.clone();
    for s in &seen {
        assert_eq!(s.as_ref().unwrap().as_ref().unwrap().digest, first);
    }
}

/// SQLite only: the in-memory hand-off of committed events (one process, one writer),
/// against a restart, an overflow, replays and prunes between batches.
mod sqlite_handoff {
    async fn run<F, Fut>(case: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let dir = tempfile::tempdir().expect("temporary directory");
        case(format!("sqlite://{}/wharf.db", dir.path().display())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn handoff_then_restart_redelivers() {
        run(crate::event_handoff::handoff_then_restart_redelivers).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn handoff_overflow_reads_the_table() {
        run(crate::event_handoff::handoff_overflow_reads_the_table).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn handoff_with_replays_between() {
        run(crate::event_handoff::handoff_with_replays_between).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn handoff_with_prunes_between() {
        run(crate::event_handoff::handoff_with_prunes_between).await;
    }
}
