//! SIP messages on the wire (RFC 3261 §7, §18.3, §25): the start line,
//! headers with their compact forms expanded and comma lists split, folded
//! lines joined, and the body cut at Content-Length.
//!
//! [`SipMessage::parse`] owns what it returns (signalling is not the hot
//! path) and never panics; every input is bounded by
//! [`super::MAX_MESSAGE_SIZE`] and [`super::MAX_HEADERS`].

use std::fmt;

use super::error::ParseError;
use super::{MAX_HEADERS, MAX_MESSAGE_SIZE};

/// A SIP method (RFC 3261 §7.1: case-sensitive tokens).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE: start or modify a session.
    Invite,
    /// ACK: confirms the final answer to an INVITE.
    Ack,
    /// BYE: ends a dialog.
    Bye,
    /// CANCEL: cancels a pending INVITE.
    Cancel,
    /// OPTIONS: capability query, used as a keep-alive by SBCs.
    Options,
    /// REGISTER (RFC 3261 §10).
    Register,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// PUBLISH (RFC 3903).
    Publish,
    /// MESSAGE (RFC 3428).
    Message,
    /// REFER (RFC 3515).
    Refer,
    /// INFO (RFC 6086).
    Info,
    /// PRACK (RFC 3262).
    Prack,
    /// UPDATE (RFC 3311).
    Update,
    /// Any other token.
    Other(String),
}

impl Method {
    /// Reads a method token (case-sensitive, as RFC 3261 §7.1 says).
    pub fn parse(token: &str) -> Self {
        match token {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "OPTIONS" => Self::Options,
            "REGISTER" => Self::Register,
            "SUBSCRIBE" => Self::Subscribe,
            "NOTIFY" => Self::Notify,
            "PUBLISH" => Self::Publish,
            "MESSAGE" => Self::Message,
            "REFER" => Self::Refer,
            "INFO" => Self::Info,
            "PRACK" => Self::Prack,
            "UPDATE" => Self::Update,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The token as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Publish => "PUBLISH",
            Self::Message => "MESSAGE",
            Self::Refer => "REFER",
            Self::Info => "INFO",
            Self::Prack => "PRACK",
            Self::Update => "UPDATE",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP/2.0`.
    Request {
        /// The method.
        method: Method,
        /// The Request-URI as written.
        uri: String,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`.
    Response {
        /// 100..=699.
        status: u16,
        /// The reason phrase (may be empty).
        reason: String,
    },
}

/// One header value: a comma list arrives as several of these, in order,
/// each under the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name, compact forms expanded and well-known names in their
    /// canonical case (`v` and `VIA` both become `Via`).
    pub name: String,
    /// The value, trimmed, folded lines joined by one space.
    pub value: String,
}

/// A parsed SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    /// Request-Line or Status-Line.
    pub start: StartLine,
    /// Every header value in order of appearance.
    pub headers: Vec<Header>,
    /// The body: Content-Length bytes, or the rest of the datagram when
    /// the header is absent (RFC 3261 §18.3).
    pub body: Vec<u8>,
}

impl SipMessage {
    /// Parses one datagram. Bytes after Content-Length are discarded; a
    /// datagram shorter than Content-Length promises is an error.
    pub fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let (msg, body_error) = parse_lenient(data)?;
        match body_error {
            Some(e) => Err(e),
            None => Ok(msg),
        }
    }

    /// The method of a request, `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The first value of a header (name case-insensitive, compact forms
    /// accepted).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).next()
    }

    /// Every value of a header, in order.
    pub fn headers<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = canonical_name(name).map_or_else(|| name.to_owned(), str::to_owned);
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(&name))
            .map(|h| h.value.as_str())
    }
}

/// Parses the start line and headers; a body that disagrees with
/// Content-Length is reported beside the message (with an empty body) so a
/// request can still be answered 400 (RFC 3261 §18.3).
pub(crate) fn parse_lenient(data: &[u8]) -> Result<(SipMessage, Option<ParseError>), ParseError> {
    if data.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge(data.len()));
    }
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::Empty)?;
    let data = &data[start..];
    let (head_len, body_start) = find_head_end(data).ok_or(ParseError::Unterminated)?;
    let head = std::str::from_utf8(&data[..head_len]).map_err(|_| ParseError::NotUtf8)?;

    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().ok_or(ParseError::BadStartLine)?;
    let start = parse_start_line(first)?;

    // Unfold: a line starting with SP or HTAB continues the previous one.
    let mut raw: Vec<(usize, String)> = Vec::new();
    for (i, line) in lines.enumerate() {
        let number = i + 2;
        if line.starts_with([' ', '\t']) {
            let (_, last) = raw
                .last_mut()
                .ok_or(ParseError::BadHeader { line: number })?;
            last.push(' ');
            last.push_str(line.trim());
        } else if !line.is_empty() {
            raw.push((number, line.to_owned()));
        }
    }

    let mut headers = Vec::new();
    for (number, line) in &raw {
        let (name, value) = line
            .split_once(':')
            .ok_or(ParseError::BadHeader { line: *number })?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::BadHeader { line: *number });
        }
        let name = canonical_name(name).map_or_else(|| name.to_owned(), str::to_owned);
        let value = value.trim();
        if is_list_header(&name) {
            for item in split_list(value) {
                push_header(&mut headers, &name, item)?;
            }
        } else {
            push_header(&mut headers, &name, value)?;
        }
    }

    let mut msg = SipMessage {
        start,
        headers,
        body: Vec::new(),
    };
    let available = &data[body_start..];
    let body_error = match content_length(&msg) {
        Err(e) => Some(e),
        Ok(None) => {
            msg.body = available.to_vec();
            None
        }
        Ok(Some(n)) if n <= available.len() => {
            msg.body = available[..n].to_vec();
            None
        }
        Ok(Some(n)) => Some(ParseError::BodyTruncated {
            declared: n,
            available: available.len(),
        }),
    };
    Ok((msg, body_error))
}

