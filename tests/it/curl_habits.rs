//! What curl and xh users type first, against httpbin: `-H`, lower-case methods, `-X`,
//! `-L`, `--offline`, `--curl`, cookies along redirects, `--session`, `-u USER`, the hints
//! for curl flags that mean something else here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;
use crate::tty::Tmux;

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

/// A server on 127.0.0.1 that records the head of one request, answers 200 and closes.
fn capture_one() -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("bound").port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).expect("read head") == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut stream = stream;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        head
    });
    (port, handle)
}

#[test]
fn header_flag_sends_empties_and_removes_headers_as_curl() {
    let bin = Httpbin::start();
    let (out, err, code) = run(
        &[
            "get",
            &bin.url("/headers"),
            "-H",
            "X-Token: Bearer a=b",
            "-H",
            "X-Empty;",
            "-H",
            "User-Agent:",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let headers = &json(&out)["headers"];
    assert_eq!(headers["X-Token"], "Bearer a=b");
    assert_eq!(headers["X-Empty"], "");
    assert!(headers.get("User-Agent").is_none(), "{headers}");
}

#[test]
fn lower_case_methods_and_dash_x_choose_the_method() {
    let bin = Httpbin::start();
    for (args, want) in [
        (
            vec!["http", "put", &bin.url("/anything") as &str, "a=1"],
            "PUT",
        ),
        (vec!["http", "delete", &bin.url("/anything")], "DELETE"),
        (vec!["get", "-X", "patch", &bin.url("/anything")], "PATCH"),
    ] {
        let (out, err, code) = run(&args, b"");
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert_eq!(json(&out)["method"], want, "{args:?}");
    }
}

#[test]
fn offline_prints_the_request_and_sends_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/x", listener.local_addr().expect("bound"));
    let (out, err, code) = run(
        &["post", &url, "-u", "u:p", "q==1", "name=ada", "--offline"],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("POST /x?q=1 HTTP/1.1\n"), "{text}");
    assert!(text.contains("Authorization: Basic dTpw\n"), "{text}");
    assert!(text.contains("{\"name\":\"ada\"}"), "{text}");
    assert!(listener.accept().is_err(), "--offline connected");
}

#[test]
fn curl_prints_a_command_that_sends_the_same_request() {
    require("curl");
    let bin = Httpbin::start();
    let args = [
        "post",
        &bin.url("/anything?x=1") as &str,
        "name=it's",
        "n:=2",
        "-H",
        "X-Quote: a 'b' $HOME",
        "-u",
        "ada:pw",
    ];
    let (direct, err, code) = run(&args, b"");
    assert_eq!(code, Some(0), "{err}");
    let (line, err, code) = run(&[&args[..], &["--curl"]].concat(), b"");
    assert_eq!(code, Some(0), "{err}");
    let line = String::from_utf8(line).expect("UTF-8");
    assert!(line.starts_with("curl "), "{line}");
    let by_curl = Command::new("sh")
        .args(["-c", &format!("{} -s", line.trim_end())])
        .output()
        .expect("run the curl line");
    assert!(by_curl.status.success(), "{line}: {by_curl:?}");
    let (direct, by_curl) = (json(&direct), json(&by_curl.stdout));
    for field in ["method", "args", "data", "json", "headers"] {
        assert_eq!(direct[field], by_curl[field], "{field} differs; {line}");
    }
}

#[test]
fn cookies_set_along_a_redirect_chain_are_sent_back() {
    let bin = Httpbin::start();
    let (out, err, code) = run(&["get", "-L", &bin.url("/cookies/set?a=1&b=2")], b"");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        json(&out)["cookies"],
        serde_json::json!({"a": "1", "b": "2"})
    );
}

