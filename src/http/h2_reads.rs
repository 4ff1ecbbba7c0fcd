//! Reads for h2's frame reader that never split a frame across its read buffer.
//!
//! h2 reads a connection into one `BytesMut` and cuts each frame out of it; a DATA frame's
//! payload stays in that buffer until the body is consumed. When a read stops in the middle of
//! a frame and the rest does not fit, the codec moves the partial frame to a fresh allocation:
//! with nginx's 8 KiB DATA frames (8,201 bytes with their head) and h2's 8 KiB buffer, that is
//! almost every frame, and about half of every byte received is copied once more.
//!
//! [`WholeFrames`] sits between the TLS (or buffered TCP) stream and h2. It copies from the
//! stream's own buffer (`AsyncBufRead`, as `tokio_rustls`'s `poll_read` does, so no copy is
//! added) but only as many whole frames as fit in h2's buffer; a frame that does not fit is
//! handed over as its 9-byte head alone, after which the codec makes room for the whole frame
//! and the next read fills it. A partial frame is then at most a head: nothing large is copied.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// Bytes of an HTTP/2 frame head: length (3), type, flags, stream id (4).
const HEAD: usize = 9;

/// Bytes of the length field at the start of the head.
const LENGTH: usize = 3;

/// Bytes handed to h2 before the task lets others run: the body's reader takes and drops
/// the DATA frames read so far, so that their buffers are freed and reused while they are
/// still few, instead of h2 reading megabytes ahead (the allocator then gives the memory back
/// to the system and takes it again, page by page).
const TURN: usize = 64 * 1024;

/// Where the server's frame stream stands: how far into the current frame, and its size once
/// its length field has been seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Framing {
    /// Bytes of the current frame already handed over.
    done: usize,
    /// The first bytes of the length field, while it is incomplete.
    length: [u8; LENGTH],
    /// Size of the current frame (head included), once known.
    size: Option<usize>,
}

/// How many bytes to hand over next, and whether the read should end after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Take {
    bytes: usize,
    last: bool,
}

impl Framing {
    /// How much of `data` (the front of what the stream holds) to hand over into `room`
    /// bytes of h2's buffer; `fresh` when nothing was handed over yet in this read.
    /// Updates the position for the bytes taken.
    fn take(&mut self, data: &[u8], room: usize, fresh: bool) -> Take {
        let take = self.plan(data, room, fresh);
        self.advance(&data[..take.bytes]);
        take
    }

    fn plan(&self, data: &[u8], room: usize, fresh: bool) -> Take {
        let size = match self.size {
            Some(size) => size,
            None => {
                let need = LENGTH - self.done;
                if data.len() < need {
                    // The length field ends in a later piece: hand over what there is of it.
                    return Take {
                        bytes: data.len().min(room),
                        last: false,
                    };
                }
                let mut length = self.length;
                length[self.done..].copy_from_slice(&data[..need]);
                frame_size(length)
            }
        };
        let rest = size - self.done;
        if rest <= room {
            return Take {
                bytes: rest.min(data.len()),
                last: false,
            };
        }
        if self.done >= HEAD {
            // Already started and the codec made room for it: fill what fits.
            return Take {
                bytes: rest.min(data.len()).min(room),
                last: true,
            };
        }
        if !fresh {
            // Leave the frame for the next read, which the codec will have made room for.
            return Take {
                bytes: 0,
                last: true,
            };
        }
        // Only the head: reading it, the codec reserves room for the whole frame.
        Take {
            bytes: (HEAD - self.done).min(data.len()).min(room),
            last: true,
        }
    }

    fn advance(&mut self, taken: &[u8]) {
        let mut taken = taken;
        while !taken.is_empty() {
            let size = match self.size {
                Some(size) => size,
                None => {
                    let n = (LENGTH - self.done).min(taken.len());
                    self.length[self.done..self.done + n].copy_from_slice(&taken[..n]);
                    if self.done + n < LENGTH {
                        self.done += n;
                        return;
                    }
                    let size = frame_size(self.length);
                    self.size = Some(size);
                    size
                }
            };
            let n = (size - self.done).min(taken.len());
            self.done += n;
            taken = &taken[n..];
            if self.done == size {
                *self = Self::default();
            }
        }
    }
}

/// A frame's size, head included, from its length field.
fn frame_size(length: [u8; LENGTH]) -> usize {
    let [a, b, c] = length;
    HEAD + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c))
}

/// The read side of an HTTP/2 client connection, handed to h2 in whole frames (see the module
/// documentation). Writes go straight through.
#[derive(Debug)]
pub(crate) struct WholeFrames<S> {
    inner: S,
    framing: Framing,
    /// An error met after some bytes were handed over, returned by the next read.
    error: Option<io::Error>,
    /// Bytes handed over since the task last let others run.
    turn: usize,
}

impl<S> WholeFrames<S> {
    /// Wraps `inner`, whose first byte read is the first byte of a frame.
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            framing: Framing::default(),
            error: None,
            turn: 0,
        }
    }
}

impl<S: AsyncBufRead + Unpin> AsyncRead for WholeFrames<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(err) = this.error.take() {
            return Poll::Ready(Err(err));
        }
        if this.turn >= TURN {
            this.turn = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let start = buf.filled().len();
        while buf.remaining() > 0 {
            let fresh = buf.filled().len() == start;
            let data = match Pin::new(&mut this.inner).poll_fill_buf(cx) {
                Poll::Ready(Ok(data)) => data,
                Poll::Ready(Err(err)) if fresh => return Poll::Ready(Err(err)),
                Poll::Ready(Err(err)) => {
                    this.error = Some(err);
                    break;
                }
                Poll::Pending if fresh => return Poll::Pending,
                Poll::Pending => break,
            };
            if data.is_empty() {
                break;
            }
            let take = this.framing.take(data, buf.remaining(), fresh);
            buf.put_slice(&data[..take.bytes]);
            Pin::new(&mut this.inner).consume(take.bytes);
            this.turn += take.bytes;
            if take.last || take.bytes == 0 {
                break;
            }
        }
        Poll::Ready(Ok(()))
    }
}

