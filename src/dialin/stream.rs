//! SIP over TCP and TLS (RFC 3261 §18): the SIP thread's listening sockets
//! and connections. The I/O edge only: bytes read are cut into messages by
//! the sans-IO [`StreamFramer`] and fed to the same [`Uas`] as UDP, whose
//! [`Transmit`]s for a stream transport are written back on the connection
//! of that peer.
//!
//! A slow or hostile peer cannot pin resources: `[sip] allow` is applied
//! at accept (before a byte is read or a TLS handshake costs anything);
//! connections are capped in total and per source IP; a connection idle
//! for `connection_idle_secs`, or still handshaking after
//! [`HANDSHAKE_TIMEOUT`], is closed; a message larger than
//! [`MAX_MESSAGE_SIZE`] or without Content-Length closes it, and so does
//! a peer that does not read what we write ([`MAX_UNSENT`]). Each turn
//! reads a bounded amount from each connection, so one busy peer cannot
//! starve the rest.
//!
//! TLS is rustls (ring provider) with the certificate chain and key from
//! `[sip] tls_cert` / `tls_key`; no client certificates are asked for
//! (trunks authenticate by `[sip] allow` and digest).

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::sip::{Frame, MAX_MESSAGE_SIZE, PONG, StreamFramer, Transmit, Transport, Uas};

/// How long a TLS handshake may take before the connection is closed.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes written to a connection and not yet taken by the peer, at most;
/// past it the connection is closed (the peer does not read).
pub(crate) const MAX_UNSENT: usize = 256 * 1024;
/// Bytes read from one connection per turn, at most.
const READ_PER_TURN: usize = 64 * 1024;
/// Connections accepted per listener per turn, at most.
const ACCEPT_PER_TURN: usize = 32;

/// The server side of SIP over TLS from a PEM certificate chain and key.
/// The error is a sentence fragment for the config error.
pub(crate) fn server_tls(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err("tls_cert and tls_key are both needed".to_owned());
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{} holds no readable PEM certificate ({e})", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{} holds no readable PEM private key ({e})", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed ({e})"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            format!(
                "{} and {} do not make a usable certificate and key ({e})",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Arc::new(config))
}

/// The limits on connections (from `[sip]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    pub(crate) max_connections: usize,
    pub(crate) per_source: usize,
    pub(crate) idle: Duration,
}

/// What the stream edge counted; plain numbers for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamStats {
    pub(crate) accepted: u64,
    /// Closed at accept: not allowed, over the total or the source's cap.
    pub(crate) refused: u64,
    pub(crate) idle_closed: u64,
    /// Closed for a framing error, a failed handshake or a stuck reader.
    pub(crate) misbehaving_closed: u64,
}

/// One connection.
struct Conn {
    stream: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
    framer: StreamFramer,
    /// Plain TCP: bytes not yet written.
    unsent: Vec<u8>,
    opened: Instant,
    last_active: Instant,
}

impl Conn {
    fn wants_write(&self) -> bool {
        match &self.tls {
            Some(tls) => tls.wants_write(),
            None => !self.unsent.is_empty(),
        }
    }

    /// Writes what the socket takes now. False when the connection broke.
    fn flush(&mut self) -> bool {
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
            return true;
        }
        while !self.unsent.is_empty() {
            match self.stream.write(&self.unsent) {
                Ok(0) => return false,
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        true
    }

    /// Queues `bytes` and writes what it can. False when the connection
    /// must close (broken, or the peer leaves too much unread).
    fn send(&mut self, bytes: &[u8]) -> bool {
        match &mut self.tls {
            Some(tls) => {
                // rustls buffers up to its limit (set to MAX_UNSENT).
                match tls.writer().write(bytes) {
                    Ok(n) if n == bytes.len() => {}
                    _ => return false,
                }
            }
            None => {
                if self.unsent.len() + bytes.len() > MAX_UNSENT {
                    return false;
                }
                self.unsent.extend_from_slice(bytes);
            }
        }
        self.flush()
    }
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy)]
enum Close {
    Gone,
    Misbehaving,
}

