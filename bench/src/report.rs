//! Results as Markdown (one row per scenario, and the side-by-side comparison of two runs) and
//! as the JSON file the comparison reads.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::scenarios::{Params, ScenarioResult, ALL};

/// Everything one run of the bench against one server measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    pub url: String,
    pub unix_time: u64,
    pub server_pid: Option<u32>,
    pub client_threads: usize,
    pub cpus: usize,
    pub loadavg_at_start: Option<String>,
    /// The server's `VmHWM` when the run ended (lifetime peak, unless reset by the bench).
    pub server_vmhwm_kib_at_end: Option<u64>,
    pub info: Vec<String>,
    pub params: Params,
    pub scenarios: Vec<ScenarioResult>,
}

impl Report {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    fn find(&self, name: &str) -> Option<&ScenarioResult> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        self.scenarios.iter().filter_map(|s| s.peak_rss_kib).max()
    }

    fn server_cpu_s(&self) -> Option<f64> {
        sum(self.scenarios.iter().filter_map(|s| s.server_cpu_s))
    }

    /// Time-weighted share of the CPU other processes took during the timed parts.
    fn others_share(&self) -> Option<f64> {
        let (mut weighted, mut secs) = (0.0, 0.0);
        for s in &self.scenarios {
            if let Some(share) = s.others_share {
                weighted += share * s.secs;
                secs += s.secs;
            }
        }
        (secs > 0.0).then(|| weighted / secs)
    }

    fn client_cpu_s(&self) -> Option<f64> {
        sum(self.scenarios.iter().filter_map(|s| s.client_cpu_s))
    }
}

fn sum(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

/// Three significant-ish digits: 2345, 234.5 → 235, 23.4, 2.34.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

fn mib(kib: u64) -> String {
    format!("{} MiB", num(kib as f64 / 1024.0))
}

fn cell(text: &str) -> String {
    let one_line = text.replace('\n', " ").replace('|', "\\|");
    if one_line.chars().count() > 160 {
        let cut: String = one_line.chars().take(157).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

pub const RUN_HEADER: &str = "| scenario | result | p50 | p99 | peak RSS | server CPU | client CPU \
                              | others' CPU | notes |\n|---|---:|---:|---:|---:|---:|---:|---:|---|";

/// One Markdown row of a run's own table.
pub fn run_row(s: &ScenarioResult) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
    let result = if s.ok {
        let mut r = format!("{} {}", num(s.value), s.unit);
        if s.errors > 0 {
            r.push_str(&format!(" ({} errors)", s.errors));
        }
        r
    } else {
        format!("FAILED: {}", s.error.as_deref().unwrap_or("?"))
    };
    let mut notes = s.notes.clone();
    if s.ok && s.secs > 0.0 {
        notes.insert(0, format!("{} s", num(s.secs)));
    }
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        cell(&s.title),
        cell(&result),
        opt(s.latency.map(|l| format!("{} ms", num(l.p50_ms)))),
        opt(s.latency.map(|l| format!("{} ms", num(l.p99_ms)))),
        opt(s.peak_rss_kib.map(mib)),
        opt(s.server_cpu_s.map(|c| format!("{} s", num(c)))),
        opt(s.client_cpu_s.map(|c| format!("{} s", num(c)))),
        opt(s.others_share.map(percent)),
        cell(&notes.join("; ")),
    )
}

/// The side-by-side table: scenario | baseline | candidate | candidate ÷ baseline.
pub fn compare(base: &Report, cand: Option<&Report>, missing_label: &str) -> String {
    let cand_label = cand.map_or(missing_label, |c| c.label.as_str());
    let mut out = String::new();
    out.push_str(&format!(
        "| scenario | {} | {} | ratio ({} ÷ {}) |\n|---|---:|---:|---:|\n",
        cell(&base.label),
        cell(cand_label),
        cell(cand_label),
        cell(&base.label)
    ));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{}×", num(b / a)),
        _ => "–".to_string(),
    };
    let not_run = if cand.is_some() { "not run" } else { "n/a" };
    for name in ALL {
        let b = base.find(name);
        let c = cand.and_then(|c| c.find(name));
        let Some(title) = b.or(c).map(|s| s.title.clone()) else {
            continue;
        };
        let show = |s: Option<&ScenarioResult>, absent: &str| match s {
            None => absent.to_string(),
            Some(s) if !s.ok => "FAILED".to_string(),
            Some(s) => {
                let mut t = format!("{} {}", num(s.value), s.unit);
                if s.errors > 0 {
                    t.push_str(&format!(" ({} err)", s.errors));
                }
                t
            }
        };
        let value = |s: Option<&ScenarioResult>| s.filter(|s| s.ok).map(|s| s.value);
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            cell(&title),
            show(b, "not run"),
            show(c, not_run),
            ratio(value(b), value(c))
        ));
        let p99 = |s: Option<&ScenarioResult>| {
            s.filter(|s| s.ok).and_then(|s| s.latency).map(|l| l.p99_ms)
        };
        if p99(b).is_some() || p99(c).is_some() {
            out.push_str(&format!(
                "| ↳ p50 / p99 latency | {} | {} | {} |\n",
                latency_pair(b),
                latency_pair(c),
                ratio(p99(b), p99(c)).replace('×', "× (p99)")
            ));
        }
    }
    let peak = |r: Option<&Report>| r.and_then(|r| r.peak_rss_kib());
    out.push_str(&format!(
        "| peak server RSS (any scenario) | {} | {} | {} |\n",
        peak(Some(base)).map_or("–".into(), mib),
        peak(cand).map_or("–".into(), mib),
        ratio(
            peak(Some(base)).map(|k| k as f64),
            peak(cand).map(|k| k as f64)
        )
    ));
    let cpu = |r: Option<&Report>| r.and_then(|r| r.server_cpu_s());
    out.push_str(&format!(
        "| server CPU time, all scenarios | {} | {} | {} |\n",
        cpu(Some(base)).map_or("–".into(), |c| format!("{} s", num(c))),
        cpu(cand).map_or("–".into(), |c| format!("{} s", num(c))),
        ratio(cpu(Some(base)), cpu(cand))
    ));
    let client = |r: Option<&Report>| r.and_then(|r| r.client_cpu_s());
    out.push_str(&format!(
        "| bench client CPU time, all scenarios | {} | {} | – |\n",
        client(Some(base)).map_or("–".into(), |c| format!("{} s", num(c))),
        client(cand).map_or("–".into(), |c| format!("{} s", num(c))),
    ));
    let others = |r: Option<&Report>| r.and_then(|r| r.others_share());
    out.push_str(&format!(
        "| other processes' share of the CPUs meanwhile | {} | {} | – |\n",
        others(Some(base)).map_or("–".into(), percent),
        others(cand).map_or("–".into(), percent),
    ));
    out.push_str(
        "\nRatio above 1 is better for throughput rows, below 1 better for latency, RSS and CPU. \
         MB/s = 10^6 bytes/s.\n",
    );
    out
}

