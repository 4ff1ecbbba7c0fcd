//! Address parsing never panics, and whatever parses prints back to something that parses
//! to the same address.
//!
//! Run: `cargo +nightly fuzz run fuzz_addr`
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::net::HostPort;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(addr) = text.parse::<HostPort>() {
        let again: HostPort = addr.to_string().parse().expect("display output parses");
        assert_eq!(again, addr);
    }
});
