//! The notification outbox (`EventStore`) on each engine: events written with the
//! changes they report (and only then), delivery cursors and their leases, failures,
//! dead letters and replays, new endpoints starting from "now", pruning, and — the
//! point of the order rules (SQLite's one writer, PostgreSQL's horizon) — no event
//! skipped by a consumer that races the writers.

use std::collections::HashSet;

use wharf::metadata::{PutManifestOutcome, ReplayFilter};
use wharf::types::{EventAction, EventRecord, EventTarget, TargetKind};

use crate::support::*;

pub fn event(repository: &str, action: EventAction, tag: &str) -> EventRecord {
    EventRecord {
        id: uuid::Uuid::new_v4().to_string(),
        timestamp_ms: wharf::clock::now_ms(),
        action,
        repository: repository.to_string(),
        target: EventTarget {
            kind: TargetKind::Manifest,
            media_type: Some(OCI_MANIFEST.into()),
            digest: None,
            size: Some(1),
            tag: Some(tag.to_string()),
            from_repository: None,
            references: Vec::new(),
        },
        request: Default::default(),
        source: Default::default(),
    }
}

const FAR: i64 = i64::MAX / 2;

/// Appends one event, in a transaction of its own.
async fn append_one(store: &Store, event: &EventRecord) {
    store
        .events
        .append_events(std::slice::from_ref(event))
        .await
        .unwrap();
}

