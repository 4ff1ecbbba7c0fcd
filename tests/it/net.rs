//! `sockit connect` and `sockit listen` over real sockets.

use crate::support::*;

#[test]
fn connect_through_listen_echo_is_byte_exact() {
    let server = Server::start(&["listen", "--port", "0", "--echo"]);
    let data = random_bytes(8 << 20, 1);
    let (out, err, code) = run(&["connect", &server.addr.to_string()], &data);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.len(), data.len());
    assert!(out == data, "echoed bytes differ");
}
