//! The in-memory hand-off of just-committed events to the local delivery workers (the
//! embedded default: one process, one writer).
//!
//! Why: a delivery tick used to read every event it sends back from the `events` table
//! (a statement on a reader connection's thread, the rows' JSON decoded again) although
//! this process had just written them. Now the group committer, once a batch's COMMIT
//! has returned, publishes the events it wrote (with their ids) here, and a tick takes
//! a claimed cursor's next events from here when they are all here; otherwise it reads
//! the table as before. Nothing else changes: the rows are written in the transaction
//! of their change as before (durability is the table's), cursors are claimed, leased
//! and completed in the table as before, and delivered rows are pruned as before; so
//! order per (endpoint, repository), at-least-once delivery, retries, dead letters and
//! replays are exactly the table's.
//!
//! **When an answer from here is the table's.** Event ids are `AUTOINCREMENT`: every
//! insert takes the next id. The hand-off holds the events of one unbroken run of ids
//! (from `valid_from` to the last published): a published batch whose first id is not
//! the one after the last published means that something else wrote events meanwhile
//! (a replay of dead letters; another process, had it opened the file despite the
//! store's lock) and everything held is dropped; the run starts again at that batch.
//! After a restart nothing is held. So for a
//! repository, every event of the table with an id in `[floor, last published]` is
//! here (`floor` is `valid_from`, or past what was evicted from that repository). A
//! cursor at `after` with `after + 1 >= floor` therefore gets here exactly the table's
//! events after `after` up to the last published: a prefix of its stream, in order.
//! Events committed after the last publish (a replay's) come later, from the table: a
//! cursor that finds nothing here reads the table.
//!
//! Pruning deletes events every endpoint has passed; a cursor created afterwards (its
//! stream was emptied and forgotten) starts before them, so the events a prune deleted
//! are forgotten here too (in its writer job, before any later claim). Held and table
//! lose the same events, so what is held is still the table's; the rest stays, and
//! the cursors behind it keep being served from here. (Clearing everything instead
//! sent every cursor to the table after each prune: a tenth of them in the
//! benchmark.)
//!
//! **Bounds.** At most [`CAPACITY`] events are held; past it the oldest go first
//! (their repositories' cursors behind them read the table). A worker that is behind
//! (a receiver down, a backlog) simply reads the table.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::metadata::events::StoredEvent;

/// Most events held.
pub const CAPACITY: usize = 4096;

/// The events of one repository held here, in id order, and the first id from which
/// every event of the repository is here.
#[derive(Default)]
struct Stream {
    floor: i64,
    events: VecDeque<StoredEvent>,
}

#[derive(Default)]
struct State {
    /// The first id of the unbroken run held (0: nothing published yet).
    valid_from: i64,
    /// The id the next published event must have for the run to go on.
    next_id: i64,
    /// The highest id evicted (evictions go in id order).
    evicted_upto: i64,
    /// How many events are held.
    held: usize,
    streams: HashMap<Arc<str>, Stream>,
    /// Publication order, for eviction: the repository and id of each event published
    /// (one already forgotten by a prune is skipped when its turn comes).
    order: VecDeque<(Arc<str>, i64)>,
}

/// See the module doc.
#[derive(Default)]
pub struct Handoff {
    state: Mutex<State>,
}

impl Handoff {
    /// Publishes the events of one committed batch, in id order (the caller's ids
    /// `first_id`, `first_id + 1`, ...).
    pub fn publish(&self, first_id: i64, events: Vec<StoredEvent>) {
        if events.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let s = &mut *guard;
        if s.next_id != first_id {
            // Something else wrote events since the last batch (or nothing was
            // published yet): start a new run.
            s.streams.clear();
            s.order.clear();
            s.held = 0;
            s.valid_from = first_id;
            s.evicted_upto = 0;
        }
        let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
        s.next_id = first_id.saturating_add(n);
        let floor = s.valid_from.max(s.evicted_upto.saturating_add(1));
        for e in events {
            let repo: Arc<str> = match s.streams.get_key_value(e.record.repository.as_str()) {
                Some((k, _)) => k.clone(),
                None => Arc::from(e.record.repository.as_str()),
            };
            let seq = e.seq;
            s.streams
                .entry(repo.clone())
                .or_insert_with(|| Stream {
                    floor,
                    events: VecDeque::new(),
                })
                .events
                .push_back(e);
            s.order.push_back((repo, seq));
            s.held += 1;
        }
        while s.held > CAPACITY {
            let Some((repo, seq)) = s.order.pop_front() else {
                break;
            };
            let (evicted, empty) = match s.streams.get_mut(&repo) {
                // Still held (not forgotten by a prune since): the oldest of its stream.
                Some(stream) if stream.events.front().is_some_and(|e| e.seq == seq) => {
                    s.held -= 1;
                    let evicted = stream.events.pop_front().map(|old| old.seq);
                    if let Some(seq) = evicted {
                        stream.floor = stream.floor.max(seq.saturating_add(1));
                    }
                    (evicted, stream.events.is_empty())
                }
                _ => (None, false),
            };
            if let Some(seq) = evicted {
                s.evicted_upto = s.evicted_upto.max(seq);
            }
            if empty {
                // Nothing held for it: a later event starts it again past everything
                // evicted.
                s.streams.remove(&repo);
            }
        }
    }

