//! Single-flight for verifications: concurrent requests for one key (repository,
//! manifest digest, policy version) share one verification. The first to come runs it;
//! the others await its verdict. A leader that fails (an error) or never finishes (its
//! request dropped, or a panic unwinding it) hands the work to one of the waiters,
//! which runs it in turn: nobody waits on a leader that is gone. Only keys being
//! verified right now are held: a key's entry goes with the last request waiting on it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OnceCell;

/// The verifications in flight, by key.
pub struct Flights<K, V> {
    map: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Flights<K, V> {
    /// `init`'s value for `key`, shared with every concurrent call for the same key:
    /// `init` runs in one of them at a time, until one succeeds. An error goes to the
    /// call whose `init` failed; the waiters then try again, one at a time.
    pub async fn run<E, F, Fut>(&self, key: K, init: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let seat = Seat::join(self, key);
        match seat.cell.as_deref() {
            Some(cell) => cell.get_or_try_init(init).await.cloned(),
            // Not before the seat is dropped.
            None => init().await,
        }
    }

    /// True when no key is in flight (tests: nothing is kept after a flight).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Arc<OnceCell<V>>>> {
        // The map is consistent whatever panicked while holding it (each step is one
        // insert or remove).
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One call's place on a key's flight. Dropped (the call done, cancelled or
/// unwinding), it leaves; the last one to leave removes the key. Every change of the
/// cell's holders happens under the map's lock, so the count read there is exact.
struct Seat<'a, K: Eq + Hash + Clone, V: Clone> {
    flights: &'a Flights<K, V>,
    key: K,
    cell: Option<Arc<OnceCell<V>>>,
}

impl<'a, K: Eq + Hash + Clone, V: Clone> Seat<'a, K, V> {
    fn join(flights: &'a Flights<K, V>, key: K) -> Self {
        let cell = flights
            .lock()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        Seat {
            flights,
            key,
            cell: Some(cell),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Drop for Seat<'_, K, V> {
    fn drop(&mut self) {
        let mut map = self.flights.lock();
        if let Some(cell) = self.cell.take() {
            // The map's reference and this seat's: nobody else is on this flight.
            let last = map.get(&self.key).is_some_and(|c| Arc::ptr_eq(c, &cell))
                && Arc::strong_count(&cell) == 2;
            if last {
                map.remove(&self.key);
            }
            drop(cell);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Spawns `n` calls for one key whose `init` counts its runs and waits for `go`.
    async fn many(
        flights: &Arc<Flights<u32, u64>>,
        runs: &Arc<AtomicUsize>,
        go: &Arc<tokio::sync::Notify>,
        n: usize,
        fail_first: bool,
    ) -> Vec<tokio::task::JoinHandle<Result<u64, String>>> {
        (0..n)
            .map(|_| {
                let (flights, runs, go) = (flights.clone(), runs.clone(), go.clone());
                tokio::spawn(async move {
                    flights
                        .run(7, || async move {
                            let run = runs.fetch_add(1, Ordering::SeqCst);
                            go.notified().await;
                            if fail_first && run == 0 {
                                return Err("the leader failed".to_string());
                            }
                            Ok(42)
                        })
                        .await
                })
            })
            .collect()
    }

    /// Waits until every call of `n` holds a seat (the map's reference plus `n`).
    async fn all_seated(flights: &Flights<u32, u64>, n: usize) {
        loop {
            let seated = flights
                .lock()
                .get(&7)
                .map_or(0, |c| Arc::strong_count(c) - 1);
            if seated == n {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_share_one_run() {
        let flights = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(tokio::sync::Notify::new());
        let calls = many(&flights, &runs, &go, 64, false).await;
        all_seated(&flights, 64).await;
        go.notify_one();
        for c in calls {
            assert_eq!(c.await.unwrap(), Ok(42));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(flights.is_empty(), "the finished key is not kept");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_leader_hands_over_to_a_waiter() {
        let flights = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(tokio::sync::Notify::new());
        let calls = many(&flights, &runs, &go, 8, true).await;
        all_seated(&flights, 8).await;
        // The leader fails; the next one runs and succeeds for everyone else.
        go.notify_one();
        loop {
            if runs.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        go.notify_one();
        let mut results = Vec::new();
        for c in calls {
            results.push(c.await.unwrap());
        }
        assert_eq!(
            results.iter().filter(|r| r.is_err()).count(),
            1,
            "{results:?}"
        );
        assert_eq!(results.iter().filter(|r| **r == Ok(42)).count(), 7);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(flights.is_empty());
    }

    fn explode() -> Result<u64, String> {
        panic!("the leader panics")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_or_cancelled_leader_does_not_wedge_the_waiters() {
        let flights: Arc<Flights<u32, u64>> = Arc::new(Flights::default());
        let started = Arc::new(tokio::sync::Notify::new());
        let go = Arc::new(tokio::sync::Notify::new());
        // The leader panics inside its run, once a waiter has joined.
        let leader = {
            let (flights, started, go) = (flights.clone(), started.clone(), go.clone());
            tokio::spawn(async move {
                flights
                    .run(7, || async move {
                        started.notify_one();
                        go.notified().await;
                        explode()
                    })
                    .await
            })
        };
        started.notified().await;
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run(7, || async { Ok::<u64, String>(9) }).await })
        };
        all_seated(&flights, 2).await;
        go.notify_one();
        assert!(leader.await.is_err(), "the leader's task panicked");
        assert_eq!(waiter.await.unwrap(), Ok(9));
        assert!(flights.is_empty());

        // A leader whose request is dropped mid-run (its future cancelled).
        let hang = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(7, std::future::pending::<Result<u64, String>>)
                    .await
            })
        };
        all_seated(&flights, 1).await;
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run(7, || async { Ok::<u64, String>(5) }).await })
        };
        all_seated(&flights, 2).await;
        hang.abort();
        assert_eq!(waiter.await.unwrap(), Ok(5));
        assert!(flights.is_empty());
    }
}
