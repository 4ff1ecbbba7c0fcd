//! Open-loop pacing and the per-second record of a run.
//!
//! A closed loop (wrk) sends the next request when the last one is back, so a server that
//! stalls also stalls the load and the stall never shows in the percentiles ("coordinated
//! omission"). An open loop sends on a fixed schedule and times each request from when it was
//! **due** (wrk2): a request that waited behind a busy connection carries that wait in its
//! latency. This module holds the schedule (`Pace`) and what every connection records
//! (`Recorder`) into one shared [`Timeline`]: corrected and uncorrected latency per second,
//! and how far the generator itself fell behind its schedule.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::bench::Latency;
use crate::bench::fine_timer::FineTimer;

/// A send later than this after it was due (with its connection free) means the generator
/// did not keep its schedule.
pub const LATE_SEND: Duration = Duration::from_millis(1);

/// The fixed-rate schedule of one connection among many sharing a total rate.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    next: Instant,
    period: Duration,
    /// Shared by every connection of the run: tokio's own timer is 1 ms coarse.
    timer: FineTimer,
}

/// When one paced operation was due and when it actually went out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) due: Instant,
    pub(crate) at: Instant,
    /// The connection was still busy when this was due: the wait is the server's.
    pub(crate) was_busy: bool,
    /// How late the send was once the connection was free: the generator's own delay.
    pub(crate) lag: Duration,
}

impl Pace {
    /// Connection `index` of `connections` sharing `rate` operations per second: each sends
    /// every `connections / rate` seconds, staggered by `1 / rate`, waiting on `timer`.
    pub(crate) fn new(
        start: Instant,
        rate: f64,
        connections: usize,
        index: usize,
        timer: FineTimer,
    ) -> Self {
        let rate = rate.max(1e-3);
        Self {
            next: start + Duration::from_secs_f64(index as f64 / rate),
            period: Duration::from_secs_f64(connections.max(1) as f64 / rate),
            timer,
        }
    }

    /// Operations still due before `end` (a run cut short counts them).
    pub(crate) fn left_before(&self, end: Instant) -> u64 {
        let left = end.saturating_duration_since(self.next);
        (left.as_secs_f64() / self.period.as_secs_f64()).ceil() as u64
    }

    /// When the next operation is due.
    pub(crate) fn due(&self) -> Instant {
        self.next
    }

    /// Waits until the next operation is due (not at all when it is overdue) and moves the
    /// schedule on. `free_since` is when the connection finished its previous operation.
    /// Overdue operations are not skipped: they go out back to back, each timed from its
    /// own due time.
    pub(crate) async fn next(&mut self, free_since: Instant) -> Sent {
        let due = self.next;
        self.next += self.period;
        if due > Instant::now() {
            self.timer.sleep_until(due).await;
        }
        let at = Instant::now();
        Sent {
            due,
            at,
            was_busy: free_since > due,
            lag: at.saturating_duration_since(due.max(free_since)),
        }
    }
}

/// One second of a run.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// Latency from when each operation was due (equal to `uncorrected` in a closed loop).
    pub corrected: Latency,
    /// Latency from when each operation was written.
    pub uncorrected: Latency,
    /// The generator's largest delay in starting a send during this second, in µs.
    pub max_lag_micros: u64,
}

impl Interval {
    fn clear(&mut self) {
        self.corrected.clear();
        self.uncorrected.clear();
        self.max_lag_micros = 0;
    }

    fn merge(&mut self, other: &Interval) {
        self.corrected.merge(&other.corrected);
        self.uncorrected.merge(&other.uncorrected);
        self.max_lag_micros = self.max_lag_micros.max(other.max_lag_micros);
    }
}

/// How well the generator kept its schedule, over the whole run.
#[derive(Debug, Clone, Default)]
pub struct ScheduleRecord {
    /// Operations sent on schedule.
    pub sends: u64,
    /// The generator's delay of every send (its connection free, its due time passed).
    pub lag: Latency,
    /// Sends more than [`LATE_SEND`] late.
    pub late_sends: u64,
    /// Sends that were due while their connection was still busy (the server's time).
    pub behind_busy: u64,
}

/// Everything the connections of one run recorded, second by second.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    is_paced: bool,
    intervals: Mutex<Vec<Interval>>,
    schedule: Mutex<ScheduleRecord>,
}

impl Timeline {
    /// An empty timeline starting now-ish at `start`; `is_paced` for an open loop.
    pub fn new(start: Instant, is_paced: bool) -> Arc<Self> {
        Arc::new(Self {
            start,
            is_paced,
            intervals: Mutex::new(Vec::new()),
            schedule: Mutex::new(ScheduleRecord::default()),
        })
    }

    /// Whether the run was paced (open loop).
    pub fn is_paced(&self) -> bool {
        self.is_paced
    }

    fn second_of(&self, at: Instant) -> usize {
        at.saturating_duration_since(self.start).as_secs() as usize
    }

    fn add(&self, second: usize, interval: &Interval) {
        let mut intervals = self.intervals.lock().unwrap_or_else(|e| e.into_inner());
        if intervals.len() <= second {
            intervals.resize_with(second + 1, Interval::default);
        }
        intervals[second].merge(interval);
    }

    /// The seconds recorded so far and the schedule record.
    pub fn take(&self) -> (Vec<Interval>, Option<ScheduleRecord>) {
        let intervals =
            std::mem::take(&mut *self.intervals.lock().unwrap_or_else(|e| e.into_inner()));
        let schedule =
            std::mem::take(&mut *self.schedule.lock().unwrap_or_else(|e| e.into_inner()));
        (intervals, self.is_paced.then_some(schedule))
    }
}

