//! The code a sender prints and a receiver types: `sockit://HOST:PORT/TOKEN#sha256:HEX`.
//! The token (128 random bits) is in the path, the certificate fingerprint after `#`. Pure,
//! apart from drawing a fresh token.

use std::fmt;
use std::str::FromStr;

use crate::net::HostPort;
use crate::net::tls::Fingerprint;
use crate::transfer::manifest::parse_hex;

/// The scheme of a transfer code.
pub const SCHEME: &str = "sockit://";

/// The random secret in every URL of one transfer. `Debug` does not show it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Token([u8; 16]);

impl Token {
    /// A fresh token from the operating system's random source.
    ///
    /// # Errors
    ///
    /// [`CodeError::Random`] when the OS has no randomness to give.
    pub fn random() -> Result<Self, CodeError> {
        use ring::rand::SecureRandom;
        let mut bytes = [0; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| CodeError::Random)?;
        Ok(Self(bytes))
    }

    /// Whether `text` is this token written in hex, compared in constant time so the
    /// response time does not leak how many digits were right.
    pub fn matches(&self, text: &str) -> bool {
        match parse_hex::<16>(text) {
            Some(other) => {
                other
                    .iter()
                    .zip(self.0.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
            None => false,
        }
    }
}

impl From<[u8; 16]> for Token {
    fn from(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where to fetch a transfer and which certificate to trust.
///
/// # Examples
///
/// ```
/// use sockit::transfer::Code;
///
/// let text = format!("sockit://192.0.2.7:7070/{}#sha256:{}", "4f".repeat(16), "9a".repeat(32));
/// let code: Code = text.parse().unwrap();
/// assert_eq!(code.addr.port(), 7070);
/// assert_eq!(code.to_string(), text);
/// assert_eq!(code.https_url("manifest"), format!("https://192.0.2.7:7070/{}/manifest", "4f".repeat(16)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The sender's address.
    pub addr: HostPort,
    /// The secret path prefix.
    pub token: Token,
    /// The SHA-256 of the sender's certificate.
    pub fingerprint: Fingerprint,
}

/// Why a code could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// Not of the form `sockit://HOST:PORT/TOKEN#sha256:HEX`.
    #[error("invalid transfer code: {0} (expected sockit://HOST:PORT/TOKEN#sha256:HEX)")]
    Invalid(&'static str),
    /// No random numbers available.
    #[error("the operating system gave no random numbers")]
    Random,
}

impl Code {
    /// The `https://` URL of `path` below the token, for `curl -k` and the receiver.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}/{}/{path}", self.addr, self.token)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/{}#{}",
            self.addr, self.token, self.fingerprint
        )
    }
}

impl FromStr for Code {
    type Err = CodeError;

    /// Accepts `sockit://…`, and `https://…` with the same parts; a trailing `/` is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let rest = s
            .strip_prefix(SCHEME)
            .or_else(|| s.strip_prefix("https://"))
            .ok_or(CodeError::Invalid("it does not start with sockit://"))?;
        let (location, pin) = rest
            .split_once('#')
            .ok_or(CodeError::Invalid("the #sha256: fingerprint is missing"))?;
        let fingerprint = pin
            .parse::<Fingerprint>()
            .map_err(|_| CodeError::Invalid("the fingerprint is not sha256: and 64 hex digits"))?;
        let (addr, token) = location
            .split_once('/')
            .ok_or(CodeError::Invalid("the /TOKEN is missing"))?;
        let addr: HostPort = addr
            .parse()
            .map_err(|_| CodeError::Invalid("the address is not HOST:PORT"))?;
        if addr.host().is_none() {
            return Err(CodeError::Invalid("the address has no host"));
        }
        let token = token.strip_suffix('/').unwrap_or(token);
        let token = parse_hex::<16>(token)
            .map(Token)
            .ok_or(CodeError::Invalid("the token is not 32 hex digits"))?;
        Ok(Self {
            addr,
            token,
            fingerprint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Code {
        Code {
            addr: "[::1]:7070".parse().unwrap(),
            token: Token([0xab; 16]),
            fingerprint: Fingerprint::of(b"cert"),
        }
    }

    #[test]
    fn round_trips_with_ipv6() {
        let code = sample();
        let text = code.to_string();
        assert!(text.starts_with("sockit://[::1]:7070/abab"), "{text}");
        assert_eq!(text.parse::<Code>().unwrap(), code);
        let https = text.replacen(SCHEME, "https://", 1);
        assert_eq!(https.parse::<Code>().unwrap(), code);
    }

    #[test]
    fn malformed_codes_say_what_is_wrong() {
        let good = sample().to_string();
        let (head, pin) = good.split_once('#').unwrap();
        let cases = [
            ("http://x:1/ab#sha256:00".to_owned(), "sockit://"),
            (head.to_owned(), "fingerprint is missing"),
            (format!("{head}#sha256:12"), "fingerprint"),
            (format!("sockit://[::1]:7070#{pin}"), "/TOKEN"),
            (format!("sockit://[::1]:7070/abc#{pin}"), "32 hex digits"),
            (
                format!("sockit://:7070/{}#{pin}", "ab".repeat(16)),
                "no host",
            ),
            (
                format!("sockit://nope/{}#{pin}", "ab".repeat(16)),
                "HOST:PORT",
            ),
        ];
        for (text, reason) in cases {
            let err = text.parse::<Code>().expect_err(&text);
            assert!(err.to_string().contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn token_matching_is_exact_and_debug_hides_it() {
        let token = Token::random().unwrap();
        assert!(token.matches(&token.to_string()));
        assert!(token.matches(&token.to_string().to_uppercase()));
        assert!(!token.matches(&"0".repeat(32)));
        assert!(!token.matches(""));
        assert!(!token.matches(&token.to_string()[..31]));
        assert_ne!(token, Token::random().unwrap());
        assert!(!format!("{token:?}").contains(&token.to_string()));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,120}") {
            let _ = s.parse::<Code>();
        }

        #[test]
        fn every_code_round_trips(a in any::<[u8; 4]>(), port in 1u16.., token in any::<[u8; 16]>(), fp in any::<Vec<u8>>()) {
            let code = Code {
                addr: HostPort::new(Some(std::net::Ipv4Addr::from(a).to_string()), port),
                token: Token(token),
                fingerprint: Fingerprint::of(&fp),
            };
            prop_assert_eq!(code.to_string().parse::<Code>().unwrap(), code);
        }
    }
}
