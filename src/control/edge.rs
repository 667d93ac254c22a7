//! The control API's TCP edge: what a connection must get through before
//! the router sees it, so a slow or hostile client cannot hold the API.
//!
//! - a cap on open connections, in all and per source IP
//!   ([`EdgeLimits`]): beyond it the connection gets a JSON 503 and is
//!   closed before anything is read;
//! - the first request's head is read here, within `header_timeout`
//!   (else a JSON 408) and within [`MAX_HEAD`] bytes (else a JSON 414 when
//!   the request line alone is too long, 431 otherwise), then checked: a
//!   bad request line is a JSON 400, and the bearer token is verified
//!   before any body is read (a JSON 401);
//! - then hyper serves that one request (the head read here is replayed
//!   to it) and closes the connection (`Connection: close`), or closes it
//!   earlier when nothing moves on it for `idle_timeout` (a stalled body,
//!   a client that does not read its answer).
//!
//! One request per connection: every request head passes the checks
//! above, so no request ever meets hyper's own parse errors (bare 431s,
//! silent timeouts). A control API is called a few times per join; the
//! extra TCP handshake costs less than a second, unchecked path into the
//! server. The router repeats the target checks (`hygiene.rs`) for
//! requests built in-process (tests drive the router directly).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::ControlState;
use super::auth::{OPEN_PATHS, bearer};
use crate::policy::secrets_equal;

/// The longest request target (path and query) taken, in bytes.
pub const MAX_URI: usize = 8 * 1024;
/// The longest request head (request line and headers) taken, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most header fields one request may carry.
pub const MAX_HEADER_FIELDS: usize = 64;
/// hyper's read buffer: the head (already checked) and the start of a body.
const HYPER_MAX_BUF: usize = 64 * 1024;

/// Limits of the TCP edge (`[control]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// A request head must arrive within this long.
    pub header_timeout: Duration,
    /// A connection on which nothing moves for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once, all sources together.
    pub max_connections: usize,
    /// Connections open at once from one source IP.
    pub max_connections_per_source: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_source: 128,
        }
    }
}

/// Open connections, counted on the control thread (no lock: one thread).
#[derive(Debug, Default)]
struct Connections {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// A counted connection; uncounted when dropped.
struct Slot {
    table: Rc<RefCell<Connections>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.table.borrow_mut();
        table.total = table.total.saturating_sub(1);
        if let Some(n) = table.per_source.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.per_source.remove(&self.ip);
            }
        }
    }
}

fn admit(table: &Rc<RefCell<Connections>>, ip: IpAddr, limits: &EdgeLimits) -> Option<Slot> {
    let mut t = table.borrow_mut();
    let from_ip = t.per_source.get(&ip).copied().unwrap_or(0);
    if t.total >= limits.max_connections || from_ip >= limits.max_connections_per_source {
        return None;
    }
    t.total += 1;
    *t.per_source.entry(ip).or_insert(0) += 1;
    Some(Slot {
        table: Rc::clone(table),
        ip,
    })
}

/// Serves `app` on `listener` until `stop`, then lets running requests
/// finish for up to `grace`. Runs inside a [`tokio::task::LocalSet`].
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    state: ControlState,
    limits: EdgeLimits,
    stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut stopping = stop.clone();
    let table = Rc::new(RefCell::new(Connections::default()));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: back off rather than spin.
                        tracing::warn!("control API accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let ip = peer.ip().to_canonical();
                let slot = admit(&table, ip, &limits);
                let conn = connection(stream, peer, slot, app.clone(), state.clone(), limits, stop.clone());
                tasks.spawn_local(conn);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    drop(listener);
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("control API requests still running after {grace:?} were cut off");
        tasks.abort_all();
    }
}

/// Why the first head could not be read.
enum HeadError {
    Closed,
    TooLarge,
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: Option<Slot>,
    app: Router,
    state: ControlState,
    limits: EdgeLimits,
    mut stop: watch::Receiver<bool>,
) {
    let Some(_slot) = slot else {
        // One non-blocking write and close: a connection over the cap
        // never waits on its client, so a flood of them holds nothing.
        tracing::debug!(%peer, "control API connection refused: too many open");
        let refusal = EdgeError::TooManyConnections;
        state.metrics().refused(refusal.code());
        let _ = stream.try_write(&refusal.response());
        return;
    };
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(limits.header_timeout, read_head(&mut stream, &mut head));
    let outcome = tokio::select! {
        r = read => r,
        _ = stop.wait_for(|s| *s) => return,
    };
    let error = match outcome {
        Err(_) => Some(EdgeError::Timeout),
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::TooLarge)) => {
            let line_ends = head.windows(2).take(MAX_URI + 16).any(|w| w == b"\r\n");
            Some(if line_ends {
                EdgeError::HeadersTooLarge
            } else {
                EdgeError::UriTooLong
            })
        }
        Ok(Ok(())) => check_head(&head, &state).err(),
    };
    if let Some(error) = error {
        refuse(&mut stream, &state, &error, limits.header_timeout).await;
        return;
    }
    let io = TokioIo::new(Replay {
        prefix: head,
        at: 0,
        inner: Idle::new(stream, limits.idle_timeout),
    });
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(false)
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(HYPER_MAX_BUF);
    tracing::trace!(%peer, "control API request head checked");
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, "control API connection ended: {e}");
            }
        }
        _ = stop.wait_for(|s| *s) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Reads until the blank line that ends the head (or [`MAX_HEAD`]).
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> Result<(), HeadError> {
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if head[searched_from..].windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(());
        }
        if head.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Parses the head and checks the token before any body is read.
