//! SIP over TCP or TLS to the trunk (RFC 3261 §18): one connection, opened
//! when the first request goes out and again after the trunk closed it.
//! Messages are cut from the stream by [`StreamFramer`] (Content-Length,
//! §18.3) and CRLF CRLF keep-alives are answered (RFC 5626 §4.4.1). Our
//! Via carries `alias` (RFC 5923), so the trunk sends its responses and
//! in-dialog requests back over this connection: dial-out listens on no
//! TCP port.
//!
//! On TLS the connection is rustls over the same socket, the trunk's
//! certificate checked against `tls_ca` and the configured name (see
//! [`TrunkTls`]); the handshake is finished before the first message goes
//! out, within [`HANDSHAKE_WITHIN`]. A connection that cannot be opened
//! (refused, or a certificate not trusted), or a TLS session that fails
//! later (a fatal alert), is a [`LinkError`], which the dial-out thread
//! hands to the UAC as a transport error.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConnection;

use super::TrunkTls;
use crate::sip::{Frame, MAX_MESSAGE_SIZE, PONG, StreamFramer};

/// How long opening the connection may take (the dial-out thread waits).
const CONNECT_WITHIN: Duration = Duration::from_secs(2);
/// How long the TLS handshake may take after the TCP connect.
pub(super) const HANDSHAKE_WITHIN: Duration = Duration::from_secs(3);
/// Unsent bytes held at most before the connection is dropped.
const MAX_UNSENT: usize = 1 << 20;

/// Why the connection to the trunk could not be opened.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    /// The TCP connect failed.
    #[error("cannot connect to the trunk {trunk}: {source}")]
    Connect {
        trunk: SocketAddr,
        source: std::io::Error,
    },
    /// The TLS handshake failed: the trunk's certificate is not trusted,
    /// or not for the name, or the trunk closed or stalled.
    #[error("the TLS handshake with the trunk {trunk} failed: {reason}")]
    Handshake { trunk: SocketAddr, reason: String },
    /// The TLS session broke after the handshake: a fatal alert (on TLS
    /// 1.3 a trunk refusing our client certificate says so only now) or
    /// records that do not decrypt.
    #[error("the TLS session with the trunk {trunk} failed: {reason}")]
    Session { trunk: SocketAddr, reason: String },
}

/// An open connection.
struct Link {
    tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The connection to the trunk.
#[derive(Debug)]
pub(super) struct TrunkConnection {
    trunk: SocketAddr,
    tls: Option<TrunkTls>,
    link: Option<Link>,
    framer: StreamFramer,
    /// Plain TCP: bytes not yet written (rustls buffers its own).
    unsent: Vec<u8>,
}

impl TrunkConnection {
    /// A connection to `trunk`, over TLS when `tls` is given.
    pub(super) fn new(trunk: SocketAddr, tls: Option<TrunkTls>) -> Self {
        Self {
            trunk,
            tls,
            link: None,
            framer: StreamFramer::new(MAX_MESSAGE_SIZE),
            unsent: Vec::new(),
        }
    }

    /// Opens the connection if it is not open (on TLS, through the
    /// handshake).
    pub(super) fn connect(&mut self) -> Result<(), LinkError> {
        if self.link.is_some() {
            return Ok(());
        }
        let trunk = self.trunk;
        let connect_error = |source| LinkError::Connect { trunk, source };
        let mut tcp = TcpStream::connect_timeout(&trunk, CONNECT_WITHIN).map_err(connect_error)?;
        tcp.set_nodelay(true).map_err(connect_error)?;
        let tls = match &self.tls {
            None => None,
            Some(setup) => Some(Box::new(
                handshake(&mut tcp, setup)
                    .map_err(|reason| LinkError::Handshake { trunk, reason })?,
            )),
        };
        self.framer = StreamFramer::new(MAX_MESSAGE_SIZE);
        self.unsent.clear();
        self.link = Some(Link { tcp, tls });
        Ok(())
    }

    /// Queues a message and writes what the socket takes. The error: the
    /// connection could not be opened, and the message is lost.
    pub(super) fn send(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        self.connect()?;
        let Some(link) = &mut self.link else {
            return Ok(());
        };
        let over = match &mut link.tls {
            Some(tls) => tls.writer().write_all(payload).is_err(),
            None if self.unsent.len() + payload.len() > MAX_UNSENT => true,
            None => {
                self.unsent.extend_from_slice(payload);
                false
            }
        };
        if over {
            tracing::info!(trunk = %self.trunk, "the trunk does not read: connection dropped");
            self.link = None;
            return Ok(());
        }
        self.flush();
        Ok(())
    }

