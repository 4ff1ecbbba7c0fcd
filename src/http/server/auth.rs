//! HTTP Basic authentication with one user; the password is kept only as a SHA-256 digest.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;

/// The credentials a client must present: `user:password` or `user:sha256:HEX`.
///
/// `Debug` never shows the secret.
///
/// # Examples
///
/// ```
/// use sockit::http::server::Credentials;
///
/// let creds: Credentials = "alice:wonder land".parse().unwrap();
/// assert!(creds.accepts_header("Basic YWxpY2U6d29uZGVyIGxhbmQ="));
/// assert!(!creds.accepts_header("Basic YWxpY2U6d3Jvbmc="));
/// assert_eq!(format!("{creds:?}"), "Credentials { user: \"alice\", password: <redacted> }");
/// ```
#[derive(Clone)]
pub struct Credentials {
    user: String,
    digest: [u8; 32],
}

/// Why `--auth` could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid credentials: expected user:password or user:sha256:HEX")]
pub struct CredentialsError;

impl FromStr for Credentials {
    type Err = CredentialsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (user, secret) = s.split_once(':').ok_or(CredentialsError)?;
        if user.is_empty() {
            return Err(CredentialsError);
        }
        let digest = match secret.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 => {
                let mut digest = [0u8; 32];
                for (out, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
                    let pair = std::str::from_utf8(pair).map_err(|_| CredentialsError)?;
                    *out = u8::from_str_radix(pair, 16).map_err(|_| CredentialsError)?;
                }
                digest
            }
            _ => sha256(secret.as_bytes()),
        };
        Ok(Self {
            user: user.to_owned(),
            digest,
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted;
        impl fmt::Debug for Redacted {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &Redacted)
            .finish()
    }
}

impl Credentials {
    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether an `Authorization` header value carries these credentials. The scheme name
    /// is matched without regard to case (RFC 9110 §11.1).
    pub fn accepts_header(&self, header: &str) -> bool {
        let Some((scheme, encoded)) = header.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        // Compare digests so the time taken says nothing about the secret.
        let user_ok = same(&sha256(user), &sha256(self.user.as_bytes()));
        let password_ok = same(&sha256(password), &self.digest);
        user_ok & password_ok
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_forms_agree() {
        let plain: Credentials = "bob:s3cret".parse().unwrap();
        let hex: String = sha256(b"s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let hashed: Credentials = format!("bob:sha256:{hex}").parse().unwrap();
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bob:s3cret")
        );
        assert!(plain.accepts_header(&header));
        assert!(hashed.accepts_header(&header));
        for scheme in ["basic", "BASIC", "Basic  "] {
            assert!(plain.accepts_header(&header.replacen("Basic", scheme, 1)));
        }
        assert!(!plain.accepts_header(&header.replacen("Basic ", "Basic", 1)));
        assert!(!plain.accepts_header("Bearer x"));
        assert!(!plain.accepts_header("Basic !!!"));
        assert!("nocolon".parse::<Credentials>().is_err());
        assert!(":pw".parse::<Credentials>().is_err());
    }
}
