//! Argument groups that several commands share, and value parsers (durations, sizes).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use sockit::net::tls::{self, Fingerprint, ServerIdentity, Verify};
use sockit::net::trace::TraceSink;
use sockit::net::{AddrError, ClientOptions, DEFAULT_BIND_HOST, HostPort, NetError, Target};

use crate::cli::output::say;

/// Parses `500ms`, `5s`, `2m`, `1h` or a bare number of seconds (`1.5`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (examples: 500ms, 5s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration out of range: {s:?}"))
}

/// Parses a byte count: `8192`, `64k`, `8KiB`, `1M`, `2GiB` (binary units).
pub(crate) fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: usize = number
        .parse()
        .map_err(|_| format!("invalid size {s:?} (examples: 8192, 64KiB, 1MiB)"))?;
    let scale: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use KiB, MiB or GiB)"
            ));
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("size out of range: {s:?}"))
}

/// The first word of an address as nc takes it: a whole `ADDR` (`HOST:PORT`, `:PORT`,
/// `PORT`), or a bare `HOST` whose port comes as the next argument (`example.com 80`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddrWord(String);

impl std::str::FromStr for AddrWord {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<HostPort>() {
            Ok(_) => Ok(Self(s.to_owned())),
            // nc takes `::1 80`: a bare IPv6 address needs no brackets before its port.
            Err(_) if s.parse::<std::net::Ipv6Addr>().is_ok() => Ok(Self(s.to_owned())),
            Err(whole) => match Target::parse(s) {
                // A bare host is checked as the address it becomes with a port.
                Ok(t) if t.port.is_none() && t.host.is_some() => join_port(s, 1)
                    .parse::<HostPort>()
                    .map(|_| Self(s.to_owned()))
                    .map_err(|_| whole),
                _ => Err(whole),
            },
        }
    }
}

impl AddrWord {
    /// The address, with `port` (the second argument, nc style) when one was given.
    pub(crate) fn with_port(&self, port: Option<u16>) -> anyhow::Result<HostPort> {
        let Some(port) = port else {
            return self.0.parse::<HostPort>().map_err(|e| {
                crate::cli::UsageError(
                    format!("{e}; or give the port as a second argument: HOST PORT").into(),
                )
                .into()
            });
        };
        if self.0.parse::<HostPort>().is_ok() {
            anyhow::bail!(crate::cli::UsageError(
                format!(
                    "{:?} already names a port; give HOST:PORT or HOST PORT, not both",
                    self.0
                )
                .into()
            ));
        }
        Ok(join_port(&self.0, port).parse()?)
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn join_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Where a server listens: an optional `ADDR`, or `--port`/`--bind`.
#[derive(Debug, Args)]
pub(crate) struct BindArgs {
    /// Port to listen on; 0 picks a free one (printed on stderr)
    #[arg(short, long, value_name = "PORT")]
    pub(crate) port: Option<u16>,
    /// Address to bind; the default, 127.0.0.1, accepts this machine only
    #[arg(short, long, value_name = "IP", default_value = DEFAULT_BIND_HOST)]
    pub(crate) bind: String,
}

impl BindArgs {
    /// The address to bind: `addr` (if given) wins over `--port`/`--bind`.
    pub(crate) fn resolve(
        &self,
        addr: Option<&HostPort>,
        default_port: u16,
    ) -> anyhow::Result<std::net::SocketAddr> {
        let hp = match addr {
            Some(addr) => {
                if self.port.is_some() {
                    anyhow::bail!("give the address either as ADDR or with --port, not both");
                }
                addr.clone().with_default_host(&self.bind)
            }
            None => HostPort::new(Some(self.bind.clone()), self.port.unwrap_or(default_port)),
        };
        Ok(hp.bind_addr()?)
    }
}

/// TLS options of a client.
#[derive(Debug, Args)]
pub(crate) struct ClientTlsArgs {
    /// Use TLS (certificates are checked against the web PKI roots)
    #[arg(long)]
    pub(crate) tls: bool,
    /// Trust only the certificate with this SHA-256 fingerprint (implies --tls)
    #[arg(long, value_name = "sha256:HEX")]
    pub(crate) pin: Option<Fingerprint>,
    /// Also trust the CA certificates in this PEM file (implies --tls)
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// Do not verify the server's certificate (implies --tls; encrypted, not authenticated)
    #[arg(short = 'k', long, conflicts_with_all = ["pin", "ca"])]
    pub(crate) insecure: bool,
    /// Name to send in SNI and to verify, instead of the host in ADDR
    #[arg(long, value_name = "NAME")]
    pub(crate) sni: Option<String>,
}

impl ClientTlsArgs {
    /// The options to open a stream with: TLS as these flags say (no ALPN), SNI, tracing.
    pub(crate) fn client_options(
        &self,
        connect_timeout: Duration,
        trace: &TraceArgs,
    ) -> Result<ClientOptions, NetError> {
        let tls = match self.verify() {
            Some(verify) => Some(tls::client_config(&verify, &[])?),
            None => None,
        };
        Ok(ClientOptions {
            connect_timeout,
            tls,
            server_name: self.sni.clone(),
            trace: trace.sink(),
        })
    }

    /// The verification policy, or `None` when TLS is off.
    pub(crate) fn verify(&self) -> Option<Verify> {
        if let Some(pin) = self.pin {
            Some(Verify::Pin(pin))
        } else if self.insecure {
            Some(Verify::Insecure)
        } else if let Some(ca) = &self.ca {
            Some(Verify::CaFile(ca.clone()))
        } else if self.tls {
            Some(Verify::WebPki)
        } else {
            None
        }
    }
}

/// TLS options of a server.
#[derive(Debug, Args)]
pub(crate) struct ServerTlsArgs {
    /// Serve TLS with a fresh self-signed certificate (its fingerprint is printed)
    #[arg(long)]
    pub(crate) tls: bool,
    /// PEM certificate chain to serve (implies --tls)
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key for --cert
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// The server identity, or `None` when TLS is off.
    pub(crate) fn identity(
        &self,
        bind: std::net::SocketAddr,
        alpn: &[&[u8]],
    ) -> Result<Option<ServerIdentity>, NetError> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => ServerIdentity::from_pem_files(cert, key, alpn).map(Some),
            _ if self.tls => ServerIdentity::self_signed(&[bind.ip().to_string()], alpn).map(Some),
            _ => Ok(None),
        }
    }
}

