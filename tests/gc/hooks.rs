//! Pausing a race point: [`Gate::arm`] installs a hook that stops the first pass of
//! `point` whose key is `key`, says so ([`Gate::reached`]), and lets it go on when
//! [`Gate::release`] is called. The hook is removed when the gate is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub struct Gate {
    point: &'static str,
    reached: Arc<Notify>,
    release: Arc<Notify>,
}

impl Gate {
    pub fn arm(point: &'static str, key: impl Into<String>) -> Gate {
        let key = key.into();
        let reached = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let fired = Arc::new(AtomicBool::new(false));
        let (r, g) = (reached.clone(), release.clone());
        wharf::clock::race::set(
            point,
            Arc::new(move |k: &str| {
                if k != key || fired.swap(true, Ordering::SeqCst) {
                    return None;
                }
                r.notify_one();
                let g = g.clone();
                Some(Box::pin(async move { g.notified().await }))
            }),
        );
        Gate {
            point,
            reached,
            release,
        }
    }

    /// Waits (up to 20 s) until the point is paused.
    pub async fn reached(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.reached.notified())
            .await
            .unwrap_or_else(|_| panic!("race point {} was never reached", self.point));
    }

    pub fn release(&self) {
        self.release.notify_one();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.release.notify_one();
        wharf::clock::race::clear(self.point);
    }
}

/// True if `fut` is still pending after `wait` (it is blocked), handing it back.
pub async fn still_blocked<T>(handle: &mut tokio::task::JoinHandle<T>, wait: Duration) -> bool {
    tokio::time::timeout(wait, &mut *handle).await.is_err()
}
