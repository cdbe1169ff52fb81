//! Garbage collection below HTTP: the [`GcStore`] contract one call at a time, each
//! interleaving of the safety argument (`registry::gc`) forced at the race points,
//! retention policies on a repository of 100 tags, and the orphan sweep.
//!
//! Every case runs on a fresh SQLite store and on a PostgreSQL database of its own on
//! the server `WHARF_TEST_POSTGRES_URL` names. Without it the `postgres::` tests FAIL
//! (they are never skipped): `scripts/test` starts a throwaway server and sets it.
//! The interleavings need row locks, so they run on PostgreSQL only; on SQLite (one
//! writer) every write is before or after a review, which `cases` covers.
//!
//! [`GcStore`]: wharf::metadata::GcStore
#![allow(clippy::unwrap_used)]

#[path = "../common/postgres_url.rs"]
mod postgres_url;
#[allow(dead_code)]
#[path = "../metadata/support.rs"]
mod support;

mod cases;
mod hooks;
mod races;
mod retention;
mod sweep;

use std::future::Future;

/// Runs `case` on a PostgreSQL database of its own; fails without a server.
pub async fn on_postgres<F, Fut>(test: &str, case: F)
where
    F: FnOnce(support::Store, String) -> Fut,
    Fut: Future<Output = ()>,
{
    assert!(
        std::env::var(support::POSTGRES_ENV).is_ok_and(|v| !v.is_empty()),
        "{test}: {} is not set; the GC suite needs PostgreSQL (scripts/test starts one)",
        support::POSTGRES_ENV
    );
    support::run_postgres_url(test, |url| async move {
        let store = wharf::metadata::open(&url, 8).await.expect("open postgres");
        case(store, url).await;
    })
    .await;
}

/// Runs `case` on a fresh SQLite store.
pub async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(support::Store, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/wharf.db", dir.path().display());
    let store = wharf::metadata::open(&url, 8).await.expect("open sqlite");
    case(store, url).await;
}

/// Every case a test per engine.
macro_rules! both {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::on_sqlite(crate::$module::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::on_postgres(concat!("gc::postgres::", stringify!($case)), crate::$module::$case).await;
                }
            )*
        }
    };
}

/// Cases that need row locks: PostgreSQL only.
macro_rules! postgres_only {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod postgres_races {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::on_postgres(concat!("gc::postgres_races::", stringify!($case)), crate::$module::$case).await;
                }
            )*
        }
    };
}

both!(
    cases::tag_move_collects_old_image,
    cases::delay_is_respected,
    cases::unreferenced_upload_is_collected,
    cases::shared_blob_unlinked_per_repository,
    cases::referrers_go_with_their_subject_unless_tagged,
    cases::index_children_follow_the_index,
    cases::touch_pushes_reviews_back,
    cases::tombstones_and_referenced_keys,
    cases::collected_blob_is_refused_then_stored_anew,
    cases::pulls_snapshot_and_conditional_deletes,
    cases::preview_changes_nothing,
    cases::cache_forgets_what_reviews_delete,
    retention::keep_tags,
    retention::keep_matching,
    retention::untagged_older_than,
    retention::keep_pulled_within,
    retention::dry_run_changes_nothing,
    sweep::orphans_on_the_filesystem,
    sweep::orphans_in_an_object_store,
);

postgres_only!(
    races::put_holding_the_link_makes_the_review_wait,
    races::review_first_refuses_the_put,
    races::commit_waits_for_the_review,
    races::commit_first_makes_the_review_skip,
    races::tag_push_against_manifest_review,
    races::many_reviewers_one_outcome,
);
