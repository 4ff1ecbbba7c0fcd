//! The client's HTTP/2 against nginx: ALPN `h2` over TLS (pinned self-signed certificate),
//! cleartext prior knowledge (`--http2`), `--http1.1`, and one shared connection for many
//! concurrent requests from the library's `Client`.

use std::collections::HashSet;
use std::path::Path;

use crate::support::*;

/// A directory with a 10 MiB file and a text file, and a self-signed certificate for it.
struct Site {
    dir: tempfile::TempDir,
    big: Vec<u8>,
    text: String,
    pin: sockit::net::tls::Fingerprint,
}

impl Site {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let www = dir.path().join("www");
        std::fs::create_dir(&www).expect("www");
        // Ten distinct MiB blocks (random data in a debug build is slow to make).
        let block = random_bytes(1 << 20, 21);
        let mut big = Vec::with_capacity(10 << 20);
        for i in 0..10u64 {
            big.extend_from_slice(&i.to_le_bytes());
            big.extend_from_slice(&block[8..]);
        }
        std::fs::write(www.join("big.bin"), &big).expect("write");
        let text = "all work and no play makes jack a dull boy\n".repeat(500);
        std::fs::write(www.join("t.txt"), &text).expect("write");
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        std::fs::write(dir.path().join("cert.pem"), generated.cert.pem()).expect("cert");
        std::fs::write(
            dir.path().join("key.pem"),
            generated.key_pair.serialize_pem(),
        )
        .expect("key");
        let pin = sockit::net::tls::Fingerprint::of(generated.cert.der());
        Self {
            dir,
            big,
            text,
            pin,
        }
    }

    fn nginx(&self, listen: &str) -> Nginx {
        let d = self.dir.path();
        let server = format!(
            "{} types {{ application/octet-stream bin; text/plain txt; }}
    gzip on; gzip_types text/plain; gzip_min_length 1;
    location = /old {{ return 302 /t.txt; }}",
            tls_directives(&d.join("cert.pem"), &d.join("key.pem"))
        );
        let run_dir = d.join(listen.replace(' ', "-"));
        std::fs::create_dir_all(&run_dir).expect("nginx dir");
        start_nginx(&run_dir, &d.join("www"), listen, &server)
    }
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn https_negotiates_http2_by_alpn_and_downloads_byte_exact() {
    let site = Site::new();
    let nginx = site.nginx("ssl http2");
    let pin = site.pin.to_string();
    let base = format!("https://127.0.0.1:{}", nginx.port);
    let out = site.dir.path().join("out.bin");

    let url = format!("{base}/big.bin");
    let (_, err, code) = run(&["get", &url, "--pin", &pin, "-v", "-o", utf8(&out)], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("GET /big.bin HTTP/2\n"), "{err}");
    assert!(err.contains("HTTP/2 200 OK\n"), "{err}");
    assert!(
        std::fs::read(&out).expect("file") == site.big,
        "bytes differ"
    );

    // A Range request.
    let (body, err, code) = run(
        &["get", &url, "Range:bytes=100-199", "--pin", &pin, "-i"],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let head_end = body
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("head then body");
    let head = String::from_utf8_lossy(&body[..head_end]);
    assert!(head.starts_with("HTTP/2 206 Partial Content\n"), "{head}");
    assert!(body[head_end + 2..] == site.big[100..200], "range differs");

    // gzip, decoded.
    let (out, err, code) = run(&["get", &format!("{base}/t.txt"), "--pin", &pin, "-v"], b"");
    assert_eq!(code, Some(0), "{err}");
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("HTTP/2 200 OK\n"), "{out}");
    assert!(out.contains("Content-Encoding: gzip\n"), "{out}");
    assert!(out.ends_with(&format!("\n\n{}", site.text)), "{out}");

    // --http1.1 against the same server.
    let (out, err, code) = run(
        &[
            "get",
            &format!("{base}/t.txt"),
            "--pin",
            &pin,
            "-v",
            "--http1.1",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("GET /t.txt HTTP/1.1\n"), "{out}");
    assert!(out.contains("HTTP/1.1 200 OK\n"), "{out}");
    assert!(!out.contains("HTTP/2"), "{out}");
    assert!(out.ends_with(&format!("\n\n{}", site.text)), "{out}");

    // A redirect to the same origin goes over the same HTTP/2 connection.
    let (out, err, code) = run(
        &[
            "get",
            &format!("{base}/old"),
            "--pin",
            &pin,
            "-i",
            "--follow",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/2 302 Found\n"), "{out}");
    assert!(out.contains("\nHTTP/2 200 OK\n"), "{out}");
    assert!(out.ends_with(&format!("\n\n{}", site.text)), "{out}");

    let deadline = std::time::Instant::now() + WAIT;
    let mut log = nginx.access_log();
    while !log.contains("GET /old") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        log = nginx.access_log();
    }
    let lines: Vec<&str> = log.lines().collect();
    let old = lines
        .iter()
        .position(|l| l.contains(" GET /old "))
        .expect("/old logged");
    let connection = |line: &str| line.split_whitespace().next().map(str::to_owned);
    let followed = lines[old + 1..]
        .iter()
        .find(|l| l.contains(" GET /t.txt "))
        .expect("the redirect was followed");
    assert_eq!(connection(lines[old]), connection(followed), "{log}");
    assert!(log.contains("HTTP/2.0 GET /big.bin"), "{log}");
    assert!(log.contains("HTTP/1.1 GET /t.txt"), "{log}");
}

#[test]
fn http2_only_refuses_a_server_without_h2_and_http1_still_works() {
    let site = Site::new();
    let nginx = site.nginx("ssl");
    let pin = site.pin.to_string();
    let url = format!("https://127.0.0.1:{}/t.txt", nginx.port);
    let (out, err, code) = run(&["get", &url, "--pin", &pin, "-i"], b"");
    assert_eq!(code, Some(0), "{err}");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200 OK\n"), "{out}");
    assert!(out.ends_with(&format!("\n\n{}", site.text)), "{out}");
    let (_, err, code) = run(&["get", &url, "--pin", &pin, "--http2"], b"");
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("does not speak HTTP/2"), "{err}");

    // Concurrent requests to a server that picks HTTP/1.1 all get through, on connections
    // of their own.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = sockit::http::Client::new(sockit::http::ClientConfig {
        verify: sockit::net::tls::Verify::Pin(site.pin),
        ..Default::default()
    });
    let versions = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let (client, url) = (client.clone(), url.clone());
            tasks.spawn(async move {
                let response = client.get(&url).send().await.expect("response");
                let version = response.version();
                assert_eq!(response.text().await.expect("body").len(), 21500);
                version
            });
        }
        let mut versions = Vec::new();
        let all = async {
            while let Some(version) = tasks.join_next().await {
                versions.push(version.expect("task"));
            }
        };
        tokio::time::timeout(WAIT, all).await.expect("in time");
        versions
    });
    assert_eq!(versions, [http::Version::HTTP_11; 5]);
}

