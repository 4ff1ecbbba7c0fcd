//! Routing of `sockit serve`: every request checked ([`conformance`], auth), then answered
//! with a fixed answer, a file (`file_answer`), a directory (index or listing), a redirect,
//! or an upload (`upload_answer`); logged once answered. Connections are `connection`'s.
//!
//! [`conformance`]: crate::http::server::conformance

use std::future::{Future, Ready};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::Either;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::{Body as _, Incoming};
use tokio_util::sync::CancellationToken;

use crate::http::server::added_headers;
use crate::http::server::archive::Format;
use crate::http::server::body::Body;
use crate::http::server::config::{Config, ServeError};
use crate::http::server::conformance;
use crate::http::server::connection::{Driver, Handler};
use crate::http::server::file_answer::{OpenLater, Representation};
use crate::http::server::listing;
use crate::http::server::log::Logged;
use crate::http::server::path::RequestPath;
use crate::http::server::response::{TEXT_PLAIN, redirect, text};
use crate::http::server::static_files::{FileEntry, Files, Found, Uncached};
use crate::http::server::upload::UploadConfig;
use crate::http::server::upload_answer::read_refused_body;
use crate::net::ServerConfig;

/// Serves `config` on `listener` until `stop` is cancelled, then drains (bounded by `net`).
///
/// # Errors
///
/// [`ServeError`] when the directory cannot be served; nothing is accepted then.
pub async fn serve(
    listener: impl Into<crate::net::Listener>,
    config: Config,
    mut net: ServerConfig,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let root = if config.fixed.is_some() {
        config.root.clone()
    } else {
        let root = config
            .root
            .canonicalize()
            .map_err(|source| ServeError::Root {
                path: config.root.clone(),
                source,
            })?;
        if !root.is_dir() {
            return Err(ServeError::NotADirectory(config.root.clone()));
        }
        root
    };
    // Our limit answers 503; the accept loop's, a little higher, only closes.
    net.max_conns = config.limits.max_conns.saturating_add(1024);
    let limits = config.limits.clone();
    let site = Site {
        files: Files::new(root, config.show_hidden, config.follow_symlinks),
        config,
    };
    let driver = Arc::new(Driver::new(site, limits));
    crate::net::serve(listener, net, stop, move |stream, peer, stop| {
        driver.clone().serve(stream, peer, stop)
    })
    .await;
    Ok(())
}

/// The routes of a served directory.
pub(crate) struct Site {
    pub(crate) config: Config,
    pub(crate) files: Files,
}

type Answer = Either<Ready<Response<Body>>, Pin<Box<dyn Future<Output = Response<Body>> + Send>>>;

impl Handler for Site {
    type Body = Body;
    type Answer = Answer;

    fn answer(self: &Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Answer {
        let logged = self.logged(&req);
        let method = req.method().clone();
        match self.answer_now(&req) {
            Ok(res) if req.version() == Version::HTTP_2 && !req.body().is_end_stream() => {
                // HTTP/2: a request body still coming when the answer is ready (a refused
                // upload) is read first, within bounds, so that the client reads the answer
                // and not a reset of its stream. HTTP/1 lingers on the connection instead.
                let site = self.clone();
                Either::Right(Box::pin(async move {
                    read_refused_body(Version::HTTP_2, &mut req.into_body()).await;
                    site.sent(&method, res, logged, peer)
                }))
            }
            // Most requests (cached files): answered here, with no future to allocate.
            Ok(res) => Either::Left(std::future::ready(self.sent(&method, res, logged, peer))),
            Err(later) => {
                let site = self.clone();
                Either::Right(Box::pin(async move {
                    let res = site.answer_later(req, later).await;
                    site.sent(&method, res, logged, peer)
                }))
            }
        }
    }
}

impl Site {
    /// Fits `res` to its status and `method` ([`conformance::finish`]) and logs it.
    fn sent(
        &self,
        method: &Method,
        mut res: Response<Body>,
        logged: Option<Logged>,
        peer: SocketAddr,
    ) -> Response<Body> {
        conformance::finish(method, &mut res);
        let config = &self.config;
        if config.cors || !config.headers.is_empty() {
            added_headers::add(res.headers_mut(), &config.headers, config.cors);
        }
        if let (Some(log), Some(logged)) = (&self.config.access_log, logged) {
            log.record_answer(&logged, peer, &res);
        }
        res
    }

    /// The methods this server answers.
    fn allow(&self) -> &'static str {
        if self.config.fixed.is_some() {
            // A fixed answer is given to every method a client may send.
            "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"
        } else if self.config.upload.is_some() {
            "GET, HEAD, PUT, POST, OPTIONS"
        } else {
            "GET, HEAD, OPTIONS"
        }
    }

    /// What the access log needs to know of `req`, when there is an access log.
    fn logged(&self, req: &Request<Incoming>) -> Option<Logged> {
        self.config.access_log.as_ref()?;
        Some(Logged::of(req, self.config.auth.as_ref()))
    }

