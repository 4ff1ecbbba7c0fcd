//! A client's bounded outbound queue: the hub pushes shared buffers in, the client's writer
//! takes everything queued at once and writes it in one vectored call.
//!
//! Pushing never waits. A client whose queue overflows is dropped (the hub announces it), so
//! a reader that stalls costs itself and nobody else: no sender ever waits for a reader.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Mutex;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Most slices handed to one vectored write (Linux takes up to 1024; this is plenty).
const MAX_IOVECS: usize = 64;

/// What one queued buffer costs beyond its bytes (the queue slot and the buffer's
/// allocation), so that many tiny buffers count for the memory they really hold.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Limits of one client's queue.
///
/// The limit is in bytes, not lines: a buffer is one read of a sender, which can hold
/// thousands of short lines, so a line limit would drop a client that keeps reading while
/// bounding nothing that bytes do not. Each buffer counts its length plus 64 bytes (its queue
/// slot and allocation), so many tiny buffers count for the memory they really hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Bytes waiting to be written (with the per-buffer overhead).
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self { max_bytes: 1 << 20 }
    }
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Bytes>,
    bytes: usize,
    is_closing: bool,
}

/// One client's queue of lines to write.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    wake: Notify,
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
            killed: CancellationToken::new(),
            limits,
        }
    }

    /// Queues `payload` (whole lines); never waits. Returns `false` when the queue would go
    /// over its limit: nothing is queued and the caller drops this client.
    pub(crate) fn push(&self, payload: &Bytes) -> bool {
        let cost = payload.len() + ENTRY_OVERHEAD_BYTES;
        let mut queue = self.queue.lock().expect("outbox lock is never poisoned");
        if queue.is_closing {
            return true;
        }
        // One buffer is accepted into an empty queue whatever its size (it is one read's
        // worth at most), so a single big read never drops a client that keeps up.
        if queue.bytes + cost > self.limits.max_bytes && !queue.items.is_empty() {
            return false;
        }
        let was_empty = queue.items.is_empty();
        queue.items.push_back(payload.clone());
        queue.bytes += cost;
        drop(queue);
        // The writer only sleeps on an empty queue, so only the first push must wake it.
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// Bytes waiting now (with the per-buffer overhead).
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queue
            .lock()
            .expect("outbox lock is never poisoned")
            .bytes
    }

    /// Queues a line whatever the limits (a last notice before closing).
    pub(crate) fn push_last(&self, payload: Bytes) {
        let mut queue = self.queue.lock().expect("outbox lock is never poisoned");
        if !queue.is_closing {
            queue.bytes += payload.len() + ENTRY_OVERHEAD_BYTES;
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

    /// Drops the client at once: queued lines are discarded, `last` replaces them (it goes
    /// out only if the socket takes it without waiting), and its reader stops.
    pub(crate) fn kill(&self, last: Bytes) {
        {
            let mut queue = self.queue.lock().expect("outbox lock is never poisoned");
            queue.items.clear();
            queue.bytes = last.len() + ENTRY_OVERHEAD_BYTES;
            queue.items.push_back(last);
            queue.is_closing = true;
        }
        self.wake.notify_one();
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
                    queue.bytes = 0;
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
            Next::Write => write_batch(out, &mut batch).await?,
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
) -> std::io::Result<()> {
    while !batch.is_empty() {
        // The slices live on the stack of one poll, not in the future: every member's task
        // would otherwise carry them (1 KiB) for its whole life, idle or not.
        let written = std::future::poll_fn(|cx| {
            let out = Pin::new(&mut *out);
            if batch.len() == 1 || !out.is_write_vectored() {
                return out.poll_write(cx, &batch[0]);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = batch.len().min(MAX_IOVECS);
            for (slice, buf) in slices.iter_mut().zip(batch.iter()) {
                *slice = IoSlice::new(buf);
            }
            out.poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
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
            max_bytes: 3 * ENTRY_OVERHEAD_BYTES + 20,
        });
        let line = Bytes::from_static(b"line\n");
        assert!(outbox.push(&line));
        assert!(outbox.push(&Bytes::from_static(b"a\nb\n")));
        assert!(outbox.push(&line));
        assert!(!outbox.push(&line), "a fourth buffer is over the limit");
        let mut batch = VecDeque::new();
        assert!(matches!(outbox.next(&mut batch).await, Next::Write));
        let mut out = Vec::new();
        write_batch(&mut out, &mut batch).await.unwrap();
        assert_eq!(out, b"line\na\nb\nline\n");
        assert!(
            outbox.push(&line),
            "room again after the writer took the batch"
        );
        assert!(
            !outbox.push(&Bytes::from(vec![b'x'; 100])),
            "over max_bytes"
        );
        let big = Bytes::from(vec![b'x'; 1000]);
        let empty = Outbox::new(QueueLimits { max_bytes: 100 });
        assert!(empty.push(&big), "one buffer always fits an empty queue");
        assert!(!empty.push(&line));
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let outbox = Outbox::new(QueueLimits::default());
        outbox.push(&Bytes::from_static(b"one\n"));
        outbox.push_last(Bytes::from_static(b"* bye\n"));
        outbox.close();
        let mut out = Vec::new();
        write_all_queued(&mut out, &outbox).await.unwrap();
        assert_eq!(out, b"one\n* bye\n");
    }

    #[tokio::test]
    async fn kill_keeps_only_the_last_line() {
        let outbox = Outbox::new(QueueLimits::default());
        outbox.push(&Bytes::from_static(b"one\n"));
        outbox.kill(Bytes::from_static(b"* dropped\n"));
        assert!(outbox.push(&Bytes::from_static(b"two\n")));
        let mut out = Vec::new();
        write_all_queued(&mut out, &outbox).await.unwrap();
        assert_eq!(out, b"* dropped\n");
    }
}
