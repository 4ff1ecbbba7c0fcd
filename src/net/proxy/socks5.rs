//! SOCKS5 (RFC 1928) with user name and password (RFC 1929): the client handshake, and the
//! pure pieces a server needs (request parsing, reply encoding). No listening here: the
//! server is `net/socks_server.rs`.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::proxy::{Credentials, ProxyError};

/// The protocol version byte.
pub const VERSION: u8 = 5;
/// Method: no authentication.
pub const METHOD_NONE: u8 = 0x00;
/// Method: user name and password (RFC 1929).
pub const METHOD_PASSWORD: u8 = 0x02;
/// Method reply: none of the offered methods is acceptable.
pub const METHOD_UNACCEPTABLE: u8 = 0xff;
/// Command: CONNECT.
pub const CMD_CONNECT: u8 = 1;
/// Reply: succeeded.
pub const REPLY_OK: u8 = 0;
/// Reply: general failure.
pub const REPLY_FAILURE: u8 = 1;
/// Reply: network unreachable.
pub const REPLY_NETWORK_UNREACHABLE: u8 = 3;
/// Reply: host unreachable.
pub const REPLY_HOST_UNREACHABLE: u8 = 4;
/// Reply: connection refused.
pub const REPLY_REFUSED: u8 = 5;
/// Reply: TTL expired (used for timeouts).
pub const REPLY_TTL_EXPIRED: u8 = 6;
/// Reply: command not supported.
pub const REPLY_COMMAND_UNSUPPORTED: u8 = 7;
/// Reply: address type not supported.
pub const REPLY_ADDRESS_UNSUPPORTED: u8 = 8;

const ATYP_V4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_V6: u8 = 4;

/// A reply code in words (RFC 1928 section 6).
pub fn reply_text(code: u8) -> String {
    match code {
        REPLY_FAILURE => "general SOCKS server failure".to_owned(),
        2 => "connection not allowed by ruleset".to_owned(),
        REPLY_NETWORK_UNREACHABLE => "network unreachable".to_owned(),
        REPLY_HOST_UNREACHABLE => "host unreachable".to_owned(),
        REPLY_REFUSED => "connection refused by destination".to_owned(),
        REPLY_TTL_EXPIRED => "TTL expired".to_owned(),
        REPLY_COMMAND_UNSUPPORTED => "command not supported".to_owned(),
        REPLY_ADDRESS_UNSUPPORTED => "address type not supported".to_owned(),
        other => format!("unknown reply code {other}"),
    }
}

/// Where a CONNECT goes: an IP address, or a name for the proxy to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An address, resolved by the client.
    Addr(SocketAddr),
    /// A host name and port, resolved by the proxy.
    Name(String, u16),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Addr(addr) => write!(f, "{addr}"),
            Destination::Name(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// Appends the address part of a request or reply (`ATYP`, address, port).
pub fn encode_destination(dest: &Destination, out: &mut Vec<u8>) {
    let port = match dest {
        Destination::Addr(SocketAddr::V4(a)) => {
            out.push(ATYP_V4);
            out.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Destination::Addr(SocketAddr::V6(a)) => {
            out.push(ATYP_V6);
            out.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Destination::Name(host, port) => {
            out.push(ATYP_DOMAIN);
            // `handshake` refuses longer names; the cut here only keeps the length byte honest.
            out.push(host.len().min(255) as u8);
            out.extend_from_slice(&host.as_bytes()[..host.len().min(255)]);
            *port
        }
    };
    out.extend_from_slice(&port.to_be_bytes());
}

/// Reads the address part of a request or reply; `Err(code)` is the reply to send back.
///
/// # Errors
///
/// The I/O error, or [`ReadDestination::Unsupported`] for an unknown address type.
pub async fn read_destination<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Destination, ReadDestination> {
    let atyp = reader.read_u8().await?;
    let dest = match atyp {
        ATYP_V4 => {
            let mut ip = [0u8; 4];
            reader.read_exact(&mut ip).await?;
            Destination::Addr(SocketAddr::new(IpAddr::from(ip), reader.read_u16().await?))
        }
        ATYP_V6 => {
            let mut ip = [0u8; 16];
            reader.read_exact(&mut ip).await?;
            Destination::Addr(SocketAddr::new(IpAddr::from(ip), reader.read_u16().await?))
        }
        ATYP_DOMAIN => {
            let len = usize::from(reader.read_u8().await?);
            let mut name = vec![0u8; len];
            reader.read_exact(&mut name).await?;
            let port = reader.read_u16().await?;
            let name = String::from_utf8(name).map_err(|_| ReadDestination::Unsupported)?;
            Destination::Name(name, port)
        }
        _ => return Err(ReadDestination::Unsupported),
    };
    Ok(dest)
}

/// Why an address could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadDestination {
    /// The stream failed or ended.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An address type this side does not know.
    #[error("unsupported address type")]
    Unsupported,
}

/// Runs the client side of the handshake on `stream` (already connected to the proxy):
/// method negotiation, RFC 1929 login when `credentials` are given, then CONNECT to `dest`.
/// On success the stream is a tunnel to `dest`; nothing past the reply has been read.
///
/// # Errors
///
/// [`ProxyError`] naming the step: no acceptable method, auth failed, the reply code in
/// words, or a protocol or I/O failure.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    dest: &Destination,
    credentials: Option<&Credentials>,
) -> Result<(), ProxyError> {
    if let Destination::Name(host, _) = dest {
        if host.len() > 255 {
            return Err(ProxyError::Protocol(format!(
                "a host name of {} bytes does not fit a SOCKS5 request (255 at most)",
                host.len()
            )));
        }
    }
    let greeting: &[u8] = match credentials {
        Some(_) => &[VERSION, 2, METHOD_NONE, METHOD_PASSWORD],
        None => &[VERSION, 1, METHOD_NONE],
    };
    stream.write_all(greeting).await?;
    stream.flush().await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[0] != VERSION {
        return Err(ProxyError::Protocol(format!(
            "it answered with version {} (not a SOCKS5 proxy?)",
            choice[0]
        )));
    }
    match (choice[1], credentials) {
        (METHOD_NONE, _) => {}
        (METHOD_PASSWORD, Some(credentials)) => login(stream, credentials).await?,
        (METHOD_UNACCEPTABLE, _) => {
            return Err(ProxyError::NoAcceptableMethod {
                offered_password: credentials.is_some(),
            });
        }
        (other, _) => {
            return Err(ProxyError::Protocol(format!(
                "it chose method {other:#04x}, which was not offered"
            )));
        }
    }
    let mut request = vec![VERSION, CMD_CONNECT, 0];
    encode_destination(dest, &mut request);
    stream.write_all(&request).await?;
    stream.flush().await?;
    let mut head = [0u8; 3];
    stream.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Err(ProxyError::Protocol(format!(
            "its reply has version {}",
            head[0]
        )));
    }
    if head[1] != REPLY_OK {
        return Err(ProxyError::Socks5Reply {
            target: dest.to_string(),
            code: head[1],
        });
    }
    // The bound address that follows is read whole, so the tunnel starts clean.
    read_destination(stream).await.map_err(|e| match e {
        ReadDestination::Io(e) => ProxyError::from(e),
        ReadDestination::Unsupported => {
            ProxyError::Protocol("its reply has an unknown address type".to_owned())
        }
    })?;
    Ok(())
}

