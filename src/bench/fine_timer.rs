//! A timer fine enough for an open-loop schedule: a paced send is woken at its due time (at
//! most [`COALESCE`] after it), not at tokio's next millisecond tick.
//!
//! tokio's timer has a resolution of 1 ms and rounds every deadline up to a tick, so paced
//! sends waiting on `tokio::time::sleep_until` left 0–2 ms late, in bursts at each tick.
//! Against one nginx worker at 18,660 req/s (64 connections, generator on one core) that
//! made `bench http --rate` report p50 1.61 / p99 10.99 ms where oha reported 0.63 / 4.05,
//! with a schedule lag p99 never under 1 ms. (One schedule shared by all connections and
//! released by a clock thread was worse: every send paid a cross-thread wake.)
//!
//! So the paced tasks of one run share one `timerfd` registered with the runtime's own
//! reactor (no thread of its own): a min-heap of (due, waker) entries, and a driver task
//! that wakes every entry that is due and re-arms the timerfd for the earliest one left.
//! Fires are coalesced, at most one per [`COALESCE`], which bounds the wake-ups per second at
//! high rates; an entry then leaves at most that late, never early. Where there is no
//! timerfd (other systems, or a runtime without I/O) tokio's timer does the waiting.
//! Measured in a debug build on a loaded two-core machine, eight sleepers every 4 ms: median
//! lateness 0.12 ms, against 1.04 ms on tokio's timer; the tail (several ms there) is the
//! machine's scheduler, which a plain sleeping thread shows as well.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// The shortest time between two fires of the timer: entries due within it of the last
/// fire wait for the next one, so at most this late.
///
/// 200 µs: against nginx's `return 200` at 10,000 requests/s (64 connections, generator on
/// one loaded core) the generator spent 28.3 µs of CPU per request with 50 µs, 24.2 with
/// 200 and 21.3 with 500, for a schedule lag p50 of 0.08, 0.20 and 0.40 ms: each fire, and
/// the answers to the sends it started, wake the process once for several requests. 200 µs
/// keeps the lag a fifth of the 1 ms a send may be late. Below 1 / 200 µs = 5,000 sends per
/// second in all, entries rarely fall within one window and none waits.
pub(crate) const COALESCE: Duration = Duration::from_micros(200);

/// The timer the paced tasks of one run wait on. Clones share it; the timerfd and its
/// driver task end when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct FineTimer {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    #[cfg(target_os = "linux")]
    Fine(std::sync::Arc<linux::Registration>),
    /// tokio's timer (1 ms ticks).
    Coarse,
}

impl FineTimer {
    /// A fine timer on the current runtime: a timerfd and its driver task. Falls back to
    /// tokio's timer when that cannot be had (no timerfd, no runtime with I/O).
    pub(crate) fn start() -> Self {
        #[cfg(target_os = "linux")]
        {
            match linux::start() {
                Ok(registration) => {
                    return Self {
                        kind: Kind::Fine(registration),
                    };
                }
                Err(err) => tracing::warn!(%err, "no fine timer, pacing to tokio's 1 ms ticks"),
            }
        }
        Self::coarse()
    }

    /// tokio's own timer: 1 ms ticks, but it follows a paused test clock.
    pub(crate) fn coarse() -> Self {
        Self { kind: Kind::Coarse }
    }

    /// Whether this timer is finer than tokio's.
    pub(crate) fn is_fine(&self) -> bool {
        !matches!(self.kind, Kind::Coarse)
    }

    /// Waits until `due` (at once when it has passed); never returns before it.
    pub(crate) async fn sleep_until(&self, due: Instant) {
        match &self.kind {
            #[cfg(target_os = "linux")]
            Kind::Fine(registration) => {
                if registration.sleep_until(due).await.is_err() {
                    tokio::time::sleep_until(due).await;
                }
            }
            Kind::Coarse => tokio::time::sleep_until(due).await,
        }
    }
}

