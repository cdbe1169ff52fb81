//! The database circuit breaker: when the database cannot be reached, requests fail at
//! once instead of each waiting out the pool's acquire timeout.
//!
//! States: **closed** (calls go through; consecutive connection failures are counted),
//! **open** (after `failures` consecutive ones: every call fails at once with
//! [`MetadataError::CircuitOpen`] for `open_for`), **half-open** (the first call after
//! that is let through as a probe, the others still refused; the probe reaching the
//! database closes the breaker, failing to reach it opens it again).
//!
//! Only *connection* failures count ([`MetadataError::Unreachable`]: the pool could not
//! get a connection in time, a connection broke, the server is shutting down or refuses
//! connections). A statement timeout, a lock timeout, a constraint error or a race are
//! answers from a database that is up, and count as successes. A pool timeout
//! ([`MetadataError::PoolTimedOut`]) is ambiguous — the database may be down (every
//! connect refused until the timeout) or only busy (every connection in use) — so it
//! counts as a failure only when no call has reached the database for `grace` (the
//! acquire timeout): under a burst the calls that get a connection keep answering,
//! and the ones that waited too long get their 503 without opening the breaker.
//!
//! State is per process; metrics: `wharf_database_breaker_state` (0 closed, 1 open,
//! 2 half-open), `wharf_database_breaker_transitions_total{to}`,
//! `wharf_database_breaker_rejected_total`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

use super::MetadataError;

/// How the breaker trips and recovers (`database.breaker`).
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive connection failures that open the breaker.
    pub failures: u32,
    /// How long it stays open before a probe is let through.
    pub open_for: Duration,
    /// A pool timeout within this of the last call that reached the database is load,
    /// not an outage (the pool's acquire timeout).
    pub grace: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            open_for: Duration::from_secs(5),
            grace: Duration::from_secs(2),
        }
    }
}

/// The state as metrics and tests see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// One breaker, shared by every aggregate of a store.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    phase: Mutex<Phase>,
    /// When a call last reached the database.
    last_reached: Mutex<Option<Instant>>,
}

/// Leave to make one call; say how it went with [`Permit::record`]. A probe dropped
/// without a result (its request was cancelled) lets the next call probe.
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    recorded: bool,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Arc<Breaker> {
        let settings = BreakerSettings {
            failures: settings.failures.max(1),
            ..settings
        };
        metrics().state.set(BreakerState::Closed.gauge());
        Arc::new(Breaker {
            settings,
            phase: Mutex::new(Phase::Closed { failures: 0 }),
            last_reached: Mutex::new(None),
        })
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen => BreakerState::HalfOpen,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        // The state is a few words, each update complete: a panic elsewhere cannot
        // leave it half-written.
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A permit for one call, or the refusal (with the seconds until a probe).
    pub fn admit(self: &Arc<Self>) -> Result<Permit, MetadataError> {
        let mut phase = self.lock();
        let probe = match *phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } => {
                let now = Instant::now();
                if now < until {
                    metrics().rejected.inc();
                    let secs = (until - now).as_millis().div_ceil(1000).max(1);
                    return Err(MetadataError::CircuitOpen {
                        retry_after: u64::try_from(secs).unwrap_or(u64::MAX),
                    });
                }
                transition(&mut phase, Phase::HalfOpen, BreakerState::HalfOpen);
                tracing::info!("database breaker half-open: probing the database");
                true
            }
            Phase::HalfOpen => {
                metrics().rejected.inc();
                return Err(MetadataError::CircuitOpen { retry_after: 1 });
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            recorded: false,
        })
    }

    fn reached(&self, probe: bool) {
        *self
            .last_reached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        let mut phase = self.lock();
        match *phase {
            Phase::Closed { ref mut failures } => *failures = 0,
            Phase::HalfOpen if probe => {
                transition(
                    &mut phase,
                    Phase::Closed { failures: 0 },
                    BreakerState::Closed,
                );
                tracing::info!("database breaker closed: the database answers again");
            }
            // A call admitted before the breaker opened answered late: the probe decides.
            _ => {}
        }
    }

    fn unreachable(&self, probe: bool, error: &MetadataError) {
        let mut phase = self.lock();
        let open = Phase::Open {
            until: Instant::now() + self.settings.open_for,
        };
        match *phase {
            Phase::Closed { ref mut failures } => {
                *failures += 1;
                if *failures >= self.settings.failures {
                    let n = *failures;
                    transition(&mut phase, open, BreakerState::Open);
                    tracing::warn!(
                        failures = n,
                        open_for = ?self.settings.open_for,
                        %error,
                        "database breaker open: the database cannot be reached"
                    );
                }
            }
            Phase::HalfOpen if probe => {
                transition(&mut phase, open, BreakerState::Open);
                tracing::warn!(%error, "database breaker probe failed; open again");
            }
            _ => {}
        }
    }

    /// True when a call reached the database within `grace`.
    fn busy_not_down(&self) -> bool {
        self.last_reached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < self.settings.grace)
    }

    /// A probe that ended without a result: the next call probes.
    fn abandoned(&self) {
        let mut phase = self.lock();
        if matches!(*phase, Phase::HalfOpen) {
            transition(
                &mut phase,
                Phase::Open {
                    until: Instant::now(),
                },
                BreakerState::Open,
            );
        }
    }
}

