//! `sockit send` / `sockit recv`: real processes over loopback, a fake hostile sender, curl
//! and nc as peers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Starts `sockit send ARGS… --port 0 --bind 127.0.0.1` and returns it with its recv code.
fn start_sender(args: &[&str]) -> (Server, String) {
    let mut all = vec!["send", "--port", "0", "--bind", "127.0.0.1"];
    all.extend_from_slice(args);
    let server = Server::start(&all);
    let line = server.stderr_line_with("sockit recv '");
    let code = line
        .strip_prefix("sockit recv '")
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("unexpected recv line {line:?}"))
        .to_owned();
    assert!(code.starts_with("sockit://127.0.0.1:"), "{code}");
    (server, code)
}

fn recv(code: &str, out: &Path, extra: &[&str]) -> (String, Option<i32>) {
    let mut args = vec!["recv", code, "-o", out.to_str().expect("UTF-8 temp path")];
    args.extend_from_slice(extra);
    let (_, err, status) = run(&args, b"");
    (err, status)
}

fn spawn_recv(code: &str, out: &Path) -> Child {
    sockit()
        .args(["recv", code, "-o", out.to_str().expect("UTF-8 temp path")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sockit recv")
}

/// `fetched N bytes` from recv's summary line.
fn fetched(stderr: &str) -> u64 {
    stderr
        .split("fetched ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fetched count in {stderr:?}"))
}

/// Waits until `path` holds at least `bytes` bytes.
fn wait_for_size(path: &Path, bytes: u64) {
    let deadline = Instant::now() + WAIT;
    while std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) < bytes {
        assert!(Instant::now() < deadline, "{} never grew", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Pseudo-random bytes from BLAKE3's output stream: hundreds of MiB in a blink, even in
/// debug builds (the blake3 crate is optimised there).
fn fast_random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Every file below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let kind = std::fs::symlink_metadata(&path).expect("metadata");
            if kind.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).expect("below root").to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn big_file_and_unicode_tree_arrive_byte_exact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let big = src.join("big.bin");
    let tree_dir = src.join("tree");
    std::fs::create_dir_all(tree_dir.join("sous dossier/ünïcødé 🎉")).expect("mkdir");
    std::fs::write(&big, fast_random(200 << 20, 7)).expect("write big");
    std::fs::write(tree_dir.join("a file with spaces.txt"), b"spaces\n").expect("write");
    std::fs::write(
        tree_dir.join("sous dossier/ünïcødé 🎉/日本語.txt"),
        b"nihongo\n",
    )
    .expect("write");
    std::fs::write(tree_dir.join("sous dossier/empty"), b"").expect("write");
    let (_sender, code) = start_sender(&[
        big.to_str().expect("UTF-8"),
        tree_dir.to_str().expect("UTF-8"),
    ]);

    let out = tmp.path().join("out");
    let (err, status) = recv(&code, &out, &[]);
    assert_eq!(status, Some(0), "{err}");
    assert!(err.contains("4 file(s)"), "{err}");
    assert!(
        std::fs::read(out.join("big.bin")).expect("big arrived")
            == std::fs::read(&big).expect("big")
    );
    for rel in tree(&tree_dir) {
        let got = std::fs::read(out.join("tree").join(&rel)).expect("tree file arrived");
        assert_eq!(
            got,
            std::fs::read(tree_dir.join(&rel)).expect("source"),
            "{rel:?}"
        );
    }
    assert_eq!(tree(&out).len(), 4, "no .part files left: {:?}", tree(&out));

    // Running it again finds everything in place and fetches nothing.
    let (err, status) = recv(&code, &out, &[]);
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(fetched(&err), 0, "{err}");
    assert!(err.contains("4 skipped"), "{err}");
}

#[test]
fn killed_receiver_resumes_and_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("data.bin");
    let size = 24u64 << 20;
    std::fs::write(&file, random_bytes(size as usize, 3)).expect("write");
    let (_sender, code) = start_sender(&[file.to_str().expect("UTF-8"), "--limit-rate", "16MiB"]);
    let out = tmp.path().join("out");

    let mut first = spawn_recv(&code, &out);
    wait_for_size(&out.join("data.bin.part"), 2 << 20);
    first.kill().expect("kill receiver");
    let _ = first.wait();
    let kept = std::fs::metadata(out.join("data.bin.part"))
        .expect("part kept")
        .len();
    assert!(kept < size, "the first run finished before it was killed");

    let (err, status) = recv(&code, &out, &[]);
    assert_eq!(status, Some(0), "{err}");
    assert!(err.contains("1 resumed"), "{err}");
    let got = fetched(&err);
    assert!(got < size, "fetched {got} of {size}: not resumed");
    assert_eq!(got, size - kept, "{err}");
    assert!(
        std::fs::read(out.join("data.bin")).expect("arrived")
            == std::fs::read(&file).expect("source")
    );
    assert!(!out.join("data.bin.part").exists());
}