fn push_header(headers: &mut Vec<Header>, name: &str, value: &str) -> Result<(), ParseError> {
    if headers.len() >= MAX_HEADERS {
        return Err(ParseError::TooManyHeaders);
    }
    headers.push(Header {
        name: name.to_owned(),
        value: value.to_owned(),
    });
    Ok(())
}

/// The end of the header section: (length of the head without the empty
/// line, offset of the body). CRLFCRLF, with bare LF tolerated.
fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' {
            // The line that starts after this LF: empty means end of head.
            match data.get(i + 1..) {
                Some([b'\r', b'\n', ..]) => return Some((i, i + 3)),
                Some([b'\n', ..]) => return Some((i, i + 2)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let rest = rest.trim_start();
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadStartLine);
        }
        let status: u16 = code.parse().map_err(|_| ParseError::BadStartLine)?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::BadStartLine);
        }
        return Ok(StartLine::Response {
            status,
            reason: reason.to_owned(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadStartLine);
    };
    if method.is_empty()
        || !method.bytes().all(is_token_byte)
        || uri.is_empty()
        || !uri.contains(':')
        || version != "SIP/2.0"
    {
        return Err(ParseError::BadStartLine);
    }
    Ok(StartLine::Request {
        method: Method::parse(method),
        uri: uri.to_owned(),
    })
}

fn content_length(msg: &SipMessage) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    for v in msg.headers("Content-Length") {
        if v.is_empty() || v.len() > 5 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadContentLength);
        }
        let n: usize = v.parse().map_err(|_| ParseError::BadContentLength)?;
        if n > MAX_MESSAGE_SIZE || found.is_some_and(|f| f != n) {
            return Err(ParseError::BadContentLength);
        }
        found = Some(n);
    }
    Ok(found)
}

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Canonical spelling of a compact form (RFC 3261 §7.3.3, RFC 3515, RFC
/// 4028, RFC 6665) or of a well-known name; `None` for other names.
fn canonical_name(name: &str) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Length",
        "Content-Type",
        "Content-Encoding",
        "Supported",
        "Subject",
        "Max-Forwards",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Route",
        "Record-Route",
        "Allow",
        "Accept",
        "Timestamp",
        "Event",
        "Refer-To",
        "Allow-Events",
        "Referred-By",
        "Session-Expires",
    ];
    const COMPACT: &[(&str, &str)] = &[
        ("v", "Via"),
        ("f", "From"),
        ("t", "To"),
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("e", "Content-Encoding"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("o", "Event"),
        ("r", "Refer-To"),
        ("u", "Allow-Events"),
        ("b", "Referred-By"),
        ("x", "Session-Expires"),
    ];
    if name.len() == 1 {
        return COMPACT
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(name))
            .map(|(_, full)| *full);
    }
    NAMES.iter().find(|n| n.eq_ignore_ascii_case(name)).copied()
}

/// Headers whose value is a comma-separated list (RFC 3261 §7.3.1). Others
/// (Date, WWW-Authenticate, ...) may hold commas that separate nothing.
fn is_list_header(canonical: &str) -> bool {
    matches!(
        canonical,
        "Via"
            | "Contact"
            | "Route"
            | "Record-Route"
            | "Allow"
            | "Accept"
            | "Supported"
            | "Require"
            | "Proxy-Require"
            | "Unsupported"
            | "Content-Encoding"
            | "Allow-Events"
    )
}

/// The characters of a header value outside its quoted strings (RFC 3261
/// §25.1: `"..."` with backslash escapes), with their byte offsets; the
/// quotes themselves are not yielded.
pub(crate) struct Unquoted<'a> {
    chars: std::str::CharIndices<'a>,
    in_quotes: bool,
    escaped: bool,
}

impl<'a> Unquoted<'a> {
    pub(crate) fn new(value: &'a str) -> Self {
        Self {
            chars: value.char_indices(),
            in_quotes: false,
            escaped: false,
        }
    }

    /// Whether the value ended inside a quoted string (malformed).
    pub(crate) fn in_quotes(&self) -> bool {
        self.in_quotes
    }
}

