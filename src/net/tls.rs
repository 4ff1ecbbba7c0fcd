//! TLS on rustls with the `ring` provider: client verification (web PKI roots, a pinned
//! certificate fingerprint, or none), and server identities (fresh self-signed or PEM files).

use std::fmt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::net::NetError;

/// The SHA-256 digest of a certificate's DER bytes, written `sha256:HEX`.
///
/// This is what `openssl x509 -noout -fingerprint -sha256` prints (without the colons).
///
/// # Examples
///
/// ```
/// use sockit::net::tls::Fingerprint;
///
/// let fp = Fingerprint::of(b"not really a certificate");
/// let again: Fingerprint = fp.to_string().parse().unwrap();
/// assert_eq!(fp, again);
/// // The colon-separated form openssl prints is accepted too.
/// let openssl = fp.to_string()[7..].as_bytes().chunks(2)
///     .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
///     .collect::<Vec<_>>().join(":");
/// assert_eq!(openssl.parse::<Fingerprint>().unwrap(), fp);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a fingerprint could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid certificate pin {0:?}: expected sha256: followed by 64 hex digits")]
pub struct FingerprintError(String);

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || FingerprintError(s.to_owned());
        let hex = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        let digits: Vec<u8> = hex.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 {
            return Err(err());
        }
        let mut bytes = [0; 32];
        for (out, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| err())?;
            *out = u8::from_str_radix(pair, 16).map_err(|_| err())?;
        }
        Ok(Self(bytes))
    }
}

/// How a TLS client decides to trust the server.
#[derive(Debug, Clone, Default)]
pub enum Verify {
    /// Web PKI: Mozilla's roots plus the system's, and the name must match.
    #[default]
    WebPki,
    /// Roots from a PEM file (plus the defaults), name must match.
    CaFile(std::path::PathBuf),
    /// Only the certificate with this fingerprint, whatever its name or issuer.
    Pin(Fingerprint),
    /// Anything (`--insecure`): encryption without authentication.
    Insecure,
}

fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM ahead of AES-256-GCM (ring's order): as safe for a session, and with 10
    // rounds instead of 14 the cheaper per byte. Each side offers in this order, so two
    // sockit peers agree on it; ChaCha20 stays behind both.
    provider.cipher_suites.sort_by_key(|suite| {
        let aes_128 = matches!(
            suite.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (suite.tls13().is_none(), !aes_128)
    });
    Arc::new(provider)
}

/// Builds a client configuration; `alpn` lists protocols to offer (e.g. `b"http/1.1"`).
///
/// # Errors
///
/// [`NetError::TlsConfig`] when a CA file cannot be read.
pub fn client_config(
    verify: &Verify,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, NetError> {
    let mut config = verifying_builder(verify)?.with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// As [`client_config`], and the client presents the certificate chain in `cert` with the
/// private key in `key` (PEM) to a server that asks for one (mutual TLS, `--cert/--key`).
///
/// # Errors
///
/// [`NetError::TlsConfig`] when a file cannot be read or the key does not fit the certificate.
pub fn client_config_with_cert(
    verify: &Verify,
    alpn: &[&[u8]],
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ClientConfig>, NetError> {
    let chain = read_certs(cert)?;
    if chain.is_empty() {
        return Err(NetError::TlsConfig(format!(
            "{} holds no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| NetError::TlsConfig(format!("reading key {}: {e}", key.display())))?;
    let mut config = verifying_builder(verify)?
        .with_client_auth_cert(chain, key)
        .map_err(|e| NetError::TlsConfig(format!("client certificate and key: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration builder that checks the server as `verify` says.
fn verifying_builder(
    verify: &Verify,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, NetError>
{
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::TlsConfig(e.to_string()))?;
    Ok(match verify {
        Verify::WebPki => builder.with_root_certificates(default_roots()),
        Verify::CaFile(path) => {
            let mut roots = default_roots();
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| NetError::TlsConfig(format!("{}: {e}", path.display())))?;
            }
            builder.with_root_certificates(roots)
        }
        Verify::Pin(fingerprint) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned::new(Some(*fingerprint)))),
        Verify::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned::new(None))),
    })
}

fn default_roots() -> rustls::RootCertStore {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // The system store adds private CAs a user has installed; unreadable entries are skipped.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    roots
}

/// Connects to `addr` by `route` (the route the failed connection took: directly, through
/// its proxy or over its Unix socket) and completes a handshake that trusts any
/// certificate, only to read the server's: its fingerprint (for a hint to pin it), or an
/// error when the server does not speak TLS. Nothing is sent after the handshake.
///
/// # Errors
///
/// [`NetError`] when connecting or the handshake fails, or no certificate came.
pub async fn probe_fingerprint(
    addr: &crate::net::HostPort,
    route: &crate::net::DialOptions,
    server_name: &str,
    timeout: std::time::Duration,
) -> Result<Fingerprint, NetError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (dialed, _) = tokio::time::timeout_at(deadline, crate::net::dial::dial(addr, route))
        .await
        .map_err(|_| NetError::Timeout {
            what: format!("connecting to {addr}"),
            after: timeout,
        })??;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| NetError::TlsConfig(format!("server name {server_name:?}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(client_config(&Verify::Insecure, &[])?);
    let tls = tokio::time::timeout_at(deadline, connector.connect(name, dialed.into_boxed()))
        .await
        .map_err(|_| NetError::Timeout {
            what: format!("TLS handshake with {addr}"),
            after: timeout,
        })?
        .map_err(|source| NetError::Tls {
            peer: addr.to_string(),
            source,
        })?;
    let (_, connection) = tls.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| Fingerprint::of(leaf))
        .ok_or_else(|| NetError::TlsConfig(format!("{addr} sent no certificate")))
}

/// A verifier that trusts one certificate by fingerprint (or, with `None`, any), while
/// still checking that the server holds the certificate's private key.
#[derive(Debug)]
struct Pinned {
    pin: Option<Fingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn new(pin: Option<Fingerprint>) -> Self {
        Self {
            pin,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            None => Ok(ServerCertVerified::assertion()),
            Some(pin) => {
                let seen = Fingerprint::of(end_entity);
                if seen == pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "certificate fingerprint {seen} does not match the pinned {pin}"
                    )))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A server's TLS identity and its certificate fingerprint (to print for clients to pin).
#[derive(Clone)]
pub struct ServerIdentity {
    /// The ready-to-use rustls configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate.
    pub fingerprint: Fingerprint,
    /// The certificate chain, PEM-encoded (for `curl --cacert`).
    pub cert_pem: String,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// A fresh self-signed certificate valid for `names` (DNS names or IP literals), plus
    /// `localhost`, `127.0.0.1` and `::1`.
    ///
    /// # Errors
    ///
    /// [`NetError::TlsConfig`] if the certificate cannot be generated.
    pub fn self_signed(names: &[String], alpn: &[&[u8]]) -> Result<Self, NetError> {
        let made = generate(names)?;
        Self::from_parts(vec![made.cert], made.key, made.cert_pem, alpn)
    }

    /// The self-signed identity kept in the PEM file `path` (certificate, then private
    /// key): loaded when the file exists, so the fingerprint stays the same across
    /// restarts; otherwise made as [`self_signed`](Self::self_signed) does for `names` and
    /// written there first. The file is created with mode 0600, exclusively (an existing
    /// file is never overwritten) and never through a symbolic link; an existing one must
    /// be a regular file that neither group nor others may read or write.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockit::net::tls::ServerIdentity;
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("server.pem");
    /// let first = ServerIdentity::load_or_create(&path, &[], &[])?;
    /// let again = ServerIdentity::load_or_create(&path, &[], &[])?;
    /// assert_eq!(first.fingerprint, again.fingerprint);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`NetError::IdentityExposed`] for a file open to group or others;
    /// [`NetError::IdentityInvalid`] for one that does not hold a certificate and its
    /// matching private key; [`NetError::TlsConfig`] when the file cannot be read or
    /// written, or is a symbolic link or not a regular file.
    pub fn load_or_create(path: &Path, names: &[String], alpn: &[&[u8]]) -> Result<Self, NetError> {
        let error = |what: &dyn fmt::Display| {
            NetError::TlsConfig(format!("identity file {}: {what}", path.display()))
        };
        match open_identity_file(path) {
            Ok(file) => return Self::from_identity_file(path, file, alpn),
            Err(IdentityOpen::Missing) => {}
            Err(IdentityOpen::Failed(e)) => return Err(e),
        }
        let made = generate(names)?;
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(path);
        let mut file = match created {
            Ok(file) => file,
            // Another server made it a moment ago: take that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return match open_identity_file(path) {
                    Ok(file) => Self::from_identity_file(path, file, alpn),
                    Err(IdentityOpen::Missing) => Err(error(&"it vanished while being made")),
                    Err(IdentityOpen::Failed(e)) => Err(e),
                };
            }
            Err(e) => return Err(error(&format!("cannot create it: {e}"))),
        };
        let pem = format!("{}{}", made.cert_pem, made.key_pem);
        std::io::Write::write_all(&mut file, pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| error(&format!("cannot write it: {e}")))?;
        Self::from_parts(vec![made.cert], made.key, made.cert_pem, alpn)
    }

    fn from_identity_file(
        path: &Path,
        mut file: std::fs::File,
        alpn: &[&[u8]],
    ) -> Result<Self, NetError> {
        let error = |what: &dyn fmt::Display| NetError::IdentityInvalid {
            path: path.to_owned(),
            reason: what.to_string(),
        };
        let mut pem = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut pem)
            .map_err(|e| NetError::TlsConfig(format!("identity file {}: {e}", path.display())))?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(&format!("not PEM: {e}")))?;
        if chain.is_empty() {
            return Err(error(&"it holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| error(&format!("it holds no private key ({e})")))?;
        let cert_pem = certificate_blocks(&String::from_utf8_lossy(&pem));
        Self::from_parts(chain, key, cert_pem, alpn).map_err(|e| match e {
            NetError::TlsConfig(reason) => error(&reason),
            other => other,
        })
    }

    /// An identity from a PEM certificate chain and a PEM private key.
    ///
    /// # Errors
    ///
    /// [`NetError::TlsConfig`] when a file is unreadable, empty or does not match.
    pub fn from_pem_files(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<Self, NetError> {
        let chain = read_certs(cert)?;
        let cert_pem = std::fs::read_to_string(cert)
            .map_err(|e| NetError::TlsConfig(format!("reading {}: {e}", cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| NetError::TlsConfig(format!("reading key {}: {e}", key.display())))?;
        Self::from_parts(chain, key, cert_pem, alpn)
    }

    fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_pem: String,
        alpn: &[&[u8]],
    ) -> Result<Self, NetError> {
        let leaf = chain.first().ok_or_else(|| {
            NetError::TlsConfig("the certificate file holds no certificate".into())
        })?;
        let fingerprint = Fingerprint::of(leaf);
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| NetError::TlsConfig(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| NetError::TlsConfig(format!("certificate and key: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
            fingerprint,
            cert_pem,
        })
    }
}

/// A fresh self-signed certificate and its key, in DER and in PEM.
struct SelfSigned {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

/// A fresh self-signed certificate for `names` plus `localhost`, `127.0.0.1` and `::1`.
fn generate(names: &[String]) -> Result<SelfSigned, NetError> {
    let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for name in names {
        if !all.contains(name) {
            all.push(name.clone());
        }
    }
    let generated = rcgen::generate_simple_self_signed(all)
        .map_err(|e| NetError::TlsConfig(format!("generating a certificate: {e}")))?;
    Ok(SelfSigned {
        cert: generated.cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(generated.key_pair.serialize_der().into()),
        cert_pem: generated.cert.pem(),
        key_pem: generated.key_pair.serialize_pem(),
    })
}

/// The `CERTIFICATE` blocks of a PEM text, without the key that may follow them.
fn certificate_blocks(pem: &str) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = String::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        blocks.push_str(&rest[start..start + len + END.len()]);
        blocks.push('\n');
        rest = &rest[start + len + END.len()..];
    }
    blocks
}

/// Why an identity file could not be opened for reading.
enum IdentityOpen {
    /// There is none yet.
    Missing,
    /// It is there but unusable.
    Failed(NetError),
}

/// Opens an existing identity file without following a symbolic link, and checks that it
/// is a regular file only its owner may read or write.
fn open_identity_file(path: &Path) -> Result<std::fs::File, IdentityOpen> {
    let failed = |what: String| {
        IdentityOpen::Failed(NetError::TlsConfig(format!(
            "identity file {}: {what}",
            path.display()
        )))
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        // Non-blocking: opening a FIFO planted there must not hang the server.
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(IdentityOpen::Missing),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
            return Err(failed("it is a symbolic link; give the file itself".into()));
        }
        Err(e) => return Err(failed(format!("cannot open it: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| failed(format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(failed("it is not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityOpen::Failed(NetError::IdentityExposed {
            path: path.to_owned(),
            mode,
        }));
    }
    Ok(file)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let err =
        |e: &dyn fmt::Display| NetError::TlsConfig(format!("reading {}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&e))?;
    if certs.is_empty() {
        return Err(err(&"no PEM certificate found"));
    }
    Ok(certs)
}

/// The name to present in SNI and to verify: the host as written (IP literals work too).
///
/// # Errors
///
/// [`NetError::TlsConfig`] for a host that is neither a DNS name nor an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, NetError> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| NetError::TlsConfig(format!("{host:?} is not a valid TLS server name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_rejects_garbage() {
        for bad in ["", "sha256:", "sha256:zz", &"a".repeat(63), &"g".repeat(64)] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn two_sockit_peers_agree_on_aes_128_gcm() {
        let id = ServerIdentity::self_signed(&["example.test".into()], &[]).unwrap();
        let client = client_config(&Verify::Pin(id.fingerprint), &[]).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let accept = tokio_rustls::TlsAcceptor::from(id.config.clone()).accept(b);
        let name = server_name("example.test").unwrap();
        let connect = tokio_rustls::TlsConnector::from(client).connect(name, a);
        let (client, server) = tokio::join!(connect, accept);
        let (client, server) = (client.unwrap(), server.unwrap());
        for suite in [
            client.get_ref().1.negotiated_cipher_suite(),
            server.get_ref().1.negotiated_cipher_suite(),
        ] {
            assert_eq!(
                suite.map(|s| s.suite()),
                Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
            );
        }
    }

    #[test]
    fn self_signed_pem_parses_back_to_the_same_fingerprint() {
        let id = ServerIdentity::self_signed(&["example.test".into()], &[]).unwrap();
        let der = CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).unwrap();
        assert_eq!(Fingerprint::of(&der), id.fingerprint);
    }
}
