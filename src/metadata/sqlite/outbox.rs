//! The outbox rows of one group-commit batch (see `group_commit`), written together
//! just before the batch's COMMIT.
//!
//! Why: on the writer connection every statement is a round trip between the writer's
//! thread and the connection's own thread (sqlx runs each SQLite connection on a thread
//! of its own), and the profile of manifest pushes showed those hand-offs — futex and
//! eventfd wake-ups, not SQLite's own work — to be most of the writer's time. One
//! `INSERT` per event on the path of every push made the writer, the embedded default's
//! bottleneck, a third busier. So a job that changes something *stages* its events
//! here (the encoded rows, in the writer thread's memory) and the group committer
//! inserts every staged row of the batch in a few multi-row statements after its last
//! job and before its `COMMIT`.
//!
//! The guarantees do not move: the rows are in the transaction of the change they
//! report (the batch's one transaction), so no committed change is without its event
//! and no rolled-back change has one — a job that fails is rolled back to its
//! savepoint and its staged rows are dropped with it ([`discard_after`]); if the
//! outbox insert itself fails, the whole batch is rolled back and every job of it
//! fails. Ids are still in commit order within a repository: one writer, and the rows
//! go in in the order their jobs ran (the trigger of migrations 0009 and 0014 records each
//! stream's `last_id` as before).
//!
//! Outside a batch (no job running on this thread) [`append`] inserts at once, so an
//! event can never be staged where no commit will write it.

use std::cell::{Cell, RefCell};

use sqlx::SqliteConnection;

use crate::metadata::events::StoredEvent;
use crate::metadata::Result;
use crate::types::EventRecord;

/// An event encoded for its `events` row, and the event itself for the hand-off to
/// the local delivery workers once committed (`handoff`).
pub(super) struct Row {
    action: &'static str,
    record: String,
    event: EventRecord,
}

thread_local! {
    /// Rows staged by the jobs of the batch in progress on this (the writer's) thread.
    static STAGED: RefCell<Vec<Row>> = const { RefCell::new(Vec::new()) };
    /// Whether a batch is in progress on this thread (set by the group committer).
    static IN_BATCH: Cell<bool> = const { Cell::new(false) };
}

/// Largest multi-row `INSERT`; a batch's rows go in chunks of powers of two up to
/// this, so the writer connection caches at most seven such statements.
const MAX_CHUNK: usize = 64;

/// Encodes `events` for their rows. Callers on the request path do this before they
/// submit their job, so the JSON is written on their thread, not the writer's (the
/// embedded default's bottleneck).
pub(super) fn encode_rows(events: &[EventRecord]) -> Result<Vec<Row>> {
    events
        .iter()
        .map(|e| {
            Ok(Row {
                action: e.action.as_str(),
                record: crate::metadata::events::encode(e)?,
                event: e.clone(),
            })
        })
        .collect()
}

/// Appends `events` to the outbox in the caller's transaction: staged for the batch's
/// end inside a group-commit job, inserted at once otherwise.
pub(super) async fn append(conn: &mut SqliteConnection, events: &[EventRecord]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    if !IN_BATCH.get() {
        return super::events::queries::append_events(conn, events).await;
    }
    append_rows(conn, encode_rows(events)?).await
}

/// [`append`] of rows encoded beforehand ([`encode_rows`]).
pub(super) async fn append_rows(conn: &mut SqliteConnection, rows: Vec<Row>) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    if !IN_BATCH.get() {
        // Not published: the hand-off sees the gap in ids and reads the table.
        insert(conn, &rows).await?;
        return Ok(());
    }
    STAGED.with_borrow_mut(|s| s.extend(rows));
    Ok(())
}

/// A batch starts on this thread: nothing is staged.
pub(super) fn begin_batch() {
    STAGED.with_borrow_mut(Vec::clear);
    IN_BATCH.set(true);
}

/// How many rows are staged (before a job runs).
pub(super) fn mark() -> usize {
    STAGED.with_borrow(Vec::len)
}

/// Drops the rows staged after `mark` (the job that staged them was rolled back).
pub(super) fn discard_after(mark: usize) {
    STAGED.with_borrow_mut(|s| s.truncate(mark));
}

/// The events a batch wrote, for the hand-off once it has committed: the id of the
/// first (the others follow it one by one), and the events in id order. No events
/// when their ids were not consecutive (then the hand-off is cleared instead).
pub(super) struct Written {
    pub first_id: i64,
    pub events: Vec<StoredEvent>,
}

/// Ends the batch: inserts its staged rows (in the batch's transaction, before its
/// COMMIT) and empties the stage. What went in, for the hand-off (`None`: nothing to
/// publish, and what is held may no longer be the table's).
pub(super) async fn end_batch(conn: &mut SqliteConnection) -> Result<Option<Written>> {
    IN_BATCH.set(false);
    let rows = STAGED.with_borrow_mut(std::mem::take);
    if rows.is_empty() {
        return Ok(Some(Written {
            first_id: 0,
            events: Vec::new(),
        }));
    }
    let Some((first_id, created_at)) = insert(conn, &rows).await? else {
        return Ok(None);
    };
    let events = rows
        .into_iter()
        .zip(first_id..)
        .map(|(r, seq)| StoredEvent {
            seq,
            record: r.event,
            endpoint: None,
            created_at,
        })
        .collect();
    Ok(Some(Written { first_id, events }))
}

/// Forgets the batch's staged rows (the batch is rolled back as a whole).
pub(super) fn abandon_batch() {
    IN_BATCH.set(false);
    STAGED.with_borrow_mut(Vec::clear);
}

/// Inserts `rows` in order, in multi-row statements of 64, 32, … 1 rows. Returns the
/// first row's id and the rows' `created_at` when the rows' ids are consecutive (each
/// statement's rows take the next ids one by one: `AUTOINCREMENT`, one writer; its
/// last id is SQLite's last insert rowid), else `None`.
async fn insert(conn: &mut SqliteConnection, rows: &[Row]) -> Result<Option<(i64, i64)>> {
    let now = crate::clock::now_ms();
    let mut first: Option<i64> = None;
    let mut consecutive = true;
    let mut next = 0i64;
    let mut rest = rows;
    while !rest.is_empty() {
        let n = chunk_len(rest.len());
        let (chunk, tail) = rest.split_at(n);
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO events (uuid, repository, action, created_at, record, endpoint) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r.event.id.as_str())
                .push_bind(r.event.repository.as_str())
                .push_bind(r.action)
                .push_bind(now)
                .push_bind(r.record.as_str())
                .push("NULL");
        });
        let done = q.build().execute(&mut *conn).await?;
        let n = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
        let chunk_first = done.last_insert_rowid() - n + 1;
        match first {
            None => first = Some(chunk_first),
            Some(_) => consecutive &= chunk_first == next,
        }
        next = done.last_insert_rowid() + 1;
        rest = tail;
    }
    Ok(first.filter(|_| consecutive).map(|f| (f, now)))
}

/// The largest power of two not above `left`, at most [`MAX_CHUNK`].
fn chunk_len(left: usize) -> usize {
    if left >= MAX_CHUNK {
        MAX_CHUNK
    } else {
        1 << (usize::BITS - 1 - left.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_len;

    #[test]
    fn chunks_are_powers_of_two_up_to_64() {
        assert_eq!(chunk_len(1), 1);
        assert_eq!(chunk_len(2), 2);
        assert_eq!(chunk_len(3), 2);
        assert_eq!(chunk_len(20), 16);
        assert_eq!(chunk_len(64), 64);
        assert_eq!(chunk_len(500), 64);
    }
}