/// `--trace`: the exact bytes on the wire.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// Print every byte sent and received as a hexdump on stderr
    #[arg(long)]
    pub(crate) trace: bool,
}

impl TraceArgs {
    pub(crate) fn sink(&self) -> Option<TraceSink> {
        self.trace.then(TraceSink::stderr)
    }
}

/// Prints the line every server starts with (tests and scripts read it), then any notes.
pub(crate) fn announce(mode: &str, addr: std::net::SocketAddr, identity: Option<&ServerIdentity>) {
    say(format_args!("sockit {mode} listening on {addr}"));
    if let Some(identity) = identity {
        say(format_args!(
            "sockit {mode} TLS certificate {}",
            identity.fingerprint
        ));
    }
    if addr.ip().is_loopback() {
        say(format_args!(
            "hint: only this machine can connect; add --bind 0.0.0.0 to accept others"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn addresses_take_their_port_in_one_word_or_two() {
        let word = |s: &str| s.parse::<AddrWord>();
        assert_eq!(
            word("example.com").unwrap().with_port(Some(80)).unwrap(),
            "example.com:80".parse().unwrap()
        );
        assert_eq!(
            word("::1").unwrap().with_port(Some(80)).unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            word("example.com:80").unwrap().with_port(None).unwrap(),
            "example.com:80".parse().unwrap()
        );
        assert_eq!(
            word("9000").unwrap().with_port(None).unwrap(),
            "9000".parse().unwrap()
        );
        let err = word("example.com").unwrap().with_port(None).unwrap_err();
        assert!(format!("{err:#}").contains("missing :PORT"), "{err:#}");
        assert!(word("example.com:80").unwrap().with_port(Some(81)).is_err());
        assert!(word("http://x/").is_err());
        assert!(word("bad host").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("8192"), Ok(8192));
        assert_eq!(parse_bytes("8KiB"), Ok(8192));
        assert_eq!(parse_bytes("1m"), Ok(1 << 20));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999999999999G").is_err());
    }
}
