//! PostgreSQL only: the outbox's horizon. Writers append events without locking their
//! repository's stream, so ids can commit out of order; claims and reads must stop
//! below the id of any transaction still in flight, and deliver what it wrote once it
//! commits, in id order — or nothing of it, once it rolls back.

use wharf::types::EventAction;

use crate::events::{drain, event};

/// Inserts `e` as the store's append does, inside the caller's open transaction.
async fn insert_in(tx: &mut sqlx::PgConnection, e: &wharf::types::EventRecord) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (uuid, repository, action, created_at, record)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&e.id)
    .bind(&e.repository)
    .bind(e.action.as_str())
    .bind(e.timestamp_ms)
    .bind(serde_json::to_string(e).expect("event encodes"))
    .fetch_one(tx)
    .await
    .expect("insert an event")
}

pub async fn open_writers_hold_later_events(url: String) {
    let store = wharf::metadata::open(&url, 4)
        .await
        .expect("open the store");
    let raw = sqlx::PgPool::connect(&url).await.expect("connect");
    let now = wharf::clock::now_ms();
    store.events.register_endpoint("e", now).await.unwrap();

    // A writer draws the lower id and stays open; two later ones commit, one in its
    // repository and one in another.
    let first = event("held/one", EventAction::Push, "a");
    let mut open = raw.begin().await.unwrap();
    let first_id = insert_in(&mut open, &first).await;
    let second = event("held/one", EventAction::Push, "b");
    let elsewhere = event("held/two", EventAction::Push, "c");
    store
        .events
        .append_events(std::slice::from_ref(&second))
        .await
        .unwrap();
    store
        .events
        .append_events(std::slice::from_ref(&elsewhere))
        .await
        .unwrap();
    assert!(
        drain(&store, "e").await.is_empty(),
        "nothing above the id of a transaction still open (id {first_id}) is delivered"
    );

    // Once it commits, all three arrive, each repository's in id order.
    open.commit().await.unwrap();
    let delivered = drain(&store, "e").await;
    let mut one: Vec<_> = delivered
        .iter()
        .filter(|id| **id != elsewhere.id)
        .cloned()
        .collect();
    assert_eq!(one, vec![first.id.clone(), second.id.clone()]);
    assert!(delivered.contains(&elsewhere.id), "{delivered:?}");
    assert_eq!(delivered.len(), 3);

    // A writer that rolls back holds deliveries only while it is open, and what it
    // wrote never appears.
    let lost = event("held/one", EventAction::Delete, "a");
    let mut open = raw.begin().await.unwrap();
    insert_in(&mut open, &lost).await;
    let after = event("held/one", EventAction::Push, "d");
    store
        .events
        .append_events(std::slice::from_ref(&after))
        .await
        .unwrap();
    assert!(drain(&store, "e").await.is_empty());
    open.rollback().await.unwrap();
    one = drain(&store, "e").await;
    assert_eq!(one, vec![after.id.clone()]);

    // A transaction that wrote no event holds nothing back.
    let mut reader = raw.begin().await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *reader)
        .await
        .unwrap();
    let last = event("held/two", EventAction::Push, "e");
    store
        .events
        .append_events(std::slice::from_ref(&last))
        .await
        .unwrap();
    assert_eq!(drain(&store, "e").await, vec![last.id.clone()]);
    reader.rollback().await.unwrap();
    raw.close().await;
}

/// The horizon moves without waiting: up to just below the first id still in flight,
/// and past a rolled-back id once the transactions seen holding ids at an earlier
/// claim have all ended, even while others still write.
pub async fn horizon_moves_past_what_is_final(url: String) {
    let store = wharf::metadata::open(&url, 4)
        .await
        .expect("open the store");
    let raw = sqlx::PgPool::connect(&url).await.expect("connect");
    store
        .events
        .register_endpoint("e", wharf::clock::now_ms())
        .await
        .unwrap();
    let append = |e: wharf::types::EventRecord| {
        let store = store.clone();
        async move {
            store
                .events
                .append_events(std::slice::from_ref(&e))
                .await
                .unwrap();
            e.id
        }
    };

    // Committed below an open writer's id: delivered while it stays open.
    let below = append(event("part/one", EventAction::Push, "a")).await;
    let mut open = raw.begin().await.unwrap();
    insert_in(&mut open, &event("part/one", EventAction::Push, "b")).await;
    let above = append(event("part/two", EventAction::Push, "c")).await;
    assert_eq!(drain(&store, "e").await, vec![below]);
    // Rolled back, it leaves a gap the next claims pass over once the transactions
    // the first claim saw holding ids have ended — while another one writes.
    open.rollback().await.unwrap();
    let mut other = raw.begin().await.unwrap();
    let pending = event("part/two", EventAction::Push, "d");
    insert_in(&mut other, &pending).await;
    let after = append(event("part/one", EventAction::Push, "e")).await;
    assert_eq!(drain(&store, "e").await, vec![above.clone()]);
    other.commit().await.unwrap();
    let rest = drain(&store, "e").await;
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(
        rest.contains(&pending.id) && rest.contains(&after),
        "{rest:?}"
    );
    raw.close().await;
}
