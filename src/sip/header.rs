//! Typed views of the headers the UAS reads: Via (RFC 3261 §20.42, RFC
//! 3581), name-addr headers (From, To, Contact, Record-Route: §20.10,
//! §25.1), CSeq (§20.16) and SIP URIs (§19.1).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::message::{Method, Unquoted, is_token_byte};

/// The RFC 3261 branch prefix (§8.1.1.7).
pub(crate) const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host[:port];params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Via {
    pub(crate) transport: String,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    /// Parameters in order; names as written, values without quotes.
    pub(crate) params: Vec<(String, Option<String>)>,
}

impl Via {
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let (sent, params) = value.split_once(';').unwrap_or((value, ""));
        // LWS is allowed around the slashes of the protocol.
        let sent = sent.split('/').map(str::trim).collect::<Vec<_>>().join("/");
        let mut words = sent.split_whitespace();
        let protocol = words.next()?;
        let sent_by = words.next()?;
        if words.next().is_some_and(|w| !w.starts_with('(')) {
            return None;
        }
        let mut proto = protocol.split('/');
        let (Some(name), Some(version), Some(transport), None) =
            (proto.next(), proto.next(), proto.next(), proto.next())
        else {
            return None;
        };
        if !name.eq_ignore_ascii_case("SIP")
            || version != "2.0"
            || transport.is_empty()
            || !transport.bytes().all(is_token_byte)
        {
            return None;
        }
        let (host, port) = split_host_port(sent_by)?;
        let params = params
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (
                    n.trim().to_owned(),
                    Some(v.trim().trim_matches('"').to_owned()),
                ),
                None => (p.to_owned(), None),
            })
            .collect();
        Some(Self {
            transport: transport.to_ascii_uppercase(),
            host: host.to_owned(),
            port,
            params,
        })
    }

    pub(crate) fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The branch when it carries the RFC 3261 magic cookie.
    pub(crate) fn rfc3261_branch(&self) -> Option<&str> {
        self.param("branch")
            .flatten()
            .filter(|b| b.starts_with(MAGIC_COOKIE) && b.len() > MAGIC_COOKIE.len())
    }

    /// `host:port` normalised for transaction matching (§17.2.3).
    pub(crate) fn sent_by(&self) -> String {
        format!(
            "{}:{}",
            self.host.to_ascii_lowercase(),
            self.port.unwrap_or(5060)
        )
    }

    pub(crate) fn set_param(&mut self, name: &str, value: String) {
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => *v = Some(value),
            None => self.params.push((name.to_owned(), Some(value))),
        }
    }

    /// RFC 3261 §18.2.1 with RFC 3581 §4: records where the request came
    /// from, and returns where the responses go (§18.2.2, RFC 3581 §4).
    pub(crate) fn stamp_source(&mut self, source: SocketAddr) -> SocketAddr {
        let rport = self.param("rport").is_some();
        let host_ip = parse_host_ip(&self.host);
        if rport || host_ip != Some(source.ip()) {
            self.set_param("received", source.ip().to_string());
        }
        if rport {
            self.set_param("rport", source.port().to_string());
            source
        } else {
            // No rport: the source IP (§18.2.1 received) and the sent-by
            // port, so no name ever needs resolving.
            SocketAddr::new(source.ip(), self.port.unwrap_or(5060))
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// `host[:port]` with bracketed IPv6 references.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &s[..end + 2];
        match &rest[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
    {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// An IP literal host (IPv6 in brackets), `None` for a name.
pub(crate) fn parse_host_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// A name-addr or addr-spec header value (From, To, Contact, Route,
/// Record-Route): the URI and the header parameters after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameAddr<'a> {
    pub(crate) uri: &'a str,
    pub(crate) params: &'a str,
}

impl<'a> NameAddr<'a> {
    pub(crate) fn parse(value: &'a str) -> Option<Self> {
        let value = value.trim();
        let mut scan = Unquoted::new(value);
        for (i, c) in scan.by_ref() {
            if c == '<' {
                let rest = &value[i + 1..];
                let end = rest.find('>')?;
                let uri = rest[..end].trim();
                return (!uri.is_empty()).then_some(Self {
                    uri,
                    params: &rest[end + 1..],
                });
            }
        }
        if scan.in_quotes() {
            return None;
        }
        // addr-spec: parameters after the URI belong to the header (§20).
        let (uri, params) = match value.find(';') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        };
        let uri = uri.trim();
        (!uri.is_empty() && !uri.contains(char::is_whitespace)).then_some(Self { uri, params })
    }

    pub(crate) fn param(&self, name: &str) -> Option<&'a str> {
        param(self.params, name)
    }

    pub(crate) fn tag(&self) -> Option<&'a str> {
        self.param("tag").filter(|t| !t.is_empty())
    }
}

/// The value of `;name=value` (or `""` for a flag) in a parameter list.
fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params
        .split(';')
        .map(str::trim)
        .find_map(|p| match p.split_once('=') {
            Some((n, v)) if n.trim().eq_ignore_ascii_case(name) => Some(v.trim()),
            None if p.eq_ignore_ascii_case(name) => Some(""),
            _ => None,
        })
}

/// A CSeq value: `number METHOD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CSeq {
    pub(crate) seq: u32,
    pub(crate) method: Method,
}

impl CSeq {
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let mut words = value.split_whitespace();
        let (Some(seq), Some(method), None) = (words.next(), words.next(), words.next()) else {
            return None;
        };
        if seq.len() > 10 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let seq: u32 = seq.parse().ok()?;
        // RFC 3261 §8.1.1.5: less than 2^31.
        if seq >= 1 << 31 || !method.bytes().all(is_token_byte) {
            return None;
        }
        Some(Self {
            seq,
            method: Method::parse(method),
        })
    }
}

