//! Many datagrams per system call: `recvmmsg`/`sendmmsg` on Linux, one call per datagram
//! elsewhere. A busy UDP service spends most of its time in the kernel, and most of that
//! per call, not per byte; batching is what lets it outrun a one-datagram-per-call loop.
//!
//! Both halves work on a tokio [`UdpSocket`] without waiting: they return
//! [`WouldBlock`](io::ErrorKind::WouldBlock) when nothing is ready, and clear the socket's
//! readiness so that `readable()` / `writable()` then sleep until something is.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams taken or sent per system call.
pub const BATCH: usize = 32;

/// Buffers for up to [`BATCH`] received datagrams and their senders.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    peers: Vec<SocketAddr>,
    #[cfg(target_os = "linux")]
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("received", &self.lens.len())
            .finish_non_exhaustive()
    }
}

impl RecvBatch {
    /// Room for [`BATCH`] datagrams of up to `max_bytes` each (a longer one is cut to it).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            bufs: (0..BATCH).map(|_| vec![0; max_bytes]).collect(),
            lens: Vec::with_capacity(BATCH),
            peers: Vec::with_capacity(BATCH),
            #[cfg(target_os = "linux")]
            headers: nix::sys::socket::MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Takes every datagram already queued on `socket` (up to [`BATCH`]) and returns how
    /// many; [`WouldBlock`](io::ErrorKind::WouldBlock) when none is.
    ///
    /// # Errors
    ///
    /// WouldBlock, or the socket's error (an ICMP error from an earlier send shows up here on
    /// Linux; the next call goes on).
    pub fn try_recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.lens.clear();
        self.peers.clear();
        socket.try_io(Interest::READABLE, || self.recv_now(socket))
    }

    #[cfg(target_os = "linux")]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use nix::sys::socket::{MsgFlags, recvmmsg};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        let Self {
            bufs,
            lens,
            peers,
            headers,
        } = self;
        let mut slices: Vec<[IoSliceMut<'_>; 1]> =
            bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let received = recvmmsg(
            socket.as_raw_fd(),
            headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for message in received {
            let Some(peer) = message.address.as_ref().and_then(socket_addr) else {
                continue;
            };
            lens.push(message.bytes);
            peers.push(peer);
        }
        Ok(lens.len())
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for buf in &mut self.bufs {
            match socket.try_recv_from(buf) {
                Ok((n, peer)) => {
                    self.lens.push(n);
                    self.peers.push(peer);
                }
                Err(e) if self.lens.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(self.lens.len())
    }

    /// The datagrams of the last [`try_recv`](Self::try_recv), with their senders.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.lens
            .iter()
            .zip(&self.bufs)
            .zip(&self.peers)
            .map(|((&n, buf), &peer)| (&buf[..n], peer))
    }
}

#[cfg(target_os = "linux")]
fn socket_addr(addr: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// Sends datagrams, [`BATCH`] per system call.
pub struct SendBatch {
    #[cfg(target_os = "linux")]
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").finish_non_exhaustive()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// Headers for [`BATCH`] datagrams.
    pub fn new() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            headers: nix::sys::socket::MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Sends every datagram, each to its address (`None` on a connected socket), waiting
    /// while the socket's buffer is full. A datagram the system refuses (too large, no
    /// route) is passed to `refused` and skipped; the rest still go.
    ///
    /// # Errors
    ///
    /// Only when waiting for the socket fails.
    pub async fn send_all(
        &mut self,
        socket: &UdpSocket,
        datagrams: &[(&[u8], Option<SocketAddr>)],
        mut refused: impl FnMut(&[u8], Option<SocketAddr>, io::Error),
    ) -> io::Result<()> {
        let mut next = 0;
        while next < datagrams.len() {
            let end = datagrams.len().min(next + BATCH);
            let rest = &datagrams[next..end];
            match socket.try_io(Interest::WRITABLE, || self.send_now(socket, rest)) {
                Ok(sent) => next += sent.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
                Err(e) => {
                    // The batch stops at the first datagram that fails: skip that one.
                    let (payload, peer) = datagrams[next];
                    refused(payload, peer, e);
                    next += 1;
                }
            }
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn send_now(
        &mut self,
        socket: &UdpSocket,
        datagrams: &[(&[u8], Option<SocketAddr>)],
    ) -> io::Result<usize> {
        use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmmsg};
        use std::io::IoSlice;
        use std::os::fd::AsRawFd;

        let slices: Vec<[IoSlice<'_>; 1]> = datagrams
            .iter()
            .map(|(payload, _)| [IoSlice::new(payload)])
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = datagrams
            .iter()
            .map(|(_, peer)| peer.map(SockaddrStorage::from))
            .collect();
        let sent = sendmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            &slices,
            &addrs,
            [],
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        Ok(sent.count())
    }

    #[cfg(not(target_os = "linux"))]
    fn send_now(
        &mut self,
        socket: &UdpSocket,
        datagrams: &[(&[u8], Option<SocketAddr>)],
    ) -> io::Result<usize> {
        let mut sent = 0;
        for (payload, peer) in datagrams {
            let result = match peer {
                Some(peer) => socket.try_send_to(payload, *peer),
                None => socket.try_send(payload),
            };
            match result {
                Ok(_) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back_with_boundaries_and_senders() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        // More than one batch, of different sizes, the last one empty.
        let payloads: Vec<Vec<u8>> = (0..BATCH * 2 + 3).map(|i| vec![i as u8; i]).collect();
        let datagrams: Vec<(&[u8], Option<SocketAddr>)> = payloads
            .iter()
            .map(|p| (p.as_slice(), Some(server_addr)))
            .collect();
        let mut send = SendBatch::new();
        send.send_all(&client, &datagrams, |_, _, e| panic!("refused: {e}"))
            .await
            .unwrap();
        let mut recv = RecvBatch::new(1024);
        let mut got = Vec::new();
        while got.len() < payloads.len() {
            tokio::time::timeout(std::time::Duration::from_secs(5), server.readable())
                .await
                .expect("datagrams arrive")
                .unwrap();
            match recv.try_recv(&server) {
                Ok(n) => {
                    assert!(n <= BATCH);
                    for (payload, peer) in recv.iter() {
                        assert_eq!(peer, client.local_addr().unwrap());
                        got.push(payload.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, payloads);
    }

    #[tokio::test]
    async fn a_refused_datagram_is_reported_and_the_rest_still_go() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = Some(server.local_addr().unwrap());
        let too_big = vec![0u8; 70_000];
        let datagrams: Vec<(&[u8], Option<SocketAddr>)> =
            vec![(b"one", to), (&too_big, to), (b"three", to)];
        let mut refused = Vec::new();
        SendBatch::new()
            .send_all(&client, &datagrams, |p, _, _| refused.push(p.len()))
            .await
            .unwrap();
        assert_eq!(refused, vec![70_000]);
        let mut buf = [0u8; 16];
        let (n, _) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"one");
        let (n, _) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"three");
    }
}