impl fmt::Debug for FineTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FineTimer")
            .field("is_fine", &self.is_fine())
            .finish()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::cmp::{Ordering, Reverse};
    use std::collections::BinaryHeap;
    use std::future::Future;
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    use tokio::sync::Notify;
    use tokio::time::Instant;

    use super::COALESCE;

    /// The timerfd, seen by the reactor through its raw descriptor.
    struct Clock(TimerFd);

    impl AsRawFd for Clock {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    /// A waiting task: woken once `due` has passed.
    struct Entry {
        due: Instant,
        /// Registration order: entries due at once wake in the order they came.
        seq: u64,
        waker: Waker,
    }

    impl PartialEq for Entry {
        fn eq(&self, other: &Self) -> bool {
            (self.due, self.seq) == (other.due, other.seq)
        }
    }

    impl Eq for Entry {}

    impl PartialOrd for Entry {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }

    impl Ord for Entry {
        fn cmp(&self, other: &Self) -> Ordering {
            (self.due, self.seq).cmp(&(other.due, other.seq))
        }
    }

    struct State {
        waiting: BinaryHeap<Reverse<Entry>>,
        /// When the timerfd will fire, if it is armed.
        armed: Option<Instant>,
        last_fire: Instant,
        next_seq: u64,
    }

    struct Shared {
        clock: AsyncFd<Clock>,
        state: Mutex<State>,
        /// The last [`Registration`] is gone: the driver ends.
        closed: Notify,
        /// The timerfd failed: every waiter falls back to tokio's timer.
        is_broken: AtomicBool,
    }

    /// What the clones of one `FineTimer` share; dropping it ends the driver.
    pub(super) struct Registration {
        shared: Arc<Shared>,
    }

    /// The timerfd failed; the waiter should use another timer.
    pub(super) struct Broken;

    /// Creates the timerfd and spawns its driver on the current runtime.
    pub(super) fn start() -> io::Result<Arc<Registration>> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other("not inside a tokio runtime"));
        }
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // Deprecated for I/O safety, as a raw descriptor could be closed under the reactor;
        // here the `TimerFd` inside owns it for the `AsyncFd`'s whole life. Its replacement
        // is `unsafe`, which this crate forbids.
        #[allow(deprecated)]
        let clock = AsyncFd::with_interest(Clock(fd), Interest::READABLE)?;
        let shared = Arc::new(Shared {
            clock,
            state: Mutex::new(State {
                waiting: BinaryHeap::new(),
                armed: None,
                last_fire: Instant::now(),
                next_seq: 0,
            }),
            closed: Notify::new(),
            is_broken: AtomicBool::new(false),
        });
        tokio::spawn(drive(shared.clone()));
        Ok(Arc::new(Registration { shared }))
    }

    impl Registration {
        pub(super) fn sleep_until(&self, due: Instant) -> Sleep<'_> {
            Sleep {
                shared: &self.shared,
                due,
                waker: None,
            }
        }
    }

    impl Drop for Registration {
        fn drop(&mut self) {
            // Stores a permit when the driver is not waiting right now.
            self.shared.closed.notify_one();
        }
    }

    /// Waits for one due time.
    pub(super) struct Sleep<'a> {
        shared: &'a Shared,
        due: Instant,
        /// The waker of the entry already in the heap.
        waker: Option<Waker>,
    }

    impl Future for Sleep<'_> {
        type Output = Result<(), Broken>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            if Instant::now() >= self.due {
                return Poll::Ready(Ok(()));
            }
            if self.shared.is_broken.load(AtomicOrdering::Acquire) {
                return Poll::Ready(Err(Broken));
            }
            // Polled again before its time (a sibling in a select!): its entry is still
            // waiting unless the task moved to another waker.
            if self
                .waker
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
            {
                return Poll::Pending;
            }
            if !self.shared.register(self.due, cx.waker().clone()) {
                return Poll::Ready(Err(Broken));
            }
            self.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn expiration_in(wait: Duration) -> Expiration {
        // At least 1 ns: a zero expiration disarms a timerfd instead of firing it.
        Expiration::OneShot(TimeSpec::from_duration(wait.max(Duration::from_nanos(1))))
    }

    impl Shared {
        fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Adds a waiter; false when the timerfd has failed.
        fn register(&self, due: Instant, waker: Waker) -> bool {
            let mut state = self.lock();
            if self.is_broken.load(AtomicOrdering::Acquire) {
                return false;
            }
            let seq = state.next_seq;
            state.next_seq += 1;
            state.waiting.push(Reverse(Entry { due, seq, waker }));
            let fire_at = due.max(state.last_fire + COALESCE);
            if state.armed.is_none_or(|armed| fire_at < armed) {
                if let Err(err) = self.arm(&mut state, fire_at) {
                    self.fail(&mut state, &err);
                    return false;
                }
            }
            true
        }

        /// Sets the timerfd to fire at `fire_at` (a relative time: it cannot fire early).
        fn arm(&self, state: &mut State, fire_at: Instant) -> nix::Result<()> {
            let wait = fire_at.saturating_duration_since(Instant::now());
            self.clock
                .get_ref()
                .0
                .set(expiration_in(wait), TimerSetTimeFlags::empty())?;
            state.armed = Some(fire_at);
            Ok(())
        }

        /// Takes the wakers of every entry now due into `woken` and re-arms for the rest.
        fn fire(&self, woken: &mut Vec<Waker>) {
            let mut state = self.lock();
            let now = Instant::now();
            state.last_fire = now;
            state.armed = None;
            while state
                .waiting
                .peek()
                .is_some_and(|Reverse(entry)| entry.due <= now)
            {
                if let Some(Reverse(entry)) = state.waiting.pop() {
                    woken.push(entry.waker);
                }
            }
            if let Some(Reverse(next)) = state.waiting.peek() {
                let fire_at = next.due.max(now + COALESCE);
                if let Err(err) = self.arm(&mut state, fire_at) {
                    self.fail(&mut state, &err);
                }
            }
        }

        /// The timerfd failed: every waiter, now and later, goes to tokio's timer.
        fn fail(&self, state: &mut State, err: &dyn std::error::Error) {
            tracing::warn!(%err, "fine timer failed, pacing to tokio's 1 ms ticks");
            self.is_broken.store(true, AtomicOrdering::Release);
            state.armed = None;
            for Reverse(entry) in state.waiting.drain() {
                entry.waker.wake();
            }
        }
    }

    /// Waits for the timerfd and wakes what is due, until the last registration is gone.
    async fn drive(shared: Arc<Shared>) {
        let mut woken = Vec::new();
        loop {
            tokio::select! {
                biased;
                () = shared.closed.notified() => return,
                ready = shared.clock.readable() => {
                    match ready {
                        // Not read: re-arming resets a timerfd's count of expirations, and
                        // each expiration is a new readiness event, so a read would only
                        // cost a syscall per fire. A stale readiness fires nothing early:
                        // entries are woken by their due time, not by the event.
                        Ok(mut guard) => guard.clear_ready(),
                        Err(err) => {
                            shared.fail(&mut shared.lock(), &err);
                            return;
                        }
                    }
                    shared.fire(&mut woken);
                    // Woken outside the lock: they register again at once.
                    for waker in woken.drain(..) {
                        waker.wake();
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn entries_order_by_due_time_then_arrival() {
            let now = Instant::now();
            let waker = Waker::noop().clone();
            let entry = |ms: u64, seq| {
                Reverse(Entry {
                    due: now + Duration::from_millis(ms),
                    seq,
                    waker: waker.clone(),
                })
            };
            let mut heap: BinaryHeap<_> = [entry(3, 0), entry(1, 2), entry(1, 1), entry(2, 3)]
                .into_iter()
                .collect();
            let mut order = Vec::new();
            while let Some(Reverse(entry)) = heap.pop() {
                order.push(entry.seq);
            }
            assert_eq!(order, [1, 2, 3, 0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks sleeping on one fine timer all wake, each after its due time, never before.
    /// (How soon after is a matter of load: the bench tests measure it.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleepers_wake_after_their_due_time_never_before() {
        let timer = FineTimer::start();
        assert!(timer.is_fine());
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..8u64 {
            let timer = timer.clone();
            tasks.spawn(async move {
                for round in 0..100u64 {
                    // Every 4 ms, staggered by 37 µs: several due within one coalesced fire.
                    let due = start + Duration::from_micros(4000 * round + 37 * index + 1000);
                    timer.sleep_until(due).await;
                    let at = Instant::now();
                    assert!(at >= due, "woke {:?} early", due - at);
                }
            });
        }
        let all = async {
            while let Some(done) = tasks.join_next().await {
                done.expect("sleeper");
            }
        };
        tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("every sleeper woke");
    }

    /// A due time earlier than the one the timerfd is armed for re-arms it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_earlier_due_time_re_arms_the_timer() {
        let timer = FineTimer::start();
        let late = tokio::spawn({
            let timer = timer.clone();
            async move {
                timer
                    .sleep_until(Instant::now() + Duration::from_secs(5))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        // The timeout only bounds the test: it polls the sleep once more when it fires.
        let _ = tokio::time::timeout(
            Duration::from_secs(3),
            timer.sleep_until(started + Duration::from_millis(2)),
        )
        .await;
        let slept = started.elapsed();
        assert!(slept >= Duration::from_millis(2), "{slept:?}");
        assert!(
            slept < Duration::from_secs(1),
            "woken with the later entry: {slept:?}"
        );
        late.abort();
    }

    #[tokio::test]
    async fn a_due_time_that_has_passed_returns_at_once() {
        let timer = FineTimer::start();
        let past = Instant::now() - Duration::from_millis(5);
        tokio::time::timeout(Duration::from_secs(5), timer.sleep_until(past))
            .await
            .expect("no wait for a past due time");
    }

    #[tokio::test(start_paused = true)]
    async fn the_coarse_timer_follows_a_paused_clock() {
        let timer = FineTimer::coarse();
        let due = Instant::now() + Duration::from_secs(3600);
        timer.sleep_until(due).await;
        assert!(Instant::now() >= due);
    }
}