    /// Forgets the events a prune deleted, given as (repository, id); everything else
    /// stays held.
    pub fn forget(&self, pruned: &[(String, i64)]) {
        if pruned.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let s = &mut *guard;
        let mut forgotten = 0;
        for (repository, id) in pruned {
            let Some(stream) = s.streams.get_mut(repository.as_str()) else {
                continue;
            };
            if let Ok(i) = stream.events.binary_search_by_key(id, |e| e.seq) {
                stream.events.remove(i);
                forgotten += 1;
                if stream.events.is_empty() {
                    // A later event starts it again past everything evicted: the
                    // table's events of it from there are the held ones (none).
                    s.streams.remove(repository.as_str());
                }
            }
        }
        s.held -= forgotten;
        // Publication-order entries of forgotten events are skipped at eviction; drop
        // them when they pile up (each prune forgets mostly the oldest held).
        if s.order.len() > 2 * CAPACITY {
            let State { streams, order, .. } = s;
            order.retain(|(repo, seq)| {
                streams
                    .get(repo)
                    .is_some_and(|st| st.events.binary_search_by_key(seq, |e| e.seq).is_ok())
            });
        }
    }

    /// Forgets everything (the events may no longer be the table's).
    pub fn clear(&self) {
        let mut s = self.lock();
        s.streams.clear();
        s.order.clear();
        s.held = 0;
        s.next_id = 0;
        s.valid_from = 0;
        s.evicted_upto = 0;
    }

    /// The events of `repository` after `after`, up to `limit`, in id order, if the
    /// hand-off can say them (see the module doc); `None` means "read the table".
    pub fn events_after(
        &self,
        repository: &str,
        after: i64,
        limit: usize,
    ) -> Option<Vec<StoredEvent>> {
        let s = self.lock();
        let stream = s.streams.get(repository)?;
        if after.saturating_add(1) < stream.floor {
            return None;
        }
        let start = stream.events.partition_point(|e| e.seq <= after);
        if start == stream.events.len() {
            return None;
        }
        Some(stream.events.range(start..).take(limit).cloned().collect())
    }

    /// How many events are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().held
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent in a way
        // that matters more than dropping it: start afresh.
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                let mut g = poisoned.into_inner();
                *g = State::default();
                g
            }
        }
    }
}