#[test]
fn a_file_changed_on_the_sender_mid_transfer_is_caught() {
    use std::io::{Seek, SeekFrom, Write};
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("moving.bin");
    let size = 8u64 << 20;
    std::fs::write(&file, random_bytes(size as usize, 4)).expect("write");
    let (_sender, code) = start_sender(&[file.to_str().expect("UTF-8"), "--limit-rate", "4MiB"]);
    let out = tmp.path().join("out");
    let receiver = spawn_recv(&code, &out);
    wait_for_size(&out.join("moving.bin.part"), 1 << 20);
    let mut source = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open");
    source.seek(SeekFrom::Start(size - 4096)).expect("seek");
    source.write_all(&[0x55; 4096]).expect("tamper");
    drop(source);

    let output = wait_with_output(receiver);
    assert_ne!(output.0, Some(0), "{}", output.1);
    assert!(output.1.contains("BLAKE3 mismatch"), "{}", output.1);
    assert!(
        !out.join("moving.bin").exists(),
        "a bad file was renamed into place"
    );
    assert!(
        !out.join("moving.bin.part").exists(),
        "a bad .part was kept"
    );
}

fn wait_with_output(mut child: Child) -> (Option<i32>, String) {
    use std::io::Read;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_timeout(&mut child, WAIT * 2).expect("receiver finished in time");
    (status.code(), reader.join().expect("stderr reader"))
}

#[test]
fn existing_files_are_skipped_refused_or_overwritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("note.txt");
    std::fs::write(&file, b"the real content\n").expect("write");
    let (_sender, code) = start_sender(&[file.to_str().expect("UTF-8")]);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("note.txt"), b"something else\n").expect("write");

    let (err, status) = recv(&code, &out, &[]);
    assert_eq!(status, Some(1), "{err}");
    assert!(err.contains("--overwrite"), "{err}");
    assert_eq!(
        std::fs::read(out.join("note.txt")).expect("kept"),
        b"something else\n"
    );

    let (err, status) = recv(&code, &out, &["--overwrite"]);
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(
        std::fs::read(out.join("note.txt")).expect("replaced"),
        b"the real content\n"
    );
}

#[test]
fn wrong_fingerprint_is_refused_before_any_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("secret.txt");
    std::fs::write(&file, b"secret\n").expect("write");
    let (_sender, code) = start_sender(&[file.to_str().expect("UTF-8")]);
    let (head, _) = code.split_once('#').expect("fingerprint");
    let forged = format!("{head}#sha256:{}", "00".repeat(32));
    let out = tmp.path().join("out");
    let (err, status) = recv(&forged, &out, &[]);
    assert_eq!(status, Some(35), "{err}");
    assert!(err.contains("fingerprint"), "{err}");
    assert!(!out.exists() || tree(&out).is_empty());
}

#[cfg(unix)]
#[test]
fn symlink_in_the_output_directory_is_not_followed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("d");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("x.txt"), b"x\n").expect("write");
    let (_sender, code) = start_sender(&[src.to_str().expect("UTF-8")]);
    let out = tmp.path().join("out");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::os::unix::fs::symlink(&outside, out.join("d")).expect("symlink");
    let (err, status) = recv(&code, &out, &[]);
    assert_eq!(status, Some(1), "{err}");
    assert!(err.contains("symlink"), "{err}");
    assert!(tree(&outside).is_empty(), "wrote through the symlink");
}

/// A hostile sender: valid TLS, but a manifest with paths that try to escape.
mod fake_sender {
    use std::net::SocketAddr;

    use sockit::net::tls::ServerIdentity;
    use sockit::net::{ServerConfig, bind_tcp, serve};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    pub struct Fake {
        pub code: String,
        pub stop: CancellationToken,
        pub runtime: tokio::runtime::Runtime,
    }

