//! Request paths come from the network: whatever `RequestPath::parse` accepts must name a
//! place below the served directory, whatever the bytes, and must survive a round trip
//! through the href the listing and redirects print.
//!
//! Run: `cargo +nightly fuzz run fuzz_path`
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use sockit::http::server::RequestPath;

fn check(path: &RequestPath) {
    for segment in path.segments() {
        assert!(!segment.is_empty());
        assert!(segment != "." && segment != "..");
        assert!(!segment.as_bytes().iter().any(|b| matches!(b, b'/' | b'\\' | 0)));
    }
    let relative = path.to_relative();
    assert!(relative.is_relative());
    assert_eq!(relative.components().count(), path.segments().len());
    assert!(
        relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    );
    let bytes = relative.as_os_str().as_encoded_bytes();
    assert!(!bytes.contains(&0) && !bytes.contains(&b'\\'));
    // Joined under a root the way the server does it, it stays below that root.
    let root = Path::new("/srv/www");
    let mut full = root.to_path_buf();
    for segment in path.segments() {
        full.push(segment);
    }
    assert_eq!(full, root.join(&relative));
    assert!(full.starts_with(root));
    assert_eq!(
        full.components().count(),
        root.components().count() + path.segments().len()
    );

    // The href re-parses to the same path and can never be read as `//host`.
    let dir = path.has_trailing_slash();
    let href = path.to_href(dir);
    assert!(href.starts_with('/') && !href.starts_with("//"));
    let again = RequestPath::parse(&href).expect("an href always parses");
    assert_eq!(again.segments(), path.segments());
    assert_eq!(again.has_trailing_slash(), dir);
    assert_eq!(again.is_hidden(), path.is_hidden());
    assert_eq!(
        again.file_name(),
        path.segments().last().map(OsString::as_os_str)
    );
}

fuzz_target!(|data: &[u8]| {
    // The raw target as it might arrive, and as hyper hands it over once it is a valid URI.
    let raw = String::from_utf8_lossy(data);
    let direct = RequestPath::parse(&raw);
    if let Ok(path) = &direct {
        check(path);
        let parent = path.parent();
        check(&parent);
        assert_eq!(
            parent.segments(),
            &path.segments()[..path.segments().len().saturating_sub(1)]
        );
    }
    if let Ok(uri) = http::Uri::try_from(data) {
        if let Ok(path) = RequestPath::parse(uri.path()) {
            check(&path);
        }
    }
});
