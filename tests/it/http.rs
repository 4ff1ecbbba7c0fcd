//! `sockit get/post/http` against real servers: `python3 -m http.server`, an in-test hyper
//! server (chunked, gzip, br, redirects, slow and cut bodies, ranges) and nginx over TLS.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::support::*;

type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body of `parts`, then (once they are flushed) an error that makes hyper abort the
/// connection.
fn cut(parts: Vec<Bytes>) -> Body {
    let stream = futures_util::stream::unfold(parts.into_iter(), |mut parts| async move {
        match parts.next() {
            Some(b) => Some((Ok(Frame::data(b)), parts)),
            None => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((Err(std::io::Error::other("cut short")), parts))
            }
        }
    });
    StreamBody::new(stream).boxed()
}

fn chunked(parts: Vec<Bytes>) -> Body {
    let frames = parts.into_iter().map(|b| Ok(Frame::data(b)));
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

/// An in-process hyper server on 127.0.0.1:0 with test routes; stops when dropped.
struct TestServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

struct State {
    file: Bytes,
    other_origin: Option<SocketAddr>,
}

impl TestServer {
    fn start(file: Bytes, other_origin: Option<SocketAddr>) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test runtime");
        let listener = StdListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("bound address");
        let connections = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(State { file, other_origin });
        let counter = connections.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(route(req, &state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer {
            addr,
            connections,
            _runtime: runtime,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn respond(status: StatusCode, headers: &[(&str, &str)], body: Body) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(body).expect("valid test response")
}

async fn route(req: Request<Incoming>, state: &State) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let ok = StatusCode::OK;
    let text = &[("content-type", "text/plain")][..];
    match path.as_str() {
        "/echo" => {
            let method = req.method().to_string();
            let query = req.uri().query().unwrap_or("").to_owned();
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
                .collect();
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let body = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
            let json = serde_json::json!({
                "method": method, "query": query, "headers": headers, "body": body,
            });
            respond(
                ok,
                &[("content-type", "application/json")],
                full(json.to_string()),
            )
        }
        "/chunked" => respond(
            ok,
            text,
            chunked(vec!["one ".into(), "two ".into(), "three".into()]),
        ),
        "/gzip" | "/deflate" | "/br" => {
            use std::io::Write;
            let plain = b"compressed hello ".repeat(1000);
            let encoded = match path.as_str() {
                "/gzip" => {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    e.write_all(&plain).expect("gzip");
                    e.finish().expect("gzip")
                }
                "/deflate" => {
                    let mut e =
                        flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                    e.write_all(&plain).expect("zlib");
                    e.finish().expect("zlib")
                }
                _ => {
                    let mut out = Vec::new();
                    let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    e.write_all(&plain).expect("br");
                    drop(e);
                    out
                }
            };
            respond(
                ok,
                &[
                    ("content-type", "text/plain"),
                    ("content-encoding", &path[1..]),
                ],
                full(encoded),
            )
        }
        "/see-other" => respond(
            StatusCode::SEE_OTHER,
            &[("location", "/echo?from=303")],
            full("go"),
        ),
        "/temporary" => respond(
            StatusCode::TEMPORARY_REDIRECT,
            &[("location", "/echo")],
            full(""),
        ),
        "/loop" => respond(StatusCode::FOUND, &[("location", "/loop")], full("")),
        "/same-origin" => respond(StatusCode::FOUND, &[("location", "/echo")], full("")),
        "/cross-origin" => {
            let other = state.other_origin.expect("a second server");
            let location = format!("http://{other}/echo");
            respond(StatusCode::FOUND, &[("location", &location)], full(""))
        }
        "/slow" => {
            let stream = futures_util::stream::unfold(0, |n| async move {
                if n == 0 {
                    Some((Ok(Frame::data(Bytes::from_static(b"first "))), 1))
                } else {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    None
                }
            });
            respond(ok, text, StreamBody::new(stream).boxed())
        }
        "/truncated" => respond(
            ok,
            &[("content-length", "1000")],
            cut(vec![Bytes::from(vec![b'x'; 500])]),
        ),
        "/missing" => respond(StatusCode::NOT_FOUND, text, full("no such thing")),
        "/broken" => respond(StatusCode::BAD_GATEWAY, text, full("upstream down")),
        "/named" => respond(
            ok,
            &[(
                "content-disposition",
                "attachment; filename=\"../report.txt\"",
            )],
            full("report body"),
        ),
        "/file" | "/file-cut" | "/file-norange" => serve_file(&req, state, &path),
        _ => respond(StatusCode::NOT_FOUND, text, full("")),
    }
}

/// The test file with `Range`/`If-Range` support; `/file-cut` cuts a full answer at half,
/// `/file-norange` ignores `Range`.
fn serve_file(req: &Request<Incoming>, state: &State, path: &str) -> Response<Body> {
    let file = state.file.clone();
    let len = file.len();
    let lm = &[("last-modified", LAST_MODIFIED), ("accept-ranges", "bytes")];
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<usize>().ok());
    let if_range_ok = req
        .headers()
        .get("if-range")
        .is_none_or(|v| v == LAST_MODIFIED);
    match range {
        Some(start) if path != "/file-norange" && if_range_ok => {
            if start >= len {
                let cr = format!("bytes */{len}");
                return respond(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    &[("content-range", &cr)],
                    full(""),
                );
            }
            let cr = format!("bytes {start}-{}/{len}", len - 1);
            respond(
                StatusCode::PARTIAL_CONTENT,
                &[("content-range", &cr), ("last-modified", LAST_MODIFIED)],
                full(file.slice(start..)),
            )
        }
        _ if path == "/file-cut" => {
            let cl = len.to_string();
            respond(
                StatusCode::OK,
                &[("content-length", &cl), ("last-modified", LAST_MODIFIED)],
                cut(vec![file.slice(..len / 2)]),
            )
        }
        _ => respond(StatusCode::OK, lm, full(file)),
    }
}

fn stdout_json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

#[test]
fn chunked_and_compressed_bodies_are_decoded() {
    let server = TestServer::start(Bytes::new(), None);
    let (out, err, code) = run(&["get", &server.url("/chunked")], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"one two three");
    for path in ["/gzip", "/deflate", "/br"] {
        let (out, err, code) = run(&["get", &server.url(path)], b"");
        assert_eq!(code, Some(0), "{path}: {err}");
        assert!(out == b"compressed hello ".repeat(1000), "{path}");
    }
}

#[test]
fn items_become_json_query_and_headers() {
    let server = TestServer::start(Bytes::new(), None);
    let (out, err, code) = run(
        &[
            "post",
            &server.url("/echo"),
            "name=Ada",
            "age:=36",
            "q==a b",
            "X-Api-Key:secret",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let echo = stdout_json(&out);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["query"], "q=a+b");
    assert_eq!(echo["body"], r#"{"name":"Ada","age":36}"#);
    assert_eq!(echo["headers"]["content-type"], "application/json");
    assert_eq!(echo["headers"]["x-api-key"], "secret");

    let (out, _, _) = run(&["post", &server.url("/echo"), "--form", "a=1 2"], b"");
    let echo = stdout_json(&out);
    assert_eq!(echo["body"], "a=1+2");

    // A pipe with data is the body; an empty pipe is no body.
    let (out, _, _) = run(&["http", &server.url("/echo")], b"piped");
    let echo = stdout_json(&out);
    assert_eq!(
        (echo["method"].as_str(), echo["body"].as_str()),
        (Some("POST"), Some("piped"))
    );
    let (out, _, _) = run(&["http", &server.url("/echo")], b"");
    assert_eq!(stdout_json(&out)["method"], "GET");
    // `sockit get` leaves stdin alone; `@-` reads it on purpose.
    let (out, _, _) = run(&["get", &server.url("/echo")], b"not mine");
    assert_eq!(stdout_json(&out)["body"], "");
    let (out, _, _) = run(&["http", "PUT", &server.url("/echo"), "@-"], b"mine");
    let echo = stdout_json(&out);
    assert_eq!(
        (echo["method"].as_str(), echo["body"].as_str()),
        (Some("PUT"), Some("mine"))
    );
}

#[test]
fn redirects_follow_the_method_and_origin_rules() {
    let other = TestServer::start(Bytes::new(), None);
    let server = TestServer::start(Bytes::new(), Some(other.addr));

    let (out, err, code) = run(&["post", &server.url("/see-other"), "a=1", "--follow"], b"");
    assert_eq!(code, Some(0), "{err}");
    let echo = stdout_json(&out);
    assert_eq!(
        (echo["method"].as_str(), echo["body"].as_str()),
        (Some("GET"), Some(""))
    );
    assert_eq!(echo["query"], "from=303");

    let (out, _, _) = run(&["post", &server.url("/temporary"), "a=1", "-F"], b"");
    let echo = stdout_json(&out);
    assert_eq!(
        (echo["method"].as_str(), echo["body"].as_str()),
        (Some("POST"), Some(r#"{"a":"1"}"#))
    );

    // Same origin: credentials kept, and the kept-alive connection serves both requests.
    let before = server.connections.load(Ordering::SeqCst);
    let (out, _, _) = run(
        &[
            "get",
            &server.url("/same-origin"),
            "-F",
            "-u",
            "ada:pw",
            "Cookie:k=v",
        ],
        b"",
    );
    let echo = stdout_json(&out);
    assert!(echo["headers"]["authorization"].is_string());
    assert_eq!(echo["headers"]["cookie"], "k=v");
    assert_eq!(server.connections.load(Ordering::SeqCst) - before, 1);

    // Cross origin: credentials and cookies dropped.
    let (out, err, code) = run(
        &[
            "get",
            &server.url("/cross-origin"),
            "-F",
            "-u",
            "ada:pw",
            "Cookie:k=v",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let echo = stdout_json(&out);
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert!(echo["headers"].get("cookie").is_none(), "{echo}");

    let (_, err, code) = run(
        &["get", &server.url("/loop"), "-F", "--max-redirects", "3"],
        b"",
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("too many redirects"), "{err}");

    // Without --follow, --check-status exits 3 for a redirect.
    let (_, _, code) = run(&["get", &server.url("/loop"), "--check-status"], b"");
    assert_eq!(code, Some(3));
}

#[test]
fn check_status_maps_classes_to_exit_codes() {
    let server = TestServer::start(Bytes::new(), None);
    let (out, _, code) = run(&["get", &server.url("/missing"), "--check-status"], b"");
    assert_eq!((code, out.as_slice()), (Some(4), &b"no such thing"[..]));
    let (_, _, code) = run(&["get", &server.url("/broken"), "--check-status"], b"");
    assert_eq!(code, Some(5));
    let (_, _, code) = run(&["get", &server.url("/broken")], b"");
    assert_eq!(code, Some(0));
}

#[test]
fn heads_trace_and_meta_are_shown_on_request() {
    let server = TestServer::start(Bytes::new(), None);
    let (out, _, code) = run(&["get", &server.url("/chunked"), "-i"], b"");
    assert_eq!(code, Some(0));
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK\n"), "{text}");
    assert!(text.contains("Transfer-Encoding: chunked\n"), "{text}");
    assert!(text.ends_with("\n\none two three"), "{text}");

    let (out, _, _) = run(&["get", &server.url("/echo"), "-v", "x-MiXeD:1"], b"");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("GET /echo HTTP/1.1\nHost: 127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("\nx-MiXeD: 1\n"), "{text}");

    let (_, err, _) = run(
        &["get", &server.url("/echo"), "--trace", "-u", "ada:pw"],
        b"",
    );
    let wire = trace_text(&err);
    // The echo server sends the header back in its body; look at what was sent.
    let wire = wire.split("HTTP/1.1 200").next().unwrap_or_default();
    assert!(wire.contains("..Authorization: ***** ********.."), "{wire}");
    assert!(
        !wire.contains("YWRhOnB3"),
        "the password leaked into the trace: {wire}"
    );
    let (_, err, _) = run(
        &[
            "get",
            &server.url("/echo"),
            "--trace",
            "--trace-secrets",
            "-u",
            "ada:pw",
        ],
        b"",
    );
    assert!(
        trace_text(&err).contains("Authorization: Basic YWRhOnB3"),
        "{err}"
    );

    let (_, err, _) = run(&["get", &server.url("/chunked"), "--json-meta"], b"");
    let meta: serde_json::Value = serde_json::from_str(err.trim()).expect("one JSON line");
    assert_eq!(meta["status"], 200);
    assert_eq!(meta["body_bytes"], 13);
    assert!(meta["timings_ms"]["first_byte"].is_number());
}

#[test]
fn slow_and_cut_bodies_fail_with_their_exit_codes() {
    let server = TestServer::start(Bytes::new(), None);
    let (out, err, code) = run(&["get", &server.url("/slow"), "--timeout", "300ms"], b"");
    assert_eq!(code, Some(28), "{err}");
    assert_eq!(out, b"first ");
    let (_, err, code) = run(&["get", &server.url("/truncated")], b"");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("error: reading the response body"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The printable column of a hexdump trace, rows joined: the bytes as text.
fn trace_text(trace: &str) -> String {
    trace
        .lines()
        .filter(|l| l.starts_with("  0"))
        .filter_map(|l| {
            let start = l.find('|')?;
            Some(&l[start + 1..l.len() - 1])
        })
        .collect()
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn interrupted_download_resumes_to_the_exact_bytes() {
    let data = Bytes::from(random_bytes(1 << 20, 7));
    let server = TestServer::start(data.clone(), None);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("f.bin");
    let file_arg = file.to_str().expect("utf-8 path");

    let (_, err, code) = run(&["get", &server.url("/file-cut"), "-o", file_arg], b"");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("kept"), "{err}");
    assert_eq!(dir_entries(dir.path()), ["f.bin.part"]);

    let (_, err, code) = run(
        &["get", &server.url("/file-cut"), "-o", file_arg, "-c"],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(dir_entries(dir.path()), ["f.bin"]);
    assert!(
        std::fs::read(&file).expect("downloaded") == data,
        "bytes differ"
    );

    // A complete .part gets 416 and is simply renamed.
    std::fs::rename(&file, dir.path().join("f.bin.part")).expect("rename");
    let (_, err, code) = run(&["get", &server.url("/file"), "-o", file_arg, "-c"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(std::fs::read(&file).expect("downloaded") == data);

    // A server that ignores Range answers 200: start over, still exact.
    std::fs::write(dir.path().join("f.bin.part"), &data[..1000]).expect("part");
    std::fs::remove_file(&file).expect("remove");
    let (_, err, code) = run(
        &["get", &server.url("/file-norange"), "-o", file_arg, "-c"],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(std::fs::read(&file).expect("downloaded") == data);
}

#[test]
fn downloads_into_a_fifo_write_in_place_and_never_replace_it() {
    use std::os::unix::fs::FileTypeExt;
    require("mkfifo");
    let data = Bytes::from(random_bytes(1 << 20, 11));
    let server = TestServer::start(data.clone(), None);
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).expect("read the fifo"))
    };
    let fifo_arg = fifo.to_str().expect("utf-8 path");
    let (_, err, code) = run(&["get", &server.url("/file"), "-o", fifo_arg], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(reader.join().expect("reader") == data, "bytes differ");
    let kind = std::fs::symlink_metadata(&fifo).expect("fifo").file_type();
    assert!(kind.is_fifo(), "the fifo was replaced");
    assert_eq!(dir_entries(dir.path()), ["pipe"]);

    // The library's download does the same.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).expect("read the fifo"))
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let done = runtime.block_on(async {
        let client = sockit::http::Client::default();
        let request = client.get(&server.url("/file")).build().expect("request");
        let stop = tokio_util::sync::CancellationToken::new();
        let mut on_progress = |_, _: &sockit::http::Response| {};
        let download = sockit::http::download::download(
            &client,
            request,
            Some(&fifo),
            true,
            &stop,
            &mut on_progress,
        );
        tokio::time::timeout(WAIT, download).await
    });
    let done = done.expect("in time").expect("download");
    assert_eq!(done.bytes, data.len() as u64);
    assert!(reader.join().expect("reader") == data, "bytes differ");
    let kind = std::fs::symlink_metadata(&fifo).expect("fifo").file_type();
    assert!(kind.is_fifo(), "the library replaced the fifo");
    assert_eq!(dir_entries(dir.path()), ["pipe"]);
}

#[test]
fn download_names_come_from_the_server_and_are_sanitised() {
    let server = TestServer::start(Bytes::new(), None);
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, err, code) = run_cmd(
        sockit()
            .current_dir(dir.path())
            .args(["get", &server.url("/named"), "--download"]),
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(dir_entries(dir.path()), ["report.txt"]);
    let (_, _, code) = run_cmd(
        sockit()
            .current_dir(dir.path())
            .args(["get", &server.url("/named"), "-d"]),
        b"",
    );
    assert_eq!(code, Some(0));
    assert_eq!(dir_entries(dir.path()), ["report.txt", "report.txt-1"]);
    // An error status writes nothing.
    let (_, _, code) = run_cmd(
        sockit()
            .current_dir(dir.path())
            .args(["get", &server.url("/missing"), "-o", "x"]),
        b"",
    );
    assert_eq!(code, Some(4));
    assert_eq!(dir_entries(dir.path()), ["report.txt", "report.txt-1"]);
}

#[test]
fn bad_input_gets_one_line_and_its_exit_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let o = out.to_str().expect("utf-8 path");
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let refused = StdListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}/", refused.local_addr().expect("addr"));
    drop(refused);
    let cases: &[(&[&str], i32, &str)] = &[
        (&["get", "http://[::1/"], 2, "invalid URL"),
        (&["get", "gopher://x/"], 2, "unsupported URL scheme"),
        (&["get", ":1/", "X-A:1\r\nX-B: 2"], 2, "header injection"),
        (&["post", ":1/", "n:={"], 2, "invalid JSON"),
        (&["get", "12:80/"], 2, "digits only"),
        (
            &["post", ":1/", "f@/no/such/file"],
            1,
            "cannot read /no/such/file",
        ),
        (
            &["get", "http://no-such-host.invalid/", "-o", o],
            6,
            "could not resolve",
        ),
        (&["get", &closed, "-o", o], 7, "connection refused"),
        // Checked before connecting: the refused port is never reached.
        (
            &["get", &closed, "-o", "/no/such/dir/f"],
            23,
            "its directory does not exist",
        ),
        (&["get", &closed, "-o", dir_arg], 23, "it is a directory"),
    ];
    for (args, want, needle) in cases {
        let (_, err, code) = run(args, b"");
        assert_eq!(code, Some(*want), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    assert!(dir_entries(dir.path()).is_empty());
}

/// `python3 -m http.server` in a temp dir; killed when dropped.
struct PythonServer {
    child: Child,
    port: u16,
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_python(dir: &Path) -> PythonServer {
    require("python3");
    let mut child = Command::new("python3")
        .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn python3");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(WAIT).expect("python announces its port");
    // "Serving HTTP on 127.0.0.1 port 41235 (http://127.0.0.1:41235/) ..."
    let port = line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected python line {line:?}"));
    PythonServer { child, port }
}

#[test]
fn python_http_server_downloads_are_byte_exact() {
    let www = tempfile::tempdir().expect("temp dir");
    let small = random_bytes(1 << 20, 1);
    // 100 distinct MiB blocks (random data in a debug build is slow to make).
    let block = random_bytes(1 << 20, 2);
    let mut big = Vec::with_capacity(100 << 20);
    for i in 0..100u64 {
        big.extend_from_slice(&i.to_le_bytes());
        big.extend_from_slice(&block[8..]);
    }
    std::fs::write(www.path().join("small.bin"), &small).expect("write");
    std::fs::write(www.path().join("big.bin"), &big).expect("write");
    std::fs::write(www.path().join("data.json"), br#"{"k": [1, 2]}"#).expect("write");
    let server = start_python(www.path());
    let dest = tempfile::tempdir().expect("temp dir");
    for (name, data) in [("small.bin", &small), ("big.bin", &big)] {
        let out = dest.path().join(name);
        let url = format!("http://127.0.0.1:{}/{name}", server.port);
        let (_, err, code) = run(&["get", &url, "-o", out.to_str().expect("utf-8")], b"");
        assert_eq!(code, Some(0), "{name}: {err}");
        assert!(
            std::fs::read(&out).expect("file") == *data,
            "{name} differs"
        );
    }
    // HTTP/1.0, close-delimited: to stdout, raw because stdout is not a terminal.
    let (out, err, code) = run(&["get", &format!(":{}/data.json", server.port)], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, br#"{"k": [1, 2]}"#);
}

#[test]
fn nginx_over_tls_with_pin_ca_and_name_checks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).expect("www");
    let data = random_bytes(1 << 20, 3);
    std::fs::write(www.join("f.bin"), &data).expect("write");
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert: PathBuf = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).expect("cert");
    std::fs::write(&key, generated.key_pair.serialize_pem()).expect("key");
    let pin = sockit::net::tls::Fingerprint::of(generated.cert.der()).to_string();
    let nginx = start_nginx(dir.path(), &www, "ssl", &tls_directives(&cert, &key));
    let by_ip = format!("https://127.0.0.1:{}/f.bin", nginx.port);
    let by_name = format!("https://localhost:{}/f.bin", nginx.port);
    let out = dir.path().join("out.bin");
    let o = out.to_str().expect("utf-8");
    let ca = cert.to_str().expect("utf-8");

    let (_, err, code) = run(&["get", &by_ip, "--pin", &pin, "-o", o], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        std::fs::read(&out).expect("file") == data,
        "pinned download differs"
    );

    let (got, err, code) = run(&["get", &by_name, "--ca", ca], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(got == data);
    let (_, _, code) = run(&["get", &by_ip, "-k", "-o", "/dev/null"], b"");
    assert_eq!(code, Some(0));
    // TLS options mean https:// when no scheme is given.
    let shorthand = format!(":{}/f.bin", nginx.port);
    let (got, err, code) = run(&["get", &shorthand, "--pin", &pin], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(got == data, "pinned shorthand download differs");

    let wrong_pin = format!("sha256:{}", "00".repeat(32));
    for args in [
        vec!["get", by_ip.as_str(), "--ca", ca], // the certificate names localhost only
        vec!["get", by_name.as_str()],           // unknown issuer
        vec!["get", by_ip.as_str(), "--pin", &wrong_pin],
    ] {
        let (_, err, code) = run(&args, b"");
        assert_eq!(code, Some(35), "{args:?}: {err}");
        assert!(err.starts_with("error: TLS handshake"), "{err}");
        // One error line; a hint may follow it.
        let errors = err.lines().filter(|l| !l.starts_with("hint: ")).count();
        assert_eq!(errors, 1, "{err}");
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
        .block_on(async { tokio::time::timeout(WAIT, future).await.expect("in time") })
}

#[test]
fn library_client_reuses_connections_and_streams_bodies() {
    use sockit::http::{Client, ClientConfig};
    let data = Bytes::from(random_bytes(300_000, 9));
    let server = TestServer::start(data.clone(), None);
    block_on(async {
        let client = Client::new(ClientConfig::default());
        let mut response = client
            .get(&server.url("/file"))
            .send()
            .await
            .expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.content_length(), Some(data.len() as u64));
        let mut got = Vec::new();
        while let Some(chunk) = response.chunk().await.expect("chunk") {
            got.extend_from_slice(&chunk);
        }
        assert!(got == data);
        let echo: serde_json::Value = client
            .post(&server.url("/echo"))
            .json(&serde_json::json!({"n": 1}))
            .send()
            .await
            .expect("response")
            .json()
            .await
            .expect("json");
        assert_eq!(echo["body"], r#"{"n":1}"#);
        let text = sockit::http::get(&server.url("/gzip"))
            .await
            .expect("response")
            .text()
            .await
            .expect("text");
        assert!(text.starts_with("compressed hello compressed"));
    });
    // Two requests on one client, one connection; the plain `get` opened its own.
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_kept_alive_connection_closed_by_the_server_is_replaced() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            // Each connection answers one request, says nothing of closing, and closes.
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
        });
        let client = sockit::http::Client::default();
        for _ in 0..3 {
            let text = client
                .get(&url)
                .send()
                .await
                .expect("response")
                .text()
                .await
                .expect("body");
            assert_eq!(text, "ok");
        }
    });
}

#[test]
fn an_interrupted_download_keeps_only_the_part_file() {
    let server = TestServer::start(Bytes::new(), None);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("slow.txt");
    let mut child = sockit()
        .args(["get", &server.url("/slow"), "-o"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sockit");
    let part = dir.path().join("slow.txt.part");
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < 6 {
        assert!(std::time::Instant::now() < deadline, "no .part with data");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = wait_timeout(&mut child, WAIT).expect("sockit stops in time");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(dir_entries(dir.path()), ["slow.txt.part"]);
    assert_eq!(std::fs::read(&part).expect("part"), b"first ");
}

/// A hand-written HTTP peer on 127.0.0.1:0: `handle` runs for each of the first `conns`
/// connections, in a thread (the lessons' servers, and the odd ones real clients meet).
fn raw_server(conns: usize, handle: fn(TcpStream)) -> String {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_read_timeout(Some(WAIT));
            handle(stream);
        }
    });
    format!("http://{addr}/")
}

/// Reads a request head (up to the empty line), bounded.
fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

#[test]
fn servers_that_answer_before_reading_the_request_are_understood() {
    use std::io::Write;
    // The lessons' server: the answer goes out on accept, the request is never read.
    // It ends with a reset or a close, whichever the timing gives: both end the body.
    let lesson = raw_server(10, |mut s| {
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello world");
    });
    for _ in 0..10 {
        let (out, err, code) = run(&["get", &lesson], b"");
        assert_eq!(
            (code, out.as_slice()),
            (Some(0), &b"hello world"[..]),
            "{err}"
        );
    }
    // Answers first, then reads the request.
    let answer_then_read = raw_server(1, |mut s| {
        let _ =
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfirst");
        read_head(&mut s);
    });
    let (out, err, code) = run(&["get", &answer_then_read], b"");
    assert_eq!((code, out.as_slice()), (Some(0), &b"first"[..]), "{err}");
    // More bytes than Content-Length: the declared bytes are the body, and -v says so.
    let too_long = raw_server(1, |mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world");
    });
    let (out, err, code) = run(&["get", &too_long, "-v"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.ends_with(b"\n\nhello"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        err.contains("more bytes than the response declared"),
        "{err}"
    );
    // No Content-Length: the body ends when the server closes, and is complete.
    let close_delimited = raw_server(1, |mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(&random_bytes(300_000, 9));
    });
    let (out, err, code) = run(&["get", &close_delimited], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out == random_bytes(300_000, 9),
        "close-delimited body differs"
    );
    // An informational 100 before the answer, and a chunked body with trailers.
    let continue_then_chunked = raw_server(1, |mut s| {
        read_head(&mut s);
        let _ = s.write_all(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\none\r\n4\r\n two\r\n0\r\nX-Sum: 7\r\n\r\n",
        );
    });
    let (out, err, code) = run(&["get", &continue_then_chunked], b"");
    assert_eq!((code, out.as_slice()), (Some(0), &b"one two"[..]), "{err}");
}

#[test]
fn an_upload_refused_early_reports_the_status_every_time() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let big = dir.path().join("big.bin");
    std::fs::write(&big, random_bytes(16 << 20, 4)).expect("write");
    let body = format!("@{}", big.display());
    // Reads the head only, answers 413 (or 401 every other time) and closes: the rest of
    // the upload meets a closed socket (broken pipe or reset).
    let refuse = raw_server(10, |mut s| {
        read_head(&mut s);
        static SERVED: AtomicUsize = AtomicUsize::new(0);
        let status = if SERVED.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
            "413 Content Too Large"
        } else {
            "401 Unauthorized"
        };
        let _ = s.write_all(
            format!("HTTP/1.1 {status}\r\nContent-Length: 8\r\nConnection: close\r\n\r\nrefused\n")
                .as_bytes(),
        );
    });
    for round in 0..10 {
        let (out, err, code) = run(
            &[
                "http",
                "PUT",
                &refuse,
                &body,
                "--check-status",
                "Expect:100-continue",
            ],
            b"",
        );
        assert_eq!(code, Some(4), "round {round}: {err}");
        assert_eq!(out, b"refused\n", "round {round}: {err}");
        assert!(err.contains("server answered 4"), "round {round}: {err}");
    }
}

#[test]
fn our_output_errors_have_exit_23_and_a_closed_pipe_is_a_normal_end() {
    use std::io::Read;
    let server = TestServer::start(random_bytes(4 << 20, 5).into(), None);
    let url = server.url("/file");
    let exe = env!("CARGO_BIN_EXE_sockit");
    // stdout closed at launch (`>&-`), and stdout that is full.
    for (redirect, needle) in [
        (">&-", "Bad file descriptor"),
        ("> /dev/full", "No space left"),
    ] {
        for args in [
            format!("\"$0\" get {url} {redirect}"),
            format!("\"$0\" completions bash {redirect}"),
            format!("\"$0\" get --help {redirect}"),
            format!("\"$0\" --version {redirect}"),
        ] {
            let (_, err, code) = run_cmd(Command::new("sh").args(["-c", &args, exe]), b"");
            assert_eq!(code, Some(23), "{args}: {err}");
            assert!(
                err.starts_with("error: writing ") && err.contains(needle),
                "{args}: {err}"
            );
            assert!(!err.contains("panicked"), "{args}: {err}");
        }
    }
    // `| head -c 1`: the reader leaves early; that is not an error.
    let mut child = sockit()
        .args(["get", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("first byte");
    drop(stdout);
    let status = wait_timeout(&mut child, WAIT).expect("exits");
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn body_bytes_reach_a_pipe_as_they_arrive() {
    use std::io::{Read, Write};
    // A line without its newline, then a pause: the bytes must not wait for the newline.
    let url = raw_server(1, |mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: 1");
        std::thread::sleep(Duration::from_millis(1500));
        let _ = s.write_all(b"\n");
    });
    let started = std::time::Instant::now();
    let mut child = sockit()
        .args(["get", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 7];
    stdout.read_exact(&mut first).expect("first bytes");
    let first_at = started.elapsed();
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("rest");
    let end_at = started.elapsed();
    let status = wait_timeout(&mut child, WAIT).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert_eq!((&first[..], rest.as_slice()), (&b"data: 1"[..], &b"\n"[..]));
    assert!(
        end_at - first_at > Duration::from_millis(1000),
        "the first bytes came at {first_at:?}, only just before the end at {end_at:?}"
    );
    let _ = std::io::stdout().flush();
}

#[test]
fn bare_ports_and_shorthand_urls_mean_localhost() {
    let server = TestServer::start(Bytes::new(), None);
    let port = server
        .url("/")
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    for target in [
        port.clone(),
        format!(":{port}"),
        format!("{port}/echo?next=http://x/"),
    ] {
        let (out, err, code) = run(&["get", &target], b"");
        assert_eq!(code, Some(0), "{target}: {err}");
        if target.contains("echo") {
            assert_eq!(stdout_json(&out)["query"], "next=http://x/", "{target}");
        }
    }
    // Credentials in the URL are Basic auth, masked in -v and absent from --json-meta.
    let target = format!("ada:p%40ss@localhost:{port}/echo");
    let (out, err, code) = run(&["get", &target, "-v", "--json-meta"], b"");
    assert_eq!(code, Some(0), "{err}");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("\nAuthorization: ***** ************\n"),
        "{text}"
    );
    assert!(
        text.contains("\"authorization\":\"Basic YWRhOnBAc3M=\""),
        "{text}"
    );
    assert!(
        !err.contains("ada") && err.contains("\"url\":\"http://localhost:"),
        "{err}"
    );
}

/// Runs `sockit ARGS…` with stdout on a terminal (`script` gives it a pty); returns what the
/// terminal showed and the exit code.
fn run_on_terminal(args: &[&str]) -> (Vec<u8>, String, Option<i32>) {
    require("script");
    let command = std::iter::once(env!("CARGO_BIN_EXE_sockit"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    run_cmd(
        Command::new("script").args(["-qec", &command, "/dev/null"]),
        b"",
    )
}

#[test]
fn a_terminal_gets_the_whole_text_body_and_no_binary_dump() {
    // 20 MiB of text: more than the 16 MiB once held for pretty-printing; nothing is cut.
    let big = raw_server(1, |mut s| {
        use std::io::Write;
        read_head(&mut s);
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        );
        let line = [b'a'; 1023];
        for _ in 0..(20 << 10) {
            let _ = s.write_all(&line);
            let _ = s.write_all(b"\n");
        }
    });
    let (shown, err, code) = run_on_terminal(&["get", &big]);
    assert_eq!(code, Some(0), "{err}");
    let letters = shown.iter().filter(|&&b| b == b'a').count();
    assert_eq!(letters, 1023 * (20 << 10));

    let zeros = raw_server(1, |mut s| {
        use std::io::Write;
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab\0\0cd");
    });
    let (shown, _, code) = run_on_terminal(&["get", &zeros]);
    let text = String::from_utf8_lossy(&shown);
    assert_eq!(code, Some(23), "{text}");
    assert!(
        text.contains("binary body not shown on a terminal"),
        "{text}"
    );
    assert!(!text.contains("ab"), "{text}");
}
