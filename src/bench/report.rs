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
///
/// A load spreads its samples over many tasks, one `Latency` each, merged at the end. A
/// histogram of this range is ~180 KiB, so the first samples are kept as a plain list and
/// only a `Latency` that grows past [`Latency::SAMPLES_BEFORE_HISTOGRAM`] builds one: a
/// thousand short-lived connections then cost a few hundred kilobytes, not 180 MB.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sockit::bench::Latency;
/// let mut all = Latency::new();
/// for ms in [1, 2, 3, 100] {
///     let mut one = Latency::new();
///     one.record(Duration::from_millis(ms));
///     all.merge(&one);
/// }
/// assert_eq!(all.count(), 4);
/// assert_eq!(all.quantile(0.5), Duration::from_millis(2));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Latency {
    samples: Vec<u64>,
    histogram: Option<Box<Histogram<u64>>>,
}

impl Latency {
    /// Samples kept as a list before a histogram is built.
    pub const SAMPLES_BEFORE_HISTOGRAM: usize = 1024;
    const MAX_MICROS: u64 = 3_600_000_000;

    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    fn empty_histogram() -> Box<Histogram<u64>> {
        Box::new(
            Histogram::new_with_bounds(1, Self::MAX_MICROS, 3).expect("static bounds are valid"),
        )
    }

    fn record_micros(&mut self, micros: u64) {
        let micros = micros.clamp(1, Self::MAX_MICROS);
        match &mut self.histogram {
            Some(histogram) => histogram.saturating_record(micros),
            None if self.samples.len() < Self::SAMPLES_BEFORE_HISTOGRAM => {
                self.samples.push(micros);
            }
            None => {
                let mut histogram = Self::empty_histogram();
                for &sample in &self.samples {
                    histogram.saturating_record(sample);
                }
                histogram.saturating_record(micros);
                self.samples = Vec::new();
                self.histogram = Some(histogram);
            }
        }
    }

    /// Records one sample; values past the range are clamped, never lost.
    pub fn record(&mut self, elapsed: Duration) {
        self.record_micros(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latency) {
        if let Some(theirs) = &other.histogram {
            let ours = self.histogram.get_or_insert_with(Self::empty_histogram);
            // Same bounds on both sides, so adding cannot fail.
            let _ = ours.add(&**theirs);
        }
        for &sample in &other.samples {
            self.record_micros(sample);
        }
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.samples.len() as u64 + self.histogram.as_ref().map_or(0, |h| h.len())
    }

    /// All samples in one histogram (built on the spot when only a list is kept).
    fn histogram(&self) -> std::borrow::Cow<'_, Histogram<u64>> {
        let mut histogram = match &self.histogram {
            Some(histogram) if self.samples.is_empty() => {
                return std::borrow::Cow::Borrowed(&**histogram);
            }
            Some(histogram) => (**histogram).clone(),
            None => *Self::empty_histogram(),
        };
        for &sample in &self.samples {
            histogram.saturating_record(sample);
        }
        std::borrow::Cow::Owned(histogram)
    }

    /// The latency at `quantile` (0.0–1.0); zero when empty.
    pub fn quantile(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.histogram().value_at_quantile(quantile))
    }

    /// The percentiles a report shows.
    pub fn summary(&self) -> LatencySummary {
        let histogram = self.histogram();
        let ms = |micros: u64| Duration::from_micros(micros).as_secs_f64() * 1000.0;
        LatencySummary {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
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
    /// Lines the server sent on its own (chat `* …` notices), each text with how often it
    /// came; flood-control notices among them are also counted apart.
    pub notices: Vec<(String, u64)>,
    /// What went wrong, one sentence each (lost lines, timeouts, socket errors…). Empty
    /// means the server did the whole job; otherwise the run failed.
    pub problems: Vec<String>,
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
            notices: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Adds a problem when `count` is not zero: `"{count} {what}"`.
    pub fn with_problem_if(mut self, count: u64, what: &str) -> Self {
        if count > 0 {
            self.problems.push(format!("{count} {what}"));
        }
        self
    }

    /// Whether the server did the whole job (no problem recorded).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
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
        for (text, count) in &self.notices {
            let _ = writeln!(s, "  {:<14} {count} × {text}", "server notice");
        }
        for problem in &self.problems {
            let _ = writeln!(s, "  {:<14} {problem}", "FAILED");
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
    fn lists_and_histograms_merge_into_the_same_percentiles() {
        // One record past the list limit (a histogram), many small ones (lists).
        let big_n = Latency::SAMPLES_BEFORE_HISTOGRAM as u64 * 3;
        let mut big = Latency::new();
        for i in 0..big_n {
            big.record(Duration::from_micros(1_000 + i % 1_000));
        }
        let mut all = Latency::new();
        for _ in 0..50 {
            let mut small = Latency::new();
            for _ in 0..10 {
                small.record(Duration::from_millis(500));
            }
            all.merge(&small);
        }
        all.merge(&big);
        all.merge(&big);
        assert_eq!(all.count(), 500 + 2 * big_n);
        let s = all.summary();
        assert!((s.max_ms - 500.0).abs() < 0.5, "{s:?}");
        assert!(s.p50_ms >= 1.0 && s.p50_ms < 2.0, "{s:?}");
        // 500 of 6644 samples are slow: p99 is among them, p90 is not.
        assert!((s.p99_ms - 500.0).abs() < 0.5, "{s:?}");
        assert!(s.p90_ms < 2.0, "{s:?}");
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
