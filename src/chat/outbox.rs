//! A client's bounded outbound queue: the hub pushes shared buffers in, the client's writer
//! takes everything queued at once and writes it in one vectored call.
//!
//! Pushing never waits. A client whose queue overflows is dropped (the hub announces it), so
//! a reader that stalls costs itself and nobody else.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Most slices handed to one vectored write (Linux takes up to 1024; this is plenty).
const MAX_IOVECS: usize = 64;

/// Senders wait (bounded) for a queue over 1/8 of its limits. The hard limit stays well
/// above that, because several senders' whole reads may land in the queue at once.
const CONGESTION_FRACTION: usize = 8;

/// Limits of one client's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Lines waiting to be written.
    pub max_lines: usize,
    /// Bytes waiting to be written.
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_lines: 16 * 1024,
            max_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Bytes>,
    lines: usize,
    bytes: usize,
    is_closing: bool,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued.
    Queued,
    /// Queued, and the queue is over an eighth full: the publisher should wait for it to drain
    /// (bounded) before sending more.
    Congested,
    /// Not queued: the queue is full and this client must be dropped.
    Full,
}

/// One client's queue of lines to write.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    wake: Notify,
    /// Woken each time the writer empties the queue.
    drained: Notify,
    /// Bytes written to the client so far: a slow reader makes progress, a stalled one not.
    written: AtomicU64,
    killed: CancellationToken,
    limits: QueueLimits,
}

/// What the writer should do next.
pub(crate) enum Next {
    /// Write what was moved into the batch.
    Write,
    /// Everything is written and the session is closing: shut the stream down.
    Closed,
}

impl Outbox {
    pub(crate) fn new(limits: QueueLimits) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            drained: Notify::new(),
            written: AtomicU64::new(0),
            killed: CancellationToken::new(),
            limits,
        }
    }

    /// Queues `payload` (holding `lines` lines). Returns `false` when the queue is over its
    /// limits: the caller drops this client.
    pub(crate) fn push(&self, payload: &Bytes, lines: usize) -> bool {
        self.push_checked(payload, lines) != Pushed::Full
    }

    /// Like [`push`](Self::push), and says whether the queue is getting full.
    pub(crate) fn push_checked(&self, payload: &Bytes, lines: usize) -> Pushed {
        let mut queue = self.queue.lock().expect("outbox lock is never poisoned");
        if queue.is_closing {
            return Pushed::Queued;
        }
        // One payload is accepted into an empty queue whatever its size (it is one read's
        // worth at most), so a burst of short lines cannot drop everyone at once.
        let is_over = queue.lines + lines > self.limits.max_lines
            || queue.bytes + payload.len() > self.limits.max_bytes;
        if is_over && !queue.items.is_empty() {
            return Pushed::Full;
        }
        let was_empty = queue.items.is_empty();
        queue.items.push_back(payload.clone());
        queue.lines += lines;
        queue.bytes += payload.len();
        let is_congested = self.is_congested(&queue);
        drop(queue);
        // The writer only sleeps on an empty queue, so only the first push must wake it.
        if was_empty {
            self.wake.notify_one();
        }
        if is_congested {
            Pushed::Congested
        } else {
            Pushed::Queued
        }
    }

    fn is_congested(&self, queue: &Queue) -> bool {
        !queue.is_closing
            && (queue.lines > self.limits.max_lines / CONGESTION_FRACTION
                || queue.bytes > self.limits.max_bytes / CONGESTION_FRACTION)
    }

    /// Lines and bytes waiting now.
    pub(crate) fn queued(&self) -> (usize, usize) {
        let queue = self.queue.lock().expect("outbox lock is never poisoned");
        (queue.lines, queue.bytes)
    }

    /// Bytes written to the client so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Resolves once the queue is no longer over an eighth full (or the client is gone).
    pub(crate) async fn until_drained(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.is_congested(&self.queue.lock().expect("outbox lock is never poisoned")) {
                return;
            }
            drained.await;
        }
    }

    /// Queues a line whatever the limits (a last notice before closing).
    pub(crate) fn push_last(&self, payload: Bytes) {
        let mut queue = self.queue.lock().expect("outbox lock is never poisoned");
        if !queue.is_closing {
            queue.bytes += payload.len();
            queue.lines += 1;
            queue.items.push_back(payload);
        }
        drop(queue);
        self.wake.notify_one();
    }

    /// No more pushes; the writer finishes what is queued and shuts the stream down.
    pub(crate) fn close(&self) {
        self.queue
            .lock()
            .expect("outbox lock is never poisoned")
            .is_closing = true;
        self.wake.notify_one();
    }

    /// Drops the client at once: its writer and reader stop, queued lines are discarded.
    pub(crate) fn kill(&self) {
        {
            let mut queue = self.queue.lock().expect("outbox lock is never poisoned");
            queue.items.clear();
            queue.is_closing = true;
        }
        self.wake.notify_one();
        self.drained.notify_waiters();
        self.killed.cancel();
    }

    /// Resolves when the client was dropped by the hub.
    pub(crate) async fn killed(&self) {
        self.killed.cancelled().await;
    }

    /// Waits for lines and moves all of them into `batch`.
    pub(crate) async fn next(&self, batch: &mut VecDeque<Bytes>) -> Next {
        loop {
            {
                let mut queue = self.queue.lock().expect("outbox lock is never poisoned");
                if !queue.items.is_empty() {
                    std::mem::swap(&mut queue.items, batch);
                    queue.lines = 0;
                    queue.bytes = 0;
                    drop(queue);
                    self.drained.notify_waiters();
                    return Next::Write;
                }
                if queue.is_closing {
                    return Next::Closed;
                }
            }
            self.wake.notified().await;
        }
    }
}

