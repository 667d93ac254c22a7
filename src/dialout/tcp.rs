//! SIP over TCP to the trunk (RFC 3261 §18): one connection, opened when
//! the first request goes out and again after the trunk closed it. Messages
//! are cut from the stream by [`StreamFramer`] (Content-Length, §18.3) and
//! CRLF CRLF keep-alives are answered (RFC 5626 §4.4.1). Our Via carries
//! `alias` (RFC 5923), so the trunk sends its responses and in-dialog
//! requests back over this connection: dial-out listens on no TCP port.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::sip::{Frame, MAX_MESSAGE_SIZE, PONG, StreamFramer};

/// How long opening the connection may take (the dial-out thread waits).
const CONNECT_WITHIN: Duration = Duration::from_secs(2);
/// Unsent bytes held at most before the connection is dropped.
const MAX_UNSENT: usize = 1 << 20;

/// The connection to the trunk.
#[derive(Debug)]
pub(super) struct TrunkConnection {
    trunk: SocketAddr,
    stream: Option<TcpStream>,
    framer: StreamFramer,
    unsent: Vec<u8>,
}

impl TrunkConnection {
    pub(super) fn new(trunk: SocketAddr) -> Self {
        Self {
            trunk,
            stream: None,
            framer: StreamFramer::new(MAX_MESSAGE_SIZE),
            unsent: Vec::new(),
        }
    }

    /// Opens the connection if it is not open.
    pub(super) fn connect(&mut self) -> std::io::Result<()> {
        if self.stream.is_some() {
            return Ok(());
        }
        let stream = TcpStream::connect_timeout(&self.trunk, CONNECT_WITHIN)?;
        stream.set_nodelay(true)?;
        self.framer = StreamFramer::new(MAX_MESSAGE_SIZE);
        self.unsent.clear();
        self.stream = Some(stream);
        Ok(())
    }

    /// Queues a message and writes what the socket takes.
    pub(super) fn send(&mut self, payload: &[u8]) {
        if let Err(e) = self.connect() {
            tracing::info!(trunk = %self.trunk, "dial-out cannot connect over TCP: {e}");
            return;
        }
        if self.unsent.len() + payload.len() > MAX_UNSENT {
            tracing::info!(trunk = %self.trunk, "the trunk does not read: connection dropped");
            self.stream = None;
            return;
        }
        self.unsent.extend_from_slice(payload);
        self.flush();
    }

    fn flush(&mut self) {
        let Some(stream) = &mut self.stream else {
            return;
        };
        let _ = stream.set_nonblocking(true);
        while !self.unsent.is_empty() {
            match stream.write(&self.unsent) {
                Ok(0) => {
                    self.stream = None;
                    return;
                }
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.stream = None;
                    return;
                }
            }
        }
    }

    /// Waits up to `wait` for bytes, then hands every whole message to
    /// `on_message`; without a connection it just sleeps.
    pub(super) fn read(&mut self, wait: Duration, mut on_message: impl FnMut(Instant, &[u8])) {
        self.flush();
        let Some(stream) = &mut self.stream else {
            std::thread::sleep(wait);
            return;
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let mut buf = [0u8; 16 * 1024];
        let mut closed = false;
        match stream.read(&mut buf) {
            Ok(0) => closed = true,
            Ok(n) => {
                if self.framer.push(&buf[..n]).is_err() {
                    closed = true;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => closed = true,
        }
        loop {
            match self.framer.poll_frame() {
                Ok(Some(Frame::Message(msg))) => on_message(Instant::now(), &msg),
                Ok(Some(Frame::Ping)) => self.unsent.extend_from_slice(PONG),
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(trunk = %self.trunk, "dial-out TCP framing: {e}");
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            self.stream = None;
        } else {
            self.flush();
        }
    }
}
