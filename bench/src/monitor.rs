//! Watches the server process: peak resident memory and CPU time, per scenario.
//!
//! A thread samples `VmRSS` from `/proc/<pid>/status` every poll interval. At the start of a
//! scenario the kernel's high-water mark is reset (`echo 5 > /proc/<pid>/clear_refs`, allowed for
//! root or the process owner) so that `VmHWM` at the end is that scenario's exact peak, spikes
//! between samples included; where the reset is refused, the sampled maximum is used alone.
//! CPU time is `utime + stime` of the server (all its threads) and of this process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

struct Shared {
    peak_kib: AtomicU64,
    stop: AtomicBool,
    gone: AtomicBool,
}

pub struct Monitor {
    pid: Option<u32>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// State at the start of a measured section.
pub struct Mark {
    hwm_reset: bool,
    server_ticks: Option<u64>,
    client_ticks: Option<u64>,
    machine: Option<(u64, u64)>,
}

/// What the server (and this client) used during a measured section.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub peak_rss_kib: Option<u64>,
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    /// Share of the machine's CPU time (0–1) used by processes other than the server and the
    /// bench: a measure of how much the figures were disturbed.
    pub others_share: Option<f64>,
    pub server_gone: bool,
}

/// A `kB` field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status`.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `utime + stime` in clock ticks from a `/proc/<pid>/stat` file.
fn cpu_ticks(stat_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Machine-wide (busy, total) clock ticks from the `cpu` line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    // Interrupt time is left out of "busy": most of it is the loopback traffic of the bench
    // itself, which the kernel does not charge to either process.
    let v: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((v[0] + v[1] + v[2] + v[7], total))
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

impl Monitor {
    pub fn start(pid: Option<u32>, every: Duration) -> Self {
        let shared = Arc::new(Shared {
            peak_kib: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        });
        let thread = pid.map(|pid| {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("rss-monitor".into())
                .spawn(move || {
                    while !shared.stop.load(Ordering::Relaxed) {
                        match status_kib(pid, "VmRSS") {
                            Some(kib) => {
                                shared.peak_kib.fetch_max(kib, Ordering::Relaxed);
                            }
                            None => shared.gone.store(true, Ordering::Relaxed),
                        }
                        std::thread::sleep(every);
                    }
                })
                .ok()
        });
        Monitor {
            pid,
            shared,
            thread: thread.flatten(),
        }
    }

    pub fn alive(&self) -> bool {
        match self.pid {
            Some(pid) => std::path::Path::new(&format!("/proc/{pid}/status")).exists(),
            None => true,
        }
    }

    pub fn begin(&self) -> Mark {
        let mut hwm_reset = false;
        if let Some(pid) = self.pid {
            hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
            let now = status_kib(pid, "VmRSS").unwrap_or(0);
            self.shared.peak_kib.store(now, Ordering::Relaxed);
        }
        Mark {
            hwm_reset,
            server_ticks: self.pid.and_then(|p| cpu_ticks(&format!("/proc/{p}/stat"))),
            client_ticks: cpu_ticks("/proc/self/stat"),
            machine: machine_ticks(),
        }
    }

    pub fn end(&self, mark: Mark) -> Usage {
        let hz = ticks_per_second();
        let mut usage = Usage {
            client_cpu_s: cpu_ticks("/proc/self/stat")
                .zip(mark.client_ticks)
                .map(|(b, a)| b.saturating_sub(a) as f64 / hz),
            ..Usage::default()
        };
        if let Some(pid) = self.pid {
            let mut peak = self.shared.peak_kib.load(Ordering::Relaxed);
            if let Some(now) = status_kib(pid, "VmRSS") {
                peak = peak.max(now);
            }
            if mark.hwm_reset {
                if let Some(hwm) = status_kib(pid, "VmHWM") {
                    peak = peak.max(hwm);
                }
            }
            usage.peak_rss_kib = (peak > 0).then_some(peak);
            usage.server_cpu_s = cpu_ticks(&format!("/proc/{pid}/stat"))
                .zip(mark.server_ticks)
                .map(|(b, a)| b.saturating_sub(a) as f64 / hz);
            usage.server_gone = !self.alive() || self.shared.gone.load(Ordering::Relaxed);
        }
        if let (Some((b0, t0)), Some((b1, t1))) = (mark.machine, machine_ticks()) {
            let total = t1.saturating_sub(t0) as f64 / hz;
            let busy = b1.saturating_sub(b0) as f64 / hz;
            let ours = usage.server_cpu_s.unwrap_or(0.0) + usage.client_cpu_s.unwrap_or(0.0);
            if total > 0.0 {
                usage.others_share = Some(((busy - ours) / total).clamp(0.0, 1.0));
            }
        }
        usage
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(status_kib(me, "VmRSS").unwrap() > 0);
        assert!(cpu_ticks("/proc/self/stat").is_some());
        let m = Monitor::start(Some(me), Duration::from_millis(5));
        let mark = m.begin();
        let v = vec![1u8; 8 << 20];
        std::thread::sleep(Duration::from_millis(20));
        let u = m.end(mark);
        assert!(u.peak_rss_kib.unwrap() >= 8 * 1024, "{u:?}");
        assert!(!u.server_gone);
        drop(v);
    }
}
