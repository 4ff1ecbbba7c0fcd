//! The SYN probe behind `-z` when the process may open raw sockets (CAP_NET_RAW) and the
//! target is IPv4: one TCP SYN per port from a raw socket, and the host's answer read back
//! from it, a SYN-ACK for an open port, a RST for a closed one (as nmap's `-sS`). No socket,
//! local port or connection per port. The SYNs leave from a local port held by a bound TCP
//! socket that neither listens nor connects, so the kernel itself answers each SYN-ACK with a
//! RST (nothing of ours owns that connection) and the listener drops it at once.
//!
//! A port this probe does not settle (no answer within the timeout, a send refused) stays
//! `None`: the connect probe in `scan.rs` asks it again and has the last word.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::{Domain, Protocol, SockAddr, SockFilter, Socket, Type};

use super::{CANCEL_CHECK, PortState};

/// SYNs sent before the answers they caused are read: on loopback every answer is queued
/// before `send` returns, and this bounds the receive queue (a few hundred bytes each) well
/// under the default socket buffer.
const SENDS_PER_DRAIN: usize = 64;

/// How long to wait for the send queue to drain after a SYN could not be queued.
const SEND_PAUSE: Duration = Duration::from_millis(1);

/// Sends of one SYN refused for a full queue before its port is left to the connect probe.
const SEND_ATTEMPTS: u32 = 100;

/// The TCP flags this module writes and reads.
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Where one port stands in the pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Unsent,
    Sent,
    Settled,
}

/// Sends one SYN to every port of `ports` on `target`, at most `window` unanswered at once,
/// and returns what each port answered, in the order of `ports`; `None` where no answer came
/// within `timeout` or the SYN could not be sent. `threads` threads share the ports, each
/// with its own raw socket and source port. Stops early (leaving `None`s) once `stop` is set.
///
/// # Errors
///
/// When a raw socket cannot be made (no CAP_NET_RAW: `EPERM`), or no source address or
/// port can be found for `target`; nothing was sent then.
pub(super) fn probe(
    target: Ipv4Addr,
    ports: &[u16],
    threads: usize,
    window: usize,
    timeout: Duration,
    stop: &AtomicBool,
) -> io::Result<Vec<Option<PortState>>> {
    let source = source_address(target)?;
    let threads = threads.clamp(1, ports.len().max(1));
    let senders = (0..threads)
        .map(|_| Sender::open(target, source))
        .collect::<io::Result<Vec<_>>>()?;
    let window = (window / threads).max(1);
    let mut found = vec![None; ports.len()];
    std::thread::scope(|scope| {
        let runs: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(t, sender)| {
                // Every `threads`-th port, so that each thread gets as many low and high ones.
                let share: Vec<u16> = ports.iter().skip(t).step_by(threads).copied().collect();
                scope.spawn(move || sender.run(&share, window, timeout, stop))
            })
            .collect();
        for (t, run) in runs.into_iter().enumerate() {
            let answers = match run.join() {
                Ok(answers) => answers,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            for (slot, answer) in found.iter_mut().skip(t).step_by(threads).zip(answers) {
                *slot = answer;
            }
        }
    });
    Ok(found)
}

/// One thread's raw socket, and the local port its SYNs leave from.
struct Sender {
    raw: Socket,
    /// Bound for the whole pass: no other socket gets this port, and nothing of ours
    /// accepts a connection on it.
    _holder: Socket,
    target: Ipv4Addr,
    source: Ipv4Addr,
    source_port: u16,
}

