//! Webhook notifications: delivery of the events in the metadata store's outbox to the
//! configured endpoints, from every instance.
//!
//! Why an outbox: distribution keeps a queue per endpoint in memory, so a restart or a
//! dead instance loses what it held and a receiver that is down makes it grow without
//! bound. Here an event is a row written in the transaction of the change it reports
//! (`metadata::events`), so no acknowledged change is without its event and no event
//! describes a change that rolled back, and delivery state is rows too: cursors per
//! (endpoint, repository) that any instance can lease. What a worker holds in memory
//! is bounded by one tick's claims and batches (`worker`).
//!
//! Guarantees: every event is delivered at least once to every endpoint enabled when
//! it was written (or dead-lettered after `maxattempts`/`maxage`, and replayable with
//! `wharf events replay`); per (endpoint, repository) in commit order (a redelivered
//! batch repeats events with the same ids; replayed dead letters come after what was
//! delivered meanwhile); each request signed when the endpoint has a `secret`
//! (`sign`). Pull events are buffered before they are written (see
//! `registry::events`), so a crash may lose up to a second of them.
//!
//! Endpoints are recorded in the outbox when a worker first serves them and start
//! from "now". An endpoint no instance has served for [`ENDPOINT_STALE_AFTER`]
//! (removed or disabled everywhere) stops holding events back from pruning; enabled
//! again later, it starts from "now" again.
//!
//! Layer: above `metadata` and `config`; the registry core knows nothing of endpoints
//! (it is told by `server` whether to write events at all).

use std::sync::Arc;
use std::time::Duration;

use crate::config::NotificationsConfig;
use crate::metadata::{EventStore, ReplayFilter};
use crate::types::EventSource;

pub mod format;
pub mod metrics;
pub mod sign;
pub mod worker;

/// How often each instance records its endpoints as served, prunes the outbox and
/// refreshes the backlog gauges.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);
/// Endpoints not served for this long are forgotten.
pub const ENDPOINT_STALE_AFTER: Duration = Duration::from_secs(3600);
/// Most events pruned per pass: 10,000 a second at one pass every
/// [`HOUSEKEEPING_EVERY`], above what one instance writes (it was 5000, 1000 a second,
/// below the embedded default's manifest-push rate: under such a load the outbox grew
/// for as long as the load lasted).
const PRUNE_BATCH: u32 = 50_000;
/// Most events pruned per store write: a pass is slices of this many, each its own
/// write, so that no write holds the store (on SQLite, the one writer the pushes wait
/// on) for long.
const PRUNE_SLICE: u32 = 250;

/// Whether events must be written, and whether pulls are wanted.
pub fn wants(config: &NotificationsConfig) -> (bool, bool) {
    let enabled = config.enabled().count() > 0;
    let pulls = config.enabled().any(|e| e.wants_action("pull"));
    (enabled, pulls)
}

/// This instance as events name it: `<hostname>:<port>` and a random id per process.
pub fn source(listen: Option<std::net::SocketAddr>) -> EventSource {
    let host = hostname().unwrap_or_else(|| "localhost".into());
    EventSource {
        addr: match listen {
            Some(a) => format!("{host}:{}", a.port()),
            None => host,
        },
        instance_id: uuid::Uuid::new_v4().to_string(),
    }
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // or truncates, and we read up to the first NUL only.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec())
        .ok()
        .filter(|s| !s.is_empty())
}

/// Why delivery cannot start.
#[derive(Debug, thiserror::Error)]
#[error("notifications: {0}")]
pub struct NotifyError(pub String);

