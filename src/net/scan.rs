//! A TCP connect probe over many ports of one host at once (`sockit connect -z`, nc's `-z`):
//! which ports accept a connection, which refuse, which stay silent.
//!
//! A fixed number of probes is in flight; each is one socket and nothing else, so memory does
//! not grow with the number of ports. Resolving the host is the caller's job.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;

/// A sorted list of distinct ports, parsed from `1-1024,8080`.
///
/// # Examples
///
/// ```
/// use sockit::net::scan::PortList;
///
/// let ports: PortList = "8080,1-3,2".parse().unwrap();
/// assert_eq!(ports.as_slice(), &[1, 2, 3, 8080]);
/// assert!("0-10".parse::<PortList>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortList(Vec<u16>);

/// Why a port list could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid port list {input:?}: {reason} (expected PORT, FIRST-LAST or a comma-separated list, e.g. 1-1024,8080)"
)]
pub struct PortListError {
    input: String,
    reason: String,
}

impl PortList {
    /// The ports, ascending, each once.
    pub fn as_slice(&self) -> &[u16] {
        &self.0
    }

    /// How many ports.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty (a parsed list never is).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for PortList {
    type Err = PortListError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| PortListError {
            input: input.to_owned(),
            reason,
        };
        let port = |s: &str| -> Result<u16, PortListError> {
            match s.trim().parse::<u16>() {
                Ok(0) => Err(fail("port 0 cannot be probed".into())),
                Ok(p) => Ok(p),
                Err(_) => Err(fail(format!("{:?} is not a port (1-65535)", s.trim()))),
            }
        };
        let mut seen = vec![false; usize::from(u16::MAX) + 1];
        for part in input.split(',') {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (port(a)?, port(b)?),
                None => {
                    let p = port(part)?;
                    (p, p)
                }
            };
            if first > last {
                return Err(fail(format!("the range {first}-{last} runs backwards")));
            }
            for p in first..=last {
                seen[usize::from(p)] = true;
            }
        }
        let ports = (1..=u16::MAX).filter(|&p| seen[usize::from(p)]).collect();
        Ok(Self(ports))
    }
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    /// The connection was accepted.
    Open,
    /// The host answered with a reset: nothing listens there.
    Closed,
    /// No answer within the timeout (a firewall dropping packets, or a host that is down).
    Filtered,
    /// The host or network is unreachable (an ICMP error or no route).
    Unreachable,
    /// The probe could not be made (out of local ports or file descriptors).
    Failed,
}

impl PortState {
    /// `open`, `closed`, `filtered`, `unreachable` or `failed`.
    pub fn name(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
            PortState::Unreachable => "unreachable",
            PortState::Failed => "failed",
        }
    }

    fn from_u8(code: u8) -> Self {
        match code {
            1 => PortState::Open,
            2 => PortState::Closed,
            3 => PortState::Filtered,
            4 => PortState::Unreachable,
            _ => PortState::Failed,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            PortState::Open => 1,
            PortState::Closed => 2,
            PortState::Filtered => 3,
            PortState::Unreachable => 4,
            PortState::Failed => 5,
        }
    }
}

/// How a scan runs.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// Probes in flight at once (bounded again by the file descriptor limit).
    pub concurrency: usize,
    /// How long one probe waits for an answer before the port counts as filtered.
    pub timeout: Duration,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            concurrency: 512,
            timeout: Duration::from_secs(1),
        }
    }
}

/// The outcome of a scan: every port with its state, ascending.
#[derive(Debug, Clone)]
pub struct ScanReport {
    /// The address probed.
    pub ip: IpAddr,
    /// Each port probed and what was found.
    pub ports: Vec<(u16, PortState)>,
    /// How many probes were in flight at once.
    pub concurrency: usize,
}

impl ScanReport {
    /// The open ports, ascending.
    pub fn open(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .iter()
            .filter(|(_, s)| *s == PortState::Open)
            .map(|(p, _)| *p)
    }

