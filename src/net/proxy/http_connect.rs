//! HTTP `CONNECT` (RFC 9110 section 9.3.6): asks an HTTP proxy for a tunnel. The response
//! head is read byte by byte, so not one byte of the tunnel is taken by mistake.

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::proxy::{Credentials, ProxyError};

/// A proxy's response head larger than this is refused (it is a status line and a few
/// headers; a proxy that sends more is broken or hostile).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Sends `CONNECT authority` (with `Proxy-Authorization: Basic` when `credentials` are
/// given) and reads the response head. A 2xx status means `stream` is now the tunnel.
///
/// # Errors
///
/// [`ProxyError::ConnectStatus`] for another status, [`ProxyError::Protocol`] for a
/// response that is not HTTP, [`ProxyError::Io`] when the stream fails.
pub(crate) async fn connect_tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    authority: &str,
    credentials: Option<&Credentials>,
) -> Result<(), ProxyError> {
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = credentials {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", credentials.user, credentials.password));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_HEAD_BYTES {
            return Err(ProxyError::Protocol(format!(
                "its CONNECT response head is over {MAX_HEAD_BYTES} bytes"
            )));
        }
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await? == 0 {
            return Err(ProxyError::Protocol(
                "it closed the connection before answering the CONNECT".to_owned(),
            ));
        }
        head.push(byte[0]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => {
            let first = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or(&[]))
                .trim()
                .to_owned();
            return Err(ProxyError::Protocol(format!(
                "its answer to CONNECT is not HTTP: {first:?}"
            )));
        }
    }
    let code = response.code.unwrap_or(0);
    if !(200..300).contains(&code) {
        return Err(ProxyError::ConnectStatus {
            target: authority.to_owned(),
            code,
            reason: response.reason.unwrap_or("").to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(response: &'static [u8]) -> (Result<(), ProxyError>, String, Vec<u8>) {
        let (mut client, mut proxy) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let n = proxy.read(&mut request).await.unwrap();
            proxy.write_all(response).await.unwrap();
            String::from_utf8(request[..n].to_vec()).unwrap()
        });
        let credentials = Credentials {
            user: "ada".into(),
            password: "pw".into(),
        };
        let result = connect_tunnel(&mut client, "example.com:443", Some(&credentials)).await;
        let request = server.await.unwrap();
        let mut rest = vec![0u8; 64];
        let n = if result.is_ok() {
            client.read(&mut rest).await.unwrap()
        } else {
            0
        };
        (result, request, rest[..n].to_vec())
    }

    #[tokio::test]
    async fn tunnel_bytes_after_the_head_are_left_for_the_caller() {
        let (result, request, rest) =
            answer(b"HTTP/1.1 200 Connection established\r\n\r\nhello").await;
        result.unwrap();
        assert!(request.starts_with("CONNECT example.com:443 HTTP/1.1\r\n"));
        // base64("ada:pw")
        assert!(request.contains("Proxy-Authorization: Basic YWRhOnB3\r\n"));
        assert_eq!(rest, b"hello");
    }

    #[tokio::test]
    async fn a_refusal_names_the_status() {
        let (result, _, _) = answer(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let text = result.unwrap_err().to_string();
        assert!(
            text.contains("proxy answered 407 Proxy Authentication Required"),
            "{text}"
        );
        let (result, _, _) = answer(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        assert!(result.unwrap_err().to_string().contains("not HTTP"));
    }
}