fn check_head(head: &[u8], state: &ControlState) -> Result<(), EdgeError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADER_FIELDS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => {}
        Ok(_) => return Err(EdgeError::HeadersTooLarge),
        Err(httparse::Error::TooManyHeaders) => return Err(EdgeError::HeadersTooLarge),
        Err(e) => return Err(EdgeError::BadRequest(e.to_string())),
    }
    let target = request.path.unwrap_or("/");
    if target.len() > MAX_URI {
        return Err(EdgeError::UriTooLong);
    }
    let Some(expected) = state.token() else {
        return Ok(());
    };
    let path = target.split('?').next().unwrap_or(target);
    if OPEN_PATHS.contains(&path) || request.method == Some("OPTIONS") {
        return Ok(());
    }
    let given = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(bearer);
    match given {
        Some(token) if secrets_equal(token, &expected) => Ok(()),
        _ => Err(EdgeError::Unauthorized),
    }
}

/// What the edge answers by itself, in the API's JSON error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EdgeError {
    /// The head did not arrive within `header_timeout`.
    Timeout,
    /// The request line is longer than [`MAX_URI`].
    UriTooLong,
    /// The head is longer than [`MAX_HEAD`] or has too many fields.
    HeadersTooLarge,
    /// Not an HTTP/1 request.
    BadRequest(String),
    /// The token is missing or wrong.
    Unauthorized,
    /// Too many connections are open.
    TooManyConnections,
}

impl EdgeError {
    pub(crate) fn status(&self) -> (u16, &'static str) {
        match self {
            Self::Timeout => (408, "Request Timeout"),
            Self::UriTooLong => (414, "URI Too Long"),
            Self::HeadersTooLarge => (431, "Request Header Fields Too Large"),
            Self::BadRequest(_) => (400, "Bad Request"),
            Self::Unauthorized => (401, "Unauthorized"),
            Self::TooManyConnections => (503, "Service Unavailable"),
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Timeout => "request_timeout",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::TooManyConnections => "too_many_connections",
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Self::Timeout => "the request headers did not arrive in time".to_owned(),
            Self::UriTooLong => format!("the request target is longer than {MAX_URI} bytes"),
            Self::HeadersTooLarge => format!(
                "the request headers are larger than {MAX_HEAD} bytes or more than \
                 {MAX_HEADER_FIELDS} fields"
            ),
            Self::BadRequest(why) => format!("this is not an HTTP/1.1 request ({why})"),
            Self::Unauthorized => {
                "send the API token as \"Authorization: Bearer <token>\"".to_owned()
            }
            Self::TooManyConnections => {
                "too many connections are open to the control API; retry later".to_owned()
            }
        }
    }

    /// The whole response, `Connection: close`.
    pub(crate) fn response(&self) -> Vec<u8> {
        let (status, reason) = self.status();
        let body =
            json!({ "error": { "code": self.code(), "message": self.message() } }).to_string();
        let extra = match self {
            Self::Unauthorized => "WWW-Authenticate: Bearer\r\n",
            Self::TooManyConnections => "Retry-After: 1\r\n",
            _ => "",
        };
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// Writes the edge's answer (within `within`), then closes gently: the
/// write side first, then a bounded drain, so the client reads the answer
/// rather than a reset.
async fn refuse(stream: &mut TcpStream, state: &ControlState, error: &EdgeError, within: Duration) {
    state.metrics().refused(error.code());
    let close = async {
        stream.write_all(&error.response()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), io::Error>(())
    };
    let _ = tokio::time::timeout(within.min(Duration::from_secs(2)), close).await;
}

/// A stream that first yields the bytes already read from it.
struct Replay<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream that fails with `TimedOut` once a read or write has waited
/// `limit` without progress.
struct Idle<S> {
    inner: S,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> Idle<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    /// After a `Pending`: start the clock if it is not running, and fail
    /// once it has run out.
    fn waited(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.armed {
            self.armed = true;
            let at = Instant::now() + self.limit;
            self.deadline.as_mut().reset(at);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "nothing moved on the connection",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.waited(cx).map(Err),
            ready => {
                this.armed = false;
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.waited(cx).map(Err),
            ready => {
                this.armed = false;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_errors_are_json_in_the_api_shape() {
        for e in [
            EdgeError::Timeout,
            EdgeError::UriTooLong,
            EdgeError::HeadersTooLarge,
            EdgeError::BadRequest("x".into()),
            EdgeError::Unauthorized,
            EdgeError::TooManyConnections,
        ] {
            let text = String::from_utf8(e.response()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let (status, _) = e.status();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["error"]["code"], e.code());
            assert!(super::super::ApiError::CODES.contains(&e.code()));
        }
    }

    #[test]
    fn connections_are_capped_in_all_and_per_source() {
        let table = Rc::new(RefCell::new(Connections::default()));
        let limits = EdgeLimits {
            max_connections: 3,
            max_connections_per_source: 2,
            ..EdgeLimits::default()
        };
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = admit(&table, a, &limits).unwrap();
        let _a2 = admit(&table, a, &limits).unwrap();
        assert!(admit(&table, a, &limits).is_none(), "per source");
        let _b1 = admit(&table, b, &limits).unwrap();
        assert!(admit(&table, b, &limits).is_none(), "in all");
        drop(a1);
        assert!(admit(&table, a, &limits).is_some(), "a slot came back");
    }
}