fn latency_pair(s: Option<&ScenarioResult>) -> String {
    match s.filter(|s| s.ok).and_then(|s| s.latency) {
        Some(l) => format!("{} / {} ms", num(l.p50_ms), num(l.p99_ms)),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    fn params() -> Params {
        Params {
            size_mib: 1024,
            chunk_mib: 16,
            range_requests: 2000,
            range_kib: 1024,
            range_concurrency: 16,
            range_verify_every: 8,
            small_count: 2000,
            small_kib: 4,
            small_concurrency: 32,
            requests: 20000,
            concurrency: 64,
            duration_secs: None,
            seed: 1,
            repo_prefix: "bench".into(),
        }
    }

    fn report(label: &str, push: f64, get: f64, p99: f64) -> Report {
        let p = params();
        Report {
            label: label.into(),
            url: "http://127.0.0.1:1".into(),
            unix_time: 0,
            server_pid: None,
            client_threads: 1,
            cpus: 2,
            loadavg_at_start: None,
            server_vmhwm_kib_at_end: None,
            info: vec![],
            scenarios: vec![
                ScenarioResult {
                    name: "push".into(),
                    title: p.title("push"),
                    ok: true,
                    unit: "MB/s".into(),
                    value: push,
                    peak_rss_kib: Some(40 * 1024),
                    ..Default::default()
                },
                ScenarioResult {
                    name: "manifest-get".into(),
                    title: p.title("manifest-get"),
                    ok: true,
                    unit: "req/s".into(),
                    value: get,
                    latency: Some(Summary {
                        p50_ms: 1.0,
                        p99_ms: p99,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            params: p,
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(num(2345.4), "2345");
        assert_eq!(num(23.45), "23.4");
        assert_eq!(num(2.345), "2.35");
    }

    #[test]
    fn side_by_side() {
        let a = report("CNCF registry", 200.0, 2000.0, 130.0);
        let b = report("Wharf", 400.0, 8000.0, 13.0);
        let t = compare(&a, Some(&b), "Wharf");
        assert!(
            t.contains("| 1 GiB push, one PUT | 200 MB/s | 400 MB/s | 2.00× |"),
            "{t}"
        );
        assert!(t.contains("| 2000 req/s | 8000 req/s | 4.00× |"), "{t}");
        assert!(
            t.contains("1.00 / 130 ms | 1.00 / 13.0 ms | 0.10× (p99)"),
            "{t}"
        );
        let alone = compare(&a, None, "Wharf");
        assert!(alone.contains("| 200 MB/s | n/a | – |"), "{alone}");
    }

    #[test]
    fn header_matches_rows() {
        let mut lines = RUN_HEADER.lines();
        let head = lines.next().unwrap();
        let rule = lines.next().unwrap();
        let row = run_row(&ScenarioResult::default());
        assert_eq!(
            head.matches('|').count(),
            row.matches('|').count(),
            "{head}\n{row}"
        );
        assert_eq!(
            head.matches('|').count(),
            rule.matches('|').count(),
            "{head}\n{rule}"
        );
    }

    #[test]
    fn rows_escape_pipes() {
        let s = ScenarioResult {
            title: "x".into(),
            error: Some("a|b".into()),
            ..Default::default()
        };
        assert!(run_row(&s).contains("FAILED: a\\|b"));
    }
}
