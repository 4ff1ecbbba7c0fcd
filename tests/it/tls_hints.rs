//! Where users stall on TLS: an untrusted certificate gets its fingerprint and the `--pin` to
//! type, TLS to a plain server and plain HTTP to a TLS server say which to use; client
//! certificates (`--cert/--key`) against nginx with `ssl_verify_client on`.

use std::path::Path;

use crate::support::*;

/// The fingerprint a `--tls` server prints on its second stderr line.
fn fingerprint_of(server: &Server) -> String {
    let line = server.stderr_line_with("TLS certificate");
    line.rsplit(' ').next().expect("a fingerprint").to_owned()
}

#[test]
fn https_to_a_plain_http_port_says_use_http() {
    let bin = Httpbin::start();
    let url = bin.url("/get").replace("http://", "https://");
    let (_, err, code) = run(&["get", &url], b"");
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains("hint: the server does not speak TLS"), "{err}");
    assert!(err.contains("use http://"), "{err}");
}

#[test]
fn plain_http_to_a_tls_port_says_use_https() {
    let server = Server::start(&["listen", "--tls", "--echo", "--port", "0"]);
    let url = format!("http://{}/", server.addr);
    let (_, err, code) = run(&["get", &url], b"");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("hint: the server speaks TLS: use https://"),
        "{err}"
    );
}

#[test]
fn an_untrusted_certificate_shows_the_pin_to_type_and_the_pin_works() {
    let server = Server::start(&["listen", "--tls", "--echo", "--port", "0"]);
    let fingerprint = fingerprint_of(&server);
    let addr = server.addr.to_string();
    let (_, err, code) = run(&["connect", "--tls", &addr], b"hi\n");
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains(&format!("add --pin {fingerprint}")), "{err}");
    let url = format!("https://{addr}/");
    let (_, err, code) = run(&["get", &url], b"");
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains(&format!("add --pin {fingerprint}")), "{err}");
    // What the hint says to type works.
    let (out, err, code) = run(&["connect", "--pin", &fingerprint, &addr], b"hi\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"hi\n");
}

#[test]
fn tls_to_a_plain_listener_or_chat_server_says_leave_out_tls() {
    let listener = Server::start(&["listen", "--echo", "--port", "0"]);
    let (_, err, code) = run(&["connect", "--tls", &listener.addr.to_string()], b"hi\n");
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains("hint: the server does not speak TLS"), "{err}");
    assert!(err.contains("leave out --tls"), "{err}");

    let code_url = format!(
        "sockit://{}/00112233445566778899aabbccddeeff#sha256:{}",
        listener.addr,
        "0".repeat(64)
    );
    let out = tempfile::tempdir().expect("temp dir");
    let out = out.path().display().to_string();
    let (_, err, code) = run(&["recv", &code_url, "-o", &out], b"");
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains("hint: the server does not speak TLS"), "{err}");

    let chat = Server::start(&["chat", "serve", "--port", "0"]);
    let (_, err, code) = run(
        &[
            "chat",
            "join",
            "--tls",
            &chat.addr.to_string(),
            "--nick",
            "ada",
        ],
        b"hi\n",
    );
    assert_eq!(code, Some(35), "{err}");
    assert!(err.contains("hint: the server does not speak TLS"), "{err}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn make_pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sockit test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let server_key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    let client_key = KeyPair::generate().expect("client key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, "ada");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params
        .signed_by(&client_key, &ca, &ca_key)
        .expect("client certificate");
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server.pem()),
        ("server.key", server_key.serialize_pem()),
        ("client.pem", client.pem()),
        ("client.key", client_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).expect("write PEM");
    }
}

#[test]
fn client_certificate_gets_through_nginx_ssl_verify_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let www = dir.path().join("www");
    std::fs::create_dir(&www).expect("www");
    std::fs::write(www.join("index.html"), "mutual\n").expect("index");
    make_pki(dir.path());
    let p = |name: &str| dir.path().join(name);
    let server = format!(
        "{} ssl_client_certificate {}; ssl_verify_client on;",
        tls_directives(&p("server.pem"), &p("server.key")),
        p("ca.pem").display()
    );
    let nginx = start_nginx(dir.path(), &www, "ssl", &server);
    let url = format!("https://127.0.0.1:{}/index.html", nginx.port);
    let ca = p("ca.pem").display().to_string();
    let (cert, key) = (
        p("client.pem").display().to_string(),
        p("client.key").display().to_string(),
    );
    let (out, err, code) = run(
        &[
            "get",
            "--check-status",
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            &url,
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"mutual\n");
    let (_, err, code) = run(&["get", "--check-status", "--ca", &ca, &url], b"");
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("400"), "{err}");
}
