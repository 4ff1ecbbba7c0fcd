//! The request headers the file server interprets come from the network: `Range`, the
//! conditional headers and `Authorization`. Whatever their bytes, a range lies inside the
//! file, the preconditions follow RFC 9110's order, and only the right credentials pass.
//!
//! Run: `cargo +nightly fuzz run fuzz_headers`
#![no_main]

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::header::{
    AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
};
use libfuzzer_sys::fuzz_target;
use sockit::http::server::{
    Credentials, Precondition, RangeAnswer, Validators, evaluate, resolve_range,
};

const ETAG: &str = "\"19000-6b026e68\"";
const SECRET: &[u8] = b"alice:wonder land";

/// The headers a fuzz input sets: one per line, in this order, an empty line for none.
const NAMES: [HeaderName; 7] = [
    RANGE,
    IF_MATCH,
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_UNMODIFIED_SINCE,
    IF_RANGE,
    AUTHORIZATION,
];

fn check_range(value: &str, len: u64) {
    match resolve_range(value, len) {
        RangeAnswer::Partial { start, end } => assert!(start <= end && end < len),
        RangeAnswer::Unsatisfiable => assert!(value.trim().starts_with("bytes=")),
        RangeAnswer::Full => {}
    }
}

fn check_preconditions(headers: &HeaderMap) {
    let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let outcome = evaluate(
        headers,
        Validators {
            etag: ETAG,
            modified,
        },
    );
    let has = |name| headers.contains_key(name);
    if !has(IF_MATCH) && !has(IF_UNMODIFIED_SINCE) {
        assert_ne!(outcome, Precondition::Failed);
    }
    if !has(IF_NONE_MATCH) && !has(IF_MODIFIED_SINCE) {
        assert_ne!(outcome, Precondition::NotModified);
    }
    if !has(IF_RANGE) && outcome != Precondition::Failed && outcome != Precondition::NotModified {
        assert_eq!(outcome, Precondition::Proceed { use_range: true });
    }
    // The tag itself always revalidates, unless an If-Match header fails first.
    let mut same = headers.clone();
    same.insert(IF_NONE_MATCH, HeaderValue::from_static(ETAG));
    let outcome = evaluate(
        &same,
        Validators {
            etag: ETAG,
            modified,
        },
    );
    assert!(matches!(
        outcome,
        Precondition::NotModified | Precondition::Failed
    ));
}

fn check_authorization(creds: &Credentials, value: &str) {
    if creds.accepts_header(value) {
        let (scheme, encoded) = value.trim().split_once(' ').expect("a scheme and a token");
        assert!(scheme.eq_ignore_ascii_case("basic"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .expect("accepted tokens decode");
        assert_eq!(decoded, SECRET);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((len_bytes, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let len = u64::from_le_bytes(*len_bytes) % (1 << 40);
    let text = String::from_utf8_lossy(rest);
    let creds: Credentials = std::str::from_utf8(SECRET)
        .expect("ASCII")
        .parse()
        .expect("valid credentials");

    let mut headers = HeaderMap::new();
    for (name, line) in NAMES.iter().zip(text.split('\n')) {
        if line.is_empty() {
            continue;
        }
        if *name == RANGE {
            check_range(line, len);
        }
        if *name == AUTHORIZATION {
            check_authorization(&creds, line);
        }
        // hyper hands over only values a HeaderValue can hold.
        if let Ok(value) = HeaderValue::from_str(line) {
            headers.insert(name.clone(), value);
        }
    }
    check_preconditions(&headers);
});