    /// Serves `manifest` at any path ending in /manifest and "evil" for anything else.
    pub fn start(manifest: String) -> Fake {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let identity = ServerIdentity::self_signed(&[], &[b"http/1.1"]).expect("identity");
        let stop = CancellationToken::new();
        let addr: SocketAddr = runtime.block_on(async {
            let listener = bind_tcp("127.0.0.1:0".parse().expect("addr")).expect("bind");
            let addr = listener.local_addr().expect("addr");
            let config = ServerConfig {
                tls: Some(identity.config.clone()),
                ..ServerConfig::default()
            };
            let stop = stop.clone();
            tokio::spawn(serve(listener, config, stop, move |mut stream, _, _| {
                let manifest = manifest.clone();
                async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let body = if line.contains("/manifest ") {
                        manifest
                    } else {
                        "evil".into()
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            }));
            addr
        });
        let code = format!(
            "sockit://{addr}/{}#{}",
            "ab".repeat(16),
            identity.fingerprint
        );
        Fake {
            code,
            stop,
            runtime,
        }
    }
}

#[test]
fn malicious_manifest_writes_nothing_outside_the_output_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let absolute = root.join("absolute.txt");
    let hash = "0".repeat(64);
    let evil_paths = [
        "../escape.txt".to_owned(),
        "a/../../escape.txt".to_owned(),
        absolute.to_str().expect("UTF-8").to_owned(),
        "C:/windows.txt".to_owned(),
        "a\\..\\..\\escape.txt".to_owned(),
        "bell\u{7}\u{1b}[2Jclear.txt".to_owned(),
        "".to_owned(),
    ];
    for evil in evil_paths {
        // A harmless entry first: one bad path must refuse the whole manifest.
        let manifest = serde_json::json!({
            "version": 1,
            "files": [
                {"path": "harmless.txt", "size": 4, "blake3": hash},
                {"path": evil, "size": 4, "blake3": hash},
            ]
        });
        let fake = fake_sender::start(manifest.to_string());
        let out = root.join("out");
        let (err, status) = recv(&fake.code, &out, &[]);
        fake.stop.cancel();
        fake.runtime.shutdown_timeout(Duration::from_secs(1));
        assert_eq!(status, Some(1), "{evil:?}: {err}");
        assert!(err.contains("unsafe path"), "{evil:?}: {err}");
        assert!(
            !err.contains('\u{1b}') && !err.contains('\u{7}'),
            "raw control characters printed: {err:?}"
        );
        assert_eq!(
            tree(root),
            Vec::<PathBuf>::new(),
            "{evil:?} wrote something"
        );
    }
}

over_both_protocols!(curl_downloads_with_the_printed_command_and_a_wrong_token_gets_404);

fn curl_downloads_with_the_printed_command_and_a_wrong_token_gets_404() {
    require("curl");
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("for curl.bin");
    let data = random_bytes(3 << 20, 5);
    std::fs::write(&file, &data).expect("write");
    let mut server = Server::start(&[
        "send",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        file.to_str().expect("UTF-8"),
    ]);
    let curl_line = server.stderr_line_with("curl -k");
    let into = tmp.path().join("into");
    std::fs::create_dir(&into).expect("mkdir");
    let (_, err, status) = run_cmd(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{curl_line} -sS {}", proto().curl_option(true)))
            .current_dir(&into),
        b"",
    );
    assert_eq!(status, Some(0), "{curl_line}: {err}");
    assert!(std::fs::read(into.join("for curl.bin")).expect("curl saved it") == data);

    let url = curl_line
        .split('\'')
        .nth(3)
        .expect("URL in the curl line")
        .to_owned();
    let (part, _, _) = run_cmd(
        Command::new("curl").args([proto().curl_option(true), "-ksS", "-r", "100-199", &url]),
        b"",
    );
    assert_eq!(part, &data[100..200]);

    let token = url.split('/').nth(3).expect("token").to_owned();
    let wrong = url.replace(&token, &"0".repeat(32));
    let (out, _, _) = run_cmd(
        Command::new("curl").args([
            proto().curl_option(true),
            "-ks",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            &wrong,
        ]),
        b"",
    );
    let version = match proto() {
        Proto::Http1 => "1.1",
        Proto::Http2 => "2",
    };
    assert_eq!(String::from_utf8_lossy(&out), format!("404 {version}"));
    let _ = server.child.kill();
}

