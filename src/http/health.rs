//! distribution's `health` checks, run in the background: each check keeps its last
//! error and how many times in a row it failed; a check at or past its `threshold` is
//! failing. Failing checks make `/readyz` and `/debug/health` answer 503; `/debug/health`
//! answers as distribution's does: a JSON object of the failing checks, `{}` when none.
//! SIGTERM makes every check fail at once (`draining`), so a load balancer stops
//! sending requests while those in progress finish.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{health_defaults, HealthConfig};
use crate::registry::Registry;

/// One check's state.
#[derive(Debug)]
struct Check {
    name: String,
    threshold: u32,
    /// (failures in a row, the last error)
    state: Mutex<(u32, Option<String>)>,
}

impl Check {
    fn record(&self, result: Result<(), String>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                if st.0 >= self.threshold.max(1) {
                    tracing::info!(check = %self.name, "health check passes again");
                }
                *st = (0, None);
            }
            Err(e) => {
                st.0 = st.0.saturating_add(1);
                if st.0 == self.threshold.max(1) {
                    tracing::warn!(check = %self.name, error = %e, "health check failing");
                }
                st.1 = Some(e);
            }
        }
    }

    fn failing(&self) -> Option<String> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (st.0 >= self.threshold.max(1)).then(|| st.1.clone().unwrap_or_default())
    }
}

/// The configured checks.
#[derive(Debug, Default, Clone)]
pub struct Health {
    checks: Vec<Arc<Check>>,
}

/// Set on SIGTERM: readiness fails from then on.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Marks the process as draining: `/readyz` and `/debug/health` fail from now on.
pub fn start_draining() {
    DRAINING.store(true, Ordering::SeqCst);
}

pub fn draining() -> bool {
    DRAINING.load(Ordering::SeqCst)
}

impl Health {
    /// Starts a background loop per configured check (on the current Tokio runtime).
    pub fn spawn(config: &HealthConfig, registry: &Registry) -> Health {
        let mut checks = Vec::new();
        let mut add = |name: String, threshold: u32| {
            let c = Arc::new(Check {
                name,
                threshold,
                state: Mutex::new((0, None)),
            });
            checks.push(c.clone());
            c
        };
        if config.storagedriver.enabled {
            let check = add(
                format!("storagedriver_{}", registry.blobs.name()),
                config.storagedriver.threshold,
            );
            let every = health_defaults::interval(config.storagedriver.interval);
            let registry = registry.clone();
            run(check, every, "storagedriver", move || {
                let registry = registry.clone();
                async move { registry.blobs.check().await.map_err(|e| e.to_string()) }
            });
        }
        for f in &config.file {
            let check = add(f.file.clone(), 1);
            let path = std::path::PathBuf::from(&f.file);
            run(
                check,
                health_defaults::interval(f.interval),
                "file",
                move || {
                    let path = path.clone();
                    async move {
                        match tokio::fs::try_exists(&path).await {
                            Ok(false) => Ok(()),
                            Ok(true) => Err(format!("{} exists", path.display())),
                            Err(e) => Err(format!("{}: {e}", path.display())),
                        }
                    }
                },
            );
        }
        for h in &config.http {
            let check = add(h.uri.clone(), h.threshold);
            let timeout = health_defaults::timeout(h.timeout);
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default();
            let uri = h.uri.clone();
            let headers = h.headers.clone();
            let want = h.statuscode.unwrap_or(200);
            run(
                check,
                health_defaults::interval(h.interval),
                "http",
                move || {
                    let mut req = client.get(&uri);
                    for (name, values) in &headers {
                        for v in values {
                            req = req.header(name.as_str(), v.as_str());
                        }
                    }
                    async move {
                        let resp = req.send().await.map_err(|e| e.to_string())?;
                        if resp.status().as_u16() == want {
                            Ok(())
                        } else {
                            Err(format!("answered {}, not {want}", resp.status().as_u16()))
                        }
                    }
                },
            );
        }
        for t in &config.tcp {
            let check = add(t.addr.clone(), t.threshold);
            let timeout = health_defaults::timeout(t.timeout);
            let addr = t.addr.clone();
            run(
                check,
                health_defaults::interval(t.interval),
                "tcp",
                move || {
                    let addr = addr.clone();
                    async move {
                        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr))
                            .await
                        {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => Err(format!("{addr}: {e}")),
                            Err(_) => Err(format!("{addr}: no connection within {timeout:?}")),
                        }
                    }
                },
            );
        }
        Health { checks }
    }

    /// The failing checks, by name, with their last error (and `draining` on SIGTERM).
    pub fn failing(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .checks
            .iter()
            .filter_map(|c| c.failing().map(|e| (c.name.clone(), e)))
            .collect();
        if draining() {
            out.insert("draining".into(), "the server is stopping".into());
        }
        out
    }
}

/// Runs `probe` every `every` for `check`, timing it into
/// `wharf_health_check_duration_seconds{kind}` and counting failures.
fn run<F, Fut>(check: Arc<Check>, every: Duration, kind: &'static str, probe: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let started = Instant::now();
            let result = async { probe().await }
                .instrument_check(kind, &check.name)
                .await;
            durations()
                .with_label_values(&[kind])
                .observe(started.elapsed().as_secs_f64());
            if result.is_err() {
                failures().with_label_values(&[kind]).inc();
            }
            check.record(result);
        }
    });
}

/// A span per check run.
trait InstrumentCheck: std::future::Future + Sized {
    fn instrument_check(self, kind: &str, name: &str) -> tracing::instrument::Instrumented<Self> {
        tracing::Instrument::instrument(self, tracing::debug_span!("health.check", kind, name))
    }
}

impl<F: std::future::Future> InstrumentCheck for F {}

fn durations() -> &'static prometheus::HistogramVec {
    static H: OnceLock<prometheus::HistogramVec> = OnceLock::new();
    H.get_or_init(|| {
        crate::telemetry::lazy_histogram_vec(
            "health_check_duration_seconds",
            "Health check runs by kind (storagedriver, file, http, tcp)",
            &["kind"],
            vec![0.001, 0.01, 0.1, 0.5, 1.0, 5.0],
        )
    })
}

fn failures() -> &'static prometheus::IntCounterVec {
    static C: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        crate::telemetry::lazy_counter_vec(
            "health_check_failures_total",
            "Failed health check runs by kind",
            &["kind"],
        )
    })
}