fn transition(phase: &mut Phase, to: Phase, state: BreakerState) {
    *phase = to;
    let m = metrics();
    m.state.set(state.gauge());
    m.transitions.with_label_values(&[state.label()]).inc();
}

impl Permit {
    /// Records the call's outcome: only [`MetadataError::Unreachable`] is a failure.
    pub fn record<T>(mut self, result: &Result<T, MetadataError>) {
        self.recorded = true;
        match result {
            Err(e @ MetadataError::Unreachable(_)) => self.breaker.unreachable(self.probe, e),
            Err(e @ MetadataError::PoolTimedOut(_)) => {
                if self.breaker.busy_not_down() {
                    // Others reach the database: this call waited behind them. Not a
                    // failure, not a success (a probe stays unanswered: the next call
                    // probes).
                    if self.probe {
                        self.breaker.abandoned();
                    }
                } else {
                    self.breaker.unreachable(self.probe, e)
                }
            }
            _ => self.breaker.reached(self.probe),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breaker.abandoned();
        }
    }
}

struct BreakerMetrics {
    state: IntGauge,
    transitions: IntCounterVec,
    rejected: IntCounter,
}

fn metrics() -> &'static BreakerMetrics {
    static METRICS: OnceLock<BreakerMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let state = IntGauge::new(
            "database_breaker_state",
            "The database circuit breaker: 0 closed, 1 open (calls refused), 2 half-open",
        )
        .expect("static metric");
        let transitions = IntCounterVec::new(
            Opts::new(
                "database_breaker_transitions_total",
                "Database circuit breaker state changes, by the state entered",
            ),
            &["to"],
        )
        .expect("static metric");
        let rejected = IntCounter::new(
            "database_breaker_rejected_total",
            "Database calls refused at once while the circuit breaker was open",
        )
        .expect("static metric");
        let registry = &crate::telemetry::metrics().registry;
        for m in [
            Box::new(state.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(transitions.clone()),
            Box::new(rejected.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        BreakerMetrics {
            state,
            transitions,
            rejected,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> Result<(), MetadataError> {
        Err(MetadataError::Unreachable("connection refused".into()))
    }

    #[test]
    fn opens_after_consecutive_failures_probes_and_closes() {
        let b = Breaker::new(BreakerSettings {
            failures: 3,
            open_for: Duration::from_millis(0),
            grace: Duration::from_secs(60),
        });
        // A success between failures resets the count.
        for _ in 0..2 {
            b.admit().unwrap().record(&unreachable());
        }
        b.admit().unwrap().record(&Ok(()));
        for _ in 0..2 {
            b.admit().unwrap().record(&unreachable());
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // A statement timeout is an answer: it does not count.
        b.admit()
            .unwrap()
            .record::<()>(&Err(MetadataError::Unavailable("statement timeout".into())));
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..3 {
            b.admit().unwrap().record(&unreachable());
        }
        assert_eq!(b.state(), BreakerState::Open);
        // open_for is over: one probe, the others refused while it runs.
        let probe = b.admit().unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(matches!(
            b.admit(),
            Err(MetadataError::CircuitOpen { retry_after: 1 })
        ));
        probe.record(&unreachable());
        assert_eq!(b.state(), BreakerState::Open);
        // A cancelled probe lets the next call probe.
        drop(b.admit().unwrap());
        assert_eq!(b.state(), BreakerState::Open);
        b.admit().unwrap().record(&Ok(()));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn pool_timeouts_count_only_when_nothing_reaches_the_database() {
        let timeout = || Err::<(), _>(MetadataError::PoolTimedOut("pool timed out".into()));
        // Nothing ever reached it: pool timeouts are failures (a database down).
        let b = Breaker::new(BreakerSettings {
            failures: 2,
            open_for: Duration::from_secs(30),
            grace: Duration::from_secs(60),
        });
        b.admit().unwrap().record(&timeout());
        b.admit().unwrap().record(&timeout());
        assert_eq!(b.state(), BreakerState::Open);
        // A call just reached it: the pool is busy, not the database down.
        let b = Breaker::new(BreakerSettings {
            failures: 2,
            open_for: Duration::from_secs(30),
            grace: Duration::from_secs(60),
        });
        b.admit().unwrap().record(&Ok(()));
        for _ in 0..10 {
            b.admit().unwrap().record(&timeout());
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn open_refuses_with_the_seconds_left() {
        let b = Breaker::new(BreakerSettings {
            failures: 1,
            open_for: Duration::from_secs(30),
            grace: Duration::from_secs(2),
        });
        b.admit().unwrap().record(&unreachable());
        match b.admit() {
            Err(MetadataError::CircuitOpen { retry_after }) => {
                assert!((29..=30).contains(&retry_after), "{retry_after}")
            }
            _ => panic!("expected a refusal"),
        }
    }
}
