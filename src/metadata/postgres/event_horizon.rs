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
//! **How it moves** ([`advance`], first thing in every claim, endpoint registration and
//! prune):
//! 1. `drawn`, the identity sequence's last value (its cache is 1, the default: every
//!    value is drawn by the statement that uses it). Whoever drew an id up to `drawn`
//!    did so in a statement that had already taken its `ROW EXCLUSIVE` lock on
//!    `events` (taken when the statement starts), which it keeps until its
//!    transaction ends.
//! 2. The transactions of this database that hold that lock now (`pg_locks`, by
//!    virtual transaction id): read after step 1, so among them is every one that drew
//!    an id up to `drawn` and has not ended. None: every id up to `drawn` is final.
//! 3. Otherwise, two ways forward, neither of which waits:
//!    - the ids visible above the horizon, in order: those up to the first one missing
//!      are committed, so the horizon can move to just below the first gap — an id
//!      still in flight, or one rolled back, or pruned;
//!    - the proof kept from an earlier claim (its `drawn` and its holders): once none
//!      of those holders holds the lock any more, every id up to its `drawn` is final,
//!      gaps and all. A claim that finds no proof pending keeps its own for later.
//!
//!    So a push still committing holds back only the events above its own id, and
//!    only until a claim after its commit; a rolled-back id is passed at the claim
//!    after the one that first saw it; a transaction that wrote events and stays open
//!    (a session in `psql`) holds back the events above its id until it ends.
//!    Transactions that did not write events (a GC pass, a report) hold nothing back.
//! 4. In one transaction under the lock of the horizon's row (instances take turns):
//!    the streams with events between the old and the new horizon get `last_id` =
//!    their newest such event (a stream's row created if it has none), and `safe_id`
//!    moves.
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
//! (`drawn` is the horizon); otherwise also `pg_locks` (twice with a proof pending), the
//! ids above the horizon (an index range of one tick's events) and the discovery
//! transaction: per delivery tick, not per push. A push pays one event insert and
//! nothing more. (A first version waited, polling `pg_locks`, for step 2's holders to
//! end: under a steady stream of pushes there always are some, and the waits doubled
//! the commit → delivery delay.) Its statements run on the delivery workers' own
//! connections, as the rest of a tick's: a tick reads nothing above the horizon, so
//! every wait between the horizon's first statement and the tick's read — in the
//! request pool, one behind the pushes for each statement — delayed every event. The
//! steps as one PL/pgSQL function (one round trip instead of up to nine) saved ~1 ms a
//! claim there, no delay measurably: not done.

use std::sync::OnceLock;

use sqlx::{PgConnection, PgPool};
use tokio::sync::Mutex;

use crate::metadata::Result;

/// The most ids above the horizon step 3 reads at once (a long-held horizon moves on
/// in steps of this).
const PREFIX_READ: i64 = 10_000;

/// `wharf_notify_horizon_moves_total{outcome}`: times the horizon was asked to move
/// past new event ids, by how far it went: `reached` the last id drawn, `partial`
/// (short of it: a transaction writing events had not ended), `held` (not at all).
/// Many `held` mean a transaction that writes events stays open: deliveries wait for it.
fn moves() -> &'static prometheus::IntCounterVec {
    static MOVES: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
    MOVES.get_or_init(|| {
        crate::telemetry::lazy_counter_vec(
            "notify_horizon_moves_total",
            "Times the outbox's horizon was asked to move past new event ids, by how far it went",
            &["outcome"],
        )
    })
}

/// Step 3's proof: once none of `holders` holds `ROW EXCLUSIVE` on `events`, every id
/// up to `drawn` is final.
struct Proof {
    drawn: i64,
    holders: Vec<String>,
}

/// This instance's view of the horizon: the last `safe_id` it read or set, and a proof
/// pending. Behind a mutex so an instance's claims (one per endpoint worker) move it
/// one at a time.
#[derive(Default)]
pub(super) struct Horizon {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    known: i64,
    pending: Option<Proof>,
}

/// The transactions of this database holding `ROW EXCLUSIVE` on `events`, other than
/// this connection's; of `among` only, when given.
async fn holders(conn: &mut PgConnection, among: Option<&[String]>) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT virtualtransaction FROM pg_locks
         WHERE locktype = 'relation' AND relation = 'events'::regclass
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND mode = 'RowExclusiveLock' AND granted AND pid <> pg_backend_pid()
           AND ($1::text[] IS NULL OR virtualtransaction = ANY($1))",
    )
    .bind(among)
    .fetch_all(conn)
    .await?)
}

/// The highest id up to which every id above `from` (and at most `to`) is visible,
/// hence committed: just below the first gap.
async fn committed_prefix(conn: &mut PgConnection, from: i64, to: i64) -> Result<i64> {
    // `id + 0`: the expression index of migration 0016.
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM events WHERE id + 0 > $1 AND id + 0 <= $2 ORDER BY id + 0 LIMIT $3",
    )
    .bind(from)
    .bind(to)
    .bind(PREFIX_READ)
    .fetch_all(conn)
    .await?;
    let mut end = from;
    for id in ids {
        if id != end + 1 {
            break;
        }
        end = id;
    }
    Ok(end)
}

/// Moves the horizon as far as the ids drawn so far allow without waiting (see the
/// module doc). Returns the horizon.
#[tracing::instrument(name = "notify.horizon", level = "debug", skip_all)]
pub(super) async fn advance(pool: &PgPool, horizon: &Horizon) -> Result<i64> {
    let mut state = horizon.state.lock().await;
    let mut conn = pool.acquire().await?;
    // Step 1, with the horizon as it stands (another instance may have moved it).
    // `is_called` is false only before the first id is drawn.
    let (last_value, is_called, safe): (i64, bool, i64) = sqlx::query_as(
        "SELECT s.last_value, s.is_called, h.safe_id FROM events_id_seq s, event_horizon h",
    )
    .fetch_one(&mut *conn)
    .await?;
    state.known = state.known.max(safe);
    let known = state.known;
    let drawn = if is_called { last_value } else { 0 };
    if drawn <= known {
        return Ok(known);
    }
    // Step 2, in a statement of its own (after step 1's).
    let now_holding = holders(&mut conn, None).await?;
    // Step 3.
    let target = if now_holding.is_empty() {
        state.pending = None;
        drawn
    } else {
        let mut floor = known;
        if let Some(proof) = state.pending.take() {
            if proof.drawn > known && !holders(&mut conn, Some(&proof.holders)).await?.is_empty() {
                state.pending = Some(proof);
            } else {
                floor = floor.max(proof.drawn);
            }
        }
        if state.pending.is_none() {
            state.pending = Some(Proof {
                drawn,
                holders: now_holding,
            });
        }
        if floor >= drawn {
            drawn
        } else {
            committed_prefix(&mut conn, floor, drawn).await?
        }
    };
    let outcome = if target >= drawn {
        "reached"
    } else if target > known {
        "partial"
    } else {
        "held"
    };
    moves().with_label_values(&[outcome]).inc();
    if target <= known {
        tracing::debug!(
            drawn,
            known,
            "notifications: the horizon waits for a transaction writing events"
        );
        return Ok(known);
    }
    // Step 4.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let safe: i64 = sqlx::query_scalar("SELECT safe_id FROM event_horizon FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    if safe < target {
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
        .bind(target)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE event_horizon SET safe_id = $1")
            .bind(target)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    state.known = safe.max(target);
    Ok(state.known)
}
