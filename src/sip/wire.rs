//! Between [`SipMessage`] and the UAS: reading an incoming request's
//! mandatory headers (RFC 3261 §8.1.1, §8.2) and writing our responses
//! (§8.2.6, §12.1.1, §20) and requests (§12.2.1.1).

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::header::{CSeq, NameAddr, Via};
use super::message::{Method, SipMessage, StartLine};
use super::{Transport, UasConfig};

/// The methods we implement, for `Allow`.
pub(crate) const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS";
/// The option tags we support (RFC 3261 §19.2): none, so any `Require`
/// is answered 420.
pub(crate) const SUPPORTED: &[&str] = &[];

/// What a response to a request copies from it (§8.2.6.2) and where it
/// goes (§18.2.2, RFC 3581). Headers that were missing stay `None`, so
/// even a 400 for a broken request can be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplyBase {
    /// Every Via, the top one with `received`/`rport` filled in.
    pub(crate) vias: Vec<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) call_id: Option<String>,
    pub(crate) cseq: Option<String>,
    pub(crate) timestamp: Option<String>,
    pub(crate) record_route: Vec<String>,
    pub(crate) reply_to: SocketAddr,
    /// The transport the request came on, which the response takes.
    pub(crate) transport: Transport,
}

impl ReplyBase {
    /// `None` when the top Via is missing or unreadable: then no response
    /// can be routed and the request is dropped.
    fn read(
        msg: &SipMessage,
        source: SocketAddr,
        transport: Transport,
    ) -> Option<(Self, Via, String)> {
        let mut vias = msg.headers("Via");
        let top_raw = vias.next()?;
        let mut top = Via::parse(top_raw)?;
        let mut reply_to = top.stamp_source(source);
        if transport.is_stream() {
            // §18.2.2: on a connection the response goes back over it.
            reply_to = source;
        }
        let mut all = vec![top.to_string()];
        all.extend(vias.map(str::to_owned));
        if !all.iter().all(|v| is_text(v)) {
            return None;
        }
        // A value with control bytes is never echoed: it reads as missing.
        let one = |name| msg.header(name).filter(|v| is_text(v)).map(str::to_owned);
        let base = Self {
            vias: all,
            from: one("From"),
            to: one("To"),
            call_id: one("Call-ID"),
            cseq: one("CSeq"),
            timestamp: one("Timestamp"),
            record_route: msg
                .headers("Record-Route")
                .filter(|v| is_text(v))
                .map(str::to_owned)
                .collect(),
            reply_to,
            transport,
        };
        Some((base, top, top_raw.to_owned()))
    }
}

/// An incoming request whose mandatory headers are present and readable.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) uri: String,
    pub(crate) base: ReplyBase,
    /// The top Via as the sender wrote it (RFC 2543 matching).
    pub(crate) top_via_raw: String,
    pub(crate) top_via: Via,
    pub(crate) from: String,
    pub(crate) from_uri: String,
    pub(crate) from_tag: Option<String>,
    pub(crate) to: String,
    pub(crate) to_tag: Option<String>,
    pub(crate) call_id: String,
    pub(crate) cseq: CSeq,
    pub(crate) max_forwards: Option<u32>,
    /// The Contact URI (the remote target).
    pub(crate) contact: Option<String>,
    pub(crate) require: Vec<String>,
    pub(crate) content_type: Option<String>,
    /// The `Authorization` value (digest credentials), if any.
    pub(crate) authorization: Option<String>,
    pub(crate) body: Vec<u8>,
    pub(crate) source: SocketAddr,
    pub(crate) transport: Transport,
}

