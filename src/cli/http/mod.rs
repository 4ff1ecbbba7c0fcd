//! `sockit http [METHOD] URL [ITEM…]`, `sockit get` and `sockit post`: arguments to a
//! [`sockit::http::Request`], then the response printed, saved or summarised.

mod args;
mod curl;
mod request;
mod response;
mod show;

pub(crate) use args::HttpCommand;
pub(crate) use response::StatusError;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use http::{Method, Version};
use tokio_util::sync::CancellationToken;

use sockit::http::CookieJar;
use sockit::http::items::{self, Item};
use sockit::http::session::{self, Session};
use sockit::http::{Client, ClientConfig, HttpVersions, Request, target_url};
use sockit::net::tls::Verify;
use sockit::net::trace::TraceSink;

use crate::cli::http::args::HttpOptions;
use crate::cli::http::curl::{curl_command, curl_habits};
use crate::cli::http::request::{build_request, use_session};
use crate::cli::http::response::{check, print_body, save};
use crate::cli::http::show::{Show, meta};
use crate::cli::output::{Stdout, say};
use crate::cli::{UsageError, hints};
use sockit::net::HostPort;

/// Runs one HTTP command; `verbose` is the global `-v` count (heads are shown from 1).
pub(crate) async fn run(
    command: HttpCommand,
    verbose: u8,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (method, url, words, opts) = match command {
        HttpCommand::Http(args) => {
            let mut words = args.words.into_iter();
            let first = words.next().unwrap_or_default();
            if looks_like_method(&first) && words.len() > 0 {
                let url = words.next().unwrap_or_default();
                let method = Method::from_bytes(first.to_ascii_uppercase().as_bytes())
                    .with_context(|| format!("invalid method {first:?}"))?;
                (Some(method), url, words.collect(), args.opts)
            } else {
                (None, first, words.collect(), args.opts)
            }
        }
        HttpCommand::Get(args) => (Some(Method::GET), args.url, args.items, args.opts),
        HttpCommand::Post(args) => (Some(Method::POST), args.url, args.items, args.opts),
    };
    let method = match &opts.request_method {
        Some(word) => Some(
            Method::from_bytes(word.to_ascii_uppercase().as_bytes())
                .map_err(|_| UsageError(format!("invalid method {word:?}").into()))?,
        ),
        None => method,
    };
    // TLS options mean TLS: `--pin … :8443/x` is `https://localhost:8443/x`.
    let tls_wanted = opts.pin.is_some() || opts.ca.is_some() || opts.insecure;
    let url = target_url(&url, if tls_wanted { "https" } else { "http" })
        .map_err(|e| UsageError(e.into()))?;
    let mut items = words
        .iter()
        .map(|w| items::parse(w))
        .collect::<Result<Vec<Item>, _>>()
        .map_err(|e| UsageError(e.into()))?;
    curl_habits(&opts, &items)?;
    for header in &opts.headers {
        items.push(items::parse_header(header).map_err(|e| UsageError(e.into()))?);
    }
    let mut request = build_request(method, url.as_str(), &items, &opts).await?;
    let jar = Arc::new(CookieJar::new());
    let session_path = match &opts.session {
        Some(name) => Some(session::path_for(name, &request.url)?),
        None => None,
    };
    let mut saved = match &session_path {
        Some(path) => Session::load(path)?,
        None => Session::default(),
    };
    let origin_bound = use_session(&mut request, &mut saved, &jar, &opts)?;
    let client = Client::new(ClientConfig {
        cookies: Some(jar.clone()),
        client_cert: opts.cert.clone().zip(opts.key.clone()),
        origin_bound_headers: origin_bound,
        connect_timeout: opts.connect_timeout,
        read_timeout: Some(opts.timeout),
        verify: if let Some(pin) = opts.pin {
            Verify::Pin(pin)
        } else if opts.insecure {
            Verify::Insecure
        } else if let Some(ca) = &opts.ca {
            Verify::CaFile(ca.clone())
        } else {
            Verify::WebPki
        },
        follow_redirects: opts.follow,
        max_redirects: opts.max_redirects,
        decompress: !opts.no_decompress,
        trace: opts.trace.then(TraceSink::stderr),
        trace_secrets: opts.trace_secrets,
        versions: if opts.http1_1 {
            HttpVersions::Http1
        } else if opts.http2 {
            HttpVersions::Http2
        } else {
            HttpVersions::Negotiate
        },
        dial: opts.route.dial_without_proxy()?,
        proxy: opts.route.policy(true)?,
        ..ClientConfig::default()
    });
    let typed: HashMap<String, String> = items
        .iter()
        .filter_map(|i| match i {
            Item::Header { name, .. } => Some((name.to_ascii_lowercase(), name.clone())),
            _ => None,
        })
        .collect();
    let show = Show {
        request: verbose > 0,
        response: verbose > 0 || opts.include,
        typed,
        secrets: opts.trace_secrets || opts.offline,
    };
    if opts.offline || opts.curl {
        let head = client.head(&request)?;
        let text = if opts.curl {
            curl_command(&head, &request.body, &opts)
        } else {
            show.request_head(&head, Version::HTTP_11, Some(&request.body))
        };
        return Ok(Stdout::open("the request")?.write_all(text.as_bytes())?);
    }
    let target = HostPort::new(
        request
            .url
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_owned()),
        request.url.port_or_known_default().unwrap_or(80),
    );
    let server_name = target.host_or("localhost").to_owned();
    let spoke_tls = request.url.scheme() == "https";
    // The second look for a hint takes the request's own route, proxy included.
    let hint_route = opts.route.dial_without_proxy().ok().and_then(|mut route| {
        let policy = opts.route.policy(true).ok()?;
        route.proxy = policy.proxy_for(request.url.scheme(), &server_name).ok()?;
        Some(route)
    });
    let result = send_and_print(&client, request, &opts, &show, &stop).await;
    if let (Err(err), Some(route)) = (&result, &hint_route) {
        hints::after_failure(
            err,
            &target,
            route,
            &server_name,
            spoke_tls,
            "use http://",
            Some("use https://"),
        )
        .await;
    }
    if let Some(path) = &opts.cookie_jar {
        std::fs::write(path, sockit::http::netscape_format(&jar.cookies()))
            .with_context(|| format!("writing the cookie jar {}", path.display()))?;
    }
    if let Some(path) = &session_path {
        // A request that got an answer (whatever its status) updates the session.
        if result.is_ok() || result.as_ref().is_err_and(|e| e.is::<StatusError>()) {
            saved.cookies = jar.cookies();
            saved.save(path)?;
        }
    }
    result
}

