//! A TCP connect probe over many ports of one host at once (`sockit connect -z`, nc's `-z`):
//! which ports accept a connection, which refuse, which stay silent.
//!
//! A fixed number of probes is in flight; each is one non-blocking socket and nothing else, so
//! memory does not grow with the number of ports. Resolving the host is the caller's job.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage};
use tracing::debug;

mod syn;

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
    /// Send a bare SYN from a raw socket first, when the process may (CAP_NET_RAW) and the
    /// host is IPv4; the connect probe then asks only the ports that did not answer.
    pub syn: bool,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            concurrency: 512,
            timeout: Duration::from_secs(1),
            syn: true,
        }
    }
}

/// How the ports of a scan were probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMethod {
    /// A SYN from a raw socket, a connect for any port it left unanswered.
    Syn,
    /// A full TCP connect per port.
    Connect,
}

impl ScanMethod {
    /// `syn` or `connect`.
    pub fn name(self) -> &'static str {
        match self {
            ScanMethod::Syn => "syn",
            ScanMethod::Connect => "connect",
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
    /// How the ports were probed.
    pub method: ScanMethod,
    /// Ports the SYN probe left unanswered, asked again with a connect.
    pub connect_probed: usize,
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

/// Probes every port of `ports` on `ip`, `config.concurrency` at a time: with a bare SYN
/// from a raw socket when `config.syn` is set, the process may open raw sockets (CAP_NET_RAW)
/// and `ip` is IPv4, and with a TCP connect otherwise and for every port the SYN left
/// unanswered. An accepted connection is closed at once; a SYN-ACK is answered with a RST by
/// the kernel.
///
/// The probes run on plain threads, off the async runtime. The connect probe runs on a few
/// (one per core, at most `MAX_THREADS`), each keeping its share of the probes in flight as
/// non-blocking sockets and waiting for all of them with one `poll(2)`: no task, timer or
/// allocation per port, and on a loopback or LAN target most answers are already there when
/// the call is made. Dropping the returned future stops the threads within `CANCEL_CHECK`.
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
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    let (list, config) = (ports.clone(), config.clone());
    let run = move || probe_all(ip, &list, &config, concurrency, stop);
    let (states, method, connect_probed) = match tokio::task::spawn_blocking(run).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => (vec![0; ports.len()], ScanMethod::Connect, ports.len()),
    };
    let ports = ports
        .as_slice()
        .iter()
        .zip(states)
        .map(|(&port, state)| (port, PortState::from_u8(state)))
        .collect();
    ScanReport {
        ip,
        ports,
        concurrency,
        method,
        connect_probed,
    }
}

/// The SYN probe where it can run, then the connect probe for the ports still unknown;
/// returns each port's state code, how it was probed and how many ports were connected to.
fn probe_all(
    ip: IpAddr,
    ports: &PortList,
    config: &ScanConfig,
    concurrency: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<u8>, ScanMethod, usize) {
    let mut states = vec![0; ports.len()];
    let mut method = ScanMethod::Connect;
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS);
    if let (true, IpAddr::V4(v4)) = (config.syn, ip) {
        let (list, timeout) = (ports.as_slice(), config.timeout);
        match syn::probe(v4, list, cores, concurrency, timeout, &stop) {
            Ok(found) => {
                method = ScanMethod::Syn;
                for (state, answer) in states.iter_mut().zip(found) {
                    *state = answer.map_or(0, PortState::to_u8);
                }
            }
            Err(error) => debug!(%error, "no SYN probe, connecting to every port"),
        }
    }
    let rest: Vec<usize> = (0..ports.len()).filter(|&i| states[i] == 0).collect();
    if rest.is_empty() {
        return (states, method, 0);
    }
    let rest_ports = PortList(rest.iter().map(|&i| ports.as_slice()[i]).collect());
    let concurrency = concurrency.min(rest.len());
    let threads = cores.min(concurrency);
    let job = Job {
        ip,
        timeout: config.timeout,
        next: AtomicUsize::new(0),
        states: rest.iter().map(|_| AtomicU8::new(0)).collect(),
        ports: rest_ports,
        stop,
    };
    for (i, state) in rest.iter().zip(job.run(threads, concurrency)) {
        states[*i] = state;
    }
    (states, method, rest.len())
}

