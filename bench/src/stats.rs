//! Latency summaries (p50, p99, max) from per-request samples in microseconds.

use serde::Serialize;

/// Percentiles of a run's latencies.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// Summarizes samples (microseconds); nearest-rank percentiles.
pub fn latency(mut micros: Vec<u32>) -> Latency {
    if micros.is_empty() {
        return Latency::default();
    }
    micros.sort_unstable();
    let rank = |q: f64| -> f64 {
        let n = micros.len();
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        micros.get(i).map_or(0.0, |v| f64::from(*v) / 1000.0)
    };
    Latency {
        count: micros.len(),
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        max_ms: rank(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = latency((1..=1000).map(|v| v * 1000).collect());
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50_ms, 500.0);
        assert_eq!(l.p99_ms, 990.0);
        assert_eq!(l.max_ms, 1000.0);
        assert_eq!(latency(Vec::new()), Latency::default());
        assert_eq!(latency(vec![2500]).p99_ms, 2.5);
    }
}