#[test]
fn session_persists_and_never_follows_a_redirect_to_another_host() {
    let bin = Httpbin::start();
    let config = tempfile::tempdir().expect("temp dir");
    let sockit_in = |args: &[&str]| {
        run_cmd(
            sockit().env("XDG_CONFIG_HOME", config.path()).args(args),
            b"",
        )
    };
    // First run: a header, credentials and a cookie set along a redirect, kept.
    let (_, err, code) = sockit_in(&[
        "get",
        "-L",
        "--session",
        "work",
        "-H",
        "X-Token: t0ken",
        "-u",
        "ada:pw",
        &bin.url("/cookies/set?a=1"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let port = bin.base.rsplit(':').next().expect("a port");
    let file = config
        .path()
        .join(format!("sockit/sessions/127.0.0.1_{port}/work.json"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("session file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Second run: everything comes back from the session.
    let (out, err, code) = sockit_in(&["get", "--session", "work", &bin.url("/anything")]);
    assert_eq!(code, Some(0), "{err}");
    let headers = &json(&out)["headers"];
    assert_eq!(headers["X-Token"], "t0ken");
    assert_eq!(headers["Authorization"], "Basic YWRhOnB3");
    assert_eq!(headers["Cookie"], "a=1");

    // Third run: a redirect to another host gets none of it.
    let (other, captured) = capture_one();
    let target = format!("http://localhost:{other}/elsewhere");
    let (_, err, code) = sockit_in(&[
        "get",
        "-L",
        "--session",
        "work",
        "-b",
        "typed=1",
        &format!("{}/redirect-to?url={target}", bin.base),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let head = captured.join().expect("capture").to_ascii_lowercase();
    assert!(head.starts_with("get /elsewhere "), "{head}");
    for secret in ["x-token", "authorization", "cookie", "t0ken", "typed"] {
        assert!(
            !head.contains(secret),
            "{secret} leaked to another host: {head}"
        );
    }
}

#[test]
fn user_without_password_is_asked_on_the_terminal_without_echo() {
    let bin = Httpbin::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.json");
    let command = format!(
        "{} get -u ada {} > {}",
        env!("CARGO_BIN_EXE_sockit"),
        bin.url("/basic-auth/ada/s3cret"),
        out.display()
    );
    let tmux = Tmux::start("password", &command);
    let deadline = Instant::now() + WAIT;
    while !tmux.screen().contains("password for ada:") {
        assert!(Instant::now() < deadline, "no prompt: {}", tmux.screen());
        std::thread::sleep(Duration::from_millis(50));
    }
    tmux.run(&["send-keys", "-t", "t", "-l", "s3cret"]);
    tmux.run(&["send-keys", "-t", "t", "Enter"]);
    let status = loop {
        if let Some(status) = tmux.exit_status() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running: {}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, "0", "{}", tmux.screen());
    assert!(
        !tmux.screen().contains("s3cret"),
        "echoed: {}",
        tmux.screen()
    );
    let body = std::fs::read(&out).expect("output");
    assert_eq!(json(&body)["authenticated"], true);
}

#[test]
fn user_without_password_and_no_terminal_is_a_clear_usage_error() {
    let (_, err, code) = run(&["get", "-u", "ada", "http://127.0.0.1:9/"], b"");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a terminal"), "{err}");
    assert!(err.contains("-u ada:PASSWORD"), "{err}");
}

#[test]
fn curl_flags_that_differ_here_get_a_hint() {
    let bin = Httpbin::start();
    // curl's `-d 'a=1&b=2'`: refused before anything is sent.
    let (_, err, code) = run(&["post", &bin.url("/post"), "-d", "a=1&b=2"], b"");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("-d here is --download"), "{err}");
    // curl's `-F 'file=@x'`: sent (it is valid here) with a hint.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("x.txt");
    std::fs::write(&file, "hello").expect("write");
    let item = format!("file=@{}", file.display());
    let (_, err, code) = run(&["post", "-F", &bin.url("/post"), &item], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("hint: -F here is --follow"), "{err}");
    // curl's -L and -O are the same here.
    let (out, err, code) = run(&["get", "-L", &bin.url("/redirect/1")], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        json(&out)["url"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/get")
    );
}

#[test]
fn cookie_jar_file_is_read_back_by_curl() {
    require("curl");
    let bin = Httpbin::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let jar = dir.path().join("jar.txt");
    let jar_arg = jar.display().to_string();
    let (_, err, code) = run(
        &[
            "get",
            "-L",
            "--cookie-jar",
            &jar_arg,
            &bin.url("/cookies/set?k=v"),
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let by_curl = Command::new("curl")
        .args(["-s", "-b", &jar_arg, &bin.url("/cookies")])
        .output()
        .expect("run curl");
    assert_eq!(
        json(&by_curl.stdout)["cookies"],
        serde_json::json!({"k": "v"})
    );
}