/// Writes the queue to `out` until it is closed (then shuts `out` down) or a write fails.
///
/// # Errors
///
/// The first write error.
pub(crate) async fn write_all_queued<W: AsyncWrite + Unpin>(
    out: &mut W,
    outbox: &Outbox,
) -> std::io::Result<()> {
    let mut batch = VecDeque::new();
    loop {
        match outbox.next(&mut batch).await {
            Next::Write => write_batch(out, &mut batch, &outbox.written).await?,
            Next::Closed => {
                out.flush().await?;
                return out.shutdown().await;
            }
        }
        // A burst may have grown the batch a lot; an idle client should not keep that.
        if batch.capacity() > 256 {
            batch = VecDeque::new();
        }
    }
}

/// Writes every buffer of `batch` with as few (vectored) writes as the stream allows.
pub(crate) async fn write_batch<W: AsyncWrite + Unpin>(
    out: &mut W,
    batch: &mut VecDeque<Bytes>,
    written_total: &AtomicU64,
) -> std::io::Result<()> {
    while !batch.is_empty() {
        let written = if batch.len() == 1 || !out.is_write_vectored() {
            out.write(&batch[0]).await?
        } else {
            let slices: Vec<IoSlice<'_>> = batch
                .iter()
                .take(MAX_IOVECS)
                .map(|b| IoSlice::new(b))
                .collect();
            out.write_vectored(&slices).await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        written_total.fetch_add(written as u64, Ordering::Relaxed);
        let mut left = written;
        while left > 0 {
            let front = batch
                .front_mut()
                .expect("written bytes come from the batch");
            if front.len() <= left {
                left -= front.len();
                batch.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn over_the_limit_refuses_and_batches_come_out_whole() {
        let outbox = Outbox::new(QueueLimits {
            max_lines: 3,
            max_bytes: 100,
        });
        let line = Bytes::from_static(b"line\n");
        assert!(outbox.push(&line, 1));
        assert!(outbox.push(&Bytes::from_static(b"a\nb\n"), 2));
        assert!(!outbox.push(&line, 1), "fourth line is over max_lines");
        let mut batch = VecDeque::new();
        assert!(matches!(outbox.next(&mut batch).await, Next::Write));
        let mut out = Vec::new();
        let written = AtomicU64::new(0);
        write_batch(&mut out, &mut batch, &written).await.unwrap();
        assert_eq!(written.load(Ordering::Relaxed), 9);
        assert_eq!(out, b"line\na\nb\n");
        assert!(
            outbox.push(&line, 1),
            "room again after the writer took the batch"
        );
        assert!(
            !outbox.push(&Bytes::from(vec![b'x'; 100]), 1),
            "over max_bytes"
        );
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let outbox = Outbox::new(QueueLimits::default());
        outbox.push(&Bytes::from_static(b"one\n"), 1);
        outbox.push_last(Bytes::from_static(b"* bye\n"));
        outbox.close();
        let mut out = Vec::new();
        write_all_queued(&mut out, &outbox).await.unwrap();
        assert_eq!(out, b"one\n* bye\n");
    }
}
