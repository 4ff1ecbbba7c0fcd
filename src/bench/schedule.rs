//! The open-loop schedule that the connections of an HTTP run share.
//!
//! Operation `i` of a run at `R` per second is due at `start + i / R`, and the next free
//! connection takes it, whichever that is (oha's `-q`, k6's constant arrival rate). A request
//! due while one connection is busy goes out on another that is free; only when every
//! connection is busy does it wait, and that wait is the server's latency. A schedule per
//! connection (wrk2's) would instead hold it behind its own connection's slow answer while
//! others idle.
//!
//! Operations are released by a clock thread, to within tens of microseconds of their due
//! time: tokio's timer ticks in whole milliseconds, which alone would make every send up to
//! a millisecond late and put that delay into every corrected latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::bench::timeline::Sent;

/// The longest the clock thread sleeps at once, so that it notices a run that ended early.
const CLOCK_NAP: Duration = Duration::from_millis(10);

/// A fixed-rate sequence of operations handed to whichever connection is free.
#[derive(Debug)]
pub(crate) struct Schedule {
    start: Instant,
    period: Duration,
    /// Operations due before the end of the run.
    total: u64,
    /// No operation is handed out after this (the end plus one timeout's grace); those left
    /// count as timed out.
    last_call: Instant,
    /// One permit per operation that fell due and was not taken yet.
    due: Semaphore,
    taken: AtomicU64,
    is_stopped: AtomicBool,
}

impl Schedule {
    /// Starts the clock of a schedule of `rate` operations per second from `start` until
    /// `end` (or `budget` operations, whichever comes first); operations not taken by
    /// `last_call` are left.
    pub(crate) fn start(
        start: Instant,
        rate: f64,
        end: Instant,
        budget: u64,
        last_call: Instant,
    ) -> Arc<Self> {
        let period = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        let span = end.saturating_duration_since(start);
        let total = ((span.as_secs_f64() / period.as_secs_f64()).ceil() as u64).min(budget);
        let schedule = Arc::new(Self {
            start,
            period,
            total,
            last_call,
            due: Semaphore::new(0),
            taken: AtomicU64::new(0),
            is_stopped: AtomicBool::new(false),
        });
        let clock = schedule.clone();
        let spawned = std::thread::Builder::new()
            .name("bench-clock".to_owned())
            .spawn(move || clock.release_on_time());
        if spawned.is_err() {
            // No thread to spare: release everything now. Every send then shows as late
            // from its own due time, so the report still tells the truth.
            schedule.due.add_permits(schedule.total as usize);
        }
        schedule
    }

    fn due_at(&self, index: u64) -> Instant {
        self.start + self.period.mul_f64(index as f64)
    }

    /// The clock thread: adds a permit as each operation falls due.
    fn release_on_time(&self) {
        let mut released = 0_u64;
        while released < self.total && !self.is_stopped.load(Ordering::Relaxed) {
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(self.start);
            let fallen_due = if now < self.start {
                0
            } else {
                ((elapsed.as_secs_f64() / self.period.as_secs_f64()) as u64 + 1).min(self.total)
            };
            if fallen_due > released {
                self.due.add_permits((fallen_due - released) as usize);
                released = fallen_due;
            }
            if released < self.total {
                let wait = self
                    .due_at(released)
                    .saturating_duration_since(Instant::now());
                std::thread::sleep(wait.min(CLOCK_NAP));
            }
        }
    }

    /// Waits for the next operation to fall due and takes it; `None` when the schedule is
    /// spent, stopped or past its last call. `free_since` is when the caller's connection
    /// finished its previous operation.
    pub(crate) async fn next(&self, free_since: Instant) -> Option<Sent> {
        let permit = self.due.acquire().await.ok()?;
        permit.forget();
        let at = Instant::now();
        if at >= self.last_call {
            self.stop();
            return None;
        }
        let index = self.taken.fetch_add(1, Ordering::Relaxed);
        if index + 1 >= self.total {
            // The last one: wake everyone still waiting.
            self.stop();
        }
        if index >= self.total {
            return None;
        }
        let due = self.due_at(index);
        Some(Sent {
            due,
            at,
            was_busy: free_since > due,
            lag: at.saturating_duration_since(due.max(free_since)),
        })
    }

    /// Operations due before the end that no connection took.
    pub(crate) fn left(&self) -> u64 {
        self.total
            .saturating_sub(self.taken.load(Ordering::Relaxed).min(self.total))
    }

    /// Ends the schedule: the clock stops and every waiting connection gets `None`.
    pub(crate) fn stop(&self) {
        self.is_stopped.store(true, Ordering::Relaxed);
        self.due.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn operations_fall_due_on_time_and_any_free_taker_gets_the_next() {
        let start = Instant::now() + Duration::from_millis(20);
        // 1000/s for 50 ms: 50 operations, 1 ms apart.
        let end = start + Duration::from_millis(50);
        let schedule = Schedule::start(start, 1000.0, end, u64::MAX, end + Duration::from_secs(5));
        let mut lags = Vec::new();
        let mut dues = Vec::new();
        while let Some(sent) = schedule.next(start).await {
            assert!(sent.at >= sent.due, "never handed out before it is due");
            lags.push(sent.lag);
            dues.push(sent.due);
        }
        assert_eq!(dues.len(), 50);
        assert_eq!(schedule.left(), 0);
        for (i, due) in dues.iter().enumerate() {
            assert_eq!(*due, start + Duration::from_millis(i as u64));
        }
        // How close to its time each went out is for the benchmark to show (bench/http-load.sh
        // reports the lag); here only that a free taker is not held back.
        lags.sort();
        assert!(lags[lags.len() / 2] < Duration::from_millis(20), "{lags:?}");
    }

    #[tokio::test]
    async fn a_busy_taker_sees_its_wait_as_the_servers_and_late_calls_are_left() {
        let start = Instant::now();
        let end = start + Duration::from_millis(30);
        let last_call = end + Duration::from_millis(20);
        let schedule = Schedule::start(start, 1000.0, end, u64::MAX, last_call);
        // Busy until 10 ms: what fell due meanwhile goes out at once, marked busy, and only
        // the time since the connection was free counts as lag.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let busy_until = Instant::now();
        let first = schedule.next(busy_until).await.expect("due");
        assert_eq!(first.due, start);
        assert!(first.was_busy);
        assert!(first.lag < Duration::from_millis(1), "{:?}", first.lag);
        // Nobody takes anything past the last call: the rest is left.
        tokio::time::sleep_until(last_call + Duration::from_millis(5)).await;
        assert!(schedule.next(Instant::now()).await.is_none());
        assert_eq!(schedule.left(), 29);
    }

    #[tokio::test]
    async fn the_budget_caps_the_schedule_and_stop_wakes_waiters() {
        let start = Instant::now();
        let end = start + Duration::from_secs(60);
        let schedule = Schedule::start(start, 1000.0, end, 3, end);
        for _ in 0..3 {
            assert!(schedule.next(start).await.is_some());
        }
        assert!(
            schedule.next(start).await.is_none(),
            "spent after the budget"
        );

        let slow = Schedule::start(start + Duration::from_secs(30), 1.0, end, u64::MAX, end);
        let waiter = tokio::spawn({
            let slow = slow.clone();
            async move { slow.next(Instant::now()).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        slow.stop();
        let woken = tokio::time::timeout(Duration::from_secs(1), waiter).await;
        assert!(matches!(woken, Ok(Ok(None))));
    }
}