/// Counts a tick's cursors served from the hand-off and from the table
/// (`wharf_notify_handoff_cursors_total{source}`).
pub fn count(handed: usize, read: usize) {
    static C: std::sync::OnceLock<[prometheus::IntCounter; 2]> = std::sync::OnceLock::new();
    let c = C.get_or_init(|| {
        let v = crate::telemetry::lazy_counter_vec(
            "notify_handoff_cursors_total",
            "Claimed cursors whose next events came from the in-memory hand-off of just-committed events (source=handoff) or were read from the outbox table (source=table); SQLite only",
            &["source"],
        );
        [
            v.with_label_values(&["handoff"]),
            v.with_label_values(&["table"]),
        ]
    });
    if handed > 0 {
        c[0].inc_by(handed as u64);
    }
    if read > 0 {
        c[1].inc_by(read as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::{Handoff, CAPACITY};
    use crate::metadata::events::StoredEvent;
    use crate::types::{EventAction, EventRecord, EventTarget, TargetKind};

    fn ev(repository: &str, seq: i64) -> StoredEvent {
        StoredEvent {
            seq,
            record: EventRecord {
                id: format!("e{seq}"),
                timestamp_ms: 0,
                action: EventAction::Push,
                repository: repository.into(),
                target: EventTarget {
                    kind: TargetKind::Blob,
                    media_type: None,
                    digest: None,
                    size: None,
                    tag: None,
                    from_repository: None,
                    references: Vec::new(),
                },
                request: Default::default(),
                source: Default::default(),
            },
            endpoint: None,
            created_at: 0,
        }
    }

    fn seqs(got: Option<Vec<StoredEvent>>) -> Option<Vec<i64>> {
        got.map(|v| v.iter().map(|e| e.seq).collect())
    }

    #[test]
    fn answers_a_prefix_of_one_unbroken_run() {
        let h = Handoff::default();
        assert_eq!(seqs(h.events_after("a", 0, 10)), None);
        h.publish(10, vec![ev("a", 10), ev("b", 11), ev("a", 12)]);
        // Before the run began: unknown, read the table.
        assert_eq!(seqs(h.events_after("a", 8, 10)), None);
        assert_eq!(seqs(h.events_after("a", 9, 10)), Some(vec![10, 12]));
        assert_eq!(seqs(h.events_after("a", 10, 10)), Some(vec![12]));
        assert_eq!(seqs(h.events_after("a", 9, 1)), Some(vec![10]));
        // Nothing after the cursor: read the table (another writer may have some).
        assert_eq!(seqs(h.events_after("a", 12, 10)), None);
        h.publish(13, vec![ev("a", 13)]);
        assert_eq!(seqs(h.events_after("a", 12, 10)), Some(vec![13]));
        // A repository first seen in a later batch: everything of it since the run
        // began is here.
        h.publish(14, vec![ev("c", 14)]);
        assert_eq!(seqs(h.events_after("c", 9, 10)), Some(vec![14]));
    }

    #[test]
    fn a_gap_in_ids_starts_a_new_run() {
        let h = Handoff::default();
        h.publish(1, vec![ev("a", 1), ev("a", 2)]);
        // Id 3 was written by someone else: what was held may miss it.
        h.publish(4, vec![ev("a", 4)]);
        assert_eq!(seqs(h.events_after("a", 0, 10)), None);
        assert_eq!(seqs(h.events_after("a", 2, 10)), None);
        assert_eq!(seqs(h.events_after("a", 3, 10)), Some(vec![4]));
        h.clear();
        assert_eq!(seqs(h.events_after("a", 3, 10)), None);
    }

    #[test]
    fn a_prune_forgets_exactly_what_it_deleted() {
        let h = Handoff::default();
        h.publish(1, vec![ev("a", 1), ev("b", 2), ev("a", 3), ev("b", 4)]);
        // The prune deleted a's first event and all of b's.
        h.forget(&[("a".into(), 1), ("b".into(), 2), ("b".into(), 4)]);
        assert_eq!(h.len(), 1);
        // a's cursor past its pruned event is still served from here.
        assert_eq!(seqs(h.events_after("a", 1, 10)), Some(vec![3]));
        // So is one before it: the table has nothing else of a there either.
        assert_eq!(seqs(h.events_after("a", 0, 10)), Some(vec![3]));
        // b is forgotten: a cursor created later (starting before its pruned events)
        // reads the table, never a pruned event.
        assert_eq!(seqs(h.events_after("b", 0, 10)), None);
        h.publish(5, vec![ev("b", 5)]);
        assert_eq!(seqs(h.events_after("b", 0, 10)), Some(vec![5]));
        // Ids not held (evicted before, another repository's) change nothing.
        h.forget(&[("c".into(), 9), ("a".into(), 2)]);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn forgotten_events_are_skipped_at_eviction() {
        let h = Handoff::default();
        let n = i64::try_from(CAPACITY).unwrap();
        h.publish(1, (1..=n).map(|i| ev("a", i)).collect());
        // The oldest half is pruned: room for as many again before anything is evicted.
        h.forget(
            &(1..=n / 2)
                .map(|i| ("a".to_string(), i))
                .collect::<Vec<_>>(),
        );
        assert_eq!(h.len(), CAPACITY / 2);
        h.publish(n + 1, (n + 1..=n + n / 2).map(|i| ev("b", i)).collect());
        assert_eq!(h.len(), CAPACITY);
        assert_eq!(seqs(h.events_after("a", n / 2, 1)), Some(vec![n / 2 + 1]));
        // One more: a's oldest held event goes, not a forgotten one's turn wasted.
        h.publish(n + n / 2 + 1, vec![ev("b", n + n / 2 + 1)]);
        assert_eq!(h.len(), CAPACITY);
        assert_eq!(seqs(h.events_after("a", n / 2, 1)), None);
        assert_eq!(
            seqs(h.events_after("a", n / 2 + 1, 1)),
            Some(vec![n / 2 + 2])
        );
    }

    #[test]
    fn bounded_oldest_evicted_first() {
        let h = Handoff::default();
        let n = i64::try_from(CAPACITY).unwrap();
        h.publish(
            1,
            (1..=n)
                .map(|i| ev(if i % 2 == 0 { "a" } else { "b" }, i))
                .collect(),
        );
        assert_eq!(h.len(), CAPACITY);
        // Two more: 1 (b) and 2 (a) go.
        h.publish(n + 1, vec![ev("c", n + 1), ev("c", n + 2)]);
        assert_eq!(h.len(), CAPACITY);
        assert_eq!(seqs(h.events_after("b", 0, 2)), None);
        assert_eq!(seqs(h.events_after("b", 1, 1)), Some(vec![3]));
        assert_eq!(seqs(h.events_after("a", 0, 1)), None);
        assert_eq!(seqs(h.events_after("a", 2, 1)), Some(vec![4]));
        // A repository whose held events were all evicted comes back past them.
        h.publish(n + 3, (0..n).map(|i| ev("d", n + 3 + i)).collect());
        assert_eq!(seqs(h.events_after("c", n, 10)), None);
        h.publish(2 * n + 3, vec![ev("c", 2 * n + 3)]);
        assert_eq!(seqs(h.events_after("c", n, 10)), None);
        assert_eq!(
            seqs(h.events_after("c", 2 * n + 2, 10)),
            Some(vec![2 * n + 3])
        );
    }
}