crate::net::forward_async_write!(WholeFrames);

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// A frame of `payload` bytes of `fill`, head included.
    fn frame(payload: usize, fill: u8) -> Vec<u8> {
        let len = u32::try_from(payload).unwrap().to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], 0, 0, 0, 0, 0, 1];
        frame.resize(HEAD + payload, fill);
        frame
    }

    /// Serves its pieces one `poll_fill_buf` at a time, as a TLS stream serves records.
    struct Pieces(VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            unreachable!("read through poll_fill_buf")
        }
    }

    impl AsyncBufRead for Pieces {
        fn poll_fill_buf(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
            let this = self.get_mut();
            while this.0.front().is_some_and(Vec::is_empty) {
                this.0.pop_front();
            }
            Poll::Ready(Ok(this.0.front().map_or(&[][..], Vec::as_slice)))
        }

        fn consume(self: Pin<&mut Self>, amt: usize) {
            if let Some(front) = self.get_mut().0.front_mut() {
                front.drain(..amt);
            }
        }
    }

    /// The stream cut into pieces of `piece` bytes.
    fn pieces(stream: &[u8], piece: usize) -> Pieces {
        Pieces(stream.chunks(piece).map(<[u8]>::to_vec).collect())
    }

    /// Reads `reader` to its end with buffers of `room` bytes; the size of every read.
    async fn reads(reader: &mut WholeFrames<Pieces>, room: usize, out: &mut Vec<u8>) -> Vec<usize> {
        let mut sizes = Vec::new();
        for _ in 0..10_000 {
            let mut buf = vec![0; room];
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                return sizes;
            }
            out.extend_from_slice(&buf[..n]);
            sizes.push(n);
        }
        panic!("no end after 10,000 reads");
    }

    #[tokio::test]
    async fn frames_that_fit_are_handed_over_whole_and_others_head_first() {
        // nginx's 8 KiB DATA frames in 16 KiB TLS records, read into h2's 8 KiB buffer.
        let stream: Vec<u8> = (0..6).flat_map(|i| frame(8192, i)).collect();
        let mut reader = WholeFrames::new(pieces(&stream, 16 * 1024));
        let mut out = Vec::new();
        let sizes = reads(&mut reader, 8192, &mut out).await;
        assert_eq!(out, stream);
        // Each frame: its head alone (it does not fit), then its payload once room is made.
        assert_eq!(sizes, [9, 8192].repeat(6));
    }

    #[tokio::test]
    async fn several_small_frames_fill_one_read_and_none_is_split() {
        let stream: Vec<u8> = [frame(4, 1), frame(100, 2), frame(0, 3), frame(3000, 4)].concat();
        let mut reader = WholeFrames::new(pieces(&stream, 50));
        let mut out = Vec::new();
        let sizes = reads(&mut reader, 200, &mut out).await;
        assert_eq!(out, stream);
        // 13 + 109 + 9 whole; then the 3,009-byte frame does not fit: its head, then the
        // rest in buffer-sized reads (the codec reserves room for it; here the room stays).
        assert_eq!(sizes[0], 13 + 109 + 9);
        assert_eq!(sizes[1], 9);
        assert_eq!(sizes[2..].iter().sum::<usize>(), 3000);
    }

    #[test]
    fn the_task_lets_others_run_after_each_turn() {
        let stream: Vec<u8> = (0..20).flat_map(|i| frame(8192, i)).collect();
        let mut reader = WholeFrames::new(pieces(&stream, 16 * 1024));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let (mut out, mut pending, mut handed) = (Vec::new(), 0, 0);
        for _ in 0..1000 {
            let mut room = vec![0; 16 * 1024];
            let mut buf = ReadBuf::new(&mut room);
            match Pin::new(&mut reader).poll_read(&mut cx, &mut buf) {
                Poll::Pending => {
                    // A turn ends only once a turn's worth was handed over.
                    assert!(handed >= TURN, "pending after {handed} bytes");
                    pending += 1;
                    handed = 0;
                }
                Poll::Ready(result) => {
                    result.unwrap();
                    if buf.filled().is_empty() {
                        break;
                    }
                    handed += buf.filled().len();
                    out.extend_from_slice(buf.filled());
                }
            }
        }
        assert_eq!(out, stream);
        assert_eq!(pending, stream.len() / TURN);
    }

    #[test]
    fn a_length_field_split_across_pieces_is_followed() {
        let mut framing = Framing::default();
        let stream = [frame(10, 1), frame(20, 2)].concat();
        // Two bytes of the length field, then the rest of that frame and the next.
        assert_eq!(
            framing.take(&stream[..2], 100, false),
            Take {
                bytes: 2,
                last: false
            }
        );
        assert_eq!(
            framing.take(&stream[2..], 100, false),
            Take {
                bytes: 17,
                last: false
            }
        );
        assert_eq!(framing, Framing::default());
        assert_eq!(
            framing.take(&stream[19..], 10, true),
            Take {
                bytes: 9,
                last: true
            }
        );
        assert_eq!(framing.size, Some(29));
        assert_eq!(
            framing.take(&stream[28..], 100, true),
            Take {
                bytes: 20,
                last: false
            }
        );
        assert_eq!(framing, Framing::default());
    }
}
