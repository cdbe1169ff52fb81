//! The outbox's rows as the engines read them (`events`, dead letters, pending events
//! with their cursor's state, events read for several cursors at once), the JSON an
//! event is stored as, and the grouping helpers the statements share.

use super::{DeadLetter, PendingEvent, StoredEvent};
use crate::metadata::Result;
use crate::types::EventRecord;

/// `events` row.
#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: i64,
    record: String,
    endpoint: Option<String>,
    created_at: i64,
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = crate::metadata::MetadataError;

    fn try_from(r: EventRow) -> Result<StoredEvent> {
        Ok(StoredEvent {
            seq: r.id,
            record: decode(&r.record, r.id)?,
            endpoint: r.endpoint,
            created_at: r.created_at,
        })
    }
}

/// `event_dead_letters` row.
#[derive(sqlx::FromRow)]
pub(crate) struct DeadRow {
    id: i64,
    endpoint: String,
    record: String,
    attempts: i64,
    last_error: String,
    dead_at: i64,
}

impl TryFrom<DeadRow> for DeadLetter {
    type Error = crate::metadata::MetadataError;

    fn try_from(r: DeadRow) -> Result<DeadLetter> {
        Ok(DeadLetter {
            record: decode(&r.record, r.id)?,
            id: r.id,
            endpoint: r.endpoint,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            last_error: r.last_error,
            dead_at: r.dead_at,
        })
    }
}

/// A pending event with its cursor's state.
#[derive(sqlx::FromRow)]
pub(crate) struct PendingRow {
    ep: String,
    id: i64,
    record: String,
    endpoint: Option<String>,
    created_at: i64,
    attempts: Option<i64>,
    last_error: Option<String>,
}

impl TryFrom<PendingRow> for PendingEvent {
    type Error = crate::metadata::MetadataError;

    fn try_from(r: PendingRow) -> Result<PendingEvent> {
        Ok(PendingEvent {
            endpoint: r.ep,
            attempts: r
                .attempts
                .map_or(0, |a| u32::try_from(a).unwrap_or(u32::MAX)),
            last_error: r.last_error,
            event: StoredEvent {
                seq: r.id,
                record: decode(&r.record, r.id)?,
                endpoint: r.endpoint,
                created_at: r.created_at,
            },
        })
    }
}

pub(crate) fn encode(e: &EventRecord) -> Result<String> {
    serde_json::to_string(e).map_err(|err| {
        crate::metadata::MetadataError::Corrupt(format!("cannot encode an event: {err}"))
    })
}

fn decode(s: &str, id: i64) -> Result<EventRecord> {
    serde_json::from_str(s)
        .map_err(|e| crate::metadata::MetadataError::Corrupt(format!("event {id}: {e}")))
}

/// `events` row with the position of the cursor it was read for (`events_after_each`).
#[derive(sqlx::FromRow)]
pub(crate) struct CursorEventRow {
    cursor: i64,
    #[sqlx(flatten)]
    row: EventRow,
}

/// Sorts the rows of one `events_after_each` statement into one list per cursor of a
/// chunk of `n` (each cursor's rows come in stream order).
pub(crate) fn per_cursor(n: usize, rows: Vec<CursorEventRow>) -> Result<Vec<Vec<StoredEvent>>> {
    let mut out: Vec<Vec<StoredEvent>> = (0..n).map(|_| Vec::new()).collect();
    for r in rows {
        let list = usize::try_from(r.cursor)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| {
                crate::metadata::MetadataError::Corrupt(format!("cursor {} read", r.cursor))
            })?;
        list.push(StoredEvent::try_from(r.row)?);
    }
    Ok(out)
}

/// Repositories of `events` in name order (the order streams are locked in), each
/// with its events in the order given.
pub(crate) fn by_repository(events: &[EventRecord]) -> Vec<(&str, Vec<&EventRecord>)> {
    let mut out: std::collections::BTreeMap<&str, Vec<&EventRecord>> = Default::default();
    for e in events {
        out.entry(e.repository.as_str()).or_default().push(e);
    }
    out.into_iter().collect()
}
