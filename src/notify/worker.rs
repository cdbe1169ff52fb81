//! One delivery worker per enabled endpoint on every instance.
//!
//! A tick asks the outbox for due cursors of the endpoint (repositories with events it
//! has not passed, not leased, not backing off), leases up to [`CLAIMS_PER_TICK`] of
//! them and takes one batch per cursor: the cursor's next events in stream order, up
//! to `maxbatch` that the endpoint wants (events its `ignore` rules or a replay for
//! another endpoint exclude are passed over and count as done). The batches of cursors
//! that are not retrying share requests, up to `maxbatch` events each (distribution's
//! envelope carries any events; each repository's are in order within it), and a
//! retrying cursor's batch goes alone, so a batch a receiver keeps refusing holds back
//! no other repository; at most [`CONCURRENCY`] requests are in flight. One request
//! then costs one HTTP exchange for all its repositories, rather than one each, and a
//! tick's deliveries are recorded in one store write with the next tick's claim (see
//! [`run`]): under a steady stream of pushes the work of delivery grows
//! with the number of requests, not of events. For the same reason a tick that found
//! less than a full load waits until the endpoint's `linger` has passed since it began
//! before it claims again, so events written meanwhile go together (a full tick goes on
//! at once). A tick costs about the same whether it carries one event or a hundred — a
//! claim and a completion in the store (on SQLite, jobs for the one writer the pushes
//! wait on), reading the events, a request the receiver has to answer — so under a
//! steady stream of pushes the linger decides how much delivery takes from them. In
//! `scripts/bench-notify` (16 repositories, ~1,300 pushes/s on SQLite) going from 25 ms
//! to the default 100 ms cut the claims per push from 0.027 to 0.007, the delivery
//! worker's CPU per push from 12–16 to 7–8 µs and the receiver's from 20 to 12 µs, for
//! a commit → delivery p50 of 67 ms rather than 32.
//!
//! Only a 2xx completes a request's batches; anything else records a failed attempt of
//! each, and the time of its next one:
//!
//! - attempts below `threshold` come back quickly (100 ms × attempts), as distribution
//!   retries before it backs off;
//! - from `threshold` on, `backoff × 2^(attempts − threshold)`, capped at
//!   `maxbackoff`, with jitter (between half and all of it) so the instances of a
//!   fleet do not retry in step;
//! - after `maxattempts` attempts, or when the batch's oldest event is older than
//!   `maxage`, the batch goes to the dead letters and the cursor moves on.
//!
//! The lease outlives the request (`timeout` × 2 + 10 s), so one batch of a cursor is
//! in flight at a time and per-repository order holds across instances; an instance
//! that dies mid-delivery loses its lease, and another instance sends the batch again
//! (same event ids: at least once). Memory per endpoint is bounded by the claims and
//! batches of one tick ([`CLAIMS_PER_TICK`] cursors, [`EVENTS_PER_TICK`] events), whatever
//! the backlog.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tracing::Instrument;

use super::format;
use super::metrics::metrics;
use super::sign;
use crate::config::EndpointConfig;
use crate::metadata::{ClaimedCursor, EventStore, StoredEvent};

