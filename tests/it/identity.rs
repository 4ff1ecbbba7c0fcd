//! `--identity FILE`: a `--tls` server's self-signed certificate and key kept across
//! restarts (same `--pin` fingerprint), and the file's safety checks.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::*;

/// The fingerprint a TLS server printed (`sockit MODE TLS certificate sha256:…`).
fn printed_pin(server: &Server) -> String {
    let line = server.stderr_line_with("TLS certificate");
    line.rsplit(' ').next().unwrap().to_owned()
}

fn assert_private_pem(file: &Path) {
    let meta = std::fs::symlink_metadata(file).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file:?}");
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    assert!(text.contains("-----BEGIN PRIVATE KEY-----"), "{text}");
}

/// Starts `args` (a TLS server given `--identity FILE`) twice, one after the other; both
/// runs print the same fingerprint, and `client(addr, pin)` succeeds against the second.
fn check_restart(args: &[&str], file: &Path, client: impl Fn(&str, &str)) {
    let first = Server::start(args);
    let pin = printed_pin(&first);
    drop(first);
    assert_private_pem(file);
    let again = Server::start(args);
    assert_eq!(printed_pin(&again), pin, "{args:?}: a new fingerprint");
    client(&again.addr.to_string(), &pin);
}

#[test]
fn listen_serve_and_chat_keep_their_fingerprint_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("listen.pem");
    let f = file.to_str().unwrap();
    check_restart(
        &["listen", "--port", "0", "--echo", "--identity", f],
        &file,
        |addr, pin| {
            let (out, err, code) = run(&["connect", "--pin", pin, addr], b"pinned\n");
            assert_eq!(code, Some(0), "{err}");
            assert_eq!(out, b"pinned\n");
        },
    );

    let file = dir.path().join("serve.pem");
    let f = file.to_str().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    let root = dir.path().to_str().unwrap();
    check_restart(
        &["serve", root, "--port", "0", "--identity", f],
        &file,
        |addr, pin| {
            let url = format!("https://{addr}/hello.txt");
            let (out, err, code) = run(&["get", "--pin", pin, &url], b"");
            assert_eq!(code, Some(0), "{err}");
            assert_eq!(out, b"hello\n");
        },
    );

    let file = dir.path().join("chat.pem");
    let f = file.to_str().unwrap();
    check_restart(
        &["chat", "serve", "--port", "0", "--identity", f],
        &file,
        |addr, pin| {
            let (out, err, code) = run(&["chat", "join", addr, "--pin", pin], b"/quit\n");
            assert_eq!(code, Some(0), "{err}");
            assert!(String::from_utf8_lossy(&out).contains("you joined #lobby"));
        },
    );
}

#[test]
fn send_keeps_the_fingerprint_of_its_code_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(100_000, 3);
    let offered = dir.path().join("f.bin");
    std::fs::write(&offered, &data).unwrap();
    let file = dir.path().join("send.pem");
    let args = [
        "send",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--identity",
        file.to_str().unwrap(),
        offered.to_str().unwrap(),
    ];
    let pin_of = |sender: &Server| {
        let line = sender.stderr_line_with("sockit recv '");
        let code = line
            .strip_prefix("sockit recv '")
            .and_then(|rest| rest.strip_suffix('\''))
            .unwrap()
            .to_owned();
        (code.rsplit('#').next().unwrap().to_owned(), code)
    };
    let (first, _) = pin_of(&Server::start(&args));
    assert_private_pem(&file);
    let sender = Server::start(&args);
    let (again, code) = pin_of(&sender);
    assert_eq!(first, again);
    let out = dir.path().join("out");
    let (_, err, status) = run(&["recv", &code, "-o", out.to_str().unwrap()], b"");
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(std::fs::read(out.join("f.bin")).unwrap(), data);
}

/// One `error:` line (and maybe a `hint:`), no panic, exit 35 (a TLS setup failure).
fn assert_refused(args: &[&str], expected: &[&str]) -> String {
    let (out, err, code) = run(args, b"");
    assert_eq!(code, Some(35), "{args:?}: {err}");
    assert!(out.is_empty());
    assert!(!err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    for needle in expected {
        assert!(
            err.contains(needle),
            "{args:?}: {needle:?} missing in {err}"
        );
    }
    err
}

#[test]
fn an_exposed_corrupt_or_linked_identity_file_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("id.pem");
    let f = file.to_str().unwrap();
    let first = Server::start(&["listen", "--port", "0", "--identity", f]);
    let pin = printed_pin(&first);
    drop(first);

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_refused(
        &["listen", "--port", "0", "--identity", f],
        &[
            "open to group or others (mode 640)",
            &format!("hint: chmod 600 {f}"),
        ],
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A link is not followed, even to a good file.
    let link = dir.path().join("link.pem");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    assert_refused(
        &["serve", "--port", "0", "--identity", link.to_str().unwrap()],
        &["symbolic link"],
    );

    // A FIFO planted there neither hangs the server nor counts as an identity.
    let fifo = dir.path().join("fifo.pem");
    let made = std::process::Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    assert_refused(
        &[
            "listen",
            "--port",
            "0",
            "--identity",
            fifo.to_str().unwrap(),
        ],
        &["not a regular file"],
    );

    // Damaged: cut in half, garbage, or a certificate without its key.
    let pem = std::fs::read_to_string(&file).unwrap();
    let cert_only = &pem[..pem.find("-----BEGIN PRIVATE KEY-----").unwrap()];
    for (name, content) in [
        ("half.pem", &pem[..pem.len() / 2]),
        ("garbage.pem", "not a certificate\n"),
        ("cert-only.pem", cert_only),
    ] {
        let bad = dir.path().join(name);
        std::fs::write(&bad, content).unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        let b = bad.to_str().unwrap();
        assert_refused(
            &["chat", "serve", "--port", "0", "--identity", b],
            &[&format!("identity file {b}"), "hint: move"],
        );
        // Never overwritten.
        assert_eq!(std::fs::read_to_string(&bad).unwrap(), content);
    }

    // The good file is still the same identity.
    let again = Server::start(&["listen", "--port", "0", "--identity", f]);
    assert_eq!(printed_pin(&again), pin);
}

#[test]
fn identity_is_refused_where_tls_cannot_go_and_no_file_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("id.pem");
    let f = file.to_str().unwrap();
    let (_, err, code) = run(&["listen", "--port", "0", "--udp", "--identity", f], b"");
    assert_eq!(code, Some(2), "{err}");
    let (_, err, code) = run(&["listen", "--port", "0", "--socks5", "--identity", f], b"");
    assert_eq!(code, Some(2), "{err}");
    let socket = format!("unix:{}", dir.path().join("s.sock").display());
    let (_, err, code) = run(&["listen", &socket, "--identity", f], b"");
    assert_ne!(code, Some(0));
    assert!(err.contains("--tls over a Unix socket"), "{err}");
    let (_, err, code) = run(&["listen", &socket, "--tls"], b"");
    assert_ne!(code, Some(0));
    assert!(err.contains("--tls over a Unix socket"), "{err}");
    assert!(!file.exists());
}