/// Records the enabled endpoints in the outbox (so events written from now on are
/// theirs), then starts a worker per endpoint and the housekeeping task.
pub async fn spawn(
    store: Arc<dyn EventStore>,
    config: &NotificationsConfig,
) -> Result<(), NotifyError> {
    let endpoints: Vec<Arc<worker::Endpoint>> = config
        .enabled()
        .map(|e| worker::Endpoint::new(e.clone()).map(Arc::new))
        .collect::<Result<_, _>>()
        .map_err(NotifyError)?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let now = crate::clock::now_ms();
    for e in &endpoints {
        store
            .register_endpoint(&e.config.name, now)
            .await
            .map_err(|err| NotifyError(format!("endpoint {}: {err}", e.config.name)))?;
        tracing::info!(endpoint = %e.config.name, url = %e.config.url, timeout = ?e.config.timeout.0,
            threshold = e.config.threshold, backoff = ?e.config.backoff.0,
            format = ?e.config.format, signed = e.config.secret.is_some(), "notification endpoint");
        tokio::spawn(worker::run(e.clone(), store.clone()));
    }
    let names: Vec<String> = endpoints.iter().map(|e| e.config.name.clone()).collect();
    tokio::spawn(housekeeping(store, names));
    Ok(())
}

async fn housekeeping(store: Arc<dyn EventStore>, names: Vec<String>) {
    let stale_ms = i64::try_from(ENDPOINT_STALE_AFTER.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = crate::lifecycle::stopped() => break,
        }
        let now = crate::clock::now_ms();
        for name in &names {
            if let Err(e) = store.register_endpoint(name, now).await {
                tracing::debug!(endpoint = %name, error = %e, "notifications: refresh failed");
            }
            match store.endpoint_backlog(name).await {
                Ok(b) => {
                    let m = metrics::metrics();
                    m.pending.with_label_values(&[name]).set(b.pending as f64);
                    let age = b.oldest.map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0);
                    m.oldest_age.with_label_values(&[name]).set(age);
                }
                Err(e) => tracing::debug!(endpoint = %name, error = %e, "notifications: backlog"),
            }
        }
        match prune(store.as_ref(), now - stale_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "notifications: delivered events pruned"),
            Err(e) => tracing::debug!(error = %e, "notifications: pruning failed"),
        }
    }
}

/// One pruning pass: up to [`PRUNE_BATCH`] events, in slices of [`PRUNE_SLICE`] (each
/// its own write, other writes in between); how many went.
async fn prune(store: &dyn EventStore, stale_before: i64) -> crate::metadata::Result<u64> {
    let mut total = 0u64;
    while total < u64::from(PRUNE_BATCH) && !crate::lifecycle::stopping() {
        let n = store.prune_events(stale_before, PRUNE_SLICE).await?;
        total += n;
        if n < u64::from(PRUNE_SLICE) {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}

/// `wharf events list`: pending events (or dead letters), one line each.
pub async fn list(
    store: &dyn EventStore,
    dead: bool,
    endpoint: Option<&str>,
    limit: u32,
) -> crate::metadata::Result<Vec<String>> {
    let ts = |ms: i64| {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        humantime::format_rfc3339_millis(t).to_string()
    };
    let target = |r: &crate::types::EventRecord| {
        let mut s = r.repository.clone();
        if let Some(t) = &r.target.tag {
            s = format!("{s}:{t}");
        }
        if let Some(d) = &r.target.digest {
            s = format!("{s}@{d}");
        }
        s
    };
    if dead {
        let letters = store.dead_letters(endpoint, limit).await?;
        Ok(letters
            .iter()
            .map(|d| {
                format!(
                    "{}\t{}\t{}\t{}\t{}\tattempts={}\tdead_at={}\t{}",
                    d.endpoint,
                    d.record.id,
                    ts(d.record.timestamp_ms),
                    d.record.action.as_str(),
                    target(&d.record),
                    d.attempts,
                    ts(d.dead_at),
                    d.last_error
                )
            })
            .collect())
    } else {
        let pending = store.pending_events(endpoint, limit).await?;
        Ok(pending
            .iter()
            .map(|p| {
                let r = &p.event.record;
                format!(
                    "{}\t{}\t{}\t{}\t{}\tattempts={}\t{}",
                    p.endpoint,
                    r.id,
                    ts(r.timestamp_ms),
                    r.action.as_str(),
                    target(r),
                    p.attempts,
                    p.last_error.as_deref().unwrap_or("")
                )
            })
            .collect())
    }
}

/// `wharf events replay`: dead letters back into the outbox; returns how many.
pub async fn replay(store: &dyn EventStore, filter: &ReplayFilter) -> crate::metadata::Result<u64> {
    store.replay_dead_letters(filter).await
}