/// Claims, reads and completes everything due for `endpoint`; returns the event ids
/// in delivery order.
pub async fn drain(store: &Store, endpoint: &str) -> Vec<String> {
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
        // As the delivery worker does: one request for every claimed cursor, completed
        // in one transaction.
        let positions: Vec<(String, i64)> = claimed
            .iter()
            .map(|c| (c.repository.clone(), c.delivered_id))
            .collect();
        let read = store
            .events
            .events_after_each(&positions, 1000)
            .await
            .unwrap();
        let mut done = Vec::new();
        for (c, events) in claimed.into_iter().zip(read) {
            let mut last = c.delivered_id;
            for e in &events {
                if e.endpoint.as_deref().is_none_or(|t| t == endpoint) {
                    out.push(e.record.id.clone());
                }
                last = e.seq;
            }
            done.push((c.repository.clone(), last));
        }
        // Under another token, none; under ours, all of them.
        assert_eq!(
            store
                .events
                .complete_cursors(endpoint, "not-t", &done)
                .await
                .unwrap(),
            0
        );
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

pub async fn events_only_with_their_change(store: Store) {
    store.events.register_endpoint("hook", 1).await.unwrap();
    let r = repo("ev/change");
    let b = blob("layer", "k/1");
    let pushed = event("ev/change", EventAction::Push, "blob");
    store
        .blobs
        .commit_blob(&r, &b, None, std::slice::from_ref(&pushed))
        .await
        .unwrap();
    // A refused manifest, a missing tag, a missing link: no events.
    let missing = blob("absent", "k/2");
    let m = manifest("m", &[&missing], Some("v1"));
    let refused = event("ev/change", EventAction::Push, "refused");
    assert!(matches!(
        store
            .manifests
            .put_manifest(&r, &m, &[refused])
            .await
            .unwrap(),
        PutManifestOutcome::MissingChild(_)
    ));
    let gone = event("ev/change", EventAction::Delete, "gone");
    assert!(!store
        .manifests
        .delete_tag(&r, &tag("nope"), std::slice::from_ref(&gone))
        .await
        .unwrap());
    assert!(!store
        .blobs
        .unlink_blob(&r, &missing.digest, &[gone])
        .await
        .unwrap());
    let m = manifest("m", &[&b], Some("v1"));
    let stored = event("ev/change", EventAction::Push, "v1");
    store
        .manifests
        .put_manifest(&r, &m, std::slice::from_ref(&stored))
        .await
        .unwrap();
    let deleted = event("ev/change", EventAction::Delete, "v1");
    assert!(store
        .manifests
        .delete_tag(&r, &tag("v1"), std::slice::from_ref(&deleted))
        .await
        .unwrap());
    let pending = store
        .events
        .pending_events(Some("hook"), 100)
        .await
        .unwrap();
    let ids: Vec<&str> = pending.iter().map(|p| p.event.record.id.as_str()).collect();
    assert_eq!(
        ids,
        [pushed.id.as_str(), stored.id.as_str(), deleted.id.as_str()]
    );
    assert_eq!(pending[0].event.record, pushed);
    let backlog = store.events.endpoint_backlog("hook").await.unwrap();
    assert_eq!(backlog.pending, 3);
    assert!(backlog.oldest.is_some());
    assert_eq!(
        drain(&store, "hook").await,
        [pushed.id.clone(), stored.id.clone(), deleted.id.clone()]
    );
    assert_eq!(
        store.events.endpoint_backlog("hook").await.unwrap().pending,
        0
    );
}

/// A push by tag whose event is its repository's first (the stream starts with it),
/// then more by tag and a blob's: the tags are stored, every event once, in commit
/// order. (On PostgreSQL a tag and its event go in one statement, and a new stream
/// takes a second path: both are here.)
pub async fn tag_pushes_open_and_extend_a_stream(store: Store) {
    store.events.register_endpoint("hook", 1).await.unwrap();
    let r = repo("ev/tagstream");
    let b = blob("tagstream-layer", "k/ts");
    store.blobs.commit_blob(&r, &b, None, &[]).await.unwrap();
    let mut expected = Vec::new();
    for (i, name) in ["v1", "v2", "v1"].iter().enumerate() {
        let m = manifest(&format!("tagstream-{i}"), &[&b], Some(name));
        let pushed = event("ev/tagstream", EventAction::Push, name);
        assert!(matches!(
            store
                .manifests
                .put_manifest(&r, &m, std::slice::from_ref(&pushed))
                .await
                .unwrap(),
            PutManifestOutcome::Stored
        ));
        let now = store
            .manifests
            .manifest_by_tag(&r, &tag(name))
            .await
            .unwrap()
            .expect("tag stored with its event");
        assert_eq!(now.digest, m.record.digest);
        expected.push(pushed.id);
    }
    let linked = event("ev/tagstream", EventAction::Push, "blob");
    store
        .blobs
        .commit_blob(&r, &b, None, std::slice::from_ref(&linked))
        .await
        .unwrap();
    expected.push(linked.id);
    // A push with two tags and its two events takes the general path.
    let m = manifest("tagstream-two", &[&b], Some("a"));
    let m = wharf::metadata::NewManifest {
        tags: vec![tag("a"), tag("b")],
        ..m
    };
    let two = [
        event("ev/tagstream", EventAction::Push, "a"),
        event("ev/tagstream", EventAction::Push, "b"),
    ];
    store.manifests.put_manifest(&r, &m, &two).await.unwrap();
    expected.extend(two.iter().map(|e| e.id.clone()));
    assert_eq!(drain(&store, "hook").await, expected);
}

pub async fn cursors_leases_and_failures(store: Store) {
    store.events.register_endpoint("a", 1).await.unwrap();
    store.events.register_endpoint("b", 1).await.unwrap();
    let e1 = event("ev/one", EventAction::Push, "1");
    let e2 = event("ev/one", EventAction::Push, "2");
    let e3 = event("ev/two", EventAction::Pull, "1");
    store
        .events
        .append_events(&[e1.clone(), e2.clone(), e3.clone()])
        .await
        .unwrap();
    let now = wharf::clock::now_ms();
    let claimed = store
        .events
        .claim_cursors("a", "x", now, now + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    // Leased: not claimable again, by this endpoint; the other endpoint has its own.
    assert!(store
        .events
        .claim_cursors("a", "y", now, now + 60_000, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .events
            .claim_cursors("b", "z", now, now + 60_000, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let one = claimed.iter().find(|c| c.repository == "ev/one").unwrap();
    let events = store
        .events
        .events_after("ev/one", one.delivered_id, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].record, e1);
    assert!(events[0].seq < events[1].seq);
    // A failure under another token changes nothing; under ours it sets the retry.
    assert!(!store
        .events
        .fail_cursor("a", "ev/one", "y", 1, FAR, "no")
        .await
        .unwrap());
    assert!(store
        .events
        .fail_cursor("a", "ev/one", "x", 1, now + 60_000, "boom")
        .await
        .unwrap());
    let pending = store.events.pending_events(Some("a"), 10).await.unwrap();
    let p = pending.iter().find(|p| p.event.record.id == e1.id).unwrap();
    assert_eq!((p.attempts, p.last_error.as_deref()), (1, Some("boom")));
    // Not due yet.
    assert!(store
        .events
        .claim_cursors("a", "w", now + 1, now + 60_000, 10)
        .await
        .unwrap()
        .is_empty());
    let later = now + 60_001;
    let again = store
        .events
        .claim_cursors("a", "v", later, later + 1000, 10)
        .await
        .unwrap();
    assert_eq!(
        again.len(),
        2,
        "ev/one is due again and ev/two's lease has expired"
    );
    let one = again.iter().find(|c| c.repository == "ev/one").unwrap();
    assert_eq!(one.attempts, 1);
    // The expired lease's holder can no longer complete.
    assert!(!store
        .events
        .complete_cursor("a", "ev/two", "x", i64::MAX)
        .await
        .unwrap());
    assert!(store
        .events
        .complete_cursor("a", "ev/one", "v", events[1].seq)
        .await
        .unwrap());
    let left = store.events.pending_events(Some("a"), 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].event.record.id, e3.id);
}

pub async fn dead_letters_and_replay(store: Store) {
    store.events.register_endpoint("a", 1).await.unwrap();
    store.events.register_endpoint("b", 1).await.unwrap();
    let e1 = event("ev/dead", EventAction::Push, "1");
    let e2 = event("ev/dead", EventAction::Delete, "1");
    store
        .events
        .append_events(&[e1.clone(), e2.clone()])
        .await
        .unwrap();
    let now = wharf::clock::now_ms();
    let c = store
        .events
        .claim_cursors("a", "x", now, now + 60_000, 10)
        .await
        .unwrap();
    let events = store
        .events
        .events_after("ev/dead", c[0].delivered_id, 10)
        .await
        .unwrap();
    assert!(store
        .events
        .dead_letter("a", "ev/dead", "x", &events, 7, "503", now)
        .await
        .unwrap());
    let dead = store.events.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!((dead[0].endpoint.as_str(), dead[0].attempts), ("a", 7));
    assert_eq!(dead[0].record, e1);
    assert_eq!(dead[0].last_error, "503");
    assert!(store
        .events
        .dead_letters(Some("b"), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .events
        .pending_events(Some("a"), 10)
        .await
        .unwrap()
        .is_empty());
    // Replay one by id: pending again for "a" only, with the same record.
    assert_eq!(
        store
            .events
            .replay_dead_letters(&ReplayFilter::Event(e2.id.clone()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.events.dead_letters(None, 10).await.unwrap().len(), 1);
    let pending = store.events.pending_events(Some("a"), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event.record, e2);
    assert_eq!(pending[0].event.endpoint.as_deref(), Some("a"));
    assert_eq!(drain(&store, "a").await, std::slice::from_ref(&e2.id));
    assert_eq!(drain(&store, "b").await, [e1.id.clone(), e2.id.clone()]);
    assert_eq!(
        store
            .events
            .replay_dead_letters(&ReplayFilter::Endpoint("a".into()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(drain(&store, "a").await, std::slice::from_ref(&e1.id));
    assert_eq!(
        store
            .events
            .replay_dead_letters(&ReplayFilter::All)
            .await
            .unwrap(),
        0
    );
}

pub async fn new_endpoints_start_now_and_pruning(store: Store) {
    store.events.register_endpoint("old", 1).await.unwrap();
    let before = event("ev/prune", EventAction::Push, "1");
    append_one(&store, &before).await;
    store.events.register_endpoint("new", 2).await.unwrap();
    let after = event("ev/prune", EventAction::Push, "2");
    append_one(&store, &after).await;
    assert_eq!(drain(&store, "new").await, std::slice::from_ref(&after.id));
    // "old" holds both back from pruning.
    let now = wharf::clock::now_ms();
    assert_eq!(store.events.prune_events(0, 100).await.unwrap(), 0);
    assert_eq!(
        drain(&store, "old").await,
        [before.id.clone(), after.id.clone()]
    );
    assert_eq!(store.events.prune_events(0, 100).await.unwrap(), 2);
    // The stream is gone with its events; a new event is delivered to both.
    let third = event("ev/prune", EventAction::Push, "3");
    append_one(&store, &third).await;
    assert_eq!(drain(&store, "old").await, std::slice::from_ref(&third.id));
    // Endpoints not served since `stale_before` are forgotten and hold nothing back.
    store
        .events
        .register_endpoint("old", now + 10)
        .await
        .unwrap();
    assert_eq!(store.events.prune_events(now + 5, 100).await.unwrap(), 1);
    assert!(store
        .events
        .pending_events(None, 10)
        .await
        .unwrap()
        .is_empty());
    // With every endpoint forgotten nothing waits for an event: undelivered, it goes.
    let fourth = event("ev/prune", EventAction::Push, "4");
    append_one(&store, &fourth).await;
    assert_eq!(store.events.prune_events(now + 20, 100).await.unwrap(), 1);
    assert_eq!(store.events.prune_events(now + 20, 100).await.unwrap(), 0);
}

/// Writers append to a few repositories while a consumer drains: ids commit in order
/// (SQLite) or reads stop at the horizon (PostgreSQL), so no event is ever passed over.
pub async fn racing_consumer_misses_nothing(store: Store) {
    store.events.register_endpoint("c", 1).await.unwrap();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..20 {
                    let repo_name = format!("ev/race{}", i % 3);
                    let e = event(&repo_name, EventAction::Push, &format!("w{w}-{i}"));
                    ids.push(e.id.clone());
                    if i % 2 == 0 {
                        // Through a write method: the events with a change.
                        let b = blob(&format!("w{w}-{i}"), &format!("k/{w}/{i}"));
                        store
                            .blobs
                            .commit_blob(&repo(&repo_name), &b, None, &[e])
                            .await
                            .unwrap();
                    } else {
                        store.events.append_events(&[e]).await.unwrap();
                    }
                }
                ids
            })
        })
        .collect();
    let consumer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..400 {
                seen.extend(drain(&store, "c").await);
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let mut written = HashSet::new();
    let mut per_writer = Vec::new();
    for w in writers {
        let ids = w.await.unwrap();
        written.extend(ids.iter().cloned());
        per_writer.push(ids);
    }
    let mut seen = consumer.await.unwrap();
    seen.extend(drain(&store, "c").await);
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "each event once (one consumer, no failures)"
    );
    assert_eq!(unique, written, "every written event consumed");
    // Each writer's events of one repository were committed one after the other, so
    // they arrive in that order (the consumer reads each repository's stream in order;
    // on SQLite several writers' events share a group commit's outbox insert).
    let position: std::collections::HashMap<&str, usize> = seen
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for ids in &per_writer {
        for r in 0..3 {
            let in_repo: Vec<usize> = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 3 == r)
                .map(|(_, id)| position[id.as_str()])
                .collect();
            assert!(
                in_repo.windows(2).all(|p| p[0] < p[1]),
                "a writer's events of ev/race{r} in commit order"
            );
        }
    }
}

/// What a delivery tick reads: the next events of each of 40 cursors (more than one
/// statement's 32), each list its own repository's, in stream order, after its position
/// and up to the limit; a cursor with nothing new gets an empty list.
pub async fn events_after_each_reads_every_cursor(store: Store) {
    store.events.register_endpoint("each", 1).await.unwrap();
    let mut written: Vec<Vec<String>> = Vec::new();
    for r in 0..40 {
        let list: Vec<EventRecord> = (0..3)
            .map(|i| event(&format!("ev/each{r}"), EventAction::Push, &format!("t{i}")))
            .collect();
        store.events.append_events(&list).await.unwrap();
        written.push(list.into_iter().map(|e| e.id).collect());
    }
    // A claim first, as a worker's tick has: reads stop where the last claim found
    // every event final (on PostgreSQL, the horizon).
    let now = wharf::clock::now_ms();
    store
        .events
        .claim_cursors("each", "t", now, now + 60_000, 100)
        .await
        .unwrap();
    let all: Vec<(String, i64)> = (0..40).map(|r| (format!("ev/each{r}"), 0)).collect();
    let read = store.events.events_after_each(&all, 2).await.unwrap();
    assert_eq!(read.len(), 40);
    for (r, events) in read.iter().enumerate() {
        let ids: Vec<&str> = events.iter().map(|e| e.record.id.as_str()).collect();
        assert_eq!(ids, [written[r][0].as_str(), written[r][1].as_str()]);
        assert!(events
            .iter()
            .all(|e| e.record.repository == format!("ev/each{r}")));
    }
    // After each one's first event, and one with nothing after its last.
    let mut after: Vec<(String, i64)> = read
        .iter()
        .enumerate()
        .map(|(r, events)| (format!("ev/each{r}"), events[0].seq))
        .collect();
    let last = store
        .events
        .events_after_each(&after[..1], 10)
        .await
        .unwrap()[0]
        .last()
        .unwrap()
        .seq;
    after.push(("ev/each0".into(), last));
    after.push(("ev/none".into(), 0));
    let read = store.events.events_after_each(&after, 10).await.unwrap();
    assert_eq!(read.len(), 42);
    for (r, events) in read.iter().take(40).enumerate() {
        let ids: Vec<&str> = events.iter().map(|e| e.record.id.as_str()).collect();
        assert_eq!(ids, [written[r][1].as_str(), written[r][2].as_str()]);
    }
    assert!(read[40].is_empty());
    assert!(read[41].is_empty());
    assert!(store
        .events
        .events_after_each(&[], 10)
        .await
        .unwrap()
        .is_empty());
}