/// The parts of a `sip:`, `sips:` or `tel:` URI the UAS needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Uri<'a> {
    pub(crate) user: Option<&'a str>,
    pub(crate) host: &'a str,
    pub(crate) port: Option<u16>,
    pub(crate) params: &'a str,
}

impl<'a> Uri<'a> {
    pub(crate) fn parse(uri: &'a str) -> Option<Self> {
        let (scheme, rest) = uri.split_once(':')?;
        if scheme.eq_ignore_ascii_case("tel") {
            let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
            return Some(Self {
                user: Some(number),
                host: "",
                port: None,
                params,
            });
        }
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return None;
        }
        let rest = rest.split_once('?').map_or(rest, |(r, _headers)| r);
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => (Some(userinfo.split_once(':').map_or(userinfo, |u| u.0)), hp),
            None => (None, rest),
        };
        let (hostport, params) = match hostport.find(';') {
            Some(i) => (&hostport[..i], &hostport[i..]),
            None => (hostport, ""),
        };
        let (host, port) = split_host_port(hostport)?;
        Some(Self {
            user,
            host,
            port,
            params,
        })
    }

    /// Whether the URI has the `lr` parameter (a loose router, §19.1.1).
    pub(crate) fn loose_route(&self) -> bool {
        param(self.params, "lr").is_some()
    }

    /// The address when the host is an IP literal (no DNS here: sans-IO).
    pub(crate) fn socket_addr(&self) -> Option<SocketAddr> {
        let ip = parse_host_ip(self.host)?;
        Some(SocketAddr::new(ip, self.port.unwrap_or(5060)))
    }
}

/// The user part, percent-decoded (RFC 3261 §19.1.2), lossily as UTF-8.
pub(crate) fn decode_user(user: &str) -> String {
    let bytes = user.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Both digits are < 16, so the byte fits.
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_round_trips_and_stamps_the_source() {
        let mut v =
            Via::parse("SIP / 2.0 / udp pc33.example.com:5066 ;branch=z9hG4bK776;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.sent_by(), "pc33.example.com:5066");
        assert_eq!(v.rfc3261_branch(), Some("z9hG4bK776"));
        let src: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        assert_eq!(v.stamp_source(src), src);
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP pc33.example.com:5066;branch=z9hG4bK776;rport=40000;received=203.0.113.9"
        );

        // Same host, no rport: nothing added, reply to the sent-by port.
        let mut v = Via::parse("SIP/2.0/UDP 203.0.113.9;branch=z9hG4bKx").unwrap();
        assert_eq!(v.stamp_source(src), "203.0.113.9:5060".parse().unwrap());
        assert_eq!(v.param("received"), None);
        // Different host, no rport: received added.
        let mut v = Via::parse("SIP/2.0/UDP 10.0.0.1:5070;branch=1").unwrap();
        assert_eq!(v.stamp_source(src), "203.0.113.9:5070".parse().unwrap());
        assert_eq!(v.param("received"), Some(Some("203.0.113.9")));
        assert_eq!(v.rfc3261_branch(), None);

        let v = Via::parse("SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bKv6").unwrap();
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.port, Some(5062));
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/1.0/UDP h",
            "SIP/2.0/UDP h:99999",
            "SIP/2.0/UDP h x y",
        ] {
            assert_eq!(Via::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(r#""A <b>; \"c" <sip:a@b;lr>;tag=xyz;other"#).unwrap();
        assert_eq!(n.uri, "sip:a@b;lr");
        assert_eq!(n.tag(), Some("xyz"));
        let n = NameAddr::parse("sip:a@b;tag=1").unwrap();
        assert_eq!(n.uri, "sip:a@b");
        assert_eq!(n.tag(), Some("1"));
        assert_eq!(NameAddr::parse("<sip:a@b>").unwrap().tag(), None);
        assert_eq!(NameAddr::parse("\"unterminated <sip:a@b>"), None);
        assert_eq!(NameAddr::parse("<sip:a@b"), None);
        assert_eq!(NameAddr::parse(""), None);
    }

    #[test]
    fn cseq() {
        assert_eq!(
            CSeq::parse("314159 INVITE"),
            Some(CSeq {
                seq: 314159,
                method: Method::Invite
            })
        );
        for bad in [
            "INVITE",
            "1",
            "x INVITE",
            "2147483648 BYE",
            "1 BYE extra",
            "99999999999 BYE",
        ] {
            assert_eq!(CSeq::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn uris() {
        let u = Uri::parse("sip:%31234:pw@192.0.2.1:5080;transport=udp;lr?x=y").unwrap();
        assert_eq!(u.user, Some("%31234"));
        assert_eq!(decode_user(u.user.unwrap()), "1234");
        assert_eq!(u.socket_addr(), Some("192.0.2.1:5080".parse().unwrap()));
        assert!(u.loose_route());
        let u = Uri::parse("sips:[2001:db8::2]").unwrap();
        assert_eq!(u.user, None);
        assert_eq!(u.socket_addr(), Some("[2001:db8::2]:5060".parse().unwrap()));
        assert_eq!(
            Uri::parse("sip:pbx.example.com").unwrap().socket_addr(),
            None
        );
        assert_eq!(
            Uri::parse("tel:+15551234;phone-context=x").unwrap().user,
            Some("+15551234")
        );
        assert_eq!(Uri::parse("http://x"), None);
        assert_eq!(Uri::parse("sip:"), None);
        assert_eq!(decode_user("%zz%4"), "%zz%4");
    }
}