/// Why a request is not a [`Request`].
#[derive(Debug)]
pub(crate) enum Invalid {
    /// Not answerable (no readable Via, or an ACK): drop it.
    Drop,
    /// Answer 400 with this reason phrase.
    BadRequest(Box<ReplyBase>, &'static str),
}

impl Request {
    /// Reads a parsed request; `body_ok` is false when its body disagreed
    /// with Content-Length (answered 400, §18.3).
    pub(crate) fn read(
        msg: SipMessage,
        source: SocketAddr,
        transport: Transport,
        body_ok: bool,
    ) -> Result<Self, Invalid> {
        let StartLine::Request { method, uri } = msg.start.clone() else {
            return Err(Invalid::Drop);
        };
        let Some((base, top_via, top_via_raw)) = ReplyBase::read(&msg, source, transport) else {
            return Err(Invalid::Drop);
        };
        let bad = |base: ReplyBase, why| {
            if method == Method::Ack {
                Invalid::Drop
            } else {
                Invalid::BadRequest(Box::new(base), why)
            }
        };
        if !body_ok {
            return Err(bad(base, "Bad Content-Length"));
        }
        let (Some(from), Some(to), Some(call_id), Some(cseq)) = (
            base.from.clone(),
            base.to.clone(),
            base.call_id.clone(),
            base.cseq.clone(),
        ) else {
            return Err(bad(base, "Missing Mandatory Header"));
        };
        let Some(from_addr) = NameAddr::parse(&from) else {
            return Err(bad(base, "Bad From Header"));
        };
        let Some(to_addr) = NameAddr::parse(&to) else {
            return Err(bad(base, "Bad To Header"));
        };
        let Some(cseq) = CSeq::parse(&cseq) else {
            return Err(bad(base, "Bad CSeq Header"));
        };
        if cseq.method != method {
            return Err(bad(base, "CSeq Method Mismatch"));
        }
        if !is_call_id(&call_id) {
            // Never echo bytes outside the grammar back (NUL, ESC, ...).
            let mut base = base;
            base.call_id = None;
            return Err(bad(base, "Bad Call-ID Header"));
        }
        let tags_ok = [from_addr.tag(), to_addr.tag()]
            .into_iter()
            .flatten()
            .all(is_token);
        if !tags_ok {
            let mut base = base;
            base.from = None;
            base.to = None;
            return Err(bad(base, "Bad From or To Header"));
        }
        let max_forwards = match msg.header("Max-Forwards") {
            None => None,
            Some(v) if !v.is_empty() && v.len() <= 3 && v.bytes().all(|b| b.is_ascii_digit()) => {
                v.parse().ok()
            }
            Some(_) => return Err(bad(base, "Bad Max-Forwards Header")),
        };
        let contact = match msg.header("Contact") {
            None => None,
            Some(c) => match NameAddr::parse(c) {
                Some(n) => Some(n.uri.to_owned()),
                None if c == "*" => None,
                None => return Err(bad(base, "Bad Contact Header")),
            },
        };
        Ok(Self {
            from_uri: from_addr.uri.to_owned(),
            from_tag: from_addr.tag().map(str::to_owned),
            to_tag: to_addr.tag().map(str::to_owned),
            method,
            uri,
            top_via_raw,
            top_via,
            from,
            to,
            call_id,
            cseq,
            max_forwards,
            contact,
            require: msg.headers("Require").map(str::to_owned).collect(),
            content_type: msg.header("Content-Type").map(str::to_owned),
            authorization: msg.header("Authorization").map(str::to_owned),
            body: msg.body,
            source,
            transport,
            base,
        })
    }
}

/// RFC 3261 §25.1 `word`: the characters a Call-ID may hold.
fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~()<>:\\\"/[]?{}".contains(&b)
}

/// `callid = word [ "@" word ]` (RFC 3261 §25.1).
pub(crate) fn is_call_id(value: &str) -> bool {
    let mut parts = value.splitn(2, '@');
    let word = |w: Option<&str>| w.is_some_and(|w| !w.is_empty() && w.bytes().all(is_word_char));
    let first = parts.next();
    word(first) && parts.next().is_none_or(|second| word(Some(second)))
}