/// Sends the request and prints (or saves) the response.
async fn send_and_print(
    client: &Client,
    request: Request,
    opts: &HttpOptions,
    show: &Show,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let client = client.clone();
    let started = Instant::now();
    if opts.output.is_some() || opts.download {
        return save(&client, request, opts, show, stop, started).await;
    }
    let mut response = tokio::select! {
        _ = stop.cancelled() => bail!("interrupted"),
        r = client.send(request.clone()) => r?,
    };
    let heads = show.heads(&request, &response);
    let mut out = Stdout::open(if heads.is_empty() {
        "the response body"
    } else {
        "the response head"
    })?;
    out.write_all(heads.as_bytes())?;
    let body_bytes = print_body(&mut response, out.writing("the response body"), stop).await?;
    if opts.json_meta {
        say(format_args!(
            "{}",
            meta(&response, body_bytes, started.elapsed())
        ));
    }
    check(opts, response.status())
}

/// `GET`, `PROPFIND`: any upper-case word; `get`, `put`: the standard methods in lower case
/// too (a lower-case word could be a host name, so only these).
fn looks_like_method(word: &str) -> bool {
    const STANDARD: [&str; 9] = [
        "get", "head", "post", "put", "patch", "delete", "options", "trace", "connect",
    ];
    (!word.is_empty() && word.len() <= 16 && word.bytes().all(|b| b.is_ascii_uppercase()))
        || STANDARD.contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;
    #[test]
    fn url_shorthands() {
        for (input, scheme, want) in [
            (":8080/x", "http", "http://localhost:8080/x"),
            (":/x", "http", "http://localhost/x"),
            ("18000", "http", "http://localhost:18000/"),
            ("example.com/a", "http", "http://example.com/a"),
            ("https://a/", "http", "https://a/"),
            (":8443/x", "https", "https://localhost:8443/x"),
            (
                "a.test?next=http://b/",
                "http",
                "http://a.test/?next=http://b/",
            ),
            ("u:p%40ss@a.test/", "http", "http://u:p%40ss@a.test/"),
        ] {
            assert_eq!(target_url(input, scheme).unwrap().as_str(), want, "{input}");
        }
    }
    #[test]
    fn commands_parse() {
        Cli::try_parse_from(["sockit", "get", ":8080", "a==b", "-i", "--check-status"]).unwrap();
        Cli::try_parse_from(["sockit", "post", ":8080", "a=b", "--form"]).unwrap();
        Cli::try_parse_from(["sockit", "http", "PUT", ":8080", "@f"]).unwrap();
        Cli::try_parse_from(["sockit", "get", "-v", "-o", "f", "-c", ":1"]).unwrap();
        assert!(Cli::try_parse_from(["sockit", "get", "-k", "--pin", "sha256:00", ":1"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "post", "--form", "--multipart", ":1"]).is_err());
        assert!(Cli::try_parse_from(["sockit", "get", "--trace-secrets", ":1"]).is_err());
    }
    #[test]
    fn methods_are_upper_case_words() {
        assert!(looks_like_method("GET"));
        assert!(looks_like_method("PROPFIND"));
        assert!(!looks_like_method("example.com"));
        assert!(looks_like_method("get"));
        assert!(looks_like_method("delete"));
        assert!(!looks_like_method("getter"));
        assert!(!looks_like_method("localhost"));
    }
}
