//! Request-item parser: never panics, never accepts a header that could inject another,
//! and whatever it accepts reads back the same from its displayed form.
//!
//! Run with `cargo +nightly fuzz run request_items` (from the repository root); the same
//! checks run as property tests under `cargo test` on stable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::http::items::{Item, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(item) = parse(text) else {
        return;
    };
    if let Item::Header { name, value } = &item {
        assert!(
            !value.contains(['\r', '\n', '\0']),
            "header injection: {value:?}"
        );
        assert!(!name.is_empty() && !name.contains([' ', ':', '\r', '\n']));
    }
    assert_eq!(parse(&item.to_string()), Ok(item));
});
