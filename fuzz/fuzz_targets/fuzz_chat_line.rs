//! Chat input from a hostile client: the line codec and the command parser.
//!
//! Run: `cargo +nightly fuzz run fuzz_chat_line` (from the repository root).
//! Invariants: no panic; lines respect the limit and hold no control characters; cleaning
//! is idempotent; the way bytes are split into reads does not change the lines.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sockit::chat::command::{Input, parse};
use sockit::chat::line::{Incoming, LineDecoder, neutralise};

const LIMIT: usize = 64;

fn decode(chunks: &[&[u8]]) -> Vec<Incoming> {
    let mut decoder = LineDecoder::new(LIMIT);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(line) = decoder.decode(&mut buf) {
            out.push(line);
        }
    }
    while let Some(line) = decoder.decode_eof(&mut buf) {
        out.push(line);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let whole = decode(&[data]);
    let cut = usize::from(cut).max(1);
    let pieces: Vec<&[u8]> = data.chunks(cut).collect();
    assert_eq!(whole, decode(&pieces));
    for line in whole {
        if let Incoming::Line(text) = line {
            assert!(!text.chars().any(char::is_control));
            assert_eq!(neutralise(text.as_bytes()), text);
            if let Ok(Input::Say(said)) = parse(&text) {
                assert!(text.ends_with(&said));
            }
        }
    }
});
