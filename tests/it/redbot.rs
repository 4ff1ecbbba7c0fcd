//! REDbot (`redbot`, the HTTP linter) against `sockit serve`: a file, a compressible text
//! file, a directory listing, a redirect, a 404, and ranges (REDbot asks for one of each
//! file itself). Any note at warning level or worse fails the test.
//!
//! REDbot's text output marks a note's level only by its colour, and only on a terminal: it
//! runs under `script` (util-linux) for a pseudo-terminal, and a note whose summary is
//! coloured yellow (warning) or red (bad) counts.

use std::process::Command;

use crate::support::*;

/// ANSI colours REDbot gives warning and bad notes (`redbot/formatter/text.py`).
const WARNING: &str = "\u{1b}[1;33m";
const BAD: &str = "\u{1b}[1;31m";

/// The warning-or-worse notes REDbot has on `url`, as `level: summary`.
fn findings(url: &str) -> Vec<String> {
    require("redbot");
    require("script");
    let (out, err, code) = run_cmd(
        Command::new("script").args(["-qec", &format!("redbot -o text '{url}'"), "/dev/null"]),
        b"",
    );
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, Some(0), "redbot {url} failed: {err}{out}");
    assert!(
        out.contains("* General:"),
        "no notes from redbot on {url}: {out}"
    );
    out.lines()
        .filter_map(|line| {
            let note = line.trim_start().strip_prefix("* ")?;
            let level = if note.starts_with(WARNING) {
                "warning"
            } else if note.starts_with(BAD) {
                "bad"
            } else {
                return None;
            };
            let summary = note
                .trim_start_matches(WARNING)
                .trim_start_matches(BAD)
                .split('\u{1b}')
                .next()
                .unwrap_or_default();
            Some(format!("{level}: {summary}"))
        })
        .collect()
}

#[test]
fn redbot_finds_nothing_to_warn_about() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::write(root.join("data.bin"), random_bytes(64 * 1024, 3)).unwrap();
    let html = format!(
        "<!doctype html><title>t</title>{}",
        "<p>hello redbot</p>\n".repeat(400)
    );
    std::fs::write(root.join("page.html"), html).unwrap();
    std::fs::write(root.join("notes.txt"), "plain text notes\n".repeat(1000)).unwrap();
    std::fs::create_dir(root.join("dir")).unwrap();
    std::fs::write(root.join("dir/a.txt"), b"a\n").unwrap();
    let server = Server::start(&["serve", root.to_str().unwrap(), "--port", "0", "--quiet"]);
    let mut all = Vec::new();
    for path in [
        "/data.bin",
        "/page.html",
        "/notes.txt",
        "/dir/",
        "/dir",
        "/missing",
    ] {
        let url = format!("http://{}{path}", server.addr);
        all.extend(findings(&url).into_iter().map(|f| format!("{path}: {f}")));
    }
    assert!(all.is_empty(), "redbot notes:\n{}", all.join("\n"));
}
