//! The write limiter (`http.limits.writes`): at most N API writes (`POST`, `PUT`,
//! `PATCH`, `DELETE`) run at once, M more wait at most T for a turn, and the rest are
//! refused at once with `429 TOOMANYREQUESTS` and `Retry-After` — so a storm of pushes
//! cannot take every connection to the database and the store. Reads never pass
//! through it: nothing queues them behind writes.
//!
//! The permit is taken after authorization (an unauthorized storm costs no turn) and
//! held until the handler returns, body included.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::http::header::RETRY_AFTER;
use actix_web::http::StatusCode;
use prometheus::{IntCounterVec, IntGaugeVec};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::error::{ApiError, ErrorCode};

struct Metrics {
    state: IntGaugeVec,
    refused: IntCounterVec,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        state: crate::telemetry::lazy_gauge_vec(
            "http_writes",
            "API writes under the write limiter, by state (running, queued)",
            &["state"],
        ),
        refused: crate::telemetry::lazy_counter_vec(
            "http_writes_refused_total",
            "API writes refused with 429 by the write limiter, by reason (queue_full, \
             queue_timeout)",
            &["reason"],
        ),
    })
}

/// Is `method` a write the limiter counts?
pub fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

#[derive(Debug)]
pub struct WriteLimiter {
    running: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
    wait: Duration,
}

/// A turn to write; dropping it gives the turn to the next in the queue.
pub struct WritePermit {
    _permit: OwnedSemaphorePermit,
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        metrics().state.with_label_values(&["running"]).dec();
    }
}

impl WriteLimiter {
    pub fn new(concurrent: usize, queued: usize, wait: Duration) -> Arc<Self> {
        Arc::new(WriteLimiter {
            running: Arc::new(Semaphore::new(concurrent.min(Semaphore::MAX_PERMITS))),
            queued: AtomicUsize::new(0),
            max_queued: queued,
            wait,
        })
    }

    fn refuse(&self, reason: &'static str) -> ApiError {
        metrics().refused.with_label_values(&[reason]).inc();
        tracing::warn!(reason, "write refused: http.limits.writes");
        // The wait a queued request would have had: by then a turn is likely free.
        let retry = self.wait.as_secs().max(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            format!(
                "the registry is running as many writes as it may and {} are waiting; retry later",
                self.max_queued
            ),
        )
        .with_header(RETRY_AFTER, retry.to_string())
    }

    /// Takes a turn now, else waits in the queue (if it has room) for at most the
    /// configured time.
    pub async fn admit(&self) -> Result<WritePermit, ApiError> {
        let granted = |p| {
            metrics().state.with_label_values(&["running"]).inc();
            WritePermit { _permit: p }
        };
        if let Ok(p) = self.running.clone().try_acquire_owned() {
            return Ok(granted(p));
        }
        let entered = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_queued).then_some(n + 1)
            });
        if entered.is_err() {
            return Err(self.refuse("queue_full"));
        }
        let queued = metrics().state.with_label_values(&["queued"]);
        queued.inc();
        let turn = tokio::time::timeout(self.wait, self.running.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        queued.dec();
        match turn {
            Ok(Ok(p)) => Ok(granted(p)),
            _ => Err(self.refuse("queue_timeout")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_queues_then_refuses() {
        let l = WriteLimiter::new(1, 1, Duration::from_secs(30));
        let first = l.admit().await.unwrap();
        let l2 = l.clone();
        let waiting = tokio::spawn(async move { l2.admit().await.map(|_| ()) });
        while l.queued.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let e = l.admit().await.err().unwrap();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        drop(first);
        assert!(waiting.await.unwrap().is_ok());
    }
}