    fn flush(&mut self) {
        let Some(link) = &mut self.link else {
            return;
        };
        let _ = link.tcp.set_nonblocking(true);
        let broken = match &mut link.tls {
            Some(tls) => {
                let mut broken = false;
                while tls.wants_write() {
                    match tls.write_tls(&mut link.tcp) {
                        Ok(0) => broken = true,
                        Ok(_) => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => broken = true,
                    }
                    break;
                }
                broken
            }
            None => {
                let mut broken = false;
                while !self.unsent.is_empty() {
                    match link.tcp.write(&self.unsent) {
                        Ok(0) => broken = true,
                        Ok(n) => {
                            self.unsent.drain(..n);
                            continue;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => broken = true,
                    }
                    break;
                }
                broken
            }
        };
        if broken {
            self.link = None;
        }
    }

    /// Waits up to `wait` for bytes, then hands every whole message to
    /// `on_message`; without a connection it just sleeps. The error: the
    /// TLS session failed (the connection is closed); a peer that simply
    /// closes is no error (the next message opens a new connection).
    pub(super) fn read(
        &mut self,
        wait: Duration,
        mut on_message: impl FnMut(Instant, &[u8]),
    ) -> Result<(), LinkError> {
        self.flush();
        let Some(link) = &mut self.link else {
            std::thread::sleep(wait);
            return Ok(());
        };
        let _ = link.tcp.set_nonblocking(false);
        let _ = link
            .tcp
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let mut buf = [0u8; 16 * 1024];
        let mut failed = None;
        let closed = match &mut link.tls {
            Some(tls) => match read_tls(tls, &mut link.tcp, &mut self.framer, &mut buf) {
                Ok(closed) => closed,
                Err(reason) => {
                    failed = Some(LinkError::Session {
                        trunk: self.trunk,
                        reason,
                    });
                    true
                }
            },
            None => match link.tcp.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => self.framer.push(&buf[..n]).is_err(),
                Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            },
        };
        let mut closed = closed;
        let mut pongs = 0;
        loop {
            match self.framer.poll_frame() {
                Ok(Some(Frame::Message(msg))) => on_message(Instant::now(), &msg),
                Ok(Some(Frame::Ping)) => pongs += 1,
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(trunk = %self.trunk, "dial-out stream framing: {e}");
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            self.link = None;
            return failed.map_or(Ok(()), Err);
        }
        for _ in 0..pongs {
            match self.link.as_mut().and_then(|l| l.tls.as_mut()) {
                Some(tls) => {
                    let _ = tls.writer().write_all(PONG);
                }
                None => self.unsent.extend_from_slice(PONG),
            }
        }
        self.flush();
        Ok(())
    }
}

/// Runs the client handshake on the blocking `tcp` within
/// [`HANDSHAKE_WITHIN`]; the error says why it failed.
fn handshake(tcp: &mut TcpStream, setup: &TrunkTls) -> Result<ClientConnection, String> {
    let mut tls = ClientConnection::new(Arc::clone(&setup.config), setup.server_name.clone())
        .map_err(|e| e.to_string())?;
    // Bounded as the plain TCP queue is.
    tls.set_buffer_limit(Some(MAX_UNSENT));
    let deadline = Instant::now() + HANDSHAKE_WITHIN;
    while tls.is_handshaking() {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no handshake within {HANDSHAKE_WITHIN:?}"))?;
        let _ = tcp.set_read_timeout(Some(left));
        let _ = tcp.set_write_timeout(Some(left));
        match tls.complete_io(tcp) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                return Err("the trunk closed the connection".to_owned());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(tls)
}

/// One blocking read of TLS records, their plaintext into `framer`.
/// `Ok(true)` when the connection is over (closed or broken), `Err` with
/// the reason when the TLS session failed.
fn read_tls(
    tls: &mut ClientConnection,
    tcp: &mut TcpStream,
    framer: &mut StreamFramer,
    buf: &mut [u8],
) -> Result<bool, String> {
    match tls.read_tls(tcp) {
        Ok(0) => return Ok(true),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return Ok(false);
        }
        Err(_) => return Ok(true),
    }
    if let Err(e) = tls.process_new_packets() {
        // Tell the trunk why, as far as it still listens.
        let _ = tls.write_tls(tcp);
        return Err(e.to_string());
    }
    loop {
        match tls.reader().read(buf) {
            // close_notify: the trunk closed cleanly.
            Ok(0) => return Ok(true),
            Ok(n) => {
                if framer.push(&buf[..n]).is_err() {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(_) => return Ok(true),
        }
    }
}
