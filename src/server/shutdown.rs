//! Stopping on a signal: which signals stop the server, and the drain they start
//! (readiness fails, new connections for `http.draintimeout` on SIGTERM, then requests
//! in progress finish; a second signal or SIGQUIT exits at once), and what is waited
//! for and reported once the server has stopped.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;

/// The signals that stop the server, by name.
pub(super) type Signals = Vec<(tokio::signal::unix::Signal, &'static str)>;

pub(super) fn shutdown_signals() -> Signals {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::quit(), "SIGQUIT"),
    ];
    let mut streams = Vec::new();
    for (kind, name) in kinds {
        match signal(kind) {
            Ok(s) => streams.push((s, name)),
            Err(e) => tracing::warn!(error = %e, "cannot handle {name}"),
        }
    }
    streams
}

/// Waits for SIGTERM or SIGINT, then stops: readiness fails at once and background
/// workers claim no new work (`lifecycle`). On SIGTERM the listener stays open for
/// `http.draintimeout`, serving new connections while load balancers notice the failing
/// readiness; SIGINT (Ctrl-C) skips that wait. Then the listener closes and requests in
/// progress finish (up to `http.draintimeout` more). A second signal, or SIGQUIT,
/// exits at once.
pub(super) async fn stop_on_signal(
    handle: ServerHandle,
    mut streams: Signals,
    drain_started: Arc<OnceLock<Instant>>,
    drain_timeout: Duration,
) {
    let Some(first) = next_signal(&mut streams).await else {
        return;
    };
    if first == "SIGQUIT" {
        tracing::info!("{first} received: exiting now");
        std::process::exit(131);
    }
    crate::http::health::start_draining();
    crate::lifecycle::stop();
    let secs = drain_timeout.as_secs_f64();
    if first == "SIGTERM" && !drain_timeout.is_zero() {
        tracing::info!(
            "{first} received: stopping; readiness fails from now on, new connections are still served for {secs} s (http.draintimeout) so load balancers notice, then requests in progress are drained (a second signal exits at once)"
        );
        tokio::select! {
            () = tokio::time::sleep(drain_timeout) => {}
            second = next_signal(&mut streams) => exit_now(second.unwrap_or(first)),
        }
        let in_flight = crate::telemetry::metrics().http_in_flight.get();
        tracing::info!(
            "no new connections from now on; draining {in_flight} request(s) in progress (at most {secs} s)"
        );
    } else {
        let in_flight = crate::telemetry::metrics().http_in_flight.get();
        tracing::info!(
            "{first} received: stopping; no new connections, draining {in_flight} request(s) in progress (at most {secs} s; a second signal exits at once)"
        );
    }
    let _ = drain_started.set(Instant::now());
    // `serve` says when the drain is over.
    let stopping = handle.stop(true);
    tokio::select! {
        () = stopping => {}
        second = next_signal(&mut streams) => exit_now(second.unwrap_or(first)),
    }
}

/// Once the server has stopped: background workers, told to stop at the signal (or now,
/// if the server ended on its own), finish what they hold (up to `drain_timeout`), and
/// the drain is reported (how long it took, or that it timed out).
pub(super) async fn after_stop(drain_started: &OnceLock<Instant>, drain_timeout: Duration) {
    crate::lifecycle::stop();
    let left = crate::lifecycle::workers_done(drain_timeout).await;
    if left > 0 {
        tracing::warn!(
            "{left} background worker(s) still busy after {} s: cut off",
            drain_timeout.as_secs()
        );
    }
    if let Some(drain_started) = drain_started.get() {
        let took = drain_started.elapsed();
        if took >= drain_timeout {
            tracing::warn!(
                "drain timed out after {} s: requests still in progress were cut off",
                drain_timeout.as_secs()
            );
        } else {
            tracing::info!("drained in {:.1} s", took.as_secs_f64());
        }
    }
}

/// A second signal while draining: exit without waiting.
fn exit_now(second: &str) -> ! {
    let left = crate::telemetry::metrics().http_in_flight.get();
    tracing::warn!("{second} received while draining: exiting now, {left} request(s) cut off");
    std::process::exit(1);
}

/// The next of `streams`' signals, by name (None if a stream ended).
async fn next_signal(
    streams: &mut [(tokio::signal::unix::Signal, &'static str)],
) -> Option<&'static str> {
    if streams.is_empty() {
        std::future::pending::<()>().await;
    }
    let waits = streams.iter_mut().map(|(s, name)| {
        let name = *name;
        Box::pin(async move { s.recv().await.map(|_| name) })
    });
    futures_util::future::select_all(waits).await.0
}