    /// How many ports are in `state`.
    pub fn count(&self, state: PortState) -> usize {
        self.ports.iter().filter(|(_, s)| *s == state).count()
    }
}

/// File descriptors kept free for everything else the process does during a scan.
const RESERVED_FDS: u64 = 64;

/// Probes every port of `ports` on `ip` with a TCP connect, `config.concurrency` at a time.
/// An accepted connection is closed at once.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sockit::net::scan::{PortState, ScanConfig, scan};
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let port = listener.local_addr()?.port();
/// let report = scan(listener.local_addr()?.ip(), &port.to_string().parse()?, &ScanConfig::default()).await;
/// assert_eq!(report.ports, vec![(port, PortState::Open)]);
/// # Ok(()) }
/// ```
pub async fn scan(ip: IpAddr, ports: &PortList, config: &ScanConfig) -> ScanReport {
    let fd_room = raise_fd_limit().saturating_sub(RESERVED_FDS).max(1);
    let concurrency = config
        .concurrency
        .clamp(1, usize::try_from(fd_room).unwrap_or(usize::MAX))
        .min(ports.len().max(1));
    let next = AtomicUsize::new(0);
    let states: Vec<AtomicU8> = ports.as_slice().iter().map(|_| AtomicU8::new(0)).collect();
    let worker = || async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&port) = ports.as_slice().get(i) else {
                break;
            };
            let state = probe(SocketAddr::new(ip, port), config.timeout).await;
            states[i].store(state.to_u8(), Ordering::Relaxed);
        }
    };
    futures_util::future::join_all((0..concurrency).map(|_| worker())).await;
    let ports = ports
        .as_slice()
        .iter()
        .zip(&states)
        .map(|(&port, state)| (port, PortState::from_u8(state.load(Ordering::Relaxed))))
        .collect();
    ScanReport {
        ip,
        ports,
        concurrency,
    }
}

/// One connect: its outcome as a port state. Running out of descriptors or local ports is
/// retried a few times after a short pause, since other probes free them as they finish.
async fn probe(addr: SocketAddr, timeout: Duration) -> PortState {
    for _attempt in 0..5 {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => return PortState::Filtered,
            Ok(Ok(_stream)) => return PortState::Open,
            Ok(Err(e)) => match classify(&e) {
                PortState::Failed => tokio::time::sleep(Duration::from_millis(20)).await,
                state => return state,
            },
        }
    }
    PortState::Failed
}

fn classify(error: &io::Error) -> PortState {
    match error.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => PortState::Closed,
        io::ErrorKind::TimedOut => PortState::Filtered,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            PortState::Unreachable
        }
        _ => match error.raw_os_error() {
            Some(code) if code == libc::EHOSTUNREACH || code == libc::ENETUNREACH => {
                PortState::Unreachable
            }
            _ => PortState::Failed,
        },
    }
}

/// Raises the soft limit on open files to the hard limit and returns the soft limit now in
/// force: a wide scan wants many sockets at once.
#[cfg(target_os = "linux")]
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

#[cfg(not(target_os = "linux"))]
fn raise_fd_limit() -> u64 {
    1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_parse_sorted_and_distinct() {
        let list: PortList = " 22 , 80-82,81".parse().unwrap();
        assert_eq!(list.as_slice(), &[22, 80, 81, 82]);
        let all: PortList = "1-65535".parse().unwrap();
        assert_eq!(all.len(), 65535);
        for bad in ["", "0", "80-", "x", "90-80", "70000", "1,,2"] {
            assert!(bad.parse::<PortList>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn states_round_trip_through_their_code() {
        for state in [
            PortState::Open,
            PortState::Closed,
            PortState::Filtered,
            PortState::Unreachable,
            PortState::Failed,
        ] {
            assert_eq!(PortState::from_u8(state.to_u8()), state);
        }
    }
}