#[test]
fn cleartext_http2_with_prior_knowledge_and_an_exact_frame_trace() {
    let site = Site::new();
    let nginx = site.nginx("http2");
    let url = format!("http://127.0.0.1:{}/big.bin", nginx.port);
    let out = site.dir.path().join("out.bin");
    let (_, err, code) = run(&["get", &url, "--http2", "-i", "-o", utf8(&out)], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("HTTP/2 200 OK\n"), "{err}");
    assert!(
        std::fs::read(&out).expect("file") == site.big,
        "bytes differ"
    );

    let small = format!("http://127.0.0.1:{}/t.txt", nginx.port);
    let (body, err, code) = run(
        &[
            "get",
            &small,
            "--http2",
            "--trace",
            "Accept-Encoding:identity",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&body), site.text);
    for expected in [
        "> 127.0.0.1:",
        " h2 connection preface sent 24 bytes at offset 0",
        " h2 SETTINGS stream 0 flags 0x00 length ",
        " h2 HEADERS stream 1 flags 0x05 (END_STREAM|END_HEADERS) length ",
        "< 127.0.0.1:",
        " h2 HEADERS stream 1 flags 0x04 (END_HEADERS) length ",
        " h2 DATA stream 1 flags ",
        "|PRI * HTTP/2.0..|",
    ] {
        assert!(err.contains(expected), "{expected:?} missing in\n{err}");
    }
    // The frames received add up to what came over the wire: each record starts where the
    // previous one ended.
    let mut next = 0u64;
    for line in err.lines().filter(|l| l.starts_with("< ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "offset").expect("offset") + 1;
        let bytes = words.iter().position(|w| *w == "bytes").expect("bytes") - 1;
        assert_eq!(words[at].parse::<u64>().expect("number"), next, "{line}");
        next += words[bytes].parse::<u64>().expect("number");
    }
    assert!(next > site.text.len() as u64);
}

#[test]
fn the_library_client_shares_one_http2_connection_for_concurrent_requests() {
    let site = Site::new();
    let nginx = site.nginx("ssl http2");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = sockit::http::Client::new(sockit::http::ClientConfig {
        verify: sockit::net::tls::Verify::Pin(site.pin),
        ..Default::default()
    });
    let bodies = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let client = client.clone();
            let url = format!("https://127.0.0.1:{}/t.txt?n={i}", nginx.port);
            tasks.spawn(async move {
                let response = client.get(&url).send().await.expect("response");
                assert_eq!(response.version(), http::Version::HTTP_2);
                response.text().await.expect("body")
            });
        }
        let mut bodies = Vec::new();
        let all = async {
            while let Some(body) = tasks.join_next().await {
                bodies.push(body.expect("task"));
            }
        };
        tokio::time::timeout(WAIT, all).await.expect("in time");
        bodies
    });
    assert_eq!(bodies.len(), 20);
    assert!(bodies.iter().all(|b| *b == site.text));
    // nginx logs a request when it ends; give it a moment after the last response.
    let deadline = std::time::Instant::now() + WAIT;
    let mut log = nginx.access_log();
    while log.lines().count() < 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        log = nginx.access_log();
    }
    let connections: HashSet<&str> = log
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(log.lines().count(), 20, "{log}");
    assert_eq!(connections.len(), 1, "{log}");
    assert!(
        log.lines().all(|l| l.contains(" HTTP/2.0 GET /t.txt?n=")),
        "{log}"
    );
}
