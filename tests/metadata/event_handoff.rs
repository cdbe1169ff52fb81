//! SQLite only: the in-memory hand-off of just-committed events to the local delivery
//! workers (`metadata::sqlite::handoff`) answers a tick's read only with what the
//! table would answer. Shown against what can make the two differ: a restart (the
//! hand-off is empty; a batch claimed but never completed is delivered again, same ids,
//! in order), more events than the hand-off holds (the oldest come from the table),
//! dead letters replayed between batches (events written outside the hand-off), and
//! prunes between them (what they deleted is forgotten, the rest served on):
//! none is skipped, and each repository's events come in id order.

use wharf::metadata::ReplayFilter;
use wharf::types::{EventAction, EventRecord};

use super::events::event;
use crate::support::*;

const FAR: i64 = i64::MAX / 2;

async fn open(url: &str) -> Store {
    wharf::metadata::open(url, 4)
        .await
        .expect("open sqlite store")
}

/// Claims, reads and completes everything due for `endpoint` until nothing is;
/// returns the ids delivered in order, and checks each repository's stream is read in
/// id order with no id read twice.
async fn drain(store: &Store, endpoint: &str, limit: u32) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let now = wharf::clock::now_ms();
        let claimed = store
            .events
            .claim_cursors(endpoint, "t", now, now + 60_000, 100)
            .await
            .unwrap();
        if claimed.is_empty() {
            return out;
        }
        let positions: Vec<(String, i64)> = claimed
            .iter()
            .map(|c| (c.repository.clone(), c.delivered_id))
            .collect();
        let read = store
            .events
            .events_after_each(&positions, limit)
            .await
            .unwrap();
        let mut done = Vec::new();
        for (c, events) in claimed.iter().zip(read) {
            assert!(!events.is_empty(), "a claimed cursor has events");
            let mut last = c.delivered_id;
            for e in &events {
                assert!(e.seq > last, "stream order");
                assert_eq!(e.record.repository, c.repository);
                last = e.seq;
                out.push(e.record.id.clone());
            }
            done.push((c.repository.clone(), last));
        }
        assert_eq!(
            store
                .events
                .complete_cursors(endpoint, "t", &done)
                .await
                .unwrap(),
            done.len() as u64
        );
    }
}

