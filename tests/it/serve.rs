//! `sockit serve` driven by curl and by raw sockets, over a fixture directory full of hostile
//! names and symlinks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;

/// File names that break naive servers: spaces, URL syntax, quotes, markup, unicode, length.
const HOSTILE_NAMES: &[&str] = &[
    "a b.txt",
    "hash#frag.txt",
    "what?query=1.txt",
    "100%25 sure %41.txt",
    "quote\"single'.txt",
    "<script>alert(1).html",
    "<img src=x onerror=alert(1)>.txt",
    "javascript:alert(1)",
    "ünïcødé ✓ 日本.txt",
    "plus+and&amp;=.txt",
];

struct Fixture {
    _dir: tempfile::TempDir,
    _outside: tempfile::TempDir,
    root: PathBuf,
    long_name: String,
    big: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    let write = |name: &str, data: &[u8]| std::fs::write(root.join(name), data).unwrap();
    write("hello.txt", b"hello world\n");
    for (i, name) in HOSTILE_NAMES.iter().enumerate() {
        write(name, format!("file {i}\n").as_bytes());
    }
    let long_name = format!("{}.txt", "long-".repeat(49));
    write(&long_name, b"long\n");
    let big = random_bytes(1 << 20, 7);
    write("big.bin", &big);
    write("style.css", "body { color: red; }\n".repeat(50).as_bytes());
    let js = "console.log('precompressed');\n".repeat(20);
    write("app.js", js.as_bytes());
    write("app.js.gz", &gzip(js.as_bytes()));
    write(".hidden", b"secret\n");
    std::fs::create_dir(root.join(".git")).unwrap();
    write(".git/config", b"secret\n");
    std::fs::create_dir(root.join("sub dir")).unwrap();
    write("sub dir/inner.txt", b"inner\n");
    std::fs::create_dir(root.join("site")).unwrap();
    write("site/index.html", b"<h1>index</h1>\n");
    std::fs::write(outside.path().join("passwd"), b"root:x:0:0\n").unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("inside-link")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("passwd"), root.join("escape-link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("escape-dir")).unwrap();
    // A sibling directory whose name starts like the root's: a prefix check on strings
    // would let it through.
    std::fs::create_dir(dir.path().join("www-evil")).unwrap();
    std::fs::write(dir.path().join("www-evil/x"), b"root:x:0:0\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("www-evil/x"), root.join("prefix-link")).unwrap();
    Fixture {
        _dir: dir,
        _outside: outside,
        root,
        long_name,
        big,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn serve(root: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["serve", root.to_str().unwrap(), "--port", "0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A response as curl saw it.
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

over_both_protocols!(
    listing_escapes_hostile_names_and_every_link_works,
    head_ranges_and_conditional_requests_follow_rfc_9110,
    compression_for_text_and_precompressed_siblings,
    traversal_and_redirect_tricks_never_leave_the_directory,
    symlinks_out_and_hidden_files_are_refused_unless_allowed,
    uploads_by_put_and_form_are_atomic_and_never_overwrite,
    auth_protects_everything_or_only_writes,
    text_mode_answers_everything_and_logs_each_request,
    tls_with_a_given_certificate_and_a_self_signed_one,
    answers_without_content_carry_no_length_and_head_carries_the_gets,
    send_follows_the_same_request_rules,
    added_headers_and_cors_are_on_every_answer,
    spa_answers_paths_that_match_nothing_with_the_root_index,
    names_that_are_not_utf8_are_listed_escaped_and_served_by_their_href,
);

/// Runs curl (no redirects followed) in the test's protocol and splits its answer.
fn curl(args: &[&str]) -> Reply {
    require("curl");
    let headers_file = tempfile::NamedTempFile::new().unwrap();
    let https = args.iter().any(|a| a.starts_with("https://"));
    let mut cmd = std::process::Command::new("curl");
    cmd.arg(proto().curl_option(https))
        .args(["-sS", "--max-time", "10", "-D"])
        .arg(headers_file.path())
        .args(args);
    let (body, err, code) = run_cmd(&mut cmd, b"");
    assert_eq!(code, Some(0), "curl {args:?} failed: {err}");
    let headers = std::fs::read_to_string(headers_file.path()).unwrap();
    // With several responses (100 Continue) the last block counts.
    let last = headers
        .trim_end()
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    let status = last
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {headers:?}"));
    assert!(
        last.starts_with(proto().status_line()),
        "not {:?}: {last}",
        proto()
    );
    Reply {
        status,
        headers: last,
        body,
    }
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

/// Sends raw bytes on a new connection and reads until the server closes (bounded).
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn listing_escapes_hostile_names_and_every_link_works() {
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    let page = curl(&[&url(&server, "/")]);
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(!html.contains("<script>alert"), "unescaped markup");
    assert!(html.contains("&lt;script&gt;alert(1).html"));
    assert!(!html.contains("<img"), "unescaped markup");
    for hidden in [
        ".hidden",
        ".git",
        "escape-link",
        "escape-dir",
        "prefix-link",
    ] {
        assert!(!html.contains(hidden), "{hidden} listed");
    }
    // Directories first.
    let sub = html.find("sub%20dir/").unwrap();
    assert!(sub < html.find("hello.txt").unwrap());
    let links = hrefs(&html);
    let mut checked = 0;
    for href in links
        .iter()
        .filter(|h| h.starts_with("./") && !h.ends_with('/'))
    {
        let reply = curl(&[&url(&server, &format!("/{}", &href[2..]))]);
        assert_eq!(reply.status, 200, "{href}");
        checked += 1;
    }
    assert!(checked > HOSTILE_NAMES.len(), "only {checked} links");
    for (i, name) in HOSTILE_NAMES.iter().enumerate() {
        let mut encoded = String::new();
        sockit::http::server::encode_segment(name, &mut encoded);
        let reply = curl(&[&url(&server, &format!("/{encoded}"))]);
        assert_eq!(reply.text(), format!("file {i}\n"), "{name}");
    }
    let long = curl(&[&url(&server, &format!("/{}", fx.long_name))]);
    assert_eq!(long.text(), "long\n");

    let json = curl(&[&url(&server, "/?format=json")]);
    assert_eq!(
        json.header("content-type").as_deref(),
        Some("application/json")
    );
    let entries: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    let names: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in HOSTILE_NAMES {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert!(!names.contains(&".hidden"));

    // A directory without its slash is redirected; index.html is served for a directory.
    let redirect = curl(&[&url(&server, "/sub%20dir")]);
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location").as_deref(), Some("/sub%20dir/"));
    assert_eq!(curl(&[&url(&server, "/site/")]).text(), "<h1>index</h1>\n");
    let nested = curl(&[&url(&server, "/sub%20dir/")]);
    assert!(nested.text().contains("href=\"../\""));
    assert!(nested.text().contains("inner.txt"));
}

fn head_ranges_and_conditional_requests_follow_rfc_9110() {
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    let hello = url(&server, "/hello.txt");
    let head = curl(&["-I", &hello]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").as_deref(), Some("12"));
    assert!(!head.text().contains("hello world"));
    assert_eq!(
        head.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let etag = head.header("etag").unwrap();
    let modified = head.header("last-modified").unwrap();
    assert!(etag.starts_with('"'), "strong etag: {etag}");

    let part = curl(&["-r", "0-4", &hello]);
    assert_eq!((part.status, part.text().as_str()), (206, "hello"));
    assert_eq!(
        part.header("content-range").as_deref(),
        Some("bytes 0-4/12")
    );
    let suffix = curl(&["-H", "Range: bytes=-6", &hello]);
    assert_eq!(suffix.text(), "world\n");
    let outside = curl(&["-H", "Range: bytes=12-", &hello]);
    assert_eq!(outside.status, 416);
    assert_eq!(
        outside.header("content-range").as_deref(),
        Some("bytes */12")
    );
    let multi = curl(&["-H", "Range: bytes=0-1,4-5", &hello]);
    assert_eq!((multi.status, multi.body.len()), (200, 12));

    let if_range = format!("If-Range: {etag}");
    let matched = curl(&["-H", "Range: bytes=6-", "-H", &if_range, &hello]);
    assert_eq!((matched.status, matched.text().as_str()), (206, "world\n"));
    let stale = curl(&["-H", "Range: bytes=6-", "-H", "If-Range: \"old\"", &hello]);
    assert_eq!((stale.status, stale.body.len()), (200, 12));
    let by_date = curl(&[
        "-H",
        "Range: bytes=6-",
        "-H",
        &format!("If-Range: {modified}"),
        &hello,
    ]);
    assert_eq!(by_date.status, 206);

    let not_modified = curl(&["-H", &format!("If-None-Match: {etag}"), &hello]);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    let since = curl(&["-H", &format!("If-Modified-Since: {modified}"), &hello]);
    assert_eq!(since.status, 304);
    let changed = curl(&["-H", "If-None-Match: \"other\"", &hello]);
    assert_eq!(changed.status, 200);
    let failed = curl(&["-H", "If-Match: \"other\"", &hello]);
    assert_eq!(failed.status, 412);

    // A file too big for the memory cache streams from disk, whole or in part.
    let big = curl(&[&url(&server, "/big.bin")]);
    assert!(big.body == fx.big, "big file differs");
    let slice = curl(&["-r", "600000-899999", &url(&server, "/big.bin")]);
    assert_eq!(slice.status, 206);
    assert!(slice.body[..] == fx.big[600_000..900_000], "range differs");
}

fn compression_for_text_and_precompressed_siblings() {
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    let css = url(&server, "/style.css");
    for coding in ["gzip", "br"] {
        let reply = curl(&["-H", &format!("Accept-Encoding: {coding}"), &css]);
        assert_eq!(reply.header("content-encoding").as_deref(), Some(coding));
        assert!(reply.body.len() < 1050, "{coding} did not shrink");
        assert_eq!(reply.header("vary").as_deref(), Some("accept-encoding"));
    }
    let decoded = curl(&["--compressed", &css]);
    assert_eq!(decoded.text(), "body { color: red; }\n".repeat(50));
    let plain = curl(&[&css]);
    assert_eq!(plain.header("content-encoding"), None);
    let js = curl(&["-H", "Accept-Encoding: gzip", &url(&server, "/app.js")]);
    assert_eq!(js.header("content-encoding").as_deref(), Some("gzip"));
    assert!(js.body == std::fs::read(fx.root.join("app.js.gz")).unwrap());
    assert!(js.header("content-type").unwrap().contains("javascript"));
    // Ranges apply to the identity form.
    let ranged = curl(&["-H", "Accept-Encoding: gzip", "-r", "0-3", &css]);
    assert_eq!((ranged.status, ranged.text().as_str()), (206, "body"));
}

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    let mut stream = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(
            b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /sub%20dir/inner.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
    let text = read_until(&mut stream, |t| t.contains("inner\n"));
    let first = text.find("hello world\n").expect("first answer");
    let second = text.find("inner\n").expect("second answer");
    assert!(first < second, "answers out of order: {text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2);
    // The connection is still open for a third request.
    stream
        .write_all(b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let third = read_until(&mut stream, |t| t.ends_with("\r\n\r\n"));
    assert!(third.starts_with("HTTP/1.1 200 OK"), "{third}");
    assert!(third.contains("content-length: 12"));
}

#[test]
fn quiet_keep_alive_connections_stay_usable() {
    // A keep-alive connection that pauses between requests hands its socket back from the
    // HTTP layer; requests after the pause, pipelined ones and a head split by a pause are
    // all still answered on the same connection.
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    let mut stream = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let pause = Duration::from_millis(600);
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let first = read_until(&mut stream, |t| t.ends_with("hello world\n"));
    assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
    std::thread::sleep(pause);
    stream
        .write_all(
            b"GET /sub%20dir/inner.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
    let both = read_until(&mut stream, |t| t.ends_with("hello world\n"));
    let inner = both
        .find("inner\n")
        .expect("pipelined answer after a pause");
    assert!(inner < both.find("hello world\n").unwrap(), "{both}");
    std::thread::sleep(pause);
    stream.write_all(b"GET /hello.txt HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(pause);
    stream.write_all(b"st: x\r\n\r\n").unwrap();
    let split = read_until(&mut stream, |t| t.ends_with("hello world\n"));
    assert!(split.starts_with("HTTP/1.1 200 OK"), "{split}");
}

#[test]
fn cached_files_go_out_byte_exact_whole_ranged_pipelined_and_never_stale() {
    // Files from 32 KiB to 512 KiB are cached and sent straight from the page cache; the
    // bytes must be the file's, however the response is cut.
    let fx = fixture();
    let path = fx.root.join("mid.bin");
    let data = random_bytes(200 * 1024 + 7, 11);
    std::fs::write(&path, &data).unwrap();
    let server = serve(&fx.root, &["--quiet"]);
    let url = url(&server, "/mid.bin");
    let whole = curl(&[&url]);
    assert_eq!(whole.status, 200);
    assert!(whole.body == data, "whole file differs");
    let part = curl(&["-r", "1000-150000", &url]);
    assert_eq!(part.status, 206);
    assert!(part.body == data[1000..=150_000], "range differs");

    // Pipelined on one connection: whole, a range, a small file, whole again.
    let mut stream = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(
            b"GET /mid.bin HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /mid.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=-5\r\n\r\n\
              GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /mid.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
    let answers = read_responses(&mut stream, 4);
    let bodies: Vec<&[u8]> = answers.iter().map(|(_, body)| &body[..]).collect();
    assert!(bodies[0] == data, "first pipelined body differs");
    assert_eq!(bodies[1], &data[data.len() - 5..]);
    assert_eq!(bodies[2], b"hello world\n");
    assert!(bodies[3] == data, "last pipelined body differs");

    // Replaced by a rename (a new file) and rewritten in place (same file, new length):
    // the new bytes are served each time.
    let replaced = random_bytes(data.len(), 12);
    let staging = fx.root.join(".staging");
    std::fs::write(&staging, &replaced).unwrap();
    std::fs::rename(&staging, &path).unwrap();
    assert!(
        curl(&[&url]).body == replaced,
        "served the renamed-over file stale"
    );
    let rewritten = random_bytes(100 * 1024, 13);
    std::fs::write(&path, &rewritten).unwrap();
    assert!(
        curl(&[&url]).body == rewritten,
        "served the rewritten file stale"
    );
}

#[test]
fn sendfile_heads_and_bodies_keep_their_order_after_head_requests_and_ranges() {
    // A cached file's head is written first and its body then sent from the file, in
    // pieces when the socket fills: after a HEAD (no body) and around ranges, every byte
    // on the connection must be where HTTP/1.1 framing puts it.
    let fx = fixture();
    let data = random_bytes(300 * 1024 + 3, 15);
    std::fs::write(fx.root.join("mid.bin"), &data).unwrap();
    let server = serve(&fx.root, &["--quiet"]);
    // Cached by a first request, so every answer below comes from the cache.
    assert!(curl(&[&url(&server, "/mid.bin")]).body == data);
    let mut stream = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(
            b"HEAD /mid.bin HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /mid.bin HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /mid.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=70001-140000\r\n\r\n\
              HEAD /mid.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\n\r\n\
              GET /mid.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=-7\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    // (is HEAD, status, body): a HEAD answer says the length of the body it leaves out.
    let expected: [(bool, &str, &[u8]); 5] = [
        (true, "200", &data),
        (false, "200", &data),
        (false, "206", &data[70_001..=140_000]),
        (true, "206", &data[5..=9]),
        (false, "206", &data[data.len() - 7..]),
    ];
    let mut rest = &all[..];
    for (i, (is_head, status, body)) in expected.into_iter().enumerate() {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("answer {i}: no head in {} bytes left", rest.len()));
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        assert!(
            head.starts_with(&format!("http/1.1 {status}")),
            "answer {i}: {head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len()))
                || head.ends_with(&format!("\r\ncontent-length: {}", body.len())),
            "answer {i}: {head}"
        );
        rest = &rest[end + 4..];
        if !is_head {
            assert!(rest.len() >= body.len(), "answer {i}: body cut short");
            assert!(&rest[..body.len()] == body, "answer {i}: body differs");
            rest = &rest[body.len()..];
        }
    }
    assert!(
        rest.is_empty(),
        "{} bytes after the last answer",
        rest.len()
    );
}

/// Reads `n` responses with `Content-Length` bodies from `stream`: (head, body) each.
fn read_responses(stream: &mut TcpStream, n: usize) -> Vec<(String, Vec<u8>)> {
    let deadline = Instant::now() + WAIT;
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while answers.len() < n && Instant::now() < deadline {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or_else(|| panic!("no content-length in {head}"));
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                answers.push((head, body));
                continue;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(got) => buf.extend_from_slice(&chunk[..got]),
        }
    }
    assert_eq!(answers.len(), n, "only {} of {n} responses", answers.len());
    answers
}

fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if done(&String::from_utf8_lossy(&out)) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn traversal_and_redirect_tricks_never_leave_the_directory() {
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    for path in [
        "/../../../../etc/passwd",
        "/sub%20dir/../../www-evil/x",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/..%2f..%2fetc/passwd",
        "/..%5c..%5cetc%5cpasswd",
        "/.%2e/www-evil/x",
        "/hello.txt%00.html",
        "/%c0%ae%c0%ae/etc/passwd",
    ] {
        let reply = curl(&["--path-as-is", &url(&server, path)]);
        assert!(
            reply.status == 400 || reply.status == 404,
            "{path}: {}",
            reply.status
        );
        assert!(!reply.text().contains("root:"), "{path} leaked");
    }
    for request in [
        "GET http://evil.example/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /..\\..\\etc\\passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET //etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let answer = raw(server.addr, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 4"), "{request:?} -> {answer}");
        assert!(!answer.contains("root:"), "{request:?} leaked");
    }
    // No open redirect: the Location of a directory redirect is always a local path.
    for request in [
        "GET //sub%20dir HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET ///sub%20dir?x=//evil HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let answer = raw(server.addr, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 301"), "{answer}");
        let location = answer
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("location:"))
            .unwrap();
        assert!(
            location[9..].trim().starts_with("/sub%20dir/"),
            "{location}"
        );
    }
    let backslash = raw(
        server.addr,
        b"GET /\\evil.example HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(backslash.starts_with("HTTP/1.1 400"), "{backslash}");
    let method = raw(
        server.addr,
        b"DELETE /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(method.starts_with("HTTP/1.1 405"), "{method}");
    assert!(method.to_ascii_lowercase().contains("allow: get, head"));
}

fn symlinks_out_and_hidden_files_are_refused_unless_allowed() {
    let fx = fixture();
    let strict = serve(&fx.root, &[]);
    let status = |server: &Server, path: &str| curl(&[&url(server, path)]).status;
    assert_eq!(status(&strict, "/inside-link"), 200);
    assert_eq!(status(&strict, "/escape-link"), 403);
    assert_eq!(status(&strict, "/escape-dir/passwd"), 403);
    assert_eq!(status(&strict, "/escape-dir/"), 403);
    assert_eq!(status(&strict, "/prefix-link"), 403);
    assert_eq!(status(&strict, "/.hidden"), 404);
    assert_eq!(status(&strict, "/.git/config"), 404);
    let open = serve(&fx.root, &["--hidden", "--follow-symlinks"]);
    assert_eq!(curl(&[&url(&open, "/escape-link")]).text(), "root:x:0:0\n");
    assert_eq!(status(&open, "/.git/config"), 200);
    assert!(curl(&[&url(&open, "/")]).text().contains(".hidden"));
}

fn uploads_by_put_and_form_are_atomic_and_never_overwrite() {
    let fx = fixture();
    let server = serve(&fx.root, &["--upload", "--max-upload", "64KiB"]);
    let source = fx.root.join("sub dir/inner.txt");
    let source = source.to_str().unwrap();
    let put = curl(&["-T", source, &url(&server, "/up%20loaded.txt")]);
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(
        std::fs::read(fx.root.join("up loaded.txt")).unwrap(),
        b"inner\n"
    );
    let again = curl(&["-T", source, &url(&server, "/up%20loaded.txt")]);
    assert_eq!(again.status, 409);
    let into_missing = curl(&["-T", source, &url(&server, "/nowhere/x.txt")]);
    assert_eq!(into_missing.status, 404);
    let hidden = curl(&["-T", source, &url(&server, "/.evil")]);
    assert_eq!(hidden.status, 400);
    let through_link = curl(&["-T", source, &url(&server, "/escape-dir/x.txt")]);
    assert_eq!(through_link.status, 403);

    let form = curl(&[
        "-F",
        &format!("file=@{source};filename=../../form <b>.txt"),
        &url(&server, "/sub%20dir/"),
    ]);
    assert_eq!(form.status, 201, "{}", form.text());
    assert_eq!(
        std::fs::read(fx.root.join("sub dir/form <b>.txt")).unwrap(),
        b"inner\n"
    );
    let listing = curl(&[&url(&server, "/")]);
    assert!(listing.text().contains("enctype=\"multipart/form-data\""));

    let too_big = fx.root.join("big.bin");
    let refused = curl(&["-T", too_big.to_str().unwrap(), &url(&server, "/big2.bin")]);
    assert_eq!(refused.status, 413);
    assert!(!fx.root.join("big2.bin").exists());

    // A cut-off upload leaves nothing behind, not even its temp file.
    let mut stream = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
    stream
        .write_all(b"PUT /cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n")
        .unwrap();
    stream.write_all(&[7u8; 10_000]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(stream);
    let deadline = Instant::now() + WAIT;
    let leftovers = || {
        std::fs::read_dir(&fx.root)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".sockit-upload") || n == "cut.bin")
            .collect::<Vec<_>>()
    };
    while !leftovers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(leftovers(), Vec::<String>::new());

    let overwriting = serve(&fx.root, &["--upload", "--overwrite", "--mkdir"]);
    let replaced = curl(&["-T", source, &url(&overwriting, "/hello.txt")]);
    assert_eq!(replaced.status, 200);
    assert_eq!(
        std::fs::read(fx.root.join("hello.txt")).unwrap(),
        b"inner\n"
    );
    let deep = curl(&["-T", source, &url(&overwriting, "/new/deeper/x.txt")]);
    assert_eq!(deep.status, 201);
    assert!(fx.root.join("new/deeper/x.txt").is_file());
}

fn auth_protects_everything_or_only_writes() {
    let fx = fixture();
    let server = serve(&fx.root, &["--auth", "ann:open sesame"]);
    let hello = url(&server, "/hello.txt");
    let denied = curl(&[&hello]);
    assert_eq!(denied.status, 401);
    assert!(
        denied
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(curl(&["-u", "ann:wrong", &hello]).status, 401);
    assert_eq!(curl(&["-u", "ann:open sesame", &hello]).status, 200);
    let line = server.stderr_line_with(&format!("\"GET /hello.txt {}\" 200", proto().in_log()));
    assert!(line.contains(" - ann ["), "{line}");

    let writes = serve(
        &fx.root,
        &["--upload", "--auth", "ann:pw", "--auth-writes-only"],
    );
    let source = fx.root.join("hello.txt");
    let source = source.to_str().unwrap();
    assert_eq!(curl(&[&url(&writes, "/hello.txt")]).status, 200);
    assert_eq!(curl(&["-T", source, &url(&writes, "/w.txt")]).status, 401);
    assert_eq!(
        curl(&["-u", "ann:pw", "-T", source, &url(&writes, "/w.txt")]).status,
        201
    );
    // A refused upload whose body is still coming gets its 401, never a reset stream
    // (HTTP/2) or connection (HTTP/1), however often it is tried.
    let big = fx.root.join("big-upload.bin");
    std::fs::write(&big, random_bytes(4 << 20, 7)).unwrap();
    let big = big.to_str().unwrap();
    for _ in 0..5 {
        assert_eq!(curl(&["-T", big, &url(&writes, "/w2.bin")]).status, 401);
    }
}

#[test]
fn uploads_on_the_network_require_auth() {
    let fx = fixture();
    let (_, err, code) = run(
        &[
            "serve",
            fx.root.to_str().unwrap(),
            "--upload",
            "--bind",
            "0.0.0.0",
            "--port",
            "0",
        ],
        b"",
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("--auth"), "{err}");
}

#[test]
fn slowloris_is_dropped_while_others_are_served() {
    let fx = fixture();
    let server = serve(&fx.root, &["--header-timeout", "1s"]);
    let mut slow = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
    slow.set_read_timeout(Some(WAIT)).unwrap();
    slow.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(curl(&[&url(&server, "/hello.txt")]).status, 200);
    }
    let mut buf = [0u8; 512];
    // Closed (maybe after a 408): either way no request is served and the socket ends.
    let mut seen = Vec::new();
    loop {
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "dropped after {waited:?}");
    assert!(!String::from_utf8_lossy(&seen).contains("200 OK"));
}

#[test]
fn idle_connections_do_not_delay_a_request_and_the_limit_answers_503() {
    let fx = fixture();
    let server = serve(&fx.root, &["--max-conns", "1100"]);
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect_timeout(&server.addr, WAIT).unwrap())
        .collect();
    let started = Instant::now();
    assert_eq!(curl(&[&url(&server, "/hello.txt")]).status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(idle);

    let limited = serve(&fx.root, &["--max-conns", "2"]);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect_timeout(&limited.addr, WAIT).unwrap())
        .collect();
    // Give the server a moment to take both before the third arrives.
    std::thread::sleep(Duration::from_millis(200));
    let busy = raw(limited.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    drop(held);
}

#[test]
fn malformed_long_and_large_requests_get_400_414_431() {
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    let garbage = raw(server.addr, b"BLAH\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    let answer = raw(server.addr, long_uri.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let answer = raw(server.addr, big_head.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

fn text_mode_answers_everything_and_logs_each_request() {
    let server = Server::start(&["serve", "--port", "0", "--text", "hello world"]);
    let reply = curl(&[&url(&server, "/anything?at=all")]);
    assert_eq!((reply.status, reply.text().as_str()), (200, "hello world"));
    let line = server.stderr_line_with("GET /anything?at=all");
    assert!(line.contains("\" 200 11"), "{line}");
    assert!(line.contains(proto().in_log()), "{line}");
    let status = Server::start(&["serve", "--port", "0", "--status", "503", "--quiet"]);
    let reply = curl(&[&url(&status, "/")]);
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (503, "Service Unavailable\n")
    );
}

fn tls_with_a_given_certificate_and_a_self_signed_one() {
    let fx = fixture();
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = fx.root.parent().unwrap().join("cert.pem");
    let key = fx.root.parent().unwrap().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let server = serve(
        &fx.root,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    let https = format!("https://{}/hello.txt", server.addr);
    let reply = curl(&["--cacert", cert.to_str().unwrap(), &https]);
    assert_eq!(reply.text(), "hello world\n");
    // A cached file large enough to be sent from the page cache on plain TCP goes through
    // TLS as usual.
    let data = random_bytes(100 * 1024, 14);
    std::fs::write(fx.root.join("mid.bin"), &data).unwrap();
    let https = format!("https://{}/mid.bin", server.addr);
    let reply = curl(&["--cacert", cert.to_str().unwrap(), &https]);
    assert!(reply.body == data, "file over TLS differs");

    let fresh = serve(&fx.root, &["--tls"]);
    let line = fresh.stderr_line_with("TLS certificate sha256:");
    assert!(line.contains("sha256:"));
    fresh.stderr_line_with("open https://");
    let reply = curl(&["-k", &format!("https://{}/hello.txt", fresh.addr)]);
    assert_eq!(reply.text(), "hello world\n");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let fx = fixture();
    let server = serve(&fx.root, &["--quiet"]);
    assert_eq!(curl(&[&url(&server, "/hello.txt")]).status, 200);
    let (_, _, code) = run_cmd(
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(server.child.id().to_string()),
        b"",
    );
    assert_eq!(code, Some(0));
    let (_, status) = server.wait_output();
    assert!(status.success(), "{status:?}");
}

/// Sends `request` on a new connection, half-closes it when `half_close`, and reads the
/// answer until the server closes (bounded).
fn exchange(addr: SocketAddr, request: &[u8], half_close: bool) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).unwrap();
    if half_close {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(error) => panic!(
                "{error} after {:?}",
                String::from_utf8_lossy(&out)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status lines of every answer in `answers`, in order (the files whose bodies these
/// answers carry hold no such line).
fn statuses(answers: &str) -> Vec<String> {
    answers
        .split('\n')
        .filter(|l| l.starts_with("HTTP/1."))
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn host_rules_of_rfc_9112_give_400() {
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    let get = |head: &str| {
        let request = format!("GET /hello.txt {head}\r\nConnection: close\r\n\r\n");
        statuses(&exchange(server.addr, request.as_bytes(), false))
    };
    assert_eq!(get("HTTP/1.1"), ["HTTP/1.1 400"], "no Host");
    assert_eq!(get("HTTP/1.1\r\nHost: a\r\nHost: b"), ["HTTP/1.1 400"]);
    assert_eq!(get("HTTP/1.1\r\nHost: a\r\nHost: a"), ["HTTP/1.1 400"]);
    for invalid in ["a b", "user@host", "host:port", "[::1", ":80", "a/b"] {
        assert_eq!(
            get(&format!("HTTP/1.1\r\nHost: {invalid}")),
            ["HTTP/1.1 400"],
            "Host: {invalid}"
        );
    }
    assert_eq!(get("HTTP/1.1\r\nHost: localhost:8000"), ["HTTP/1.1 200"]);
    assert_eq!(get("HTTP/1.1\r\nHost: [::1]:8000"), ["HTTP/1.1 200"]);
    assert_eq!(get("HTTP/1.0"), ["HTTP/1.0 200"], "HTTP/1.0 needs no Host");
    assert_eq!(get("HTTP/1.0\r\nHost: a\r\nHost: b"), ["HTTP/1.0 400"]);
    // Absolute form: the target's authority counts, but Host must still be there.
    let absolute = |host: &str| {
        let request =
            format!("GET http://elsewhere/hello.txt HTTP/1.1\r\n{host}Connection: close\r\n\r\n");
        statuses(&exchange(server.addr, request.as_bytes(), false))
    };
    assert_eq!(absolute("Host: whatever\r\n"), ["HTTP/1.1 200"]);
    assert_eq!(absolute(""), ["HTTP/1.1 400"]);
    // curl without its Host line.
    let reply = curl(&["-H", "Host:", &url(&server, "/hello.txt")]);
    assert_eq!(reply.status, 400);
}

#[test]
fn a_target_of_any_length_gets_414_and_a_large_head_431_both_read_in_full() {
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    for len in [9_000, 20_000, 100_000, 1_000_000] {
        let request = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(len));
        let answer = exchange(server.addr, request.as_bytes(), false);
        assert_eq!(statuses(&answer), ["HTTP/1.1 414"], "target of {len} bytes");
        assert!(answer.contains("connection: close"), "{answer}");
    }
    let reply = curl(&[&url(&server, &format!("/{}", "b".repeat(50_000)))]);
    assert_eq!(reply.status, 414);
    for len in [20_000, 300_000] {
        let request = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(len)
        );
        let answer = exchange(server.addr, request.as_bytes(), false);
        assert_eq!(statuses(&answer), ["HTTP/1.1 431"], "field of {len} bytes");
    }
    // Requests before the oversized one on the same connection are answered first.
    let request = format!(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "c".repeat(70_000)
    );
    let answer = exchange(server.addr, request.as_bytes(), false);
    assert_eq!(statuses(&answer), ["HTTP/1.1 200", "HTTP/1.1 414"]);
}

#[test]
fn half_closed_clients_get_every_answer_in_order() {
    require("nc");
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    let one = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = exchange(server.addr, one, true);
    assert_eq!(statuses(&answer), ["HTTP/1.1 200"]);
    assert!(answer.ends_with("hello world\n"), "{answer}");
    let pipelined = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n\
        HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n\
        GET /missing HTTP/1.1\r\nHost: x\r\n\r\n\
        GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n";
    let answer = exchange(server.addr, pipelined, true);
    assert_eq!(
        statuses(&answer),
        [
            "HTTP/1.1 200",
            "HTTP/1.1 200",
            "HTTP/1.1 404",
            "HTTP/1.1 206"
        ]
    );
    // nc -N shuts its sending side down at the end of its input, as in the README.
    let port = server.addr.port().to_string();
    let (out, err, code) = run_cmd(
        std::process::Command::new("nc").args(["-N", "127.0.0.1", &port]),
        &pipelined[..],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        statuses(&String::from_utf8_lossy(&out)),
        [
            "HTTP/1.1 200",
            "HTTP/1.1 200",
            "HTTP/1.1 404",
            "HTTP/1.1 206"
        ]
    );
}

fn answers_without_content_carry_no_length_and_head_carries_the_gets() {
    let fx = fixture();
    for status in ["204", "304"] {
        let server = Server::start(&["serve", "--port", "0", "--status", status, "--quiet"]);
        for method in ["GET", "HEAD"] {
            let request = format!("{method} / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let answer = exchange(server.addr, request.as_bytes(), false);
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{answer}"
            );
            let lower = answer.to_ascii_lowercase();
            assert!(!lower.contains("content-length"), "{answer}");
            assert!(!lower.contains("transfer-encoding"), "{answer}");
            assert!(answer.ends_with("\r\n\r\n"), "a body after {answer}");
        }
    }
    let server = serve(&fx.root, &[]);
    let get = curl(&[&url(&server, "/hello.txt")]);
    let etag = get.header("etag").unwrap();
    let not_modified = exchange(
        server.addr,
        format!("GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        false,
    );
    assert!(not_modified.starts_with("HTTP/1.1 304"), "{not_modified}");
    assert!(!not_modified.to_ascii_lowercase().contains("content-length"));
    assert!(not_modified.ends_with("\r\n\r\n"), "{not_modified}");
    for path in ["/hello.txt", "/", "/missing", "/sub%20dir", "/style.css"] {
        let get = curl(&["-H", "Accept-Encoding: gzip", &url(&server, path)]);
        let head = curl(&["-I", "-H", "Accept-Encoding: gzip", &url(&server, path)]);
        assert_eq!(get.status, head.status, "{path}");
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string()),
            "HEAD {path}"
        );
    }
}

#[test]
fn methods_expectations_smuggling_and_http_1_0() {
    let fx = fixture();
    let server = serve(&fx.root, &[]);
    let answer = |request: &str| exchange(server.addr, request.as_bytes(), false);
    let options = answer("OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(options.starts_with("HTTP/1.1 204"), "{options}");
    assert!(options.contains("allow: GET, HEAD, OPTIONS"), "{options}");
    let options = curl(&["-X", "OPTIONS", &url(&server, "/hello.txt")]);
    assert_eq!(
        options.header("allow").as_deref(),
        Some("GET, HEAD, OPTIONS")
    );
    for (method, status) in [("TRACE", 405), ("DELETE", 405), ("PUT", 405), ("BREW", 501)] {
        let reply = curl(&["-X", method, &url(&server, "/hello.txt")]);
        assert_eq!(reply.status, status, "{method}");
        if status == 405 {
            assert_eq!(reply.header("allow").as_deref(), Some("GET, HEAD, OPTIONS"));
        }
    }
    let star = answer("GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(star.starts_with("HTTP/1.1 400"), "{star}");
    let expect = curl(&["-H", "Expect: teapot", &url(&server, "/hello.txt")]);
    assert_eq!(expect.status, 417);
    // Both framings: refused, and nothing after it on the connection is served.
    let smuggled = answer(
        "POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(statuses(&smuggled), ["HTTP/1.1 400"], "{smuggled}");
    for malformed in [
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET /hello.txt HTTP/1.1\r\nHost : x\r\n\r\n",
        "GET /hello world.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "GET /hello.txt HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
    ] {
        assert_eq!(
            statuses(&answer(malformed)),
            ["HTTP/1.1 400"],
            "{malformed:?}"
        );
    }
    // HTTP/1.0: closed after the answer unless the client asks for keep-alive.
    let closed = answer("GET /hello.txt HTTP/1.0\r\n\r\n");
    assert!(closed.starts_with("HTTP/1.0 200"), "{closed}");
    let mut stream = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let keep = b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    stream.write_all(keep).unwrap();
    let first = read_responses(&mut stream, 1);
    assert!(
        first[0]
            .0
            .to_ascii_lowercase()
            .contains("connection: keep-alive"),
        "{}",
        first[0].0
    );
    stream.write_all(keep).unwrap();
    assert_eq!(read_responses(&mut stream, 1)[0].1, b"hello world\n");
}

/// A PUT of `len` bytes with `head_extra` header lines, written while the answer is read.
fn early_answer_to_upload(addr: SocketAddr, len: usize, head_extra: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head =
        format!("PUT /up.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n{head_extra}\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let chunk = vec![b'u'; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            if writer.write_all(&chunk[..n]).is_err() {
                return false;
            }
            left -= n;
        }
        true
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(error) => panic!(
                "{error} instead of the answer; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    let _ = sending.join();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn uploads_refused_early_get_their_status_not_a_reset() {
    let fx = fixture();
    let server = serve(&fx.root, &["--upload", "--max-upload", "1KiB"]);
    let answer = early_answer_to_upload(server.addr, 8 << 20, "");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let big = fx.root.parent().unwrap().join("big-upload.bin");
    std::fs::write(&big, vec![b'x'; 8 << 20]).unwrap();
    let reply = curl(&["-T", big.to_str().unwrap(), &url(&server, "/up.bin")]);
    assert_eq!(reply.status, 413);

    let locked = serve(&fx.root, &["--upload", "--auth", "me:pw"]);
    let answer = early_answer_to_upload(locked.addr, 8 << 20, "");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let reply = curl(&["-T", big.to_str().unwrap(), &url(&locked, "/up.bin")]);
    assert_eq!(reply.status, 401);
    // 100 Continue only when the body is going to be read.
    let answer = early_answer_to_upload(locked.addr, 8 << 20, "Expect: 100-continue\r\n");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let open = serve(&fx.root, &["--upload"]);
    let answer = early_answer_to_upload(
        open.addr,
        1000,
        "Expect: 100-continue\r\nConnection: close\r\n",
    );
    assert_eq!(
        statuses(&answer),
        ["HTTP/1.1 100", "HTTP/1.1 201"],
        "{answer}"
    );
}

fn send_follows_the_same_request_rules() {
    require("curl");
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("offered.txt");
    std::fs::write(&file, b"offered bytes\n").unwrap();
    let server = Server::start(&[
        "send",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        file.to_str().unwrap(),
    ]);
    let line = server.stderr_line_with("curl -k");
    let file_url = line
        .split('\'')
        .nth(3)
        .expect("URL in the curl line")
        .to_owned();
    let base = file_url
        .rsplit_once("/f/")
        .expect("a file URL")
        .0
        .to_owned();
    let version = proto().curl_option(true);
    let code = |args: &[&str]| {
        let (out, err, status) = run_cmd(
            std::process::Command::new("curl")
                .arg(version)
                .args([
                    "-ksS",
                    "--max-time",
                    "10",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ])
                .args(args),
            b"",
        );
        assert_eq!(status, Some(0), "curl {args:?}: {err}");
        String::from_utf8_lossy(&out).into_owned()
    };
    assert_eq!(code(&[&file_url]), "200");
    let too_long = format!("{file_url}{}", "x".repeat(100_000));
    // Without Host curl sends no `:authority` either.
    assert_eq!(code(&["-H", "Host:", &file_url]), "400");
    if proto() == Proto::Http1 {
        assert_eq!(code(&["-H", "Host: a b", &file_url]), "400");
        assert_eq!(code(&[&too_long]), "414");
    } else {
        // An invalid Host is a malformed HTTP/2 request (a stream reset, by h2); a header
        // block past the header list limit closes the connection (or gets 431).
        let (out, _, status) = run_cmd(
            std::process::Command::new("curl").args([
                version,
                "-ksS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &too_long,
            ]),
            b"",
        );
        assert!(
            status != Some(0) || out == b"431",
            "an over-long target was answered {}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(code(&["-X", "BREW", &file_url]), "501");
    assert_eq!(code(&["-X", "TRACE", &file_url]), "405");
    assert_eq!(
        code(&["-X", "OPTIONS", "--request-target", "*", &file_url]),
        "204"
    );
    let manifest = format!("{base}/manifest");
    let (get, _, _) = run_cmd(
        std::process::Command::new("curl").args([version, "-ks", &manifest]),
        b"",
    );
    let (head, _, _) = run_cmd(
        std::process::Command::new("curl").args([version, "-ksI", &manifest]),
        b"",
    );
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(
        head.contains(&format!("content-length: {}\r\n", get.len())),
        "HEAD manifest {head}"
    );
    let (done, _, _) = run_cmd(
        std::process::Command::new("curl").args([
            version,
            "-ksi",
            "-X",
            "POST",
            &format!("{base}/done"),
        ]),
        b"",
    );
    let done = String::from_utf8_lossy(&done).to_ascii_lowercase();
    let status_line = proto().status_line().to_ascii_lowercase();
    assert!(done.starts_with(&format!("{status_line}204")), "{done}");
    assert!(!done.contains("content-length"), "{done}");
}

fn added_headers_and_cors_are_on_every_answer() {
    let fx = fixture();
    let server = serve(
        &fx.root,
        &[
            "--header",
            "X-Frame-Options: DENY",
            "-H",
            "Cache-Control: max-age=60",
            "-H",
            "Link: <a>",
            "-H",
            "Link: <b>",
            "--cors",
        ],
    );
    // A file, a listing (whose own Cache-Control is replaced), a 404 and a redirect.
    for (path, status) in [
        ("/hello.txt", 200),
        ("/", 200),
        ("/missing", 404),
        ("/sub%20dir", 301),
    ] {
        let reply = curl(&[&url(&server, path)]);
        assert_eq!(reply.status, status, "{path}");
        assert_eq!(
            reply.header("x-frame-options").as_deref(),
            Some("DENY"),
            "{path}"
        );
        assert_eq!(
            reply.header("cache-control").as_deref(),
            Some("max-age=60"),
            "{path}"
        );
        assert_eq!(
            reply.headers.matches("<a>").count() + reply.headers.matches("<b>").count(),
            2,
            "{path}"
        );
        assert_eq!(
            reply.header("access-control-allow-origin").as_deref(),
            Some("*"),
            "{path}"
        );
    }
    let preflight = [
        "-X",
        "OPTIONS",
        "-H",
        "Origin: http://app.example",
        "-H",
        "Access-Control-Request-Method: GET",
        "-H",
        "Access-Control-Request-Headers: x-custom, content-type",
    ];
    let answer = |server: &Server| {
        let mut args = preflight.to_vec();
        let target = url(server, "/hello.txt");
        args.push(&target);
        curl(&args)
    };
    let reply = answer(&server);
    assert_eq!(reply.status, 204);
    let methods = reply.header("access-control-allow-methods").unwrap();
    assert!(
        methods.contains("GET") && methods.contains("HEAD"),
        "{methods}"
    );
    assert_eq!(
        reply.header("access-control-allow-headers").as_deref(),
        Some("x-custom, content-type")
    );
    assert_eq!(
        reply.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(reply.header("access-control-max-age").is_some());
    // Browsers send preflights without credentials: they are answered before auth.
    let guarded = serve(&fx.root, &["--cors", "--auth", "ann:pw"]);
    assert_eq!(answer(&guarded).status, 204);
    assert_eq!(curl(&[&url(&guarded, "/hello.txt")]).status, 401);
    // Without --cors nothing is added.
    let plain = serve(&fx.root, &[]);
    let reply = answer(&plain);
    assert_eq!(reply.header("access-control-allow-origin"), None);
    assert_eq!(reply.header("access-control-allow-methods"), None);
}

#[test]
fn header_lines_that_cannot_be_added_are_refused_at_start() {
    let fx = fixture();
    let root = fx.root.to_str().unwrap();
    for (line, why) in [
        ("Content-Length: 3", "set by the server"),
        ("no colon", "expected 'Name: value'"),
        ("Bad Name: x", "invalid header name"),
    ] {
        let (_, err, code) = run(&["serve", root, "--port", "0", "-H", line], b"");
        assert_eq!(code, Some(2), "{line}: {err}");
        assert!(err.contains(why), "{line}: {err}");
    }
}

fn spa_answers_paths_that_match_nothing_with_the_root_index() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("index.html"), b"<app></app>\n").unwrap();
    std::fs::create_dir(root.join("assets")).unwrap();
    std::fs::write(root.join("assets/app.js"), b"run()\n").unwrap();
    std::fs::write(root.join(".env"), b"secret\n").unwrap();
    let spa = serve(root, &["--spa"]);
    // As miniserve --spa: every path that would be a 404 gets the index, extension or not.
    for path in ["/users/42", "/deep/link/", "/missing.js", "/.env"] {
        let reply = curl(&[&url(&spa, path)]);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.text(), "<app></app>\n", "{path}");
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
    }
    assert_eq!(curl(&[&url(&spa, "/assets/app.js")]).text(), "run()\n");
    assert!(curl(&[&url(&spa, "/assets/")]).text().contains("app.js"));
    let head = curl(&["-I", &url(&spa, "/route")]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").as_deref(), Some("12"));
    // Without the flag, and with no root index, a 404 stays a 404.
    let plain = serve(root, &[]);
    assert_eq!(curl(&[&url(&plain, "/users/42")]).status, 404);
    std::fs::remove_file(root.join("index.html")).unwrap();
    let bare = serve(root, &["--spa"]);
    assert_eq!(curl(&[&url(&bare, "/users/42")]).status, 404);
}

#[test]
fn unreadable_files_fifos_and_sockets_get_403_without_blocking() {
    require("setpriv");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("ok.txt"), b"ok\n").unwrap();
    std::fs::write(root.join("secret.txt"), b"secret\n").unwrap();
    std::fs::write(root.join("big-secret.bin"), random_bytes(1 << 20, 3)).unwrap();
    std::fs::create_dir(root.join("locked")).unwrap();
    std::fs::write(root.join("locked/inner.txt"), b"inner\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for name in ["secret.txt", "big-secret.bin"] {
        std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o600)).unwrap();
    nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    // The tests run as root, who reads everything: the server runs without the capabilities
    // that let root pass file permissions (as an ordinary user would be).
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--bounding-set=-all", "--inh-caps=-all"])
        .arg(env!("CARGO_BIN_EXE_sockit"))
        .args(["serve", root.to_str().unwrap(), "--port", "0"]);
    let server = Server::start_command(cmd, std::process::Stdio::null());
    assert_eq!(curl(&[&url(&server, "/ok.txt")]).text(), "ok\n");
    for path in [
        "/secret.txt",
        "/big-secret.bin",
        "/locked/inner.txt",
        "/pipe",
        "/sock",
    ] {
        let started = Instant::now();
        let reply = curl(&[&url(&server, path)]);
        assert_eq!(reply.status, 403, "{path}");
        assert!(
            started.elapsed() < WAIT,
            "{path} took {:?}",
            started.elapsed()
        );
    }
    // The server itself, with root's powers, reads the same files (no accident of the fixture).
    let root_server = serve(root, &[]);
    assert_eq!(
        curl(&[&url(&root_server, "/secret.txt")]).text(),
        "secret\n"
    );
    assert_eq!(curl(&[&url(&root_server, "/pipe")]).status, 403);
}

/// File names no request path could name before: bytes that are not UTF-8, a newline, an ESC
/// that would draw on a terminal.
const RAW_NAMES: &[&[u8]] = &[b"bad\xff.bin", b"new\nline.txt", b"esc\x1b[31mred.txt"];

fn names_that_are_not_utf8_are_listed_escaped_and_served_by_their_href() {
    use std::os::unix::ffi::OsStrExt;
    let fx = fixture();
    let os = |name: &[u8]| std::ffi::OsStr::from_bytes(name).to_owned();
    let dir = fx.root.join(os(b"d\xfeir"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(os(b"in\xfe.txt")), b"inside odd dir\n").unwrap();
    for (i, name) in RAW_NAMES.iter().enumerate() {
        std::fs::write(fx.root.join(os(name)), format!("raw {i}\n")).unwrap();
    }
    let server = serve(&fx.root, &["--upload"]);
    let html = curl(&[&url(&server, "/")]).text();
    assert!(
        !html.contains('\x1b') && !html.contains("new\nline"),
        "raw controls: {html}"
    );
    assert!(html.contains(">bad\\xFF.bin</a>"), "{html}");
    assert!(html.contains(">new\\nline.txt</a>"), "{html}");
    assert!(html.contains(">esc\\x1B[31mred.txt</a>"), "{html}");
    assert!(html.contains(">d\\xFEir/</a>"), "{html}");
    let links = hrefs(&html);
    for (i, name) in RAW_NAMES.iter().enumerate() {
        let mut href = String::from("./");
        sockit::http::server::encode_segment(name, &mut href);
        assert!(links.contains(&href), "{href} not in {links:?}");
        let reply = curl(&[&url(&server, &format!("/{}", &href[2..]))]);
        assert_eq!(
            (reply.status, reply.text()),
            (200, format!("raw {i}\n")),
            "{href}"
        );
    }
    // Into the directory whose name is not UTF-8, by the links the pages give.
    assert!(links.contains(&"./d%FEir/".to_owned()), "{links:?}");
    let inner = curl(&[&url(&server, "/d%FEir/")]).text();
    assert!(inner.contains("Index of /d\\xFEir/"), "{inner}");
    assert!(hrefs(&inner).contains(&"./in%FE.txt".to_owned()), "{inner}");
    let file = curl(&[&url(&server, "/d%FEir/in%FE.txt")]);
    assert_eq!(file.text(), "inside odd dir\n");

    // The JSON listing names each file as text and links it exactly.
    let json = curl(&[&url(&server, "/?format=json")]);
    let entries: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    let bad = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["href"] == "bad%FF.bin")
        .unwrap_or_else(|| panic!("bad%FF.bin not in {entries}"));
    assert_eq!(bad["name"], "bad\u{FFFD}.bin");
    assert_eq!(curl(&[&url(&server, "/bad%FF.bin")]).text(), "raw 0\n");

    // An upload to such a name creates exactly that name, served back by the same href.
    let source = fx.root.join("hello.txt");
    let put = curl(&[
        "-T",
        source.to_str().unwrap(),
        &url(&server, "/up%FF%0A.txt"),
    ]);
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(put.header("location").as_deref(), Some("/up%FF%0A.txt"));
    assert_eq!(
        std::fs::read(fx.root.join(os(b"up\xff\n.txt"))).unwrap(),
        b"hello world\n"
    );
    let again = curl(&[
        "-T",
        source.to_str().unwrap(),
        &url(&server, "/up%FF%0A.txt"),
    ]);
    assert_eq!(again.status, 409);
    assert!(
        again.text().contains("up\\xFF\\n.txt exists"),
        "{}",
        again.text()
    );
    assert_eq!(
        curl(&[&url(&server, "/up%FF%0A.txt")]).text(),
        "hello world\n"
    );
}

#[test]
fn binding_every_interface_prints_each_interfaces_url_loopback_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello\n").unwrap();
    let server = Server::start(&[
        "serve",
        dir.path().to_str().unwrap(),
        "--bind",
        "0.0.0.0",
        "--port",
        "0",
    ]);
    assert!(server.addr.ip().is_unspecified(), "{}", server.addr);
    let port = server.addr.port();
    let expected: Vec<std::net::Ipv4Addr> = nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter(|i| i.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
        .collect();
    assert!(!expected.is_empty(), "{expected:?}");
    let first = server.stderr_line_with("open http://");
    assert_eq!(
        first,
        format!("open http://127.0.0.1:{port}/ (lo)"),
        "loopback first"
    );
    let mut seen = vec![first];
    for _ in 1..expected
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
    {
        seen.push(server.stderr_line_with("open http://"));
    }
    for ip in &expected {
        let url = format!("open http://{ip}:{port}/ (");
        assert!(
            seen.iter().any(|l| l.starts_with(&url)),
            "{url} not in {seen:?}"
        );
    }
    // Traffic stays on loopback: the first URL answers.
    let local = format!("http://127.0.0.1:{port}/hello.txt");
    let (body, err, code) = run_cmd(
        std::process::Command::new("curl").args(["-sS", "--max-time", "10", &local]),
        b"",
    );
    assert_eq!((code, body), (Some(0), b"hello\n".to_vec()), "{err}");
}
