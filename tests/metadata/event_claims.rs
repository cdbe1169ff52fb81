//! Completions coalesced with the next claim (`EventStore::complete_and_claim`, what a
//! delivery worker records a tick with) on each engine: their order, their lease, and
//! the redelivery when they are never recorded.

use wharf::types::{EventAction, EventRecord};

use super::events::event;
use crate::support::*;

/// A delivery worker records a tick's completions with its next claim
/// (`complete_and_claim`): the completions go first (a cursor they release and that has
/// more is claimed again at once), only under the lease they were made under, and when
/// they are never recorded (the process died before its next claim) the lease expires
/// and the same events are delivered again, same ids, in order.
pub async fn completions_ride_the_next_claim(store: Store) {
    store.events.register_endpoint("hook", 1).await.unwrap();
    let a: Vec<EventRecord> = (0..3)
        .map(|i| event("ev/coal-a", EventAction::Push, &i.to_string()))
        .collect();
    let b = event("ev/coal-b", EventAction::Push, "b");
    store.events.append_events(&a).await.unwrap();
    store
        .events
        .append_events(std::slice::from_ref(&b))
        .await
        .unwrap();
    let now = wharf::clock::now_ms();
    let lease = now + 60_000;
    // Nothing done yet: the same as a claim.
    let (completed, claimed) = store
        .events
        .complete_and_claim("hook", "none", &[], "t1", now, lease, 10)
        .await
        .unwrap();
    assert_eq!(completed, 0);
    assert_eq!(claimed.len(), 2);
    let positions: Vec<(String, i64)> = claimed
        .iter()
        .map(|c| (c.repository.clone(), c.delivered_id))
        .collect();
    let read = store
        .events
        .events_after_each(&positions, 100)
        .await
        .unwrap();
    let by_repo = |name: &str| {
        let i = claimed.iter().position(|c| c.repository == name).unwrap();
        read[i].clone()
    };
    let read_a = by_repo("ev/coal-a");
    let read_b = by_repo("ev/coal-b");
    assert_eq!(
        read_a.iter().map(|e| &e.record.id).collect::<Vec<_>>(),
        a.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    // The first two of A and all of B delivered; recorded with the next claim, which
    // takes A again (its third event) and not B (nothing after).
    let done = vec![
        ("ev/coal-a".to_string(), read_a[1].seq),
        ("ev/coal-b".to_string(), read_b[0].seq),
    ];
    // Under a token that holds no lease, nothing is recorded and nothing is claimable.
    let (completed, claimed) = store
        .events
        .complete_and_claim("hook", "other", &done, "t2", now, lease, 10)
        .await
        .unwrap();
    assert_eq!(completed, 0);
    assert!(claimed.is_empty());
    let (completed, claimed) = store
        .events
        .complete_and_claim("hook", "t1", &done, "t2", now, lease, 10)
        .await
        .unwrap();
    assert_eq!(completed, 2);
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].repository, "ev/coal-a");
    assert_eq!(claimed[0].delivered_id, read_a[1].seq);
    // "t2" delivers A's third event, and the process dies before its next claim: its
    // completion is never recorded. Once the lease has expired, the event is claimed
    // and read again, with the same id.
    let later = lease + 1;
    let (completed, claimed) = store
        .events
        .complete_and_claim("hook", "none", &[], "t3", later, later + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(completed, 0);
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].delivered_id, read_a[1].seq);
    let again = store
        .events
        .events_after("ev/coal-a", claimed[0].delivered_id, 100)
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|e| &e.record.id).collect::<Vec<_>>(),
        [&a[2].id]
    );
    // The dead worker's completion, arriving late, changes nothing: "t3" holds the lease.
    let late = vec![("ev/coal-a".to_string(), again[0].seq)];
    let (completed, _) = store
        .events
        .complete_and_claim("hook", "t2", &late, "t4", later, later + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(completed, 0);
    let (completed, claimed) = store
        .events
        .complete_and_claim("hook", "t3", &late, "t5", later, later + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(completed, 1);
    assert!(claimed.is_empty());
    assert_eq!(
        store.events.endpoint_backlog("hook").await.unwrap().pending,
        0
    );
}