/// Threads a scan runs on, at most.
const MAX_THREADS: usize = 4;

/// How long a scan thread waits at most before it looks whether the scan was abandoned.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// Tries to make a socket for one port while descriptors or local ports are short.
const RESOURCE_ATTEMPTS: u8 = 5;

/// Connects a thread starts before it looks again whether the scan was abandoned.
const STARTS_PER_ROUND: usize = 4096;

/// The pause before such a retry when no probe of this thread is in flight to free one.
const RESOURCE_PAUSE: Duration = Duration::from_millis(20);

/// Sets the flag when the scan's future goes away, so that its threads stop.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One scan, shared by its threads: the ports, the next one to take, what each one gave.
struct Job {
    ip: IpAddr,
    ports: PortList,
    timeout: Duration,
    next: AtomicUsize,
    states: Vec<AtomicU8>,
    stop: Arc<AtomicBool>,
}

/// A connect in flight: the socket, the index of its port, when it counts as filtered.
struct Probe {
    socket: OwnedFd,
    index: usize,
    deadline: Instant,
}

/// Where a connect stands.
enum Step {
    /// Answered; the socket can start the next connect when `reusable`.
    Done { state: PortState, reusable: bool },
    /// Still waiting for the host.
    Pending,
}

impl Job {
    /// Runs the scan on `threads` threads, `concurrency` probes in flight in all; returns
    /// each port's state code, in the order of the port list.
    fn run(self, threads: usize, concurrency: usize) -> Vec<u8> {
        let job = &self;
        std::thread::scope(|scope| {
            for t in 1..threads {
                let share = concurrency / threads + usize::from(t <= concurrency % threads);
                scope.spawn(move || job.worker(share));
            }
            job.worker(concurrency / threads);
        });
        self.states.into_iter().map(AtomicU8::into_inner).collect()
    }