    /// Otherwise what is left to do, for [`Site::answer_later`].
    fn answer_now(&self, req: &Request<Incoming>) -> Result<Response<Body>, Later> {
        if let Some(mut res) = conformance::refuse(req, self.allow()) {
            if self.config.cors {
                added_headers::answer_preflight(req, self.allow(), res.headers_mut());
            }
            return Ok(res);
        }
        let is_write = matches!(*req.method(), Method::PUT | Method::POST);
        if let Some(creds) = &self.config.auth {
            if is_write || !self.config.auth_writes_only {
                let ok = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .is_some_and(|h| creds.accepts_header(h));
                if !ok {
                    let mut res = text(StatusCode::UNAUTHORIZED, "authentication required\n");
                    res.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"sockit\", charset=\"UTF-8\""),
                    );
                    return Ok(res);
                }
            }
        }
        if let Some(fixed) = &self.config.fixed {
            let mut res = Response::new(if req.method() == Method::HEAD {
                Body::empty()
            } else {
                Body::bytes(fixed.body.clone())
            });
            *res.status_mut() = fixed.status;
            let headers = res.headers_mut();
            headers.insert(header::CONTENT_TYPE, TEXT_PLAIN.clone());
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(fixed.body.len()));
            return Ok(res);
        }
        let path = match RequestPath::parse(req.uri().path()) {
            Ok(path) => path,
            Err(error) => {
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    &format!("bad request: {error}\n"),
                ));
            }
        };
        match (req.method(), &self.config.upload) {
            (&Method::GET | &Method::HEAD, _) => match self.files.lookup_cached(&path) {
                Ok(found) => self.found(req, path, found),
                Err(uncached) => Err(Later::Lookup(path, uncached)),
            },
            (&Method::PUT, Some(upload)) => Err(Later::Put(path, upload.clone())),
            (&Method::POST, Some(upload)) => Err(Later::Post(path, upload.clone())),
            _ => Ok(conformance::not_allowed(self.allow())),
        }
    }

    /// The rest of [`Site::answer_now`]: lookups past the cache, directories, compressed
    /// forms, files read from disk, uploads.
    async fn answer_later(&self, req: Request<Incoming>, mut later: Later) -> Response<Body> {
        loop {
            later = match later {
                Later::Lookup(path, uncached) => {
                    let found = self.files.lookup_uncached(uncached).await;
                    match self.found(&req, path, found) {
                        Ok(res) => return res,
                        Err(later) => later,
                    }
                }
                Later::Dir(path, dir) => {
                    if let Some(format) = Format::from_query(req.uri().query()) {
                        return self.archive(&req, &path, dir, format);
                    }
                    let index = self.files.lookup(&path.join("index.html")).await;
                    return match index {
                        Found::File(index) => self.file(&req, &path, index).await,
                        _ => self.listing(&req, &path, &dir).await,
                    };
                }
                Later::File(path, entry) => return self.file(&req, &path, entry).await,
                Later::SpaIndex => {
                    let index =
                        RequestPath::parse("/index.html").expect("a fixed, valid request path");
                    return match self.files.lookup(&index).await {
                        Found::File(entry) => self.file(&req, &index, entry).await,
                        _ => text(StatusCode::NOT_FOUND, "not found\n"),
                    };
                }
                Later::Open(open) => return open.finish().await,
                Later::Put(path, upload) => return self.put(req, &path, &upload).await,
                Later::Post(path, upload) => return self.post(req, &path, &upload).await,
            };
        }
    }

    /// The answer for what a GET or HEAD of `path` found, when it needs no waiting.
    fn found(
        &self,
        req: &Request<Incoming>,
        path: RequestPath,
        found: Found,
    ) -> Result<Response<Body>, Later> {
        match found {
            Found::File(entry) => {
                let headers = req.headers();
                if entry.compressible
                    && headers.contains_key(header::ACCEPT_ENCODING)
                    && !headers.contains_key(header::RANGE)
                {
                    // A compressed form may be chosen, which may take a lookup or compressing.
                    return Err(Later::File(path, entry));
                }
                self.file_answer(req, &entry, Representation::identity(entry.clone()))
                    .map_err(Later::Open)
            }
            Found::Dir(_) if !path.has_trailing_slash() => {
                let mut location = path.to_href(true);
                if let Some(query) = req.uri().query() {
                    location.push('?');
                    location.push_str(query);
                }
                Ok(redirect(StatusCode::MOVED_PERMANENTLY, &location))
            }
            Found::Dir(dir) => Err(Later::Dir(path, dir)),
            Found::Missing if self.config.spa => Err(Later::SpaIndex),
            Found::Missing => Ok(text(StatusCode::NOT_FOUND, "not found\n")),
            Found::Forbidden => Ok(text(StatusCode::FORBIDDEN, "forbidden\n")),
        }
    }

    async fn listing(
        &self,
        req: &Request<Incoming>,
        path: &RequestPath,
        dir: &std::path::Path,
    ) -> Response<Body> {
        let entries = match listing::read(&self.files, dir).await {
            Ok(entries) => entries,
            Err(_) => return text(StatusCode::FORBIDDEN, "cannot read directory\n"),
        };
        let wants_json = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"));
        let (body, content_type) = if wants_json {
            (listing::to_json(&entries), "application/json")
        } else {
            (
                listing::to_html(path, &entries, self.config.upload.is_some()),
                "text/html; charset=utf-8",
            )
        };
        let len = body.len();
        let mut res = Response::new(if req.method() == Method::HEAD {
            Body::empty()
        } else {
            Body::bytes(body)
        });
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        // Made anew for every request, with no validator to revalidate it by.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// What is left to answer a request once [`Site::answer_now`] could not.
enum Later {
    /// A GET or HEAD whose path the cache could not answer.
    Lookup(RequestPath, Uncached),
    /// A directory asked for with its trailing slash: its index or its listing.
    Dir(RequestPath, PathBuf),
    /// `--spa`: a path that matches nothing, answered with the root `index.html`.
    SpaIndex,
    /// A file that may be sent compressed.
    File(RequestPath, Arc<FileEntry>),
    /// A response whose body is read from disk.
    Open(Box<OpenLater>),
    /// An upload, allowed by this configuration.
    Put(RequestPath, UploadConfig),
    Post(RequestPath, UploadConfig),
}