async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    credentials: &Credentials,
) -> Result<(), ProxyError> {
    // Lengths were checked when the proxy URL was parsed.
    let (user, password) = (credentials.user.as_bytes(), credentials.password.as_bytes());
    let mut request = Vec::with_capacity(3 + user.len() + password.len());
    request.push(1);
    request.push(user.len().min(255) as u8);
    request.extend_from_slice(&user[..user.len().min(255)]);
    request.push(password.len().min(255) as u8);
    request.extend_from_slice(&password[..password.len().min(255)]);
    stream.write_all(&request).await?;
    stream.flush().await?;
    let mut answer = [0u8; 2];
    stream.read_exact(&mut answer).await?;
    if answer[1] != 0 {
        return Err(ProxyError::AuthFailed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_encode_as_rfc_1928_says() {
        let mut out = Vec::new();
        encode_destination(&Destination::Name("example.com".into(), 443), &mut out);
        assert_eq!(out[0], ATYP_DOMAIN);
        assert_eq!(out[1], 11);
        assert_eq!(&out[2..13], b"example.com");
        assert_eq!(&out[13..], &[1, 187]);

        let mut out = Vec::new();
        encode_destination(
            &Destination::Addr("127.0.0.1:80".parse().unwrap()),
            &mut out,
        );
        assert_eq!(out, [ATYP_V4, 127, 0, 0, 1, 0, 80]);
    }

    #[tokio::test]
    async fn destinations_round_trip() {
        for dest in [
            Destination::Name("a.example".into(), 1),
            Destination::Addr("[::1]:8080".parse().unwrap()),
            Destination::Addr("10.1.2.3:65535".parse().unwrap()),
        ] {
            let mut out = Vec::new();
            encode_destination(&dest, &mut out);
            let read = read_destination(&mut out.as_slice()).await.unwrap();
            assert_eq!(read, dest);
        }
    }

    #[tokio::test]
    async fn a_refusal_is_named_in_words() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let proxy = tokio::spawn(async move {
            let mut greeting = [0u8; 3];
            server.read_exact(&mut greeting).await.unwrap();
            server.write_all(&[VERSION, METHOD_NONE]).await.unwrap();
            let mut request = [0u8; 10];
            server.read_exact(&mut request).await.unwrap();
            server
                .write_all(&[VERSION, REPLY_REFUSED, 0, ATYP_V4, 0, 0, 0, 0, 0, 0])
                .await
                .unwrap();
        });
        let dest = Destination::Addr("127.0.0.1:9".parse().unwrap());
        let err = handshake(&mut client, &dest, None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "SOCKS5 CONNECT to 127.0.0.1:9 failed: connection refused by destination"
        );
        proxy.await.unwrap();
    }
}
