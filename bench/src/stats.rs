//! Latency samples and their percentiles (nearest-rank on the sorted samples).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Percentiles of a set of request latencies, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Nearest-rank percentile of sorted nanosecond samples.
fn rank(sorted: &[u64], p: f64) -> u64 {
    let n = sorted.len();
    let idx = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[idx.clamp(1, n) - 1]
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Summarises nanosecond samples; `None` when there are none.
pub fn summarize(mut samples: Vec<u64>) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let total: u128 = samples.iter().map(|&s| s as u128).sum();
    Some(Summary {
        p50_ms: ms(rank(&samples, 50.0)),
        p90_ms: ms(rank(&samples, 90.0)),
        p99_ms: ms(rank(&samples, 99.0)),
        max_ms: ms(*samples.last().unwrap_or(&0)),
        mean_ms: total as f64 / samples.len() as f64 / 1e6,
    })
}

pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        let sum = summarize(s).unwrap();
        assert_eq!(sum.p50_ms, 50.0);
        assert_eq!(sum.p90_ms, 90.0);
        assert_eq!(sum.p99_ms, 99.0);
        assert_eq!(sum.max_ms, 100.0);
        assert_eq!(sum.mean_ms, 50.5);
        let one = summarize(vec![3_000_000]).unwrap();
        assert_eq!(one.p50_ms, 3.0);
        assert_eq!(one.p99_ms, 3.0);
        assert!(summarize(Vec::new()).is_none());
    }
}