impl Iterator for Unquoted<'_> {
    type Item = (usize, char);

    fn next(&mut self) -> Option<(usize, char)> {
        for (i, c) in self.chars.by_ref() {
            if self.in_quotes {
                match c {
                    _ if self.escaped => self.escaped = false,
                    '\\' => self.escaped = true,
                    '"' => self.in_quotes = false,
                    _ => {}
                }
            } else if c == '"' {
                self.in_quotes = true;
            } else {
                return Some((i, c));
            }
        }
        None
    }
}

/// Splits a header value on commas outside quoted strings and angle
/// brackets, trimming each item and skipping empty ones.
pub(crate) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut items = Vec::new();
    let mut in_angle = false;
    let mut start = 0;
    for (i, c) in Unquoted::new(value) {
        match c {
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items.into_iter().map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:1234@192.0.2.10 SIP/2.0\r\n\
v: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds,SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa\r\n\
Max-Forwards: 70\r\n\
t: <sip:1234@192.0.2.10>\r\n\
f: \"Alice, the caller\" <sip:alice@198.51.100.7>;tag=1928301774\r\n\
i: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
m: <sip:alice@198.51.100.7:5060>\r\n\
Subject: folded\r\n  over two lines\r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\r\ntrailing junk";

    #[test]
    fn compact_forms_lists_and_folding() {
        let m = SipMessage::parse(INVITE).unwrap();
        assert_eq!(
            m.start,
            StartLine::Request {
                method: Method::Invite,
                uri: "sip:1234@192.0.2.10".into()
            }
        );
        let vias: Vec<_> = m.headers("via").collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds",
                "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa"
            ]
        );
        assert_eq!(
            m.header("From"),
            Some("\"Alice, the caller\" <sip:alice@198.51.100.7>;tag=1928301774")
        );
        assert_eq!(m.header("call-id"), Some("a84b4c76e66710"));
        assert_eq!(m.header("i"), Some("a84b4c76e66710"));
        assert_eq!(m.header("Subject"), Some("folded over two lines"));
        assert_eq!(m.header("Content-Type"), Some("application/sdp"));
        assert_eq!(m.body, b"v=0\r");
    }

    #[test]
    fn responses_parse_and_bare_lf_is_tolerated() {
        let m = SipMessage::parse(
            b"\r\nSIP/2.0 200 OK\nVia: SIP/2.0/UDP a;branch=z9hG4bKx\nContent-Length: 0\n\n",
        )
        .unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                status: 200,
                reason: "OK".into()
            }
        );
        assert!(m.body.is_empty());
        assert_eq!(m.method(), None);
    }

    #[test]
    fn list_splitting_respects_quotes_and_brackets() {
        let items: Vec<_> = split_list(r#""a,\"b" <sip:x@y;p=1,2>, <sip:z> ,, "#).collect();
        assert_eq!(items, [r#""a,\"b" <sip:x@y;p=1,2>"#, "<sip:z>"]);
    }

    #[test]
    fn date_is_not_split() {
        let m = SipMessage::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nDate: Sat, 13 Nov 2010 23:29:00 GMT\r\n\r\n",
        )
        .unwrap();
        assert_eq!(m.headers("Date").count(), 1);
    }

    #[test]
    fn errors() {
        assert_eq!(SipMessage::parse(b"\r\n\r\n"), Err(ParseError::Empty));
        assert_eq!(
            SipMessage::parse(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n"),
            Err(ParseError::Unterminated)
        );
        assert_eq!(
            SipMessage::parse(b"INVITE sip:a@b SIP/3.0\r\n\r\n"),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(
            SipMessage::parse(b"SIP/2.0 99 Nope\r\n\r\n"),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(
            SipMessage::parse(b"BYE sip:a@b SIP/2.0\r\n folded first\r\n\r\n"),
            Err(ParseError::BadHeader { line: 2 })
        );
        assert_eq!(
            SipMessage::parse(b"BYE sip:a@b SIP/2.0\r\nno colon\r\n\r\n"),
            Err(ParseError::BadHeader { line: 2 })
        );
        assert_eq!(
            SipMessage::parse(b"BYE sip:a@b SIP/2.0\r\nl: 99999999999\r\n\r\n"),
            Err(ParseError::BadContentLength)
        );
        assert_eq!(
            SipMessage::parse(b"BYE sip:a@b SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab"),
            Err(ParseError::BadContentLength)
        );
        assert_eq!(
            SipMessage::parse(b"BYE sip:a@b SIP/2.0\r\nl: 10\r\n\r\nab"),
            Err(ParseError::BodyTruncated {
                declared: 10,
                available: 2
            })
        );
        assert_eq!(
            SipMessage::parse(&[0xff; 70_000]),
            Err(ParseError::TooLarge(70_000))
        );
        assert_eq!(
            SipMessage::parse(b"BYE sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n"),
            Err(ParseError::NotUtf8)
        );
        let many = format!(
            "BYE sip:a@b SIP/2.0\r\nAllow: {}\r\n\r\n",
            "A,".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            SipMessage::parse(many.as_bytes()),
            Err(ParseError::TooManyHeaders)
        );
    }

    #[test]
    fn truncated_prefixes_never_panic() {
        for n in 0..INVITE.len() {
            let _ = SipMessage::parse(&INVITE[..n]);
        }
    }
}