fn ids(events: &[EventRecord]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

fn events(repository: &str, n: usize) -> Vec<EventRecord> {
    (0..n)
        .map(|i| event(repository, EventAction::Push, &i.to_string()))
        .collect()
}

/// Read from the hand-off, never completed, the process restarts: the same events are
/// read again after the lease, same ids, same order (now from the table).
pub async fn handoff_then_restart_redelivers(url: String) {
    let a = open(&url).await;
    a.events.register_endpoint("hook", 1).await.unwrap();
    let written = events("ho/restart", 5);
    a.events.append_events(&written).await.unwrap();
    let now = wharf::clock::now_ms();
    let claimed = a
        .events
        .claim_cursors("hook", "t1", now, now + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let pos = vec![(claimed[0].repository.clone(), claimed[0].delivered_id)];
    let first = a.events.events_after_each(&pos, 100).await.unwrap();
    assert_eq!(
        first[0]
            .iter()
            .map(|e| e.record.id.clone())
            .collect::<Vec<_>>(),
        ids(&written)
    );
    // The process dies before recording the delivery.
    drop(a);
    let b = open(&url).await;
    // Still leased: nothing to claim.
    let now = wharf::clock::now_ms();
    assert!(b
        .events
        .claim_cursors("hook", "t2", now, now + 60_000, 10)
        .await
        .unwrap()
        .is_empty());
    // Once the lease has expired: the same events, same ids and positions, in order.
    let claimed = b
        .events
        .claim_cursors("hook", "t2", FAR, FAR + 1, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].delivered_id, pos[0].1);
    let again = b.events.events_after_each(&pos, 100).await.unwrap();
    assert_eq!(
        again[0]
            .iter()
            .map(|e| (e.seq, e.record.id.clone()))
            .collect::<Vec<_>>(),
        first[0]
            .iter()
            .map(|e| (e.seq, e.record.id.clone()))
            .collect::<Vec<_>>()
    );
    // New events after the restart come from the hand-off again, after those.
    let more = events("ho/restart", 3);
    b.events.append_events(&more).await.unwrap();
    let got = b.events.events_after_each(&pos, 100).await.unwrap();
    let mut expected = ids(&written);
    expected.extend(ids(&more));
    assert_eq!(
        got[0]
            .iter()
            .map(|e| e.record.id.clone())
            .collect::<Vec<_>>(),
        expected
    );
}

/// More events than the hand-off holds: the oldest are read from the table, the rest
/// from memory, all of them once and in order, in every repository.
pub async fn handoff_overflow_reads_the_table(url: String) {
    let store = open(&url).await;
    store.events.register_endpoint("hook", 1).await.unwrap();
    let mut expected: Vec<String> = Vec::new();
    let mut by_repo: Vec<Vec<String>> = vec![Vec::new(); 3];
    // 5,200 events in batches of 400 over three repositories (the hand-off holds 4,096).
    for batch in 0..13 {
        let list: Vec<EventRecord> = (0..400)
            .map(|i| {
                let r = (batch * 400 + i) % 3;
                event(&format!("ho/over-{r}"), EventAction::Push, &i.to_string())
            })
            .collect();
        for e in &list {
            let r = e
                .repository
                .rsplit('-')
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap();
            by_repo[r].push(e.id.clone());
        }
        expected.extend(ids(&list));
        store.events.append_events(&list).await.unwrap();
    }
    let got = drain(&store, "hook", 500).await;
    assert_eq!(got.len(), expected.len(), "every event once");
    for (r, want) in by_repo.iter().enumerate() {
        let name = format!("ho/over-{r}");
        let mine: Vec<&String> = got.iter().filter(|id| want.contains(id)).collect();
        assert_eq!(mine.len(), want.len(), "{name}: every event");
        assert_eq!(mine, want.iter().collect::<Vec<_>>(), "{name}: in order");
    }
}

/// Dead letters replayed between this process's batches and after its last one: the
/// replayed events are written outside the batches' hand-off (new ids in the same
/// streams), and none is skipped; each stream is read in id order.
pub async fn handoff_with_replays_between(url: String) {
    let store = open(&url).await;
    store.events.register_endpoint("hook", 1).await.unwrap();
    let r = "ho/replay";
    let e1 = events(r, 2);
    store.events.append_events(&e1).await.unwrap();
    assert_eq!(drain(&store, "hook", 100).await, ids(&e1));
    // e2 fails for good and goes to the dead letters (its cursor moves past it).
    let dead_letter = |list: Vec<EventRecord>| {
        let store = &store;
        async move {
            store.events.append_events(&list).await.unwrap();
            let now = wharf::clock::now_ms();
            let claimed = store
                .events
                .claim_cursors("hook", "d", now, now + 60_000, 10)
                .await
                .unwrap();
            let pos = vec![(claimed[0].repository.clone(), claimed[0].delivered_id)];
            let read = store.events.events_after_each(&pos, 100).await.unwrap();
            assert_eq!(read[0].len(), list.len());
            assert!(store
                .events
                .dead_letter("hook", r, "d", &read[0], 3, "refused", now)
                .await
                .unwrap());
        }
    };
    let e2 = events(r, 1);
    dead_letter(e2.clone()).await;
    // Then: a batch (e3), the replay (e2 again, a new position), a batch (e4).
    let e3 = events(r, 2);
    store.events.append_events(&e3).await.unwrap();
    assert_eq!(
        store
            .events
            .replay_dead_letters(&ReplayFilter::All)
            .await
            .unwrap(),
        1
    );
    let e4 = events(r, 2);
    store.events.append_events(&e4).await.unwrap();
    let mut expected = ids(&e3);
    expected.extend(ids(&e2));
    expected.extend(ids(&e4));
    assert_eq!(drain(&store, "hook", 100).await, expected);
    // A replay after the last batch, with nothing after it.
    let e5 = events(r, 1);
    dead_letter(e5.clone()).await;
    assert_eq!(
        store
            .events
            .replay_dead_letters(&ReplayFilter::All)
            .await
            .unwrap(),
        1
    );
    assert_eq!(drain(&store, "hook", 100).await, ids(&e5));
    // And the hand-off serves again afterwards.
    let e6 = events(r, 2);
    store.events.append_events(&e6).await.unwrap();
    assert_eq!(drain(&store, "hook", 100).await, ids(&e6));
}

/// Prunes between batches (two endpoints): a prune deletes only what both have passed
/// and forgets exactly that from the hand-off. A stream emptied and forgotten gets a
/// new cursor that starts before its pruned events: it reads none of them, only what
/// came after; a stream pruned in part is read on from where it was.
pub async fn handoff_with_prunes_between(url: String) {
    let store = open(&url).await;
    for name in ["a", "b"] {
        store.events.register_endpoint(name, 1).await.unwrap();
    }
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (r1, r2) = ("ho/prune1", "ho/prune2");
    let e1 = events(r1, 3);
    let e2 = events(r2, 2);
    store.events.append_events(&e1).await.unwrap();
    store.events.append_events(&e2).await.unwrap();
    let mut both = ids(&e1);
    both.extend(ids(&e2));
    assert_eq!(sorted(drain(&store, "a", 100).await), sorted(both.clone()));
    // "b" has passed nothing: nothing goes.
    assert_eq!(store.events.prune_events(0, 100).await.unwrap(), 0);
    assert_eq!(sorted(drain(&store, "b", 100).await), sorted(both));
    // Both streams emptied, their rows and cursors forgotten.
    assert_eq!(store.events.prune_events(0, 100).await.unwrap(), 5);
    let e3 = events(r1, 1);
    store.events.append_events(&e3).await.unwrap();
    assert_eq!(drain(&store, "a", 100).await, ids(&e3));
    assert_eq!(drain(&store, "b", 100).await, ids(&e3));
    // In part: "a" delivers e4 and e5, "b" only what is there before e5.
    let e4 = events(r2, 2);
    store.events.append_events(&e4).await.unwrap();
    assert_eq!(drain(&store, "b", 100).await, ids(&e4));
    let e5 = events(r2, 2);
    store.events.append_events(&e5).await.unwrap();
    let mut a_expected = ids(&e4);
    a_expected.extend(ids(&e5));
    assert_eq!(
        sorted(drain(&store, "a", 100).await),
        sorted(a_expected.clone())
    );
    // e3 and e4 go (both passed them); e5 stays for "b".
    assert_eq!(store.events.prune_events(0, 100).await.unwrap(), 3);
    let e6 = events(r2, 1);
    store.events.append_events(&e6).await.unwrap();
    let mut b_expected = ids(&e5);
    b_expected.extend(ids(&e6));
    assert_eq!(drain(&store, "b", 100).await, b_expected);
    assert_eq!(drain(&store, "a", 100).await, ids(&e6));
    assert_eq!(store.events.prune_events(0, 100).await.unwrap(), 3);
    assert!(store
        .events
        .pending_events(None, 100)
        .await
        .unwrap()
        .is_empty());
}