/// The TCP and TLS listeners and their connections.
pub(crate) struct Streams {
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, Arc<ServerConfig>)>,
    conns: HashMap<(Transport, SocketAddr), Conn>,
    per_source: HashMap<IpAddr, usize>,
    limits: StreamLimits,
    stats: StreamStats,
    /// Set by [`Self::wait`]: connections with something to read or room
    /// to write, and whether each listener has a connection waiting.
    ready: Vec<(Transport, SocketAddr)>,
    accept_tcp: bool,
    accept_tls: bool,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("connections", &self.conns.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Streams {
    /// Serves the listeners given (either may be absent).
    pub(crate) fn new(
        tcp: Option<TcpListener>,
        tls: Option<(TcpListener, Arc<ServerConfig>)>,
        limits: StreamLimits,
    ) -> std::io::Result<Self> {
        for l in tcp.iter().chain(tls.iter().map(|(l, _)| l)) {
            l.set_nonblocking(true)?;
        }
        Ok(Self {
            tcp,
            tls,
            conns: HashMap::new(),
            per_source: HashMap::new(),
            limits,
            stats: StreamStats::default(),
            ready: Vec::new(),
            accept_tcp: false,
            accept_tls: false,
        })
    }

    /// Replaces the limits (a config reload); open connections stay.
    pub(crate) fn set_limits(&mut self, limits: StreamLimits) {
        self.limits = limits;
    }

    /// What was counted so far.
    pub(crate) fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Sleeps until the UDP socket, a listener or a connection is ready,
    /// or `timeout`. True when the UDP socket has something to read.
    pub(crate) fn wait(&mut self, udp: &UdpSocket, timeout: Duration) -> bool {
        let keys: Vec<(Transport, SocketAddr)> = self.conns.keys().copied().collect();
        let mut fds = Vec::with_capacity(3 + keys.len());
        fds.push(PollFd::new(udp.as_fd(), PollFlags::POLLIN));
        let listeners = [
            self.tcp.as_ref(),
            self.tls.as_ref().map(|(listener, _)| listener),
        ];
        for l in listeners.into_iter().flatten() {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        let first_conn = fds.len();
        for key in &keys {
            // The key came from the map just now.
            let conn = &self.conns[key];
            let mut flags = PollFlags::POLLIN;
            if conn.wants_write() {
                flags |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(conn.stream.as_fd(), flags));
        }
        let wait = PollTimeout::try_from(timeout.max(Duration::from_millis(1)))
            .unwrap_or(PollTimeout::MAX);
        if poll(&mut fds, wait).is_err() {
            // EINTR or the like: the caller's turn just runs again.
            return false;
        }
        let hit = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        let udp_ready = hit(&fds[0]);
        let mut at = 1;
        self.accept_tcp = false;
        self.accept_tls = false;
        if self.tcp.is_some() {
            self.accept_tcp = hit(&fds[at]);
            at += 1;
        }
        if self.tls.is_some() {
            self.accept_tls = hit(&fds[at]);
        }
        self.ready = keys
            .into_iter()
            .zip(&fds[first_conn..])
            .filter(|(_, fd)| hit(fd))
            .map(|(key, _)| key)
            .collect();
        udp_ready
    }

    /// Accepts waiting connections, reads the ready ones into `uas`, writes
    /// what is pending and closes idle ones. Drain the UAS afterwards.
    pub(crate) fn service(&mut self, now: Instant, uas: &mut Uas) {
        if std::mem::take(&mut self.accept_tcp) {
            self.accept(now, uas, Transport::Tcp);
        }
        if std::mem::take(&mut self.accept_tls) {
            self.accept(now, uas, Transport::Tls);
        }
        for key in std::mem::take(&mut self.ready) {
            if let Err(why) = self.read(now, key, uas) {
                self.close(key, why);
            }
        }
        let idle = self.limits.idle;
        let expired: Vec<(Transport, SocketAddr)> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let handshaking = c.tls.as_ref().is_some_and(|t| t.is_handshaking());
                now.saturating_duration_since(c.last_active) >= idle
                    || (handshaking && now.saturating_duration_since(c.opened) >= HANDSHAKE_TIMEOUT)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.stats.idle_closed += 1;
            self.close(key, Close::Gone);
        }
    }

    /// Writes a transmit for a stream transport onto its peer's
    /// connection; dropped (and counted) when that connection is gone.
    pub(crate) fn send(&mut self, t: &Transmit) {
        let key = (t.transport, t.to);
        let Some(conn) = self.conns.get_mut(&key) else {
            tracing::debug!(to = %t.to, transport = ?t.transport, "SIP connection gone, message dropped");
            return;
        };
        if !conn.send(&t.payload) {
            self.close(key, Close::Misbehaving);
        }
    }

    /// Closes every connection (shutdown), writing what is pending first.
    pub(crate) fn close_all(&mut self) {
        tracing::debug!(stats = ?self.stats, "SIP connections closing");
        for (_, mut conn) in self.conns.drain() {
            if let Some(tls) = &mut conn.tls {
                tls.send_close_notify();
            }
            let _ = conn.flush();
        }
        self.per_source.clear();
    }

    fn accept(&mut self, now: Instant, uas: &mut Uas, transport: Transport) {
        for _ in 0..ACCEPT_PER_TURN {
            let listener = match transport {
                Transport::Tls => self.tls.as_ref().map(|(l, _)| l),
                _ => self.tcp.as_ref(),
            };
            let Some(listener) = listener else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and the like: try again next turn.
                    tracing::debug!("SIP accept: {e}");
                    return;
                }
            };
            let source_count = self.per_source.get(&peer.ip()).copied().unwrap_or(0);
            if !uas.allows(peer.ip())
                || self.conns.len() >= self.limits.max_connections
                || source_count >= self.limits.per_source
            {
                // Dropping the stream closes it; nothing was read.
                self.stats.refused += 1;
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let tls = match (transport, &self.tls) {
                (Transport::Tls, Some((_, config))) => {
                    match rustls::ServerConnection::new(Arc::clone(config)) {
                        Ok(mut c) => {
                            c.set_buffer_limit(Some(MAX_UNSENT));
                            Some(Box::new(c))
                        }
                        Err(_) => continue,
                    }
                }
                _ => None,
            };
            self.stats.accepted += 1;
            *self.per_source.entry(peer.ip()).or_insert(0) += 1;
            self.conns.insert(
                (transport, peer),
                Conn {
                    stream,
                    tls,
                    framer: StreamFramer::new(MAX_MESSAGE_SIZE),
                    unsent: Vec::new(),
                    opened: now,
                    last_active: now,
                },
            );
        }
    }

    /// Reads what a connection has (bounded), feeding whole messages to
    /// the UAS and answering pings.
    fn read(
        &mut self,
        now: Instant,
        key: (Transport, SocketAddr),
        uas: &mut Uas,
    ) -> Result<(), Close> {
        let Some(conn) = self.conns.get_mut(&key) else {
            return Ok(());
        };
        if conn.wants_write() && !conn.flush() {
            return Err(Close::Gone);
        }
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        // Bounded twice: bytes per turn, and reads (TLS records without
        // application data count as reads too).
        for _ in 0..64 {
            if total >= READ_PER_TURN {
                break;
            }
            let n = match &mut conn.tls {
                Some(tls) => read_tls(tls, &mut conn.stream, &mut buf)?,
                None => match conn.stream.read(&mut buf) {
                    Ok(0) => return Err(Close::Gone),
                    Ok(n) => Some(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => None,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return Err(Close::Gone),
                },
            };
            // The handshake's own answers (TLS) go out now.
            if conn.wants_write() && !conn.flush() {
                return Err(Close::Gone);
            }
            let Some(n) = n else {
                break;
            };
            total += n;
            conn.last_active = now;
            if n == 0 {
                // TLS records that carried no application data.
                continue;
            }
            conn.framer
                .push(&buf[..n])
                .map_err(|_| Close::Misbehaving)?;
            loop {
                match conn.framer.poll_frame() {
                    Ok(Some(Frame::Message(msg))) => {
                        uas.handle_message(now, key.0, key.1, &msg);
                    }
                    Ok(Some(Frame::Ping)) => {
                        if !conn.send(PONG) {
                            return Err(Close::Misbehaving);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(peer = %key.1, "SIP stream closed: {e}");
                        return Err(Close::Misbehaving);
                    }
                }
            }
        }
        Ok(())
    }

    fn close(&mut self, key: (Transport, SocketAddr), why: Close) {
        let Some(mut conn) = self.conns.remove(&key) else {
            return;
        };
        if matches!(why, Close::Misbehaving) {
            self.stats.misbehaving_closed += 1;
        }
        // A last try at what is pending (a TLS alert, a 4xx); the socket
        // closes when `conn` drops.
        let _ = conn.flush();
        if let Some(count) = self.per_source.get_mut(&key.1.ip()) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&key.1.ip());
            }
        }
    }
}

/// One read of TLS: records from the socket, then the plaintext they hold.
/// `Ok(None)`: nothing more now; `Ok(Some(0))`: records without data.
fn read_tls(
    tls: &mut rustls::ServerConnection,
    stream: &mut TcpStream,
    buf: &mut [u8],
) -> Result<Option<usize>, Close> {
    // Plaintext already decrypted comes first.
    match tls.reader().read(buf) {
        Ok(0) => return Err(Close::Gone),
        Ok(n) => return Ok(Some(n)),
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(_) => return Err(Close::Gone),
    }
    match tls.read_tls(stream) {
        Ok(0) => return Err(Close::Gone),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
        Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(Some(0)),
        Err(_) => return Err(Close::Gone),
    }
    if let Err(e) = tls.process_new_packets() {
        tracing::debug!("SIP TLS: {e}");
        // The alert rustls queued goes out as the connection closes.
        let _ = tls.write_tls(stream);
        return Err(Close::Misbehaving);
    }
    match tls.reader().read(buf) {
        Ok(0) => Err(Close::Gone),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Some(0)),
        Err(_) => Err(Close::Gone),
    }
}
