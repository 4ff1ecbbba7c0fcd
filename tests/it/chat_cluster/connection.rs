//! Reaching Redis: unreachable, passwords, TLS.

use super::*;

#[test]
fn an_unreachable_redis_is_an_error_with_exit_code_7() {
    let (_, stderr, code) = run(
        &[
            "chat",
            "serve",
            "--port",
            "0",
            "--cluster",
            "redis://127.0.0.1:1",
        ],
        b"",
    );
    assert_eq!(code, Some(7), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot reach redis at redis://127.0.0.1:1"),
        "{stderr}"
    );
}

#[test]
fn a_password_in_the_url_works_and_a_wrong_one_exits_7_without_showing_it() {
    let redis = Redis::start();
    redis.cli(&["CONFIG", "SET", "requirepass", "s3cret-pw"]);
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", redis.port);
    let a = node_at(&url, "a", &[]);
    let mut alice = Client::join(a.addr, "alice");
    let mut bob = Client::join(a.addr, "bob");
    // Every line goes through Redis and back: this one proves the password was taken.
    alice.send("through redis");
    bob.expect("<alice> through redis");

    let wrong = format!("redis://:not-the-pw@127.0.0.1:{}", redis.port);
    let started = Instant::now();
    let (_, stderr, code) = run(&["chat", "serve", "--port", "0", "--cluster", &wrong], b"");
    assert_eq!(code, Some(7), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: redis at redis://:redacted@127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("refused this node: check the password in the url"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-pw"), "{stderr}");
    // Refused at once: a wrong password is not retried until the connect timeout.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn rediss_with_a_self_signed_certificate_and_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // The plain port stays for the readiness check; nodes use only the TLS one.
    let _redis = Redis::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        cert,
        "--tls-key-file",
        key,
        "--tls-ca-cert-file",
        cert,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let a = node_at(&url, "a", &["--cluster-cacert", cert]);
    let b = node_at(&url, "b", &["--cluster-cacert", cert]);
    let mut alice = Client::join(a.addr, "alice");
    let mut bob = Client::join(b.addr, "bob");
    alice.send("over tls");
    bob.expect("<alice> over tls");
    // Without the CA, the system's roots do not vouch for a self-signed certificate.
    let (_, stderr, code) = run(&["chat", "serve", "--port", "0", "--cluster", &url], b"");
    assert_ne!(code, Some(0), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: cannot reach redis at rediss://"),
        "{stderr}"
    );
}