/// `token` (RFC 3261 §25.1): tags, branches, methods.
pub(crate) fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// A header value without control characters (HTAB allowed), the only
/// kind we echo.
pub(crate) fn is_text(value: &str) -> bool {
    !value.chars().any(|c| c.is_control() && c != '\t')
}

/// A response to write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Response<'a> {
    pub(crate) status: u16,
    pub(crate) reason: &'a str,
    /// Added to To when it has no tag yet (never on 100, §8.2.6.2).
    pub(crate) to_tag: Option<&'a str>,
    /// A dialog-creating response (18x, 2xx to INVITE): Contact and the
    /// Record-Route copy (§12.1.1).
    pub(crate) dialog: bool,
    /// Extra headers, written after ours.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    /// An SDP body.
    pub(crate) sdp: Option<&'a str>,
}

impl<'a> Response<'a> {
    pub(crate) fn new(status: u16, reason: &'a str) -> Self {
        Self {
            status,
            reason,
            to_tag: None,
            dialog: false,
            headers: &[],
            sdp: None,
        }
    }
}

/// Replaces CR and LF so text from the call logic cannot inject headers.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        s.replace(['\r', '\n'], " ").into()
    } else {
        s.into()
    }
}

fn header(out: &mut String, name: &str, value: &str) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{}: {}\r\n", clean(name), clean(value));
}

/// Writes a response to the request `base` was read from.
pub(crate) fn encode_response(base: &ReplyBase, r: &Response<'_>, cfg: &UasConfig) -> Vec<u8> {
    let mut out = String::with_capacity(512 + r.sdp.map_or(0, str::len));
    let _ = write!(out, "SIP/2.0 {} {}\r\n", r.status, clean(r.reason));
    for via in &base.vias {
        header(&mut out, "Via", via);
    }
    if r.dialog {
        for rr in &base.record_route {
            header(&mut out, "Record-Route", rr);
        }
    }
    if let Some(from) = &base.from {
        header(&mut out, "From", from);
    }
    if let Some(to) = &base.to {
        let tagged = NameAddr::parse(to).is_some_and(|n| n.tag().is_some());
        match r.to_tag {
            Some(tag) if r.status != 100 && !tagged => {
                header(&mut out, "To", &format!("{to};tag={tag}"));
            }
            _ => header(&mut out, "To", to),
        }
    }
    if let Some(call_id) = &base.call_id {
        header(&mut out, "Call-ID", call_id);
    }
    if let Some(cseq) = &base.cseq {
        header(&mut out, "CSeq", cseq);
    }
    if r.status == 100 {
        // §8.2.6.1: a Timestamp in the request is echoed in 100.
        if let Some(ts) = &base.timestamp {
            header(&mut out, "Timestamp", ts);
        }
    } else {
        if r.dialog {
            header(&mut out, "Contact", &contact(cfg, base.transport));
        }
        header(&mut out, "Allow", ALLOW);
        header(&mut out, "Supported", &SUPPORTED.join(", "));
    }
    header(&mut out, "Server", &cfg.user_agent);
    for (name, value) in r.headers {
        header(&mut out, name, value);
    }
    finish(&mut out, r.sdp);
    out.into_bytes()
}

/// Our Contact on `transport`: `sips:` on TLS (RFC 5630 §3.1.3, no
/// `transport=tls`), `transport=tcp` on TCP.
pub(crate) fn contact(cfg: &UasConfig, transport: Transport) -> String {
    let local = cfg.local_for(transport);
    match transport {
        Transport::Udp => format!("<sip:{local}>"),
        Transport::Tcp => format!("<sip:{local};transport=tcp>"),
        Transport::Tls => format!("<sips:{local}>"),
    }
}