    /// One thread's loop: keep up to `slots` probes in flight, wait for them all with one
    /// `poll`, record each answer, start new probes in the freed slots. A socket whose connect
    /// was refused starts the next one (Linux resets it when the refusal is read), so a closed
    /// port costs two `connect` calls and nothing else.
    fn worker(&self, slots: usize) {
        let mut flight: Vec<Probe> = Vec::with_capacity(slots);
        let mut spare: Vec<OwnedFd> = Vec::with_capacity(slots);
        let mut answers: Vec<PollFlags> = Vec::with_capacity(slots);
        // A port whose socket could not be made yet, and how many tries it has had.
        let mut waiting: Option<(usize, u8)> = None;
        let mut exhausted = false;
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut started = 0;
            while flight.len() < slots && started < STARTS_PER_ROUND {
                let (index, tries) = match waiting.take() {
                    Some(w) => w,
                    None => match self.take_port() {
                        Some(index) => (index, 0),
                        None => {
                            exhausted = true;
                            break;
                        }
                    },
                };
                started += 1;
                let addr = SocketAddr::new(self.ip, self.ports.as_slice()[index]);
                let socket = match spare.pop() {
                    Some(socket) => Ok(socket),
                    None => new_socket(addr),
                };
                let step = match &socket {
                    Ok(socket) => connect(socket, addr),
                    Err(e) if short_of_resources(*e) => Err(()),
                    Err(e) => Ok(Step::Done {
                        state: classify(&(*e).into()),
                        reusable: false,
                    }),
                };
                match (step, socket) {
                    (Ok(Step::Pending), Ok(socket)) => flight.push(Probe {
                        socket,
                        index,
                        deadline: now + self.timeout,
                    }),
                    (Ok(Step::Done { state, reusable }), socket) => {
                        self.record(index, state);
                        if let (true, Ok(socket)) = (reusable, socket) {
                            spare.push(socket);
                        }
                    }
                    _ if tries + 1 >= RESOURCE_ATTEMPTS => self.record(index, PortState::Failed),
                    _ => {
                        waiting = Some((index, tries + 1));
                        if flight.is_empty() {
                            std::thread::sleep(RESOURCE_PAUSE);
                        }
                        break;
                    }
                }
            }
            if flight.is_empty() {
                if exhausted && waiting.is_none() {
                    return;
                }
                continue;
            }
            let wait = flight
                .iter()
                .map(|p| p.deadline)
                .min()
                .map_or(Duration::ZERO, |d| d.saturating_duration_since(now))
                .min(CANCEL_CHECK);
            answers.clear();
            {
                let mut fds: Vec<PollFd<'_>> = flight
                    .iter()
                    .map(|p| PollFd::new(p.socket.as_fd(), PollFlags::POLLOUT))
                    .collect();
                let millis = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
                match poll(&mut fds, PollTimeout::from(millis)) {
                    Ok(_) => answers.extend(
                        fds.iter()
                            .map(|fd| fd.revents().unwrap_or(PollFlags::empty())),
                    ),
                    Err(_) => answers.resize(flight.len(), PollFlags::empty()),
                }
            }
            let now = Instant::now();
            // Backwards, so that `swap_remove` moves only entries already looked at.
            for i in (0..flight.len()).rev() {
                let probe = &flight[i];
                let addr = SocketAddr::new(self.ip, self.ports.as_slice()[probe.index]);
                let (state, reusable) = match connect(&probe.socket, addr) {
                    Ok(Step::Done { state, reusable }) => (state, reusable),
                    Ok(Step::Pending) if now < probe.deadline => continue,
                    Ok(Step::Pending) => (PortState::Filtered, false),
                    Err(()) => (PortState::Failed, false),
                };
                let probe = flight.swap_remove(i);
                self.record(probe.index, state);
                if reusable {
                    spare.push(probe.socket);
                }
            }
        }
    }

    fn take_port(&self) -> Option<usize> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        (index < self.ports.len()).then_some(index)
    }

    fn record(&self, index: usize, state: PortState) {
        self.states[index].store(state.to_u8(), Ordering::Relaxed);
    }
}

/// A non-blocking TCP socket for `addr`'s family.
fn new_socket(addr: SocketAddr) -> Result<OwnedFd, Errno> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    socket::socket(family, SockType::Stream, flags, None)
}

/// Starts a connect to `addr`, or, when one is under way, asks how it went: calling
/// `connect` again answers `EALREADY` while waiting, 0 once connected, and the pending error
/// (which also resets the socket for a new connect) when refused. A loopback refusal is
/// usually there by the second call, without any wait. `Err` means short of descriptors or
/// local ports.
fn connect(socket: &OwnedFd, addr: SocketAddr) -> Result<Step, ()> {
    let addr = SockaddrStorage::from(addr);
    let mut result = socket::connect(socket.as_raw_fd(), &addr);
    if result == Err(Errno::EINPROGRESS) {
        result = socket::connect(socket.as_raw_fd(), &addr);
    }
    match result {
        Ok(()) | Err(Errno::EISCONN) => Ok(Step::Done {
            state: connected(socket),
            reusable: false,
        }),
        Err(Errno::EALREADY | Errno::EINPROGRESS) => Ok(Step::Pending),
        Err(Errno::ECONNREFUSED) => Ok(Step::Done {
            state: PortState::Closed,
            reusable: true,
        }),
        Err(e) if short_of_resources(e) => Err(()),
        Err(e) => Ok(Step::Done {
            state: classify(&e.into()),
            reusable: false,
        }),
    }
}