impl Sender {
    fn open(target: Ipv4Addr, source: Ipv4Addr) -> io::Result<Sender> {
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP))?;
        let holder = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        holder.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
        let source_port = holder
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .ok_or_else(|| io::Error::other("the held source port has no address"))?;
        raw.attach_filter(&answer_filter(target, source_port))?;
        raw.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
        // The SYNs carry their own IP header: the kernel then skips building one per packet.
        raw.set_header_included_v4(true)?;
        raw.set_nonblocking(true)?;
        // Whatever arrived before the filter was attached.
        let mut buf = [0u8; 128];
        while (&raw).read(&mut buf).is_ok() {}
        Ok(Sender {
            raw,
            _holder: holder,
            target,
            source,
            source_port,
        })
    }

    fn run(
        self,
        ports: &[u16],
        window: usize,
        timeout: Duration,
        stop: &AtomicBool,
    ) -> Vec<Option<PortState>> {
        let raw = &self.raw;
        let mut pass = Pass {
            target: self.target,
            source: self.source,
            source_port: self.source_port,
            secret: secret(),
            index_of: vec![u32::MAX; usize::from(u16::MAX) + 1],
            slots: vec![Slot::Unsent; ports.len()],
            found: vec![None; ports.len()],
            waiting: 0,
        };
        for (i, &port) in ports.iter().enumerate() {
            pass.index_of[usize::from(port)] = u32::try_from(i).unwrap_or(u32::MAX);
        }
        let destination = SockAddr::from(SocketAddrV4::new(self.target, 0));
        let mut buf = [0u8; 128];
        let mut deadlines: VecDeque<(usize, Instant)> = VecDeque::with_capacity(window);
        let mut next = 0;
        // Sends of the SYN to `ports[next]` refused in a row.
        let mut refusals = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut sent = 0;
            let mut send_refused = false;
            while next < ports.len() && pass.waiting < window && sent < SENDS_PER_DRAIN {
                let syn = pass.syn(ports[next]);
                match raw.send_to(&syn, &destination) {
                    Ok(_) => {
                        refusals = 0;
                        pass.slots[next] = Slot::Sent;
                        pass.waiting += 1;
                        deadlines.push_back((next, Instant::now() + timeout));
                    }
                    // The device queue is full: send it again once answers were read, a
                    // bounded number of times.
                    Err(e)
                        if (e.kind() == io::ErrorKind::WouldBlock
                            || e.raw_os_error() == Some(libc::ENOBUFS))
                            && refusals < SEND_ATTEMPTS =>
                    {
                        refusals += 1;
                        send_refused = true;
                        break;
                    }
                    // Left to the connect probe, which will say what is wrong.
                    Err(_) => {
                        refusals = 0;
                        pass.slots[next] = Slot::Settled;
                    }
                }
                next += 1;
                sent += 1;
            }
            pass.read_answers(raw, &mut buf);
            let now = Instant::now();
            while let Some(&(index, deadline)) = deadlines.front() {
                if pass.slots[index] == Slot::Sent {
                    if deadline > now {
                        break;
                    }
                    pass.slots[index] = Slot::Settled;
                    pass.waiting -= 1;
                }
                deadlines.pop_front();
            }
            if next == ports.len() && pass.waiting == 0 {
                break;
            }
            if next < ports.len() && pass.waiting < window && !send_refused {
                continue;
            }
            let wait = deadlines
                .front()
                .map_or(CANCEL_CHECK, |&(_, d)| d.saturating_duration_since(now))
                .min(if send_refused {
                    SEND_PAUSE
                } else {
                    CANCEL_CHECK
                });
            let millis = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(raw.as_fd(), PollFlags::POLLIN)];
            // An error (EINTR) only means looking again.
            let _ = poll(&mut fds, PollTimeout::from(millis));
        }
        pass.found
    }
}

/// One pass's bookkeeping: what was sent from where, and what came back.
struct Pass {
    target: Ipv4Addr,
    source: Ipv4Addr,
    source_port: u16,
    /// Mixed into each SYN's sequence number, so that only an answer to our SYN counts.
    secret: u32,
    /// Port number -> index in the port list, `u32::MAX` for a port not probed.
    index_of: Vec<u32>,
    slots: Vec<Slot>,
    found: Vec<Option<PortState>>,
    /// SYNs sent and neither answered nor expired.
    waiting: usize,
}

impl Pass {
    fn sequence(&self, port: u16) -> u32 {
        self.secret ^ u32::from(port).wrapping_mul(0x9E37_79B1)
    }

