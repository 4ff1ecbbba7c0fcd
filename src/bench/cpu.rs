//! CPU time over the measured part of a run: the load generator's own, and the server's when
//! the caller names its process, so a report says which side set the rate. A side that used
//! about a whole core was the limit; a generator at 100% measures itself, not the server.
//!
//! The generator's time comes from `getrusage`, the server's from `/proc/PID/stat` (Linux;
//! every thread of the process, in ticks of 10 ms).

use std::time::Duration;

use serde::Serialize;

/// Ticks per second of the times in `/proc/PID/stat` (USER_HZ): the kernel reports them in
/// 1/100 s whatever its own tick rate.
const USER_HZ: u64 = 100;

/// CPU time of the measured part of a run, and the share of one core it was.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuUse {
    /// CPU seconds the load generator used (user and system, all its threads).
    pub generator_seconds: f64,
    /// That over the wall time of the measured part: 1.0 is one whole core.
    pub generator_share: f64,
    /// CPU seconds the server process used over the same part (`--server-pid`); `None`
    /// when no server process was named or it could not be read.
    pub server_seconds: Option<f64>,
    /// The server's seconds over the same wall time.
    pub server_share: Option<f64>,
}

/// CPU time used so far by this process and by the watched one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMark {
    generator: Option<Duration>,
    server: Option<Duration>,
}

/// Reads the CPU time of this process and, when named, of a server process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuWatch {
    server_pid: Option<u32>,
}

/// Why a server process cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the CPU time of process {pid} (/proc/{pid}/stat)")]
pub struct NoSuchProcess {
    /// The process asked for.
    pub pid: u32,
}

impl CpuWatch {
    /// Watches this process, and process `server_pid` when given.
    ///
    /// # Errors
    ///
    /// [`NoSuchProcess`] when the server's CPU time cannot be read (no such process, or not
    /// Linux).
    pub(crate) fn new(server_pid: Option<u32>) -> Result<Self, NoSuchProcess> {
        if let Some(pid) = server_pid
            && process_cpu(pid).is_none()
        {
            return Err(NoSuchProcess { pid });
        }
        Ok(Self { server_pid })
    }

    /// The CPU time used so far.
    pub(crate) fn mark(&self) -> CpuMark {
        CpuMark {
            generator: own_cpu(),
            server: self.server_pid.and_then(process_cpu),
        }
    }
}

impl CpuMark {
    /// What was used from `self` to `end`, with shares of `wall` (the measured part's wall
    /// time); `None` when the generator's own time could not be read.
    pub(crate) fn until(&self, end: &CpuMark, wall: Duration) -> Option<CpuUse> {
        let wall = wall.as_secs_f64().max(1e-9);
        let seconds = |start: Option<Duration>, end: Option<Duration>| {
            Some(end?.saturating_sub(start?).as_secs_f64())
        };
        let generator_seconds = seconds(self.generator, end.generator)?;
        let server_seconds = seconds(self.server, end.server);
        Some(CpuUse {
            generator_seconds,
            generator_share: generator_seconds / wall,
            server_seconds,
            server_share: server_seconds.map(|s| s / wall),
        })
    }
}

/// User and system time of this process, all threads.
fn own_cpu() -> Option<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Some(time(usage.user_time()) + time(usage.system_time()))
}

/// User and system time of process `pid`, all threads, from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `utime` + `stime` of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so the fields are counted from
/// the last `)`: the state (field 3) comes first, `utime` and `stime` are fields 14 and 15.
fn stat_cpu(stat: &str) -> Option<Duration> {
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_any_command_name() {
        let stat = "4242 (sockit) S 1 4242 4242 0 -1 4194560 1021 0 0 0 250 31 0 0 20 0 1 0 \
                    77 10000 300 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(stat_cpu(stat), Some(Duration::from_millis(2810)));
        let odd = stat.replace("(sockit)", "(a) b (c) 1 2)");
        assert_eq!(stat_cpu(&odd), Some(Duration::from_millis(2810)));
        assert_eq!(stat_cpu("4242 (cut) S 1 2"), None);
        assert_eq!(stat_cpu(""), None);
    }

    #[test]
    fn this_process_and_a_named_one_are_measured() {
        let own = std::process::id();
        let watch = CpuWatch::new(Some(own)).unwrap();
        let start = watch.mark();
        // Busy until 60 ms of CPU went by (a few of /proc's 10 ms ticks), bounded in wall time
        // on a machine too busy to give them.
        let busy = std::time::Instant::now();
        let mut x = 0u64;
        while own_cpu().unwrap() < start.generator.unwrap() + Duration::from_millis(60)
            && busy.elapsed() < Duration::from_secs(10)
        {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let used = start
            .until(&watch.mark(), busy.elapsed())
            .expect("getrusage works");
        assert!(used.generator_seconds >= 0.06, "{used:?}");
        assert!(used.generator_share > 0.0, "{used:?}");
        let server = used.server_seconds.expect("this process's /proc entry");
        assert!(server >= 0.04, "ticks of 10 ms: {used:?}");
        assert!(CpuWatch::new(Some(u32::MAX)).is_err());
        let alone = CpuWatch::new(None).unwrap();
        let mark = alone.mark();
        let used = mark.until(&alone.mark(), Duration::from_secs(1)).unwrap();
        assert_eq!((used.server_seconds, used.server_share), (None, None));
    }
}
