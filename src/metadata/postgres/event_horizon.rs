//! The outbox's horizon on PostgreSQL: the event id up to which every event is final
//! (its transaction has committed or rolled back), and the record of the streams that
//! have events up to it. Owns `event_horizon` and the writes to `event_streams.last_id`.
//!
//! **Why.** A writer inserts its events and locks nothing shared: each id is drawn
//! from the identity sequence when its row is formed. Two writers of one repository
//! can then commit out of id order — id 11 visible while id 10 is still in flight —
//! and a reader that passed 11 would never deliver 10. (Until migration 0016 every
//! writer locked its repository's stream row to its commit instead, so pushes to one
//! repository waited for each other's commits; in the notifications benchmark that was
//! nearly half of what notifications cost PostgreSQL.) So claims and reads stop at the
//! horizon `safe_id`: no event at or below it can still appear.
//!
//! **How it moves** ([`advance`], first thing in every claim):
//! 1. `drawn`, the identity sequence's last value. Whoever drew an id up to `drawn`
//!    did so in a statement that had already taken its `ROW EXCLUSIVE` lock on
//!    `events` (taken when the statement starts), which it keeps until its
//!    transaction ends.
//! 2. The transactions of this database that hold that lock now (`pg_locks`, by
//!    virtual transaction id): read after step 1, so among them is every one that drew
//!    an id up to `drawn` and has not ended.
//! 3. Wait, polling for up to [`WAIT`], until none of them holds it any more. Pushes
//!    end within milliseconds; one that is still open then (a long transaction that
//!    wrote events) keeps the horizon where it is, and the next claim tries again —
//!    its events, and any id above its own, cannot be passed before it ends anyway.
//!    Transactions that did not write events (a GC pass, a report, a session in
//!    `psql`) hold no such lock and hold nothing back.
//! 4. In one transaction under the lock of the horizon's row (instances take turns):
//!    the streams with events in (`safe_id`, `drawn`] get `last_id` = their newest such
//!    event (a stream's row created if it has none), and `safe_id` becomes `drawn`.
//!
//! **Order.** Within a repository events are delivered in id order. An event's id is
//! drawn after the row locks of the write before it in its statement (a tag's upsert, a
//! link), so of two writes that conflict the later one to commit has the higher id;
//! writes that do not conflict ran concurrently, and their id order is one in which a
//! client could have seen them commit. A change a client saw acknowledged before it
//! sent the next one always has the lower id.
//!
//! **Pruning.** A stream's row is deleted when it has no events left and its `last_id`
//! is what pruning read (`events::queries::prune_events`). Any event it could have
//! missed has an id above the horizon (below it, all are final and visible), so the
//! discovery of a later step 4 records the stream again.
//!
//! **Cost.** Per claim, one statement when no event has been written since the last
//! (`drawn` is the horizon); otherwise also `pg_locks` (a few reads while pushes
//! finish) and the discovery transaction: per delivery tick, not per push. A push pays
//! one event insert and nothing more.

use std::sync::OnceLock;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::metadata::Result;

/// The longest a claim waits for the transactions that hold ids up to `drawn`.
const WAIT: Duration = Duration::from_millis(64);
/// The first pause while waiting; each next one doubles.
const FIRST_PAUSE: Duration = Duration::from_millis(1);

/// `wharf_notify_horizon_waits_total{outcome}`: claims that found transactions holding
/// ids up to `drawn` and waited for them, by whether they ended within [`WAIT`]
/// (`passed`) or the horizon stayed where it was (`held`). Many `held` mean a
/// transaction that writes events stays open: deliveries wait for it.
fn waits() -> &'static prometheus::IntCounterVec {
    static WAITS: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
    WAITS.get_or_init(|| {
        crate::telemetry::lazy_counter_vec(
            "notify_horizon_waits_total",
            "Claims that waited for transactions writing events before moving the outbox's horizon, by outcome",
            &["outcome"],
        )
    })
}

/// This instance's view of the horizon: the last `safe_id` it read or set. Behind a
/// mutex so an instance's claims (one per endpoint worker) move it one at a time.
#[derive(Default)]
pub(super) struct Horizon {
    known: Mutex<i64>,
}

/// Moves the horizon up to the ids drawn so far, if every transaction that may hold
/// one of them has ended within [`WAIT`] (see the module doc). Returns the horizon.
#[tracing::instrument(name = "notify.horizon", level = "debug", skip_all)]
pub(super) async fn advance(pool: &PgPool, horizon: &Horizon) -> Result<i64> {
    let mut known = horizon.known.lock().await;
    let mut conn = pool.acquire().await?;
    // Step 1. `is_called` is false only before the first id is drawn.
    let (last_value, is_called): (i64, bool) =
        sqlx::query_as("SELECT last_value, is_called FROM events_id_seq")
            .fetch_one(&mut *conn)
            .await?;
    let drawn = if is_called { last_value } else { 0 };
    if drawn <= *known {
        return Ok(*known);
    }
    // Step 2, in a statement of its own (after step 1's).
    let mut holders: Vec<String> = sqlx::query_scalar(
        "SELECT virtualtransaction FROM pg_locks
         WHERE locktype = 'relation' AND relation = 'events'::regclass
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND mode = 'RowExclusiveLock' AND granted AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut *conn)
    .await?;
    // Step 3.
    let started = tokio::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    let waited = !holders.is_empty();
    while !holders.is_empty() {
        if started.elapsed() >= WAIT {
            waits().with_label_values(&["held"]).inc();
            tracing::debug!(
                transactions = holders.len(),
                "notifications: the horizon waits for transactions that write events"
            );
            return Ok(*known);
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
        holders = sqlx::query_scalar(
            "SELECT virtualtransaction FROM pg_locks
             WHERE locktype = 'relation' AND relation = 'events'::regclass
               AND mode = 'RowExclusiveLock' AND granted AND virtualtransaction = ANY($1)",
        )
        .bind(&holders)
        .fetch_all(&mut *conn)
        .await?;
    }
    if waited {
        waits().with_label_values(&["passed"]).inc();
    }
    // Step 4.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let safe: i64 = sqlx::query_scalar("SELECT safe_id FROM event_horizon FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    if safe < drawn {
        // `id + 0`: the expression index of migration 0016.
        sqlx::query(
            "INSERT INTO event_streams (repository, last_id)
             SELECT repository, MAX(id) FROM events
             WHERE id + 0 > $1 AND id + 0 <= $2
             GROUP BY repository
             ON CONFLICT (repository) DO UPDATE
                 SET last_id = GREATEST(event_streams.last_id, excluded.last_id)",
        )
        .bind(safe)
        .bind(drawn)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE event_horizon SET safe_id = $1")
            .bind(drawn)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    *known = safe.max(drawn);
    Ok(*known)
}