    /// A SYN to `port`: IPv4 header (the kernel fills in its length, identification and
    /// checksum) and TCP header.
    fn syn(&self, port: u16) -> [u8; 40] {
        let mut p = [0u8; 40];
        p[0] = 0x45; // IPv4, header of 5 words
        p[8] = 64; // time to live
        p[9] = 6; // TCP
        p[12..16].copy_from_slice(&self.source.octets());
        p[16..20].copy_from_slice(&self.target.octets());
        let h = &mut p[20..];
        h[0..2].copy_from_slice(&self.source_port.to_be_bytes());
        h[2..4].copy_from_slice(&port.to_be_bytes());
        h[4..8].copy_from_slice(&self.sequence(port).to_be_bytes());
        h[12] = 5 << 4; // header of 5 words, no options
        h[13] = SYN;
        h[14..16].copy_from_slice(&1024u16.to_be_bytes()); // window
        let sum = checksum(self.source, self.target, h);
        h[16..18].copy_from_slice(&sum.to_be_bytes());
        p
    }

    /// Reads every queued packet and records the answers among them.
    fn read_answers(&mut self, raw: &Socket, buf: &mut [u8]) {
        let mut raw = raw;
        while let Ok(len) = raw.read(buf) {
            if let Some((port, state)) = self.answer(&buf[..len]) {
                let index = self.index_of[usize::from(port)] as usize;
                if self.slots[index] == Slot::Sent {
                    self.slots[index] = Slot::Settled;
                    self.found[index] = Some(state);
                    self.waiting -= 1;
                }
            }
        }
    }

    /// The port and its state when `packet` (an IPv4 packet) answers one of our SYNs: a
    /// SYN-ACK or a RST from the target to our source port that acknowledges the SYN's
    /// sequence number. Anything else (our own SYNs seen on loopback, other traffic, an
    /// answer to an earlier scan) is `None`.
    fn answer(&self, packet: &[u8]) -> Option<(u16, PortState)> {
        let ip_len = usize::from(packet.first()? & 0x0f) * 4;
        let tcp = packet.get(ip_len..)?;
        if packet[0] >> 4 != 4 || ip_len < 20 || tcp.len() < 14 || packet[9] != 6 {
            return None;
        }
        if packet[12..16] != self.target.octets() || packet[16..20] != self.source.octets() {
            return None;
        }
        let from = u16::from_be_bytes([tcp[0], tcp[1]]);
        let to = u16::from_be_bytes([tcp[2], tcp[3]]);
        let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
        let flags = tcp[13];
        if to != self.source_port
            || self.index_of[usize::from(from)] == u32::MAX
            || flags & ACK == 0
            || ack != self.sequence(from).wrapping_add(1)
        {
            return None;
        }
        if flags & RST != 0 {
            Some((from, PortState::Closed))
        } else if flags & SYN != 0 {
            Some((from, PortState::Open))
        } else {
            None
        }
    }
}

/// The address this host sends from to reach `target` (the routing table's choice).
fn source_address(target: Ipv4Addr) -> io::Result<Ipv4Addr> {
    let udp = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    udp.connect(SocketAddrV4::new(target, 9))?;
    match udp.local_addr()? {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(_) => Err(io::Error::other("an IPv4 route gave an IPv6 source")),
    }
}

/// A classic BPF program that lets through only TCP packets from `target` to `port` with
/// RST or SYN+ACK set, so that the kernel drops the rest (our own SYNs on loopback, every
/// other connection of the host) before they reach the socket's queue. The packet starts at
/// its IP header.
fn answer_filter(target: Ipv4Addr, port: u16) -> [SockFilter; 11] {
    const LD_W_ABS: u16 = 0x20;
    const LDX_B_MSH: u16 = 0xb1;
    const LD_H_IND: u16 = 0x48;
    const LD_B_IND: u16 = 0x50;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const AND_K: u16 = 0x54;
    const RET_K: u16 = 0x06;
    let syn_ack = u32::from(SYN | ACK);
    [
        SockFilter::new(LD_W_ABS, 0, 0, 12), // 0: source address
        SockFilter::new(JEQ_K, 0, 8, u32::from(target)), // 1: else drop
        SockFilter::new(LDX_B_MSH, 0, 0, 0), // 2: X = IP header length
        SockFilter::new(LD_H_IND, 0, 0, 2),  // 3: destination port
        SockFilter::new(JEQ_K, 0, 5, u32::from(port)), // 4: else drop
        SockFilter::new(LD_B_IND, 0, 0, 13), // 5: flags
        SockFilter::new(JSET_K, 2, 0, u32::from(RST)), // 6: RST: keep
        SockFilter::new(AND_K, 0, 0, syn_ack), // 7
        SockFilter::new(JEQ_K, 0, 1, syn_ack), // 8: SYN+ACK: keep, else drop
        SockFilter::new(RET_K, 0, 0, 0xffff), // 9: keep
        SockFilter::new(RET_K, 0, 0, 0),     // 10: drop
    ]
}

