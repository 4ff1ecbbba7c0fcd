//! Argument groups that several commands share, and value parsers (durations, sizes).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use sockit::net::dial::{ConnectTo, DialOptions, Endpoint, Family, Resolve, UnixAddr};
use sockit::net::proxy::{Proxy, ProxyEnv, ProxyPolicy};
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
        if UnixAddr::parse_prefixed(s).is_some() {
            return s.parse::<Endpoint>().map(|_| Self(s.to_owned()));
        }
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
    /// The word as it was given.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Where to connect: a Unix socket (`unix:PATH`, which takes no port), or the address
    /// with `port` as [`with_port`](Self::with_port) makes it.
    pub(crate) fn endpoint(&self, port: Option<u16>) -> anyhow::Result<Endpoint> {
        match UnixAddr::parse_prefixed(&self.0) {
            Some(_) if port.is_some() => Err(crate::cli::UsageError(
                format!("{:?} is a Unix socket: it takes no port", self.0).into(),
            )
            .into()),
            Some(_) => Ok(self.0.parse()?),
            None => Ok(Endpoint::Tcp(self.with_port(port)?)),
        }
    }

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
    /// Address to bind; the default, 127.0.0.1, accepts this machine only (serve also takes
    /// unix:PATH)
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
            dial: DialOptions::default(),
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

/// How a client reaches its server: proxy, Unix socket, address overrides, source address.
#[derive(Debug, Args, Default)]
pub(crate) struct RouteArgs {
    /// Go through a proxy: socks5h://[USER:PASS@]HOST:PORT (the proxy resolves names),
    /// socks5://… (names resolved here), http://… or https://… (CONNECT); '' for none
    #[arg(long, value_name = "URL", help_heading = "Route")]
    pub(crate) proxy: Option<String>,
    /// Also trust the CA certificates in this PEM file for an https:// proxy
    #[arg(long, value_name = "FILE", help_heading = "Route")]
    pub(crate) proxy_cacert: Option<PathBuf>,
    /// Hosts reached without the proxy: names (with their subdomains), IPs, CIDRs or '*',
    /// comma-separated; replaces NO_PROXY
    #[arg(long, value_name = "LIST", help_heading = "Route")]
    pub(crate) noproxy: Option<String>,
    /// Connect to this Unix socket instead (@NAME: Linux abstract socket); the address or
    /// URL still names the server (Host header, TLS)
    #[arg(long, value_name = "PATH", help_heading = "Route")]
    pub(crate) unix_socket: Option<String>,
    /// Use ADDR for HOST:PORT instead of DNS (TLS still checks HOST); repeatable
    #[arg(long, value_name = "HOST:PORT:ADDR", help_heading = "Route")]
    pub(crate) resolve: Vec<Resolve>,
    /// Connect to HOST2:PORT2 when asked for HOST:PORT (TLS still checks HOST); repeatable
    #[arg(long, value_name = "HOST:PORT:HOST2:PORT2", help_heading = "Route")]
    pub(crate) connect_to: Vec<ConnectTo>,
    /// Send from this local IP address
    #[arg(long, value_name = "ADDR", help_heading = "Route")]
    pub(crate) source: Option<std::net::IpAddr>,
    /// Use IPv4 addresses only
    #[arg(short = '4', long, conflicts_with = "ipv6", help_heading = "Route")]
    pub(crate) ipv4: bool,
    /// Use IPv6 addresses only
    #[arg(short = '6', long, help_heading = "Route")]
    pub(crate) ipv6: bool,
}

impl RouteArgs {
    /// The route for a client that talks to one server, `target`: `--proxy` as given (the
    /// environment is for the HTTP commands), unless `--noproxy` names the target.
    pub(crate) fn dial_options(&self, target: &HostPort) -> anyhow::Result<DialOptions> {
        let mut options = self.dial_without_proxy()?;
        options.proxy = self
            .policy(false)?
            .proxy_for("", target.host_or(sockit::net::DEFAULT_CONNECT_HOST))?;
        Ok(options)
    }