/// What one connection records; it hands a second over to the [`Timeline`] when the next one
/// begins, so the shared lock is taken about once a second per connection.
#[derive(Debug)]
pub(crate) struct Recorder {
    timeline: Arc<Timeline>,
    second: usize,
    current: Interval,
    schedule: ScheduleRecord,
}

impl Recorder {
    pub(crate) fn new(timeline: Arc<Timeline>) -> Self {
        Self {
            timeline,
            second: 0,
            current: Interval::default(),
            schedule: ScheduleRecord::default(),
        }
    }

    fn interval(&mut self, at: Instant) -> &mut Interval {
        let second = self.timeline.second_of(at);
        if second != self.second {
            self.timeline.add(self.second, &self.current);
            // Emptied in place: a fresh histogram each second (~180 KiB, mapped and unmapped
            // by the allocator) cost every busy connection page faults and page clearing.
            self.current.clear();
            self.second = second;
        }
        &mut self.current
    }

    /// A paced send went out.
    pub(crate) fn sent(&mut self, sent: &Sent) {
        self.schedule.sends += 1;
        self.schedule.lag.record(sent.lag);
        self.schedule.late_sends += u64::from(sent.lag > LATE_SEND);
        self.schedule.behind_busy += u64::from(sent.was_busy);
        let lag = u64::try_from(sent.lag.as_micros()).unwrap_or(u64::MAX);
        let interval = self.interval(sent.at);
        interval.max_lag_micros = interval.max_lag_micros.max(lag);
    }

    /// An operation completed now; `due` equals `written` in a closed loop.
    pub(crate) fn done(&mut self, due: Instant, written: Instant) {
        let now = Instant::now();
        let interval = self.interval(now);
        interval
            .corrected
            .record(now.saturating_duration_since(due));
        interval
            .uncorrected
            .record(now.saturating_duration_since(written));
    }

    /// `count` operations whose latency was measured elsewhere (chat lines' stamps), all
    /// the same, completed; they have no uncorrected counterpart.
    ///
    /// `at` is when they were seen: one clock read serves every line of a read, which at
    /// millions of lines a second is the difference between measuring the server and
    /// measuring the generator.
    pub(crate) fn done_many_after(&mut self, latency: Duration, count: u64, at: Instant) {
        let interval = self.interval(at);
        interval.corrected.record_n(latency, count);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.timeline.add(self.second, &self.current);
        let mut schedule = self
            .timeline
            .schedule
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        schedule.sends += self.schedule.sends;
        schedule.lag.merge(&self.schedule.lag);
        schedule.late_sends += self.schedule.late_sends;
        schedule.behind_busy += self.schedule.behind_busy;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn overdue_sends_keep_their_due_time_and_busy_waits_are_not_lag() {
        let start = Instant::now();
        // 100/s over 2 connections: each every 20 ms, the second 10 ms after the first.
        let mut pace = Pace::new(start, 100.0, 2, 1, FineTimer::coarse());
        assert_eq!(pace.due(), start + Duration::from_millis(10));
        let first = pace.next(start).await;
        assert_eq!(first.at, start + Duration::from_millis(10));
        assert!(!first.was_busy);
        // The connection was busy until 95 ms: sends due at 30, 50, 70, 90 ms go out at once.
        tokio::time::sleep_until(start + Duration::from_millis(95)).await;
        let busy_until = Instant::now();
        for due_ms in [30, 50, 70, 90] {
            let sent = pace.next(busy_until).await;
            assert_eq!(sent.due, start + Duration::from_millis(due_ms));
            assert!(sent.was_busy);
            assert_eq!(sent.lag, Duration::ZERO);
        }
        let on_time = pace.next(busy_until).await;
        assert_eq!(on_time.at, start + Duration::from_millis(110));
        assert!(!on_time.was_busy);
    }

    #[test]
    fn each_second_starts_empty_after_a_histogram_was_built() {
        let start = Instant::now();
        let timeline = Timeline::new(start, false);
        let mut recorder = Recorder::new(timeline.clone());
        let many = Latency::SAMPLES_BEFORE_HISTOGRAM as u64 * 5;
        recorder.done_many_after(Duration::from_millis(1), many, start);
        let later = start + Duration::from_millis(1500);
        recorder.done_many_after(Duration::from_millis(2), 3, later);
        drop(recorder);
        let (intervals, _) = timeline.take();
        assert_eq!(intervals[0].corrected.count(), many);
        assert_eq!(intervals[1].corrected.count(), 3);
        assert_eq!(
            intervals[1].corrected.quantile(0.0),
            Duration::from_millis(2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn recorders_merge_per_second_into_the_timeline() {
        let start = Instant::now();
        let timeline = Timeline::new(start, true);
        for _ in 0..2 {
            let mut recorder = Recorder::new(timeline.clone());
            recorder.sent(&Sent {
                due: start,
                at: start + Duration::from_millis(3),
                was_busy: false,
                lag: Duration::from_millis(3),
            });
            tokio::time::sleep(Duration::from_millis(1500)).await;
            recorder.done(start, start + Duration::from_millis(3));
        }
        let (intervals, schedule) = timeline.take();
        let schedule = schedule.expect("paced");
        assert_eq!((schedule.sends, schedule.late_sends), (2, 2));
        assert_eq!(intervals.len(), 4, "seconds 0 to 3");
        assert_eq!(intervals[1].corrected.count(), 1);
        let near = |d: Duration, ms: f64| (d.as_secs_f64() * 1000.0 / ms - 1.0).abs() < 0.001;
        assert!(near(intervals[1].corrected.quantile(1.0), 1500.0));
        assert!(near(intervals[1].uncorrected.quantile(1.0), 1497.0));
        assert_eq!(intervals[3].corrected.count(), 1);
        assert_eq!(intervals[0].max_lag_micros, 3000);
    }
}
