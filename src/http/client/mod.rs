//! The HTTP client: [`Client`] (connection pool, timeouts, redirects, TLS options),
//! [`RequestBuilder`] and [`Response`] (status, headers, streaming or whole body, JSON).
//! hyper does the framing; `net::open` makes the connections (TCP, TLS, pinning).
//!
//! One concept per file, each standing on its siblings:
//!
//! - `exchange`: [`Client`] and [`ClientConfig`]; one request, its replay, its redirects.
//! - `pool`: opening connections and keeping them per origin; when one closes.
//! - `origin`: the origin of a URL and the URL forms users type ([`target_url`]).
//! - `request`: [`Request`], [`RequestBuilder`] and the head as sent ([`SentHead`]).
//! - `redirects`: where a redirect points and what is sent next ([`Hop`]).
//! - `response`: [`Response`], its body (decoded on demand) and [`Timings`].
//! - `errors`: [`HttpError`].
//! - `cookies`: [`CookieJar`], RFC 6265 scoping of the cookies responses set.

mod cookies;
mod errors;
mod exchange;
mod origin;
mod pool;
mod redirects;
mod request;
mod response;

pub use cookies::{Cookie, CookieJar, netscape_format};
pub use errors::HttpError;
pub use exchange::{Client, ClientConfig, HttpVersions, get, post};
pub use origin::target_url;
pub use redirects::Hop;
pub use request::{Request, RequestBuilder, SentHead};
pub use response::{Response, Timings};
