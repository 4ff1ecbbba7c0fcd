//! Manifests come from the network: parsing must never panic, and whatever it accepts must be
//! safe to write below a directory and survive a round trip.
//!
//! Run with `cargo +nightly fuzz run fuzz_manifest` from the repository root.

#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use sockit::transfer::{Code, Manifest, check_path};

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::from_json(data) {
        for entry in &manifest.files {
            assert!(check_path(&entry.path).is_ok());
            let components: Vec<_> = Path::new(&entry.path).components().collect();
            assert!(!components.is_empty());
            assert!(components.iter().all(|c| matches!(c, Component::Normal(_))));
            assert!(!entry.path.chars().any(char::is_control));
        }
        let again = Manifest::from_json(manifest.to_json().as_bytes()).expect("round trip");
        assert_eq!(again, manifest);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = check_path(text);
        if let Ok(code) = text.parse::<Code>() {
            assert_eq!(code.to_string().parse::<Code>().expect("round trip"), code);
        }
    }
});
