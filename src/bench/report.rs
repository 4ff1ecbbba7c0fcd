//! Latency histograms and the report every load generator prints: a table for people,
//! JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::bench::cpu::CpuUse;
use crate::bench::timeline::{Interval, LATE_SEND, Timeline};

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
        self.record_micros_n(micros, 1);
    }

    fn record_micros_n(&mut self, micros: u64, count: u64) {
        let micros = micros.clamp(1, Self::MAX_MICROS);
        match &mut self.histogram {
            Some(histogram) => histogram.saturating_record_n(micros, count),
            None if self.samples.len() as u64 + count <= Self::SAMPLES_BEFORE_HISTOGRAM as u64 => {
                self.samples
                    .extend(std::iter::repeat_n(micros, count as usize));
            }
            None => {
                let mut histogram = Self::empty_histogram();
                for &sample in &self.samples {
                    histogram.saturating_record(sample);
                }
                histogram.saturating_record_n(micros, count);
                self.samples = Vec::new();
                self.histogram = Some(histogram);
            }
        }
    }

    /// Records one sample; values past the range are clamped, never lost.
    pub fn record(&mut self, elapsed: Duration) {
        self.record_micros(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records `count` samples of one value (as `count` calls of [`record`](Self::record)).
    pub fn record_n(&mut self, elapsed: Duration, count: u64) {
        self.record_micros_n(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            count,
        );
    }

    /// Forgets every sample, keeping the memory of a histogram already built.
    pub(crate) fn clear(&mut self) {
        self.samples.clear();
        if let Some(histogram) = &mut self.histogram {
            histogram.reset();
        }
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
    pub(crate) fn histogram(&self) -> std::borrow::Cow<'_, Histogram<u64>> {
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
    /// Latency percentiles, when latencies were recorded; in an open loop (`--rate`) timed
    /// from when each operation was due (corrected for coordinated omission).
    pub latency: Option<LatencySummary>,
    /// In an open loop: the same latencies timed from when each operation was written, as a
    /// closed loop would see them.
    pub uncorrected_latency: Option<LatencySummary>,
    /// In an open loop: the rate asked for and the rate kept, and the generator's own delays.
    pub schedule: Option<ScheduleSummary>,
    /// CPU time of the measured part: the generator's own and, when its process was named,
    /// the server's, with the share of a core each used (the side near 1.0 set the rate).
    pub cpu: Option<CpuUse>,
    /// Percentiles asked for by name (`--percentiles`), corrected and uncorrected.
    pub percentiles: Vec<PercentileRow>,
    /// One entry per second of the run: latency over time.
    pub timeline: Vec<SecondSummary>,
    /// Named counters: errors, lost, duplicated, non-2xx…; zero counters are kept.
    pub counters: Vec<(String, u64)>,
    /// Lines the server sent on its own (chat `* …` notices), each text with how often it
    /// came; flood-control notices among them are also counted apart.
    pub notices: Vec<(String, u64)>,
    /// What went wrong, one sentence each (lost lines, timeouts, socket errors…). Empty
    /// means the server did the whole job; otherwise the run failed.
    pub problems: Vec<String>,
    /// What makes the measurement itself doubtful (the generator fell behind its schedule);
    /// the server is not to blame, so these do not fail the run.
    pub warnings: Vec<String>,
    /// The recorded histograms, for percentiles on demand and the interval log.
    #[serde(skip)]
    recorded: Option<std::sync::Arc<Recorded>>,
}

#[derive(Debug)]
struct Recorded {
    corrected: Latency,
    uncorrected: Option<Latency>,
    intervals: Vec<Interval>,
}

/// How an open-loop run kept its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScheduleSummary {
    /// Operations per second asked for (`--rate`).
    pub target_per_sec: f64,
    /// Operations per second sent.
    pub achieved_per_sec: f64,
    /// Operations sent.
    pub sends: u64,
    /// The generator's own delay in starting a send (its connection free): median, the
    /// precision of its timer.
    pub lag_p50_ms: f64,
    /// The generator's own delay in starting a send (its connection free): 99th percentile.
    pub lag_p99_ms: f64,
    /// The generator's largest delay.
    pub lag_max_ms: f64,
    /// Sends more than 1 ms late through the generator's own fault.
    pub late_sends: u64,
    /// Seconds of the run in which at least one send was more than 1 ms late.
    pub late_seconds: u64,
    /// Sends due while their connection still waited for the server; that wait is in the
    /// corrected latency, as the server's.
    pub behind_busy: u64,
}

/// One chosen percentile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PercentileRow {
    /// The percentile, e.g. 99.9.
    pub percentile: f64,
    /// Latency in ms (corrected in an open loop).
    pub ms: f64,
    /// Uncorrected latency in ms (open loop only).
    pub uncorrected_ms: Option<f64>,
}

