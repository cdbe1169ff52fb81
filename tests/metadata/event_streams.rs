//! Streams pruned while writers append to them: a stream row that pruning finds empty
//! and deletes must not take a writer's new event with it (on PostgreSQL the writer
//! and the prune lock the stream's row; on SQLite the one writer serializes them).

use std::collections::{HashMap, HashSet};

use wharf::types::EventAction;

use crate::events::{drain, event};
use crate::support::*;

/// Writers append to three repositories while a consumer drains and prunes in a loop,
/// so streams are emptied, deleted and written again all the time: every event is
/// delivered exactly once (one consumer, no failures), each writer's events of a
/// repository in commit order, and nothing is left pending.
pub async fn pruning_races_writers_loses_nothing(store: Store) {
    store.events.register_endpoint("p", 1).await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..30 {
                    let repo_name = format!("ev/prune-race{}", i % 3);
                    let e = event(&repo_name, EventAction::Push, &format!("w{w}-{i}"));
                    ids.push((repo_name.clone(), e.id.clone()));
                    if i % 2 == 0 {
                        let b = blob(&format!("pr-w{w}-{i}"), &format!("pr/{w}/{i}"));
                        store
                            .blobs
                            .commit_blob(&repo(&repo_name), &b, None, &[e])
                            .await
                            .unwrap();
                    } else {
                        store.events.append_events(&[e]).await.unwrap();
                    }
                    tokio::task::yield_now().await;
                }
                ids
            })
        })
        .collect();
    let consumer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut pruned = 0;
            for _ in 0..200 {
                seen.extend(drain(&store, "p").await);
                pruned += store.events.prune_events(0, 100).await.unwrap();
                tokio::task::yield_now().await;
            }
            (seen, pruned)
        })
    };
    let mut per_writer = Vec::new();
    for w in writers {
        per_writer.push(w.await.unwrap());
    }
    let (mut seen, pruned) = consumer.await.unwrap();
    seen.extend(drain(&store, "p").await);
    assert!(pruned > 0, "the consumer pruned delivered events meanwhile");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "each event once");
    let written: HashSet<&String> = per_writer.iter().flatten().map(|(_, id)| id).collect();
    assert_eq!(unique, written, "every written event delivered");
    let position: HashMap<&str, usize> = seen
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for ids in &per_writer {
        for r in 0..3 {
            let name = format!("ev/prune-race{r}");
            let order: Vec<usize> = ids
                .iter()
                .filter(|(repo, _)| *repo == name)
                .map(|(_, id)| position[id.as_str()])
                .collect();
            assert!(
                order.windows(2).all(|p| p[0] < p[1]),
                "a writer's events of {name} in commit order"
            );
        }
    }
    // Everything delivered: the next prunes take the rest, streams included.
    while store.events.prune_events(0, 100).await.unwrap() > 0 {}
    assert!(store
        .events
        .pending_events(None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.events.endpoint_backlog("p").await.unwrap().pending, 0);
}
