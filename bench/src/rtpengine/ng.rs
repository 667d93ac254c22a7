//! rtpengine's ng control protocol over UDP: each request is
//! `<cookie> <bencoded dictionary>` and its reply `<cookie> <bencoded
//! dictionary>` with `"result"` `"ok"` (or `"pong"`) or `"error"` with an
//! `"error-reason"`.
//!
//! [`frame`] and [`parse_reply`] are the protocol, free of I/O;
//! [`NgClient`] is the thin blocking shell that sends a request and waits
//! for its reply. rtpengine caches replies by cookie, so a request
//! retransmitted with the same cookie is answered, not executed, twice;
//! every new request therefore needs a fresh cookie.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::bencode::{self, BencodeError, Value};

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum NgError {
    /// The socket failed.
    #[error("ng socket: {0}")]
    Io(#[from] io::Error),
    /// No reply after every retransmission.
    #[error("no reply from rtpengine at {addr} to '{command}' after {attempts} attempts")]
    NoReply {
        /// The ng address.
        addr: SocketAddr,
        /// The command sent.
        command: String,
        /// How many times it was sent.
        attempts: u32,
    },
    /// The reply is not `<cookie> <bencode>`.
    #[error("malformed ng reply: {0}")]
    Malformed(&'static str),
    /// The reply's dictionary does not decode.
    #[error("ng reply is not bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// rtpengine answered `"result": "error"`.
    #[error("rtpengine refused '{command}': {reason}")]
    Refused {
        /// The command sent.
        command: String,
        /// Its `"error-reason"`.
        reason: String,
    },
}

/// `<cookie> <bencoded request>`, ready to send.
pub fn frame(cookie: &str, request: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 256);
    out.extend_from_slice(cookie.as_bytes());
    out.push(b' ');
    request.encode(&mut out);
    out
}

/// The dictionary of a reply to the request framed with `cookie`;
/// `Ok(None)` for a reply to some other request (a late answer to a
/// retransmission, to be skipped).
pub fn parse_reply(datagram: &[u8], cookie: &str) -> Result<Option<Value>, NgError> {
    let space = datagram
        .iter()
        .position(|&b| b == b' ')
        .ok_or(NgError::Malformed("no space after the cookie"))?;
    if &datagram[..space] != cookie.as_bytes() {
        return Ok(None);
    }
    let value = bencode::decode(&datagram[space + 1..])?;
    if !matches!(value, Value::Dict(_)) {
        return Err(NgError::Malformed("reply is not a dictionary"));
    }
    Ok(Some(value))
}

/// Turns `"result": "error"` into [`NgError::Refused`].
pub fn check_result(command: &str, reply: Value) -> Result<Value, NgError> {
    match reply.field("result").and_then(Value::as_str) {
        Some("ok") => Ok(reply),
        Some("pong") if command == "ping" => Ok(reply),
        Some("error") => Err(NgError::Refused {
            command: command.to_owned(),
            reason: reply
                .field("error-reason")
                .and_then(Value::as_str)
                .unwrap_or("no error-reason given")
                .to_owned(),
        }),
        Some(other) => Err(NgError::Refused {
            command: command.to_owned(),
            reason: format!("unexpected result {other:?}"),
        }),
        None => Err(NgError::Malformed("reply has no \"result\"")),
    }
}

/// A cookie no other request from this process has used. rtpengine
/// answers a repeated cookie from its cache, whichever socket it comes
/// from: a `ping` sent while it was starting, answered too late, must not
/// make the next client's first request look already answered.
fn next_cookie() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}_{n}", std::process::id())
}

/// A blocking ng client on a loopback UDP socket.
#[derive(Debug)]
pub struct NgClient {
    socket: UdpSocket,
    addr: SocketAddr,
    /// How long to wait for a reply before sending again.
    wait: Duration,
    attempts: u32,
}

impl NgClient {
    /// A client for the ng port at `addr`, waiting `wait` per attempt and
    /// trying `attempts` times.
    pub fn new(addr: SocketAddr, wait: Duration, attempts: u32) -> io::Result<Self> {
        let local: SocketAddr = if addr.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(addr)?;
        Ok(Self {
            socket,
            addr,
            wait,
            attempts: attempts.max(1),
        })
    }

    /// Sends `request` (a dictionary whose `"command"` is `command`) and
    /// returns the reply's dictionary, or why there is none.
    pub fn request(&mut self, command: &str, request: &Value) -> Result<Value, NgError> {
        let cookie = next_cookie();
        let datagram = frame(&cookie, request);
        let mut buf = vec![0u8; 65_536];
        for _ in 0..self.attempts {
            self.socket.send(&datagram)?;
            let deadline = std::time::Instant::now() + self.wait;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                self.socket.set_read_timeout(Some(left))?;
                match self.socket.recv(&mut buf) {
                    Ok(n) => {
                        if let Some(reply) = parse_reply(&buf[..n], &cookie)? {
                            return check_result(command, reply);
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                // Nothing listens yet (rtpengine starting):
                                // ICMP port unreachable surfaces here.
                                | io::ErrorKind::ConnectionRefused
                        ) =>
                    {
                        if e.kind() == io::ErrorKind::ConnectionRefused {
                            std::thread::sleep(left.min(Duration::from_millis(20)));
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(NgError::NoReply {
            addr: self.addr,
            command: command.to_owned(),
            attempts: self.attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_ping() {
        let ping = Value::dict([("command", Value::str("ping"))]);
        assert_eq!(frame("5323_1", &ping), b"5323_1 d7:command4:pinge");
    }

    #[test]
    fn parses_replies_by_cookie() {
        let reply = parse_reply(b"ab d6:result4:ponge", "ab").unwrap().unwrap();
        assert!(check_result("ping", reply.clone()).is_ok());
        // A pong is no answer to an offer.
        assert!(matches!(
            check_result("offer", reply),
            Err(NgError::Refused { .. })
        ));
        assert!(parse_reply(b"zz d6:result4:ponge", "ab").unwrap().is_none());
        assert!(matches!(
            parse_reply(b"nospace", "ab"),
            Err(NgError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(b"ab i1e", "ab"),
            Err(NgError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(b"ab d6:resu", "ab"),
            Err(NgError::Bencode(_))
        ));
    }

    #[test]
    fn an_error_result_carries_its_reason() {
        let reply = parse_reply(b"c d6:result5:error12:error-reason12:Unknown calle", "c")
            .unwrap()
            .unwrap();
        match check_result("answer", reply) {
            Err(NgError::Refused { command, reason }) => {
                assert_eq!(command, "answer");
                assert_eq!(reason, "Unknown call");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cookies_are_never_reused() {
        let (a, b) = (next_cookie(), next_cookie());
        assert_ne!(a, b);
        assert!(!a.contains(' '));
    }

    #[test]
    fn silence_is_no_reply_after_the_attempts() {
        // A bound socket that never answers.
        let mute = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = mute.local_addr().unwrap();
        let mut client = NgClient::new(addr, Duration::from_millis(20), 2).unwrap();
        let ping = Value::dict([("command", Value::str("ping"))]);
        assert!(matches!(
            client.request("ping", &ping),
            Err(NgError::NoReply { attempts: 2, .. })
        ));
    }
}
