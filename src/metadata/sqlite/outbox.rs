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
//! go in in the order their jobs ran (the trigger of migration 0009 records each
//! stream's `last_id` as before).
//!
//! Outside a batch (no job running on this thread) [`append`] inserts at once, so an
//! event can never be staged where no commit will write it.

use std::cell::{Cell, RefCell};

use sqlx::SqliteConnection;

use crate::metadata::Result;
use crate::types::EventRecord;

/// An event encoded for its `events` row.
pub(super) struct Row {
    uuid: String,
    repository: String,
    action: &'static str,
    record: String,
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
                uuid: e.id.clone(),
                repository: e.repository.clone(),
                action: e.action.as_str(),
                record: crate::metadata::events::encode(e)?,
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
        return insert(conn, &rows).await;
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

/// Ends the batch: inserts its staged rows (in the batch's transaction, before its
/// COMMIT) and empties the stage. How many rows went in.
pub(super) async fn end_batch(conn: &mut SqliteConnection) -> Result<usize> {
    IN_BATCH.set(false);
    let rows = STAGED.with_borrow_mut(std::mem::take);
    insert(conn, &rows).await?;
    Ok(rows.len())
}

/// Forgets the batch's staged rows (the batch is rolled back as a whole).
pub(super) fn abandon_batch() {
    IN_BATCH.set(false);
    STAGED.with_borrow_mut(Vec::clear);
}

/// Inserts `rows` in order, in multi-row statements of 64, 32, … 1 rows.
async fn insert(conn: &mut SqliteConnection, rows: &[Row]) -> Result<()> {
    let now = crate::clock::now_ms();
    let mut rest = rows;
    while !rest.is_empty() {
        let n = chunk_len(rest.len());
        let (chunk, tail) = rest.split_at(n);
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO events (uuid, repository, action, created_at, record, endpoint) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r.uuid.as_str())
                .push_bind(r.repository.as_str())
                .push_bind(r.action)
                .push_bind(now)
                .push_bind(r.record.as_str())
                .push("NULL");
        });
        q.build().execute(&mut *conn).await?;
        rest = tail;
    }
    Ok(())
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
