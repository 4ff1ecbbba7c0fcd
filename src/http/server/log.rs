//! The access log: one line per request in the common log format, written to a writer the
//! caller gives (the binary passes stderr).

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::http::server::auth::Credentials;

/// Where access log lines go. Cloning shares the writer.
#[derive(Clone)]
pub struct AccessLog {
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog")
    }
}

impl AccessLog {
    /// Logs to `writer`.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        Self {
            writer: Arc::new(Mutex::new(Box::new(writer))),
        }
    }

    /// Writes one line; a failing writer loses the line, never the request.
    fn record(&self, entry: &Entry<'_>) {
        let line = entry.format(SystemTime::now());
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writer.write_all(line.as_bytes());
    }
}

/// What the access log says of a request, taken before the request is answered (the
/// request itself goes to its answer).
#[derive(Debug)]
pub(crate) struct Logged {
    method: http::Method,
    version: http::Version,
    target: String,
    user: Option<String>,
}

impl Logged {
    /// What to log of `req`; its user when `auth` accepts its credentials.
    pub(crate) fn of<B>(req: &http::Request<B>, auth: Option<&Credentials>) -> Self {
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().to_string(), |pq| pq.as_str().to_owned());
        let user = auth.and_then(|creds| {
            req.headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .filter(|h| creds.accepts_header(h))
                .map(|_| creds.user().to_owned())
        });
        Self {
            method: req.method().clone(),
            version: req.version(),
            target,
            user,
        }
    }
}

impl AccessLog {
    /// Logs `res`, the answer to the request `logged` from `peer`.
    pub(crate) fn record_answer<B: http_body::Body>(
        &self,
        logged: &Logged,
        peer: SocketAddr,
        res: &http::Response<B>,
    ) {
        let bytes = res
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .or_else(|| res.body().size_hint().exact());
        self.record(&Entry {
            peer,
            user: logged.user.as_deref(),
            method: logged.method.as_str(),
            target: &logged.target,
            version: logged.version,
            status: res.status().as_u16(),
            bytes,
        });
    }
}

/// What one access log line says.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) peer: SocketAddr,
    pub(crate) user: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) version: http::Version,
    pub(crate) status: u16,
    pub(crate) bytes: Option<u64>,
}

impl Entry<'_> {
    /// `127.0.0.1 - user [21/Nov/2026:23:10:00 +0000] "GET / HTTP/1.1" 200 13\n`
    fn format(&self, now: SystemTime) -> String {
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (y, mo, d, h, mi, s) = crate::http::server::listing::civil(secs);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS[(mo as usize).saturating_sub(1).min(11)];
        let mut line = String::with_capacity(96 + self.target.len());
        let _ = write!(
            line,
            "{} - {} [{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000] \"",
            self.peer.ip(),
            self.user.map_or_else(|| "-".to_owned(), escape),
        );
        let _ = write!(
            line,
            "{} {} {:?}\" {} ",
            escape(self.method),
            escape(self.target),
            self.version,
            self.status
        );
        match self.bytes {
            Some(n) => {
                let _ = writeln!(line, "{n}");
            }
            None => line.push_str("-\n"),
        }
        line
    }
}

/// Keeps a log line one line: control characters, quotes and backslashes are escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_log_format() {
        let entry = Entry {
            peer: "127.0.0.1:5000".parse().unwrap(),
            user: None,
            method: "GET",
            target: "/a\"b\n",
            version: http::Version::HTTP_11,
            status: 200,
            bytes: Some(13),
        };
        let when = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(
            entry.format(when),
            "127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] \"GET /a\\\"b\\x0a HTTP/1.1\" 200 13\n"
        );
    }
}
