//! `sockit get/post/http` against httpbin on gunicorn, a server built to check HTTP
//! clients: redirects, auth, encodings, statuses, ranges, streaming, and exact echoes of
//! the JSON, form and multipart bodies that were sent.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

/// Text that trips up encoders: non-ASCII, quotes, escapes and URL/form delimiters.
const AWKWARD: &str = "ä ö ß 日本 🎉 \"q\" 'single' \\ back & amp = eq + plus %20 / slash ?q #h";

#[test]
fn httpbin_redirects_auth_encodings_statuses_and_ranges() {
    let bin = Httpbin::start();
    for path in ["/redirect/3", "/absolute-redirect/2"] {
        let (out, err, code) = run(&["get", "--follow", &bin.url(path)], b"");
        assert_eq!(code, Some(0), "{path}: {err}");
        assert_eq!(json(&out)["url"], bin.url("/get"), "{path}");
        let (_, _, code) = run(&["get", "--check-status", &bin.url(path)], b"");
        assert_eq!(code, Some(3), "{path}");
    }
    let (out, _, _) = run(&["get", "--follow", "-v", &bin.url("/redirect/3")], b"");
    let heads = String::from_utf8_lossy(&out);
    assert_eq!(heads.matches("HTTP/1.1 302 Found\n").count(), 3, "{heads}");

    // Basic auth from -a, from the URL with and without its scheme, and a wrong password.
    let auth = bin.url("/basic-auth/ada/p@ss");
    let without_scheme = bin.base.trim_start_matches("http://");
    for args in [
        vec![
            "get".to_owned(),
            auth.clone(),
            "-a".into(),
            "ada:p@ss".into(),
        ],
        vec![
            "get".into(),
            format!("http://ada:p%40ss@{without_scheme}/basic-auth/ada/p@ss"),
        ],
        vec![
            "get".into(),
            format!("ada:p%40ss@{without_scheme}/basic-auth/ada/p@ss"),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (out, err, code) = run(&args, b"");
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert_eq!(json(&out)["authenticated"], true, "{args:?}");
        assert_eq!(json(&out)["user"], "ada", "{args:?}");
    }
    let (_, err, code) = run(&["get", &auth, "-a", "ada:wrong", "--check-status"], b"");
    assert_eq!(code, Some(4), "{err}");

    for (path, flag) in [
        ("/gzip", "gzipped"),
        ("/deflate", "deflated"),
        ("/brotli", "brotli"),
    ] {
        let (out, err, code) = run(&["get", &bin.url(path)], b"");
        assert_eq!(code, Some(0), "{path}: {err}");
        assert_eq!(json(&out)[flag], true, "{path}");
    }

    for (path, want) in [("/status/404", 4), ("/status/500", 5), ("/status/204", 0)] {
        let (_, err, code) = run(&["get", &bin.url(path), "--check-status"], b"");
        assert_eq!(code, Some(want), "{path}: {err}");
        let (_, err, code) = run(&["get", &bin.url(path)], b"");
        assert_eq!(code, Some(0), "{path} without --check-status: {err}");
    }

    let (out, err, code) = run(
        &["get", &bin.url("/range/1024"), "Range:bytes=10-19", "-i"],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 206 Partial Content\n"), "{text}");
    assert!(
        text.contains("\nContent-Range: bytes 10-19/1024\n"),
        "{text}"
    );
    assert!(text.ends_with("\n\nklmnopqrst"), "{text}");
}

/// Runs sockit and records when each piece of its stdout arrived.
fn timed_stdout(args: &[&str]) -> (Vec<(Duration, Vec<u8>)>, Option<i32>) {
    let started = Instant::now();
    let mut child = sockit()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sockit");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut pieces = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < WAIT {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => pieces.push((started.elapsed(), buf[..n].to_vec())),
        }
    }
    let status = wait_timeout(&mut child, WAIT).expect("sockit exits");
    (pieces, status.code())
}

#[test]
fn httpbin_streams_reach_our_stdout_before_the_body_ends() {
    let bin = Httpbin::start();
    // Four bytes over two seconds: each must reach the pipe when it comes, not at the end.
    let (pieces, code) = timed_stdout(&["get", &bin.url("/drip?duration=2&numbytes=4")]);
    assert_eq!(code, Some(0));
    let all: Vec<u8> = pieces.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(all, b"****");
    let (first, last) = (pieces[0].0, pieces[pieces.len() - 1].0);
    assert!(
        last - first >= Duration::from_millis(1000),
        "bytes arrived together: {pieces:?}"
    );

    let (pieces, code) = timed_stdout(&["get", &bin.url("/stream/5")]);
    assert_eq!(code, Some(0));
    let all: Vec<u8> = pieces.iter().flat_map(|(_, b)| b.clone()).collect();
    let lines: Vec<serde_json::Value> = all
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(json)
        .collect();
    assert_eq!(lines.len(), 5);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["id"], i, "{line}");
    }
}

#[test]
fn httpbin_echoes_json_form_multipart_and_query_exactly() {
    let bin = Httpbin::start();
    let anything = bin.url("/anything");
    let field = format!("text={AWKWARD}");

    let (out, err, code) = run(
        &[
            "post",
            &anything,
            &field,
            "n:=42",
            "list:=[1,\"x\",null]",
            "k\\=ey=v",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        json(&out)["json"],
        serde_json::json!({"text": AWKWARD, "n": 42, "list": [1, "x", null], "k=ey": "v"})
    );

    // A scheme-less URL whose query holds `://`, plus a query item.
    let url = format!(
        "{}/anything?next=http://x.test/a",
        bin.base.trim_start_matches("http://")
    );
    let query = format!("q=={AWKWARD}");
    let (out, err, code) = run(&["get", &url, &query], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        json(&out)["args"],
        serde_json::json!({"next": "http://x.test/a", "q": AWKWARD})
    );

    let (out, err, code) = run(&["post", "-f", &anything, &field, "a b=c&d=e"], b"");
    assert_eq!(code, Some(0), "{err}");
    let echo = json(&out);
    assert_eq!(
        echo["form"],
        serde_json::json!({"text": AWKWARD, "a b": "c&d=e"})
    );
    assert!(
        echo["headers"]["Content-Type"]
            .as_str()
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded")),
        "{echo}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let doc = dir.path().join("doc.txt");
    let content = format!("{AWKWARD}\nsecond line\r\nthird");
    std::fs::write(&doc, &content).expect("write");
    let attach = format!("doc@{}", doc.display());
    let (out, err, code) = run(&["post", "--multipart", &anything, &field, &attach], b"");
    assert_eq!(code, Some(0), "{err}");
    let echo = json(&out);
    assert_eq!(echo["form"], serde_json::json!({"text": AWKWARD}));
    assert_eq!(echo["files"], serde_json::json!({"doc": content}));

    let raw = format!("@{}", doc.display());
    let (out, err, code) = run(
        &[
            "http",
            "PUT",
            &anything,
            &raw,
            "Content-Type:text/plain; charset=utf-8",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let echo = json(&out);
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["data"], content.as_str());
}