fn finish(out: &mut String, sdp: Option<&str>) {
    match sdp {
        Some(body) => {
            header(out, "Content-Type", "application/sdp");
            let _ = write!(out, "Content-Length: {}\r\n\r\n{body}", body.len());
        }
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
}

/// A request we send inside a dialog (§12.2.1.1): BYE.
#[derive(Debug, Clone)]
pub(crate) struct OutRequest<'a> {
    pub(crate) method: Method,
    pub(crate) uri: &'a str,
    pub(crate) branch: &'a str,
    pub(crate) route: &'a [String],
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) call_id: &'a str,
    pub(crate) cseq: u32,
    pub(crate) transport: Transport,
}

pub(crate) fn encode_request(r: &OutRequest<'_>, cfg: &UasConfig) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let _ = write!(out, "{} {} SIP/2.0\r\n", r.method, clean(r.uri));
    // On a connection, `alias` (RFC 5923 §6) lets the peer send its
    // requests back over it.
    let alias = if r.transport.is_stream() {
        ";alias"
    } else {
        ""
    };
    header(
        &mut out,
        "Via",
        &format!(
            "SIP/2.0/{} {};branch={};rport{alias}",
            r.transport.via_token(),
            cfg.local_for(r.transport),
            r.branch
        ),
    );
    header(&mut out, "Max-Forwards", "70");
    for route in r.route {
        header(&mut out, "Route", route);
    }
    header(&mut out, "From", r.from);
    header(&mut out, "To", r.to);
    header(&mut out, "Call-ID", r.call_id);
    header(&mut out, "CSeq", &format!("{} {}", r.cseq, r.method));
    header(&mut out, "User-Agent", &cfg.user_agent);
    finish(&mut out, None);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> UasConfig {
        UasConfig::new("192.0.2.10:5060".parse().unwrap(), "sluice-test")
    }

    fn parse(data: &[u8]) -> SipMessage {
        SipMessage::parse(data).unwrap()
    }

    #[test]
    fn response_copies_headers_and_adds_the_tag() {
        let msg = parse(
            b"OPTIONS sip:192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKa;rport\r\n\
Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKb\r\n\
From: <sip:sbc@10.1.1.1>;tag=f1\r\nTo: <sip:192.0.2.10>\r\nCall-ID: c1\r\nCSeq: 7 OPTIONS\r\n\r\n",
        );
        let src = "198.51.100.1:33333".parse().unwrap();
        let req = Request::read(msg, src, Transport::Udp, true).unwrap();
        assert_eq!(req.base.reply_to, src);
        let out = encode_response(
            &req.base,
            &Response {
                to_tag: Some("t9"),
                headers: &[
                    ("Accept", "application/sdp"),
                    ("X-Evil", "a\r\nInjected: 1"),
                ],
                ..Response::new(200, "OK")
            },
            &cfg(),
        );
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"));
        assert!(text.contains("Via: SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKa;rport=33333;received=198.51.100.1\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKb\r\n"));
        assert!(text.contains("To: <sip:192.0.2.10>;tag=t9\r\n"));
        assert!(text.contains("Server: sluice-test\r\n"));
        assert!(text.contains("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n"));
        assert!(text.contains("X-Evil: a  Injected: 1\r\n"));
        assert!(!text.contains("Contact"));
        // It parses back as a SIP response.
        assert!(SipMessage::parse(&out).is_ok());
    }

    #[test]
    fn invalid_requests() {
        let src = "198.51.100.1:5060".parse().unwrap();
        let no_via = parse(b"BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n");
        assert!(matches!(
            Request::read(no_via, src, Transport::Udp, true),
            Err(Invalid::Drop)
        ));
        let mismatch = parse(b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n");
        match Request::read(mismatch, src, Transport::Udp, true) {
            Err(Invalid::BadRequest(base, why)) => {
                assert_eq!(why, "CSeq Method Mismatch");
                assert_eq!(base.cseq.as_deref(), Some("1 INVITE"));
            }
            other => panic!("{other:?}"),
        }
        let ack = parse(b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n");
        assert!(matches!(
            Request::read(ack, src, Transport::Udp, true),
            Err(Invalid::Drop)
        ));
    }
}
