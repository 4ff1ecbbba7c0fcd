//! Latency histograms and the report every load generator prints: a table for people,
//! JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A live count of completed operations, shared between a load generator and whoever
/// shows its progress. Cloning shares the count.
#[derive(Debug, Clone, Default)]
pub struct Progress(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Progress {
    /// A count at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` completed operations.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Operations completed so far.
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The shared counter itself, for generators that count with atomics already.
    pub fn counter(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.0.clone()
    }
}

/// Latencies recorded in microseconds, from 1 µs to 1 hour, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        Self(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid"))
    }

    /// Records one sample; values past the range are clamped, never lost.
    pub fn record(&mut self, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, 3_600_000_000);
        self.0.saturating_record(micros);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at `quantile` (0.0–1.0); zero when empty.
    pub fn quantile(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.0.value_at_quantile(quantile))
    }

    /// The percentiles a report shows.
    pub fn summary(&self) -> LatencySummary {
        let ms = |q: f64| self.quantile(q).as_secs_f64() * 1000.0;
        LatencySummary {
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: Duration::from_micros(self.0.max()).as_secs_f64() * 1000.0,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
}

/// The result of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was measured (`echo round trips`, `http requests`).
    pub name: String,
    /// Wall time of the measured part.
    pub seconds: f64,
    /// Operations completed (requests, round trips, datagrams, deliveries).
    pub ops: u64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Payload bytes moved (both directions where that applies).
    pub bytes: u64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_sec: f64,
    /// Latency percentiles, when latencies were recorded.
    pub latency: Option<LatencySummary>,
    /// Named counters: errors, lost, duplicated, non-2xx…; zero counters are kept.
    pub counters: Vec<(String, u64)>,
}

impl Report {
    /// A report from raw totals.
    pub fn new(
        name: impl Into<String>,
        elapsed: Duration,
        ops: u64,
        bytes: u64,
        latency: Option<&Latency>,
    ) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Self {
            name: name.into(),
            seconds,
            ops,
            ops_per_sec: ops as f64 / seconds,
            bytes,
            mb_per_sec: bytes as f64 / seconds / 1e6,
            latency: latency.filter(|l| l.count() > 0).map(Latency::summary),
            counters: Vec::new(),
        }
    }

    /// Adds a named counter.
    pub fn with_counter(mut self, name: &str, value: u64) -> Self {
        self.counters.push((name.to_owned(), value));
        self
    }

    /// The value of a counter, if present.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// A small aligned table for people.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.name);
        let _ = writeln!(s, "  {:<14} {:.3} s", "duration", self.seconds);
        let _ = writeln!(
            s,
            "  {:<14} {} ({:.0}/s)",
            "operations", self.ops, self.ops_per_sec
        );
        if self.bytes > 0 {
            let _ = writeln!(
                s,
                "  {:<14} {} ({:.1} MB/s)",
                "bytes", self.bytes, self.mb_per_sec
            );
        }
        if let Some(l) = &self.latency {
            let _ = writeln!(
                s,
                "  {:<14} p50 {:.3} · p90 {:.3} · p99 {:.3} · p99.9 {:.3} · max {:.3} ms",
                "latency", l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        for (name, value) in &self.counters {
            let _ = writeln!(s, "  {name:<14} {value}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_samples() {
        let mut l = Latency::new();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn merge_adds_counts_and_extreme_values_are_clamped() {
        let mut a = Latency::new();
        a.record(Duration::ZERO);
        let mut b = Latency::new();
        b.record(Duration::from_secs(10_000));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        // One hour, give or take the histogram's 3 significant digits.
        assert!((a.summary().max_ms / 3_600_000.0 - 1.0).abs() < 0.001);
    }

    #[test]
    fn report_rates_and_table() {
        let r =
            Report::new("x", Duration::from_secs(2), 10, 4_000_000, None).with_counter("lost", 0);
        assert_eq!(r.ops_per_sec, 5.0);
        assert_eq!(r.mb_per_sec, 2.0);
        assert_eq!(r.counter("lost"), Some(0));
        assert!(r.table().contains("lost"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ops"], 10);
        assert!(json["latency"].is_null());
    }
}
