//! Wall-clock time as the metadata database stores it: Unix milliseconds.

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Named race points: places where a concurrent request or garbage-collection pass can
/// interleave with this one (see `registry::gc`). In the production build
/// [`race_point`] is an empty `async fn` and compiles to nothing; with the cargo
/// feature `test-hooks` (enabled only for the test targets, through the crate's
/// dev-dependency on itself) a test can pause or delay a point — in-process with
/// [`race::set`], or in `wharf serve` processes with `WHARF_TEST_RACE_DELAYS`
/// (`point=max_ms,…`: a random delay up to `max_ms` at each pass).
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub async fn race_point(_point: &'static str, _key: &str) {}

#[cfg(feature = "test-hooks")]
pub use race::point as race_point;

#[cfg(feature = "test-hooks")]
pub mod race {
    //! Test-only hooks at the race points (feature `test-hooks`).

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    use futures_util::future::BoxFuture;

    /// Called at a point with the point's key (a repository name, a digest); returns
    /// what to wait for before going on, or `None` to go on at once.
    pub type Hook = Arc<dyn Fn(&str) -> Option<BoxFuture<'static, ()>> + Send + Sync>;

    fn hooks() -> &'static Mutex<HashMap<&'static str, Hook>> {
        static HOOKS: OnceLock<Mutex<HashMap<&'static str, Hook>>> = OnceLock::new();
        HOOKS.get_or_init(Default::default)
    }

    fn env_delays() -> &'static HashMap<String, u64> {
        static DELAYS: OnceLock<HashMap<String, u64>> = OnceLock::new();
        DELAYS.get_or_init(|| {
            let raw = std::env::var("WHARF_TEST_RACE_DELAYS").unwrap_or_default();
            raw.split(',')
                .filter_map(|p| p.split_once('='))
                .filter_map(|(k, v)| Some((k.trim().to_string(), v.trim().parse().ok()?)))
                .collect()
        })
    }

    /// Installs `hook` at `point` (replacing any other).
    pub fn set(point: &'static str, hook: Hook) {
        hooks().lock().expect("hooks").insert(point, hook);
    }

    /// Removes the hook at `point`.
    pub fn clear(point: &'static str) {
        hooks().lock().expect("hooks").remove(point);
    }

    pub async fn point(point: &'static str, key: &str) {
        if let Some(max) = env_delays().get(point).copied().filter(|m| *m > 0) {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(key.as_bytes());
            tokio::time::sleep(Duration::from_millis(h.finish() % (max + 1))).await;
        }
        let hook = hooks().lock().expect("hooks").get(point).cloned();
        if let Some(wait) = hook.and_then(|h| h(key)) {
            wait.await;
        }
    }
}
