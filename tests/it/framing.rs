//! Message framing for peers that write one message per `send()` without a newline: a
//! message ends at a newline, at EOF, or after a pause (`sockit::net::line::MESSAGE_PAUSE`).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// The classic lessons' greeter client, as written there: one `sendall` without a newline,
/// then `recv(1024)`.
const LESSON_GREETER_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"zy")
print(s.recv(1024).decode())
s.close()
"#;

#[test]
fn the_lessons_greeter_client_gets_its_answer_without_a_newline() {
    require("python3");
    let server = Server::start(&["listen", "--port", "0", "--greet", "hello {}"]);
    let started = Instant::now();
    let (out, err, code) = run_cmd(
        Command::new("python3").args([
            "-c",
            LESSON_GREETER_CLIENT,
            &server.addr.port().to_string(),
        ]),
        b"",
    );
    assert_eq!(code, Some(0), "python3 failed: {err}");
    assert_eq!(String::from_utf8_lossy(&out), "hello zy\n\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream
}

fn read_until_eof(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("read to EOF");
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_line_written_slowly_in_pieces_stays_whole() {
    let server = Server::start(&[
        "listen",
        "--port",
        "0",
        "--greet",
        "{}",
        "--max-line",
        "2MiB",
    ]);
    let mut stream = connect(&server);
    let line = random_bytes(1 << 20, 7)
        .iter()
        .map(|b| b'a' + b % 26)
        .collect::<Vec<u8>>();
    // 64 pieces of 16 KiB, 10 ms apart: well inside the pause, about 0.7 s in all.
    for piece in line.chunks(16 * 1024) {
        stream.write_all(piece).expect("write a piece");
        std::thread::sleep(Duration::from_millis(10));
    }
    stream.write_all(b"\nnext\n").expect("write the end");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let got = read_until_eof(&mut stream);
    let mut expected = line.clone();
    expected.extend_from_slice(b"\nnext\n");
    assert_eq!(got.len(), expected.len(), "the line was cut");
    assert!(got.as_bytes() == expected, "the answer differs");
}

#[test]
fn bytes_before_eof_without_a_newline_are_a_message() {
    let server = Server::start(&["listen", "--port", "0", "--greet", "hi {}"]);
    let mut stream = connect(&server);
    stream.write_all(b"one\ntwo").expect("write");
    stream.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(read_until_eof(&mut stream), "hi one\nhi two\n");
}

#[test]
fn a_pause_ends_a_message_and_a_crlf_split_by_it_adds_no_empty_line() {
    let server = Server::start(&["listen", "--port", "0", "--greet", "[{}]"]);
    let mut stream = connect(&server);
    stream.write_all(b"zy\r").expect("write");
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).expect("an answer after the pause");
    assert_eq!(&buf[..n], b"[zy]\n");
    stream.write_all(b"\nnext\n").expect("write");
    stream.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(read_until_eof(&mut stream), "[next]\n");
}