/// A connect that succeeded is an open port, unless the socket got connected to itself:
/// a probe of a free port in the local ephemeral range can be given that very port as its
/// source, and TCP's simultaneous open then "connects" with nothing listening.
fn connected(socket: &OwnedFd) -> PortState {
    let local = socket::getsockname::<SockaddrStorage>(socket.as_raw_fd());
    let peer = socket::getpeername::<SockaddrStorage>(socket.as_raw_fd());
    match (local, peer) {
        (Ok(local), Ok(peer)) if local == peer => PortState::Closed,
        _ => PortState::Open,
    }
}

/// Errors that mean "no descriptor or local port free just now", which other probes free.
fn short_of_resources(e: Errno) -> bool {
    matches!(
        e,
        Errno::EMFILE
            | Errno::ENFILE
            | Errno::ENOBUFS
            | Errno::ENOMEM
            | Errno::EADDRNOTAVAIL
            | Errno::EAGAIN
    )
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

    /// A free port: bound for a moment, then let go.
    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn one_probe_at_a_time_reuses_its_socket_and_tells_every_port_apart() {
        let listeners: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let open: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let closed: Vec<u16> = (0..5).map(|_| free_port()).collect();
        let spec: Vec<String> = open.iter().chain(&closed).map(u16::to_string).collect();
        let ports: PortList = spec.join(",").parse().unwrap();
        let config = ScanConfig {
            concurrency: 1,
            timeout: Duration::from_secs(2),
            syn: false,
        };
        let report = scan("127.0.0.1".parse().unwrap(), &ports, &config).await;
        assert_eq!(report.concurrency, 1);
        for (port, state) in &report.ports {
            let want = if open.contains(port) {
                PortState::Open
            } else {
                PortState::Closed
            };
            assert_eq!(*state, want, "port {port}");
        }
    }

    #[tokio::test]
    async fn a_port_that_never_answers_is_filtered_after_the_timeout() {
        // A listener with a full accept queue drops new SYNs: the connect waits for nothing.
        let listener = new_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let any = SockaddrStorage::from("127.0.0.1:0".parse::<SocketAddr>().unwrap());
        socket::bind(listener.as_raw_fd(), &any).unwrap();
        socket::listen(&listener, socket::Backlog::new(0).unwrap()).unwrap();
        let local: SockaddrStorage = socket::getsockname(listener.as_raw_fd()).unwrap();
        let port = local.as_sockaddr_in().unwrap().port();
        let addr = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        let fillers: Vec<_> = (0..3)
            .map(|_| {
                let s = new_socket(addr).unwrap();
                let _ = socket::connect(s.as_raw_fd(), &SockaddrStorage::from(addr));
                s
            })
            .collect();
        let config = ScanConfig {
            concurrency: 8,
            timeout: Duration::from_millis(300),
            ..ScanConfig::default()
        };
        let started = Instant::now();
        let report = scan(addr.ip(), &port.to_string().parse().unwrap(), &config).await;
        assert_eq!(report.ports, vec![(port, PortState::Filtered)]);
        assert_eq!(report.connect_probed, 1, "the SYN left it unanswered");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < BOUND);
        drop(fillers);
    }

    /// The probe a scan of an IPv4 host must use here: the SYN probe as root (which has
    /// CAP_NET_RAW), the connect probe otherwise. So the tests check whichever path this
    /// user's scans take, and fail if root's scans fall back.
    fn expected_method() -> ScanMethod {
        if nix::unistd::geteuid().is_root() {
            ScanMethod::Syn
        } else {
            ScanMethod::Connect
        }
    }

    /// Listeners on loopback, and as many ports that were free a moment ago.
    fn open_and_closed(n: usize) -> (Vec<std::net::TcpListener>, Vec<u16>, Vec<u16>) {
        let listeners: Vec<_> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let open = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        (listeners, open, (0..n).map(|_| free_port()).collect())
    }

    fn list(ports: &[u16]) -> PortList {
        let spec: Vec<String> = ports.iter().map(u16::to_string).collect();
        spec.join(",").parse().unwrap()
    }

    /// As root (CAP_NET_RAW) the SYN probe must be the one that ran, and connect to nothing.
    #[tokio::test]
    async fn the_syn_probe_finds_exactly_the_listeners_and_connects_to_nothing() {
        let (_listeners, open, closed) = open_and_closed(5);
        let ports = list(&[open.clone(), closed.clone()].concat());
        let config = ScanConfig::default();
        let report = scan("127.0.0.1".parse().unwrap(), &ports, &config).await;
        assert_eq!(report.method, expected_method());
        if report.method == ScanMethod::Syn {
            assert_eq!(report.connect_probed, 0);
        }
        let found: Vec<u16> = report.open().collect();
        let mut want = open.clone();
        want.sort_unstable();
        assert_eq!(found, want);
        assert_eq!(report.count(PortState::Closed), closed.len());
    }

    #[tokio::test]
    async fn a_port_closed_since_the_last_scan_is_not_reported_open() {
        let (mut listeners, open, _) = open_and_closed(2);
        let ports = list(&open);
        let ip = "127.0.0.1".parse().unwrap();
        for syn in [true, false] {
            let config = ScanConfig {
                syn,
                ..ScanConfig::default()
            };
            let before = scan(ip, &ports, &config).await;
            assert_eq!(before.count(PortState::Open), listeners.len(), "syn {syn}");
        }
        let gone = listeners.remove(0).local_addr().unwrap().port();
        for syn in [true, false] {
            let config = ScanConfig {
                syn,
                ..ScanConfig::default()
            };
            let after = scan(ip, &ports, &config).await;
            let state = |p| after.ports.iter().find(|(q, _)| *q == p).unwrap().1;
            assert_eq!(state(gone), PortState::Closed, "syn {syn}");
            assert_eq!(after.count(PortState::Open), 1, "syn {syn}");
        }
    }

    #[tokio::test]
    async fn syn_and_connect_probes_agree_over_a_range_around_the_listeners() {
        let (_listeners, open, _) = open_and_closed(4);
        let low = open.iter().min().unwrap().saturating_sub(50).max(1);
        let high = open.iter().max().unwrap().saturating_add(50);
        let ports: PortList = format!("{low}-{high}").parse().unwrap();
        let ip = "127.0.0.1".parse().unwrap();
        let connect_only = ScanConfig {
            syn: false,
            ..ScanConfig::default()
        };
        // Other tests and programs open and close listeners in this range too: a round in
        // which one came or went between the two scans is tried again, three rounds at most.
        let mut rounds = Vec::new();
        for _ in 0..3 {
            let syn = scan(ip, &ports, &ScanConfig::default()).await;
            let connect = scan(ip, &ports, &connect_only).await;
            assert_eq!(syn.method, expected_method());
            assert_eq!(connect.method, ScanMethod::Connect);
            let syn_open: Vec<u16> = syn.open().collect();
            for port in &open {
                assert!(syn_open.contains(port), "{port} missing from {syn_open:?}");
            }
            let connect_open: Vec<u16> = connect.open().collect();
            if syn_open == connect_open {
                return;
            }
            rounds.push((syn_open, connect_open));
        }
        panic!("the probes disagreed in every round (syn, connect): {rounds:?}");
    }

    #[tokio::test]
    async fn an_ipv6_host_is_probed_with_connects() {
        let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let free = std::net::TcpListener::bind("[::1]:0").unwrap();
        let ports = list(&[port, free.local_addr().unwrap().port()]);
        drop(free);
        let report = scan("::1".parse().unwrap(), &ports, &ScanConfig::default()).await;
        assert_eq!(report.method, ScanMethod::Connect);
        assert_eq!(report.open().collect::<Vec<_>>(), vec![port]);
        assert_eq!(report.count(PortState::Closed), 1);
    }

    const BOUND: Duration = Duration::from_secs(10);
}