    /// The route without a proxy (an HTTP client picks one per URL from [`Self::policy`]).
    pub(crate) fn dial_without_proxy(&self) -> Result<DialOptions, NetError> {
        let proxy_tls = match &self.proxy_cacert {
            Some(file) => Some(tls::client_config(&Verify::CaFile(file.clone()), &[])?),
            None => None,
        };
        Ok(DialOptions {
            proxy: None,
            proxy_tls,
            unix_socket: self.unix_socket.as_deref().map(UnixAddr::from_path_text),
            resolve: self.resolve.clone(),
            connect_to: self.connect_to.clone(),
            source: self.source,
            family: match (self.ipv4, self.ipv6) {
                (true, _) => Some(Family::V4),
                (_, true) => Some(Family::V6),
                _ => None,
            },
            socket_buffer_bytes: None,
        })
    }

    /// The proxy policy: `--proxy` (`''` for none), else, when `read_env`, the proxy
    /// environment variables as curl reads them; `--noproxy` either way.
    pub(crate) fn policy(&self, read_env: bool) -> anyhow::Result<ProxyPolicy> {
        let explicit = match self.proxy.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(None),
            Some(url) => Some(Some(url.parse::<Proxy>()?)),
        };
        Ok(ProxyPolicy {
            explicit,
            env: if read_env {
                ProxyEnv::from_env()
            } else {
                ProxyEnv::default()
            },
            no_proxy: self.noproxy.clone(),
        })
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
    /// Keep the self-signed certificate and key in FILE: made on the first run (mode 0600),
    /// loaded on later ones, so the --pin fingerprint survives restarts (implies --tls)
    #[arg(long = "identity", value_name = "FILE", conflicts_with_all = ["cert", "key"])]
    pub(crate) identity_file: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// Whether the server speaks TLS.
    pub(crate) fn is_on(&self) -> bool {
        self.tls || self.cert.is_some() || self.identity_file.is_some()
    }

    /// The server identity, or `None` when TLS is off.
    pub(crate) fn identity(
        &self,
        bind: std::net::SocketAddr,
        alpn: &[&[u8]],
    ) -> Result<Option<ServerIdentity>, NetError> {
        let names = [bind.ip().to_string()];
        match (&self.cert, &self.key, &self.identity_file) {
            (Some(cert), Some(key), _) => ServerIdentity::from_pem_files(cert, key, alpn).map(Some),
            (_, _, Some(file)) => kept_identity(file, &names, alpn).map(Some),
            _ if self.tls => ServerIdentity::self_signed(&names, alpn).map(Some),
            _ => Ok(None),
        }
    }
}

/// `--identity FILE`: the identity kept in FILE (made there on the first run); a failure
/// leaves the hint that fixes it.
pub(crate) fn kept_identity(
    file: &std::path::Path,
    names: &[String],
    alpn: &[&[u8]],
) -> Result<ServerIdentity, NetError> {
    let loaded = ServerIdentity::load_or_create(file, names, alpn);
    match &loaded {
        Err(NetError::IdentityExposed { path, .. }) => crate::cli::hints::set(format!(
            "chmod 600 {} (and make a new identity if others may have read the key)",
            path.display()
        )),
        Err(NetError::IdentityInvalid { .. }) => {
            crate::cli::hints::set(format!(
                "move {} away to make a new identity (its fingerprint changes: clients must pin the new one)",
                file.display()
            ));
        }
        _ => {}
    }
    loaded
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
    fn route_flags_parse_and_an_empty_proxy_means_none() {
        use clap::Parser;
        let parsed = crate::cli::Cli::try_parse_from([
            "sockit",
            "connect",
            "-s",
            "127.0.0.2",
            "-4",
            "--proxy",
            "socks5h://u:p@h:1",
            ":80",
        ]);
        assert!(parsed.is_ok(), "{parsed:?}");
        assert!(crate::cli::Cli::try_parse_from(["sockit", "connect", "-4", "-6", ":80"]).is_err());
        assert!(
            crate::cli::Cli::try_parse_from(["sockit", "get", "--resolve", "h:1", "h"]).is_err()
        );
        let route = RouteArgs {
            proxy: Some(String::new()),
            ..RouteArgs::default()
        };
        assert_eq!(route.policy(true).unwrap().explicit, Some(None));
        let route = RouteArgs {
            proxy: Some("ftp://h:1".into()),
            ..RouteArgs::default()
        };
        assert!(route.policy(false).is_err());
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
