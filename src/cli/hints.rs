//! Hints where users stall on TLS: an untrusted certificate (its fingerprint and the `--pin`
//! to type), TLS spoken to a plain server and plain text spoken to a TLS server. A command
//! leaves its hint here; `main` prints it after the error line.

use std::sync::Mutex;
use std::time::Duration;

use sockit::net::tls::probe_fingerprint;
use sockit::net::{DialOptions, HostPort};

static HINT: Mutex<Option<String>> = Mutex::new(None);

/// How long the second look at a server (for its certificate) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Keeps `hint` to print after the error line.
pub(crate) fn set(hint: String) {
    *HINT.lock().unwrap_or_else(|p| p.into_inner()) = Some(hint);
}

/// The hint a command left, if any.
pub(crate) fn take() -> Option<String> {
    HINT.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// After `err` on a connection to `addr` by `route` (the second look takes the same route,
/// so it never bypasses a proxy): when TLS was spoken (`spoke_tls`), a certificate
/// that is not trusted gets its fingerprint and the `--pin` to type, and a peer that
/// answered in plain text gets `to_plain`; when plain text was spoken and `to_tls` is given,
/// a peer that turns out to speak TLS gets `to_tls`.
pub(crate) async fn after_failure(
    err: &anyhow::Error,
    addr: &HostPort,
    route: &DialOptions,
    server_name: &str,
    spoke_tls: bool,
    to_plain: &str,
    to_tls: Option<&str>,
) {
    let text = sockit::net::error_chain(err.as_ref());
    // A plain server answers with text; an echo server sends our own ClientHello back.
    let is_plain = text.contains("InvalidContentType") || text.contains("got ClientHello");
    if spoke_tls && is_plain {
        set(format!(
            "the server does not speak TLS (its answer is no TLS handshake): {to_plain}"
        ));
    } else if spoke_tls && text.contains("invalid peer certificate") {
        if let Ok(fingerprint) = probe_fingerprint(addr, route, server_name, PROBE_TIMEOUT).await {
            set(format!(
                "the server's certificate is {fingerprint}; if that is the one you expect, \
                 add --pin {fingerprint} (or -k to skip verification)"
            ));
        }
    } else if let Some(to_tls) = to_tls.filter(|_| !spoke_tls) {
        let garbled = text.contains("invalid HTTP")
            || text.contains("connection closed before message completed");
        if garbled
            && probe_fingerprint(addr, route, server_name, PROBE_TIMEOUT)
                .await
                .is_ok()
        {
            set(format!("the server speaks TLS: {to_tls}"));
        }
    }
}
