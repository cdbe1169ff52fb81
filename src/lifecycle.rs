//! The process's stop signal for background work. `server` calls [`stop`] when SIGTERM
//! (or SIGINT) arrives; from then on every background worker (notification delivery,
//! garbage collection, upload purging, the pull-through cache's sweeps) claims no new
//! work: its loop checks [`stopping`] before claiming and waits with [`pause`], which
//! returns early on the signal. What a worker already holds (a delivery in flight, a GC
//! batch) finishes. Each worker holds a [`Worker`] guard while it runs, so `server` can
//! wait for them all ([`workers_done`]) before the process exits.
//!
//! One signal per process: only `wharf serve` calls [`stop`] (in-process test servers
//! never do).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

static STOP: LazyLock<tokio::sync::watch::Sender<bool>> =
    LazyLock::new(|| tokio::sync::watch::channel(false).0);
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static DONE: LazyLock<tokio::sync::Notify> = LazyLock::new(tokio::sync::Notify::new);

/// Tells every background worker to stop claiming work.
pub fn stop() {
    STOP.send_replace(true);
}

/// Whether [`stop`] has been called.
pub fn stopping() -> bool {
    *STOP.borrow()
}

/// Resolves once [`stop`] has been called (at once if it already was).
pub async fn stopped() {
    let mut rx = STOP.subscribe();
    // An error means the sender is gone, which a static never is.
    let _ = rx.wait_for(|s| *s).await;
}

/// Waits `every`; false (at once) when the process is stopping, so a loop
/// `while pause(d).await { … }` ends at the signal.
pub async fn pause(every: Duration) -> bool {
    if stopping() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(every) => !stopping(),
        () = stopped() => false,
    }
}

/// A running background worker; dropped when it ends.
pub struct Worker(());

/// Registers a background worker (hold the guard for as long as it runs).
pub fn worker() -> Worker {
    RUNNING.fetch_add(1, Ordering::SeqCst);
    Worker(())
}

impl Drop for Worker {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        DONE.notify_waiters();
    }
}

/// Background workers still running.
pub fn workers_running() -> usize {
    RUNNING.load(Ordering::SeqCst)
}

/// Waits until every worker has ended or `limit` has passed; the number still running.
pub async fn workers_done(limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let done = DONE.notified();
        let left = workers_running();
        if left == 0 {
            return 0;
        }
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            return workers_running();
        }
    }
}