/// One second of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SecondSummary {
    /// Seconds since the start.
    pub second: u64,
    /// Operations completed in this second.
    pub ops: u64,
    /// Median latency (corrected in an open loop).
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Uncorrected 99th percentile (open loop only).
    pub uncorrected_p99_ms: Option<f64>,
    /// The generator's largest send delay in this second (open loop only).
    pub max_lag_ms: Option<f64>,
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
            uncorrected_latency: None,
            schedule: None,
            cpu: None,
            percentiles: Vec::new(),
            timeline: Vec::new(),
            warnings: Vec::new(),
            recorded: None,
        }
    }

    /// Takes the latencies from `timeline` (corrected and uncorrected, per second, and the
    /// schedule record when it was paced at `rate` per second).
    pub fn with_timeline(mut self, timeline: &Timeline, rate: Option<f64>) -> Self {
        let (intervals, schedule) = timeline.take();
        let mut corrected = Latency::new();
        let mut uncorrected = Latency::new();
        for interval in &intervals {
            corrected.merge(&interval.corrected);
            uncorrected.merge(&interval.uncorrected);
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let is_paced = schedule.is_some();
        self.latency = (corrected.count() > 0).then(|| corrected.summary());
        self.uncorrected_latency =
            (is_paced && uncorrected.count() > 0).then(|| uncorrected.summary());
        self.timeline = intervals
            .iter()
            .enumerate()
            .map(|(second, i)| SecondSummary {
                second: second as u64,
                ops: i.corrected.count(),
                p50_ms: ms(i.corrected.quantile(0.5)),
                p99_ms: ms(i.corrected.quantile(0.99)),
                max_ms: ms(i.corrected.quantile(1.0)),
                uncorrected_p99_ms: (is_paced && i.uncorrected.count() > 0)
                    .then(|| ms(i.uncorrected.quantile(0.99))),
                max_lag_ms: is_paced.then(|| i.max_lag_micros as f64 / 1000.0),
            })
            .collect();
        if let (Some(schedule), Some(rate)) = (schedule, rate) {
            let late_seconds = intervals
                .iter()
                .filter(|i| i.max_lag_micros > LATE_SEND.as_micros() as u64)
                .count() as u64;
            let summary = ScheduleSummary {
                target_per_sec: rate,
                achieved_per_sec: schedule.sends as f64 / self.seconds,
                sends: schedule.sends,
                lag_p50_ms: ms(schedule.lag.quantile(0.5)),
                lag_p99_ms: ms(schedule.lag.quantile(0.99)),
                lag_max_ms: ms(schedule.lag.quantile(1.0)),
                late_sends: schedule.late_sends,
                late_seconds,
                behind_busy: schedule.behind_busy,
            };
            if summary.late_sends > 0 {
                self.warnings.push(format!(
                    "the generator fell behind its schedule: {} sends more than 1 ms late \
                     (by up to {:.1} ms) in {} of {} seconds; the latencies are not the \
                     server's alone (fewer connections per core, or a lower --rate)",
                    summary.late_sends,
                    summary.lag_max_ms,
                    late_seconds,
                    intervals.len()
                ));
            }
            if summary.achieved_per_sec < rate * 0.95 {
                self.warnings.push(format!(
                    "sent {:.0}/s of the {rate:.0}/s asked for",
                    summary.achieved_per_sec
                ));
            }
            self.schedule = Some(summary);
        }
        self.recorded = Some(std::sync::Arc::new(Recorded {
            corrected,
            uncorrected: is_paced.then_some(uncorrected),
            intervals,
        }));
        self
    }

    /// Lists the chosen percentiles (e.g. `[50.0, 99.0, 99.9]`) in the report.
    pub fn with_percentiles(mut self, percentiles: &[f64]) -> Self {
        if let Some(recorded) = &self.recorded {
            let ms = |l: &Latency, p: f64| l.quantile(p / 100.0).as_secs_f64() * 1000.0;
            self.percentiles = percentiles
                .iter()
                .map(|&p| PercentileRow {
                    percentile: p,
                    ms: ms(&recorded.corrected, p),
                    uncorrected_ms: recorded.uncorrected.as_ref().map(|u| ms(u, p)),
                })
                .collect();
        }
        self
    }

    /// Writes the corrected latencies as an HdrHistogram interval log, one interval per
    /// second, values in microseconds (`Interval_Max` in milliseconds).
    ///
    /// # Errors
    ///
    /// Whatever writing to `out` returns.
    pub fn write_hdr_log(
        &self,
        out: &mut dyn std::io::Write,
        started: std::time::SystemTime,
    ) -> std::io::Result<()> {
        let intervals = self.recorded.as_ref().map_or(&[][..], |r| &r.intervals[..]);
        crate::bench::plot::write_hdr_log(out, &self.name, started, intervals)
    }

    /// Latency over time as an SVG image.
    pub fn svg(&self) -> String {
        crate::bench::plot::svg(self)
    }

    /// Sets the operation and byte totals (and their rates) after the fact.
    pub fn set_totals(&mut self, ops: u64, bytes: u64) {
        self.ops = ops;
        self.ops_per_sec = ops as f64 / self.seconds;
        self.bytes = bytes;
        self.mb_per_sec = bytes as f64 / self.seconds / 1e6;
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

    /// Adds the CPU time of the measured part.
    pub fn with_cpu(mut self, cpu: Option<CpuUse>) -> Self {
        self.cpu = cpu;
        self
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
        let line = |s: &mut String, name: &str, l: &LatencySummary| {
            let _ = writeln!(
                s,
                "  {name:<14} p50 {:.3} · p90 {:.3} · p99 {:.3} · p99.9 {:.3} · max {:.3} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        };
        if let Some(l) = &self.latency {
            let name = if self.uncorrected_latency.is_some() {
                "latency (due)"
            } else {
                "latency"
            };
            line(&mut s, name, l);
        }
        if let Some(l) = &self.uncorrected_latency {
            line(&mut s, "  uncorrected", l);
        }
        for p in &self.percentiles {
            let _ = write!(s, "  {:<14} {:.3} ms", format!("p{}", p.percentile), p.ms);
            if let Some(u) = p.uncorrected_ms {
                let _ = write!(s, " (uncorrected {u:.3} ms)");
            }
            s.push('\n');
        }
        if let Some(sc) = &self.schedule {
            let _ = writeln!(
                s,
                "  {:<14} {:.0}/s of {:.0}/s asked; generator lag p50 {:.3} · p99 {:.3} · max \
                 {:.3} ms, {} sends late, {} waited for a busy connection",
                "rate",
                sc.achieved_per_sec,
                sc.target_per_sec,
                sc.lag_p50_ms,
                sc.lag_p99_ms,
                sc.lag_max_ms,
                sc.late_sends,
                sc.behind_busy
            );
        }
        if let Some(cpu) = &self.cpu {
            let _ = write!(
                s,
                "  {:<14} generator {:.3} s ({:.0}% of a core)",
                "cpu",
                cpu.generator_seconds,
                cpu.generator_share * 100.0
            );
            if let (Some(seconds), Some(share)) = (cpu.server_seconds, cpu.server_share) {
                let _ = write!(s, " · server {seconds:.3} s ({:.0}%)", share * 100.0);
            }
            s.push('\n');
        }
        for (name, value) in &self.counters {
            let _ = writeln!(s, "  {name:<14} {value}");
        }
        for (text, count) in &self.notices {
            let _ = writeln!(s, "  {:<14} {count} × {text}", "server notice");
        }
        if self.timeline.len() > 1 {
            s.push_str(&crate::bench::plot::chart(self));
        }
        for warning in &self.warnings {
            let _ = writeln!(s, "  {:<14} {warning}", "WARNING");
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