/// Cursors leased per tick, at most. With many repositories pushed to at once a worker
/// goes round all their cursors in `streams / CLAIMS_PER_TICK` ticks: at 32 a tick (as it
/// was), 1024 busy repositories took 32 ticks, and the benchmark's commit → delivery p99
/// was 3.1 s on PostgreSQL.
pub const CLAIMS_PER_TICK: u32 = 256;
/// Events one tick reads, at most, over all its cursors: with few cursors up to twice
/// `maxbatch` each (enough to fill a batch past events the endpoint does not want), with
/// many an even share, so a worker's memory is bounded however many cursors it leases.
pub const EVENTS_PER_TICK: usize = 6400;
/// Deliveries in flight per endpoint and instance.
pub const CONCURRENCY: usize = 8;
/// Pause when there was nothing to do.
pub const IDLE_POLL: Duration = Duration::from_millis(100);
/// Pause after the outbox failed.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// A worker's endpoint and what it sends with.
pub struct Endpoint {
    pub config: EndpointConfig,
    client: reqwest::Client,
    headers: reqwest::header::HeaderMap,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Result<Endpoint, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout.0)
            .connect_timeout(config.timeout.0)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| format!("endpoint {}: HTTP client: {e}", config.name))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, values) in &config.headers {
            for v in values {
                let (Ok(n), Ok(v)) = (
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                    reqwest::header::HeaderValue::from_str(v),
                ) else {
                    return Err(format!("endpoint {}: bad header {name}", config.name));
                };
                headers.append(n, v);
            }
        }
        Ok(Endpoint {
            config,
            client,
            headers,
        })
    }

    fn lease(&self) -> Duration {
        self.config.timeout.0 * 2 + Duration::from_secs(10)
    }

    /// Whether this endpoint delivers `e` (its rules, and replays meant for others).
    fn wants(&self, e: &StoredEvent) -> bool {
        if e.endpoint.as_deref().is_some_and(|t| t != self.config.name) {
            return false;
        }
        if !self.config.wants_action(e.record.action.as_str()) {
            return false;
        }
        match e.record.media_type() {
            Some(m) => !self.config.ignored_media_types().any(|i| i == m),
            None => true,
        }
    }

    /// The pause before attempt `attempts + 1` (see the module doc).
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        let threshold = u32::try_from(self.config.threshold).unwrap_or(u32::MAX);
        if attempts < threshold {
            return Duration::from_millis(100) * attempts;
        }
        let exp = (attempts - threshold).min(30);
        let full = self
            .config
            .backoff
            .0
            .saturating_mul(1u32 << exp.min(20))
            .min(self.config.maxbackoff.0);
        let half = full / 2;
        half + half.mul_f64(jitter())
    }

    /// Sends one request; Ok on a 2xx.
    async fn post(&self, events: &[&crate::types::EventRecord]) -> Result<u16, String> {
        let (body, content_type) = format::body(&self.config, events);
        // The delivery's span (a child of the push's trace): the receiver joins it.
        let mut headers = self.headers.clone();
        crate::telemetry::otlp::inject(&mut headers);
        let mut req = self
            .client
            .post(&self.config.url)
            .headers(headers)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        if let Some(secret) = &self.config.secret {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            req = req.header(
                sign::HEADER,
                sign::signature(secret.0.as_bytes(), now, &body),
            );
        }
        let response = req.body(body).send().await.map_err(|e| {
            if e.is_timeout() {
                format!("timed out after {:?}", self.config.timeout.0)
            } else {
                format!("request failed: {e}")
            }
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

/// A random number in [0, 1).
fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 11) as f64 / (1u64 << 53) as f64
}

/// What a tick has done and not yet recorded: the cursors it completed (delivered, or
/// with nothing the endpoint wants), under the tick's lease token.
#[derive(Default)]
struct Done {
    token: String,
    cursors: Vec<(String, i64)>,
}

/// Runs the endpoint's deliveries until the process stops (`lifecycle`): from then on
/// it leases no cursor, and the batches of the tick in progress are delivered and
/// recorded first.
///
/// A tick's completions are recorded with the next tick's claim, in one store write
/// (`EventStore::complete_and_claim`), not one write per request: on SQLite every
/// write is a job for the one writer that the pushes wait on. The cursors stay leased
/// until then (at most the endpoint's `linger` longer), so nobody else delivers their next batch
/// meanwhile; if the process dies first, the lease expires and the batch is delivered
/// again, same ids, same order (at least once).
pub async fn run(endpoint: Arc<Endpoint>, store: Arc<dyn EventStore>) {
    let _running = crate::lifecycle::worker();
    let name = endpoint.config.name.clone();
    let mut done = Done::default();
    while !crate::lifecycle::stopping() {
        let started = tokio::time::Instant::now();
        let now = crate::clock::now_ms();
        let token = uuid::Uuid::new_v4().to_string();
        let lease_until = now + i64::try_from(endpoint.lease().as_millis()).unwrap_or(i64::MAX);
        let claimed = if done.cursors.is_empty() {
            store
                .claim_cursors(&name, &token, now, lease_until, CLAIMS_PER_TICK)
                .await
        } else {
            store
                .complete_and_claim(
                    &name,
                    &done.token,
                    &done.cursors,
                    &token,
                    now,
                    lease_until,
                    CLAIMS_PER_TICK,
                )
                .await
                .map(|(_, claimed)| claimed)
        };
        let claimed = match claimed {
            Ok(c) => {
                done.cursors.clear();
                c
            }
            Err(e) => {
                // The completions are kept and tried again with the next claim; if
                // their leases expire first, their batches are delivered again.
                tracing::warn!(endpoint = %name, error = %e, "notifications: claiming failed");
                crate::lifecycle::pause(ERROR_PAUSE).await;
                continue;
            }
        };
        if claimed.is_empty() {
            crate::lifecycle::pause(IDLE_POLL).await;
            continue;
        }
        let full = claimed.len() >= CLAIMS_PER_TICK as usize;
        let (more, completed) = tick(&endpoint, &store, &token, claimed).await;
        done = Done {
            token,
            cursors: completed,
        };
        if !(more || full) {
            // Cut short by a shutdown (the loop then ends and records `done`).
            let left = (started + endpoint.config.linger.0)
                .saturating_duration_since(tokio::time::Instant::now());
            crate::lifecycle::pause(left).await;
        }
    }
    if !done.cursors.is_empty() {
        if let Err(e) = store
            .complete_cursors(&name, &done.token, &done.cursors)
            .await
        {
            tracing::warn!(endpoint = %name, error = %e,
                "notifications: recording deliveries at shutdown failed (they will be sent again)");
        }
    }
}

/// Events a tick reads per cursor when it holds `cursors` of them: twice `maxbatch`,
/// or an even share of [`EVENTS_PER_TICK`] when that is less (at least one).
fn read_limit(maxbatch: usize, cursors: usize) -> usize {
    (maxbatch * 2).min((EVENTS_PER_TICK / cursors.max(1)).max(1))
}

/// A leased cursor's next batch.
struct Batch {
    cursor: ClaimedCursor,
    /// The events to send (wanted by the endpoint), in stream order.
    events: Vec<StoredEvent>,
    /// The last event the batch passes (sent or not wanted).
    upto: i64,
}

/// Reads the claimed cursors' batches and sends those with events to send in shared
/// requests. Returns whether some cursor has more events than its batch took, and the
/// cursors done (delivered, or with nothing to send) with the position each reached,
/// for the caller to record. If the events cannot be read, the cursors keep their
/// leases until they expire.
async fn tick(
    endpoint: &Arc<Endpoint>,
    store: &Arc<dyn EventStore>,
    token: &str,
    claimed: Vec<ClaimedCursor>,
) -> (bool, Vec<(String, i64)>) {
    let maxbatch = usize::try_from(endpoint.config.maxbatch)
        .unwrap_or(1)
        .max(1);
    let name = endpoint.config.name.as_str();
    // Every claimed cursor's next events in one read (a statement per 32 cursors).
    let limit = read_limit(maxbatch, claimed.len());
    let positions: Vec<(String, i64)> = claimed
        .iter()
        .map(|c| (c.repository.clone(), c.delivered_id))
        .collect();
    let fetched = match store
        .events_after_each(&positions, u32::try_from(limit).unwrap_or(u32::MAX))
        .await
    {
        Ok(f) => f,
        Err(e) => {
            // The leases expire; the cursors are claimed again then.
            tracing::warn!(endpoint = name, error = %e, "notifications: reading events failed");
            return (false, Vec::new());
        }
    };
    let mut more = false;
    let mut done = Vec::new();
    let mut batches = Vec::new();
    for (cursor, events) in claimed.into_iter().zip(fetched) {
        let (batch, rest) = next_batch(endpoint, cursor, events, maxbatch, limit);
        more |= rest;
        if batch.events.is_empty() {
            done.push((batch.cursor.repository, batch.upto));
        } else {
            batches.push(batch);
        }
    }
    let delivered: Vec<Vec<(String, i64)>> = futures_util::stream::iter(pack(batches, maxbatch))
        .map(|request| async move {
            deliver(endpoint, store.as_ref(), token, request)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(endpoint = %endpoint.config.name, error = %e,
                        "notifications: recording a failed delivery failed");
                    Vec::new()
                })
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    done.extend(delivered.into_iter().flatten());
    (more, done)
}

/// The next batch of one cursor from `fetched` (up to `limit` of its next events), and
/// whether its stream goes on past it.
fn next_batch(
    endpoint: &Endpoint,
    cursor: ClaimedCursor,
    fetched: Vec<StoredEvent>,
    maxbatch: usize,
    limit: usize,
) -> (Batch, bool) {
    let mut rest = fetched.len() == limit;
    // A prefix of the stream holding up to `maxbatch` wanted events.
    let mut upto = cursor.delivered_id;
    let mut events = Vec::new();
    for e in fetched {
        if endpoint.wants(&e) {
            if events.len() == maxbatch {
                rest = true;
                break;
            }
            upto = e.seq;
            events.push(e);
        } else {
            upto = e.seq;
        }
    }
    (
        Batch {
            cursor,
            events,
            upto,
        },
        rest,
    )
}

/// Batches into requests of at most `maxbatch` events: a retrying cursor's alone, the
/// others together, first fit in claim order.
fn pack(batches: Vec<Batch>, maxbatch: usize) -> Vec<Vec<Batch>> {
    let mut requests: Vec<(usize, Vec<Batch>)> = Vec::new();
    for b in batches {
        let n = b.events.len();
        if b.cursor.attempts == 0 {
            if let Some(r) = requests
                .iter_mut()
                .find(|r| r.1[0].cursor.attempts == 0 && r.0 + n <= maxbatch)
            {
                r.0 += n;
                r.1.push(b);
                continue;
            }
        }
        requests.push((n, vec![b]));
    }
    requests.into_iter().map(|r| r.1).collect()
}

/// Sends one request carrying `batches` (at least one, each of its own cursor). On a
/// 2xx, returns each cursor with the position its batch reached (recorded by the
/// caller, with the next claim); otherwise records a failed attempt of each and
/// returns nothing.
async fn deliver(
    endpoint: &Endpoint,
    store: &dyn EventStore,
    token: &str,
    batches: Vec<Batch>,
) -> crate::metadata::Result<Vec<(String, i64)>> {
    let name = endpoint.config.name.as_str();
    let records: Vec<&crate::types::EventRecord> = batches
        .iter()
        .flat_map(|b| b.events.iter().map(|e| &e.record))
        .collect();
    let request_ids: Vec<&str> = records
        .iter()
        .map(|r| r.request.id.as_str())
        .filter(|id| !id.is_empty())
        .collect();
    let repositories: Vec<&str> = batches
        .iter()
        .map(|b| b.cursor.repository.as_str())
        .collect();
    let attempt = batches
        .iter()
        .map(|b| b.cursor.attempts)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let span = tracing::info_span!(
        "notify.deliver",
        endpoint = name,
        repository = %repositories.join(","),
        events = records.len(),
        attempt,
        request_id = %request_ids.join(","),
        otel.kind = "client",
        http.status_code = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    // The delivery continues the trace of the first request that caused it.
    if let Some(r) = records.iter().find(|r| !r.request.traceparent.is_empty()) {
        crate::telemetry::otlp::set_parent(&span, &r.request.traceparent);
    }
    let m = metrics();
    for b in batches.iter().filter(|b| b.cursor.attempts > 0) {
        m.retried
            .with_label_values(&[name])
            .inc_by(b.events.len() as u64);
    }
    let outcome = endpoint.post(&records).instrument(span.clone()).await;
    let now = crate::clock::now_ms();
    let status = match outcome {
        Ok(status) => status,
        Err(error) => {
            span.record("error", error.as_str());
            m.failures.with_label_values(&[name]).inc();
            for b in &batches {
                failed(endpoint, store, token, b, &error, now).await?;
            }
            return Ok(Vec::new());
        }
    };
    span.record("http.status_code", status);
    m.delivered
        .with_label_values(&[name])
        .inc_by(records.len() as u64);
    let latency = m.latency.with_label_values(&[name]);
    for e in batches.iter().flat_map(|b| &b.events) {
        latency.observe((now - e.created_at).max(0) as f64 / 1000.0);
    }
    Ok(batches
        .into_iter()
        .map(|b| (b.cursor.repository, b.upto))
        .collect())
}

/// Records a failed attempt of one cursor's batch: a retry later, or the dead letters.
async fn failed(
    endpoint: &Endpoint,
    store: &dyn EventStore,
    token: &str,
    batch: &Batch,
    error: &str,
    now: i64,
) -> crate::metadata::Result<()> {
    let name = endpoint.config.name.as_str();
    let repository = batch.cursor.repository.as_str();
    let m = metrics();
    let attempts = batch.cursor.attempts.saturating_add(1);
    let oldest = batch
        .events
        .iter()
        .map(|e| e.created_at)
        .min()
        .unwrap_or(now);
    let too_old =
        now - oldest > i64::try_from(endpoint.config.maxage.0.as_millis()).unwrap_or(i64::MAX);
    let max = u32::try_from(endpoint.config.maxattempts).unwrap_or(u32::MAX);
    if attempts >= max || too_old {
        if store
            .dead_letter(name, repository, token, &batch.events, attempts, error, now)
            .await?
        {
            m.dead
                .with_label_values(&[name])
                .inc_by(batch.events.len() as u64);
            tracing::warn!(endpoint = name, repository, events = batch.events.len(), attempts,
                %error, "notifications: events moved to the dead letters");
        }
    } else {
        let delay = endpoint.retry_delay(attempts);
        let due = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        tracing::debug!(endpoint = name, repository, attempts, %error, retry_in = ?delay,
            "notifications: delivery failed");
        store
            .fail_cursor(name, repository, token, attempts, due, error)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{read_limit, CLAIMS_PER_TICK, EVENTS_PER_TICK};

    #[test]
    fn a_tick_reads_twice_maxbatch_per_cursor_within_its_event_bound() {
        assert_eq!(read_limit(100, 16), 200);
        assert_eq!(read_limit(100, 32), 200);
        assert_eq!(read_limit(100, 256), 25);
        assert_eq!(read_limit(1000, 1), 2000);
        assert_eq!(read_limit(1000, 0), 2000);
        let most = CLAIMS_PER_TICK as usize;
        for maxbatch in [1, 100, 1000] {
            for cursors in 1..=most {
                let limit = read_limit(maxbatch, cursors);
                assert!(limit >= 1);
                assert!(limit * cursors <= EVENTS_PER_TICK.max(cursors));
            }
        }
    }
}