/// The TCP checksum of `segment` between `source` and `destination` (RFC 793's pseudo-header).
fn checksum(source: Ipv4Addr, destination: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            sum += hi | pair.get(1).map_or(0, |&lo| u32::from(lo));
        }
    };
    add(&source.octets());
    add(&destination.octets());
    add(&[0, 6]);
    add(&u16::try_from(segment.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes());
    add(segment);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A number no other scan picks: a fresh `RandomState` is seeded from the OS.
fn secret() -> u32 {
    use std::hash::BuildHasher;
    let hash = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    (hash ^ (hash >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass() -> Pass {
        let mut pass = Pass {
            target: Ipv4Addr::new(10, 0, 0, 2),
            source: Ipv4Addr::new(10, 0, 0, 1),
            source_port: 40000,
            secret: 0x1234_5678,
            index_of: vec![u32::MAX; usize::from(u16::MAX) + 1],
            slots: vec![Slot::Sent; 2],
            found: vec![None; 2],
            waiting: 2,
        };
        pass.index_of[80] = 0;
        pass.index_of[443] = 1;
        pass
    }

    /// An IPv4 packet carrying a TCP header, as the raw socket reads it.
    fn packet(from: (Ipv4Addr, u16), to: (Ipv4Addr, u16), ack: u32, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&from.0.octets());
        p[16..20].copy_from_slice(&to.0.octets());
        p[20..22].copy_from_slice(&from.1.to_be_bytes());
        p[22..24].copy_from_slice(&to.1.to_be_bytes());
        p[28..32].copy_from_slice(&ack.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p
    }

    #[test]
    fn a_syn_carries_a_valid_checksum() {
        let pass = pass();
        let syn = pass.syn(80);
        assert_eq!(checksum(pass.source, pass.target, &syn[20..]), 0);
        assert_eq!(syn[33], SYN);
        assert_eq!(u16::from_be_bytes([syn[22], syn[23]]), 80);
        assert_eq!(pass.answer(&syn), None, "our own SYN is no answer");
    }

    #[test]
    fn only_an_answer_to_our_own_syn_counts() {
        let pass = pass();
        let (us, them) = ((pass.source, 40000), (pass.target, 80));
        let ack = pass.sequence(80).wrapping_add(1);
        let answer = |p: Vec<u8>| pass.answer(&p);
        assert_eq!(
            answer(packet(them, us, ack, SYN | ACK)),
            Some((80, PortState::Open))
        );
        assert_eq!(
            answer(packet(them, us, ack, RST | ACK)),
            Some((80, PortState::Closed))
        );
        // Our own SYN, seen coming in on loopback.
        assert_eq!(answer(packet(us, them, 0, SYN)), None);
        // An answer to another SYN (an earlier scan, another program).
        assert_eq!(answer(packet(them, us, ack + 1, RST | ACK)), None);
        // To another local port, from another host, from a port not probed.
        assert_eq!(answer(packet(them, (us.0, 40001), ack, RST | ACK)), None);
        assert_eq!(
            answer(packet((Ipv4Addr::new(10, 0, 0, 3), 80), us, ack, RST | ACK)),
            None
        );
        let ack_81 = pass.sequence(81).wrapping_add(1);
        assert_eq!(answer(packet((them.0, 81), us, ack_81, RST | ACK)), None);
        // A bare ACK, and a packet cut short.
        assert_eq!(answer(packet(them, us, ack, ACK)), None);
        assert_eq!(
            answer(packet(them, us, ack, RST | ACK)[..30].to_vec()),
            None
        );
    }
}