#[test]
fn raw_sender_serves_nc_and_raw_receiver_takes_from_nc() {
    require("nc");
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("image.png");
    let data = random_bytes(4 << 20, 6);
    std::fs::write(&file, &data).expect("write");

    // sockit send --raw → nc
    let server = Server::raw_sender(&file);
    let port = server.addr.port().to_string();
    let (out, err, status) = run_cmd(Command::new("nc").args(["-d", "127.0.0.1", &port]), b"");
    assert_eq!(status, Some(0), "{err}");
    assert!(out == data, "nc got {} of {} bytes", out.len(), data.len());
    // …and sockit recv --raw from the same sender.
    let got = tmp.path().join("got.png");
    let (_, err, status) = run(
        &[
            "recv",
            "--raw",
            &server.addr.to_string(),
            "-o",
            got.to_str().expect("UTF-8"),
        ],
        b"",
    );
    assert_eq!(status, Some(0), "{err}");
    assert!(std::fs::read(&got).expect("raw file") == data);
    assert!(!tmp.path().join("got.png.part").exists());
    // Without -o, or with -o -, the bytes go to stdout, like nc.
    for extra in [&[][..], &["-o", "-"][..]] {
        let addr = server.addr.to_string();
        let mut args = vec!["recv", "--raw", addr.as_str()];
        args.extend_from_slice(extra);
        let (out, err, status) = run(&args, b"");
        assert_eq!(status, Some(0), "{err}");
        assert!(
            out == data,
            "stdout ({extra:?}) got {} of {} bytes",
            out.len(),
            data.len()
        );
    }

    // nc -l → sockit recv --raw. nc cannot report a port it picked, so try a few free ones.
    let from_nc = tmp.path().join("from_nc.png");
    let mut done = false;
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("probe")
            .local_addr()
            .expect("addr")
            .port();
        let mut nc = Command::new("nc")
            .args(["-N", "-l", "127.0.0.1", &port.to_string()])
            .stdin(std::fs::File::open(&file).expect("open"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nc");
        let deadline = Instant::now() + WAIT;
        let mut result = None;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = nc.try_wait() {
                break; // nc could not listen there
            }
            let (_, err, status) = run(
                &[
                    "recv",
                    "--raw",
                    &format!("127.0.0.1:{port}"),
                    "-o",
                    from_nc.to_str().expect("UTF-8"),
                    "--overwrite",
                ],
                b"",
            );
            if status == Some(0) {
                result = Some(err);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nc.kill();
        let _ = nc.wait();
        if result.is_some() {
            done = true;
            break;
        }
    }
    assert!(done, "never received from nc");
    assert!(std::fs::read(&from_nc).expect("from nc") == data);
}

/// `sockit recv --raw HOST:PORT > FILE` and `>> FILE`, nc style: a regular file as stdout
/// gets every byte from its start, or after what it held when opened for appending.
#[test]
fn raw_receive_into_a_redirected_stdout_writes_or_appends_every_byte() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("source.bin");
    let data = random_bytes(5 << 20, 9);
    std::fs::write(&file, &data).expect("write");
    let server = Server::raw_sender(&file);
    for append in [false, true] {
        let got = tmp.path().join(format!("stdout-{append}.bin"));
        std::fs::write(&got, b"held before\n").expect("write");
        let stdout = std::fs::OpenOptions::new()
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&got)
            .expect("open");
        let mut child = sockit()
            .args(["recv", "--raw", &server.addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sockit recv --raw");
        let status = wait_timeout(&mut child, WAIT).expect("recv --raw exits");
        assert!(status.success(), "{status:?}");
        let mut want = if append {
            b"held before\n".to_vec()
        } else {
            Vec::new()
        };
        want.extend_from_slice(&data);
        let on_disk = std::fs::read(&got).expect("read back");
        assert_eq!(on_disk.len(), want.len(), "append: {append}");
        assert!(on_disk == want, "bytes differ (append: {append})");
    }
}

/// `recv --raw -o FILE` from a sender that gives 3 MiB (three pipes' worth) and then stalls:
/// those bytes are in `FILE.part`, byte for byte, and a receiver killed (SIGKILL) or
/// interrupted (SIGINT: exit 130) there leaves the `.part`, never `FILE`.
#[test]
fn raw_receive_stopped_mid_way_leaves_the_part_file_and_not_the_file() {
    use std::io::Write;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(3 << 20, 8);
    for signal in ["KILL", "INT"] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let out = tmp.path().join(format!("got-{signal}.bin"));
        let part = tmp.path().join(format!("got-{signal}.bin.part"));
        let mut child = sockit()
            .args([
                "recv",
                "--raw",
                &listener.local_addr().expect("addr").to_string(),
            ])
            .args(["-o", out.to_str().expect("UTF-8")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sockit recv --raw");
        let deadline = Instant::now() + WAIT;
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "recv --raw never connected");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        conn.set_nonblocking(false).expect("blocking");
        conn.write_all(&data).expect("send");
        wait_for_size(&part, data.len() as u64);
        let pid = child.id().to_string();
        let (_, err, code) = run_cmd(
            Command::new("kill").args([&format!("-{signal}"), &pid]),
            b"",
        );
        assert_eq!(code, Some(0), "{err}");
        let status = wait_timeout(&mut child, WAIT).expect("recv --raw exits");
        if signal == "INT" {
            assert_eq!(status.code(), Some(130), "{status:?}");
        }
        assert!(!out.exists(), "{} appeared after {signal}", out.display());
        assert!(
            std::fs::read(&part).expect("the .part stays") == data,
            "the .part does not hold the bytes sent ({signal})"
        );
        drop(conn);
    }
}

#[test]
fn once_exits_after_the_first_complete_receive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("one.txt");
    std::fs::write(&file, b"just once\n").expect("write");
    let (sender, code) = start_sender(&[file.to_str().expect("UTF-8"), "--once"]);
    let (err, status) = recv(&code, &tmp.path().join("out"), &[]);
    assert_eq!(status, Some(0), "{err}");
    let (_, exit) = sender.wait_output();
    assert!(exit.success(), "{exit:?}");
}

/// The sender's routes are plain files and ranges: nginx with HTTP/2 serves them as well, so
/// recv's HTTP/2 path (ALPN h2, all files as streams of one connection, a resume with
/// Range) is tested against a real HTTP/2 server.
#[test]
fn recv_fetches_in_parallel_over_one_http2_connection_and_resumes() {
    use sockit::transfer::{Digest, Entry, Manifest};
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "4f".repeat(16);
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join(&token).join("f")).expect("www");
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for i in 0..6u64 {
        let data = random_bytes(200_000 + i as usize * 1000, 40 + i);
        std::fs::write(www.join(&token).join("f").join(i.to_string()), &data).expect("write");
        entries.push(Entry {
            path: format!("d/file {i}.bin"),
            size: data.len() as u64,
            blake3: Digest::of(&data),
        });
        files.push(data);
    }
    let manifest = Manifest::new(entries).expect("manifest");
    std::fs::write(www.join(&token).join("manifest"), manifest.to_json()).expect("manifest");
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).expect("cert");
    std::fs::write(&key, generated.key_pair.serialize_pem()).expect("key");
    let pin = sockit::net::tls::Fingerprint::of(generated.cert.der());
    let run_dir = dir.path().join("nginx");
    std::fs::create_dir(&run_dir).expect("nginx dir");
    let nginx = start_nginx(&run_dir, &www, "ssl http2", &tls_directives(&cert, &key));

    // One file was half received before.
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("d")).expect("out");
    std::fs::write(out.join("d/file 2.bin.part"), &files[2][..50_000]).expect("part");

    let code = format!("sockit://127.0.0.1:{}/{token}#{pin}", nginx.port);
    let out_arg = out.to_str().expect("utf-8 path");
    let (_, err, status) = run(&["recv", &code, "-o", out_arg], b"");
    assert_eq!(status, Some(0), "{err}");
    for (i, data) in files.iter().enumerate() {
        let got = std::fs::read(out.join(format!("d/file {i}.bin"))).expect("received");
        assert!(got == *data, "file {i} differs");
    }
    assert!(!out.join("d/file 2.bin.part").exists());

    let deadline = std::time::Instant::now() + WAIT;
    let mut log = nginx.access_log();
    while log.lines().count() < 8 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        log = nginx.access_log();
    }
    let fetches: Vec<&str> = log.lines().filter(|l| l.contains("/f/")).collect();
    assert_eq!(fetches.len(), 6, "{log}");
    let connections: std::collections::HashSet<&str> = log
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(connections.len(), 1, "{log}");
    assert!(
        fetches.iter().all(|l| l.contains(" HTTP/2.0 GET ")),
        "{log}"
    );
    assert!(
        log.contains("/f/2 HTTP/2.0 206 range=bytes=50000-"),
        "{log}"
    );
}
