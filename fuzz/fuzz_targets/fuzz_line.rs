//! Line framing: however the bytes are split into reads, the same lines come out, none
//! longer than the limit and none holding a newline.
//!
//! Run: `cargo +nightly fuzz run fuzz_line`
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sockit::net::line::{Frame, LineFramer};

fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
    let mut framer = LineFramer::new(64);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = framer.decode(&mut buf) {
            out.push(frame);
        }
    }
    while let Some(frame) = framer.decode_eof(&mut buf) {
        out.push(frame);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let whole = frames(&[data]);
    let pieces: Vec<&[u8]> = data.chunks(usize::from(cut).max(1)).collect();
    assert_eq!(whole, frames(&pieces));
    for frame in whole {
        if let Frame::Line(line) = frame {
            assert!(line.len() <= 64 && !line.contains(&b'\n'));
        }
    }
});
