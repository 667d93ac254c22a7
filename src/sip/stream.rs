//! SIP over a byte stream (TCP, TLS): cutting the stream into messages by
//! Content-Length (RFC 3261 §18.3, §7.5) and the CRLF keep-alives of
//! RFC 5626 §3.5.1. Sans-IO: the connection's owner feeds what it read
//! with [`StreamFramer::push`] and drains [`StreamFramer::poll_frame`].
//!
//! On a stream, Content-Length is mandatory: a message without one cannot
//! be delimited, so the connection is closed ([`FramingError`]). Every
//! buffer is bounded by the framer's limit; nothing the peer sends makes
//! it grow past it or panic.

/// A unit cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole SIP message (headers and body), for
    /// [`super::Uas::handle_message`].
    Message(Vec<u8>),
    /// A CRLF CRLF keep-alive ping: answer it with [`PONG`].
    Ping,
}

/// The answer to a [`Frame::Ping`] (RFC 5626 §3.5.1).
pub const PONG: &[u8] = b"\r\n";

/// Why a stream can no longer be read; the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The headers or the whole message exceed the limit.
    #[error("a SIP message on the stream is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The headers carry no Content-Length (mandatory on streams, §18.3).
    #[error("a SIP message on the stream has no Content-Length")]
    MissingContentLength,
    /// Content-Length is not a number, or two disagree.
    #[error("a SIP message on the stream has an unreadable Content-Length")]
    BadContentLength,
}

/// Cuts one connection's bytes into [`Frame`]s. See the module docs.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    limit: usize,
    /// How far the search for the end of the headers has looked.
    scanned: usize,
    failed: Option<FramingError>,
}

impl StreamFramer {
    /// A framer that refuses messages (and buffered bytes) over `limit`.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit: limit.max(16),
            scanned: 0,
            failed: None,
        }
    }

    /// Appends bytes read from the connection. Fails (and keeps failing)
    /// once more is buffered than one message may hold.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FramingError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.buf.len() + data.len() > self.limit.saturating_mul(2) {
            // Bytes beyond two messages' worth unread: the reader is not
            // draining, or the peer floods.
            return Err(self.fail(FramingError::TooLarge { limit: self.limit }));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Bytes held and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed. Call it
    /// until it returns `Ok(None)` after every [`Self::push`].
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.consume(4);
                return Ok(Some(Frame::Ping));
            }
            // §7.5: CRLFs before a start line are ignored; a lone CRLF is
            // a pong (or noise). Wait while it may still become a ping.
            match self.buf.as_slice() {
                [] | [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => return Ok(None),
                [b'\r', b'\n', ..] => self.consume(2),
                [b'\n', ..] | [b'\r', _, ..] => self.consume(1),
                _ => break,
            }
        }
        let Some(header_end) = self.header_end() else {
            if self.buf.len() > self.limit {
                return Err(self.fail(FramingError::TooLarge { limit: self.limit }));
            }
            return Ok(None);
        };
        let length = match content_length(&self.buf[..header_end]) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(self.fail(FramingError::MissingContentLength)),
            Err(e) => return Err(self.fail(e)),
        };
        let total = header_end.saturating_add(length);
        if total > self.limit {
            return Err(self.fail(FramingError::TooLarge { limit: self.limit }));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let message = std::mem::replace(&mut self.buf, rest);
        self.scanned = 0;
        Ok(Some(Frame::Message(message)))
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
        self.scanned = 0;
    }

    fn fail(&mut self, e: FramingError) -> FramingError {
        self.failed = Some(e);
        self.buf = Vec::new();
        e
    }

    /// The offset just past the blank line that ends the headers.
    fn header_end(&mut self) -> Option<usize> {
        // Resume three bytes back: the terminator may straddle two reads.
        let from = self.scanned.saturating_sub(3);
        let found = self
            .buf
            .get(from..)?
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|at| from + at + 4);
        if found.is_none() {
            self.scanned = self.buf.len();
        }
        found
    }
}

/// The Content-Length (or compact `l`) of a header block; `None` when
/// absent. Two values that disagree are an error.
fn content_length(headers: &[u8]) -> Result<Option<usize>, FramingError> {
    let mut found: Option<usize> = None;
    // The first line is the start line; folded lines start with WSP and
    // never name a header.
    for line in headers.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadContentLength);
        }
        let n = value
            .iter()
            .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(FramingError::BadContentLength);
        }
        found = Some(n);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nhello";

    fn frames(framer: &mut StreamFramer) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(f) = framer.poll_frame().unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn messages_split_at_content_length_in_any_pieces() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(OPTIONS);
        stream.extend_from_slice(OPTIONS);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(b"BYE sip:x SIP/2.0\r\nl: 0\r\n\r\n");
        for step in [1, 2, 3, 7, stream.len()] {
            let mut framer = StreamFramer::new(1024);
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                framer.push(piece).unwrap();
                got.extend(frames(&mut framer));
            }
            assert_eq!(
                got,
                vec![
                    Frame::Ping,
                    Frame::Message(OPTIONS.to_vec()),
                    Frame::Message(OPTIONS.to_vec()),
                    Frame::Message(b"BYE sip:x SIP/2.0\r\nl: 0\r\n\r\n".to_vec()),
                ],
                "step {step}"
            );
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn a_partial_body_waits() {
        let mut framer = StreamFramer::new(1024);
        framer.push(&OPTIONS[..OPTIONS.len() - 1]).unwrap();
        assert_eq!(framer.poll_frame(), Ok(None));
        framer.push(b"o").unwrap();
        assert_eq!(
            framer.poll_frame(),
            Ok(Some(Frame::Message(OPTIONS.to_vec())))
        );
    }

    #[test]
    fn broken_streams_fail_and_stay_failed() {
        let cases: [(&[u8], FramingError); 4] = [
            (
                b"INVITE sip:a SIP/2.0\r\nVia: x\r\n\r\n",
                FramingError::MissingContentLength,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n",
                FramingError::BadContentLength,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
                FramingError::BadContentLength,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nContent-Length: 999\r\n\r\n",
                FramingError::TooLarge { limit: 100 },
            ),
        ];
        for (input, want) in cases {
            let mut framer = StreamFramer::new(100);
            framer.push(input).unwrap();
            assert_eq!(framer.poll_frame(), Err(want));
            assert_eq!(framer.poll_frame(), Err(want));
            assert_eq!(framer.push(b"more"), Err(want));
        }
    }

    #[test]
    fn endless_headers_are_cut_off() {
        let mut framer = StreamFramer::new(100);
        framer.push(b"INVITE sip:a SIP/2.0\r\n").unwrap();
        let mut failed = None;
        for _ in 0..20 {
            match framer.push(b"X-Pad: 0123456789\r\n") {
                Ok(()) => {
                    if let Err(e) = framer.poll_frame() {
                        failed = Some(e);
                        break;
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        assert_eq!(failed, Some(FramingError::TooLarge { limit: 100 }));
        assert_eq!(framer.buffered(), 0);
    }
}
