//! [`parse_offer`]: the caller's SDP (RFC 4566) for its first audio
//! stream, with SDES keys (RFC 4568 §9.1).

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use super::{Codec, CryptoOffer, Direction, MediaOffer, OfferedCodec, OpusFmtp, SdpError};
use crate::srtp::SrtpProfile;

/// Where the parser is in the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Session,
    /// Inside the first audio m-line: its attributes count.
    Audio,
    /// Inside any other media section.
    Other,
}

/// Parses an SDP offer; only the first `m=audio` line and the session
/// level count. Unknown lines and attributes are ignored, unusable
/// `a=crypto` lines skipped.
pub fn parse_offer(body: &[u8]) -> Result<MediaOffer, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut section = Section::Session;
    let mut seen_audio = false;
    let mut session_conn = None;
    let mut session_dir = None;
    let mut media_conn = None;
    let mut media_dir = None;
    let mut m_line: Option<(u16, bool, Vec<u8>)> = None;
    let mut rtpmaps: Vec<(u8, String)> = Vec::new();
    let mut fmtps: Vec<(u8, String)> = Vec::new();
    let mut crypto = Vec::new();
    let mut ptime = None;
    let mut rtcp_mux = false;
    let mut rtcp = None;

    for line in text.lines() {
        let line = line.trim_end();
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match (kind, section) {
            ("m", _) => {
                section = Section::Other;
                if !seen_audio && value.starts_with("audio ") {
                    seen_audio = true;
                    section = Section::Audio;
                    m_line = Some(parse_m_line(value)?);
                }
            }
            ("c", Section::Session) => session_conn = Some(parse_connection(value)?),
            ("c", Section::Audio) => media_conn = Some(parse_connection(value)?),
            ("a", Section::Session) => {
                if let Some(d) = Direction::parse(value) {
                    session_dir = Some(d);
                }
            }
            ("a", Section::Audio) => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                match name {
                    "rtpmap" => {
                        if let Some(map) = parse_rtpmap(arg) {
                            rtpmaps.push(map);
                        }
                    }
                    "fmtp" => {
                        if let Some((pt, params)) = arg.trim().split_once(' ')
                            && let Ok(pt) = pt.parse::<u8>()
                        {
                            fmtps.push((pt, params.trim().to_owned()));
                        }
                    }
                    "ptime" => ptime = arg.trim().parse().ok(),
                    "rtcp-mux" => rtcp_mux = true,
                    "rtcp" => rtcp = parse_rtcp(arg),
                    "crypto" => crypto.extend(parse_crypto(arg)),
                    _ => {
                        if let Some(d) = Direction::parse(name) {
                            media_dir = Some(d);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    let (port, secure, pts) = m_line.ok_or(SdpError::NoAudio)?;
    if port == 0 {
        return Err(SdpError::AudioDisabled);
    }
    let connection = media_conn
        .or(session_conn)
        .ok_or(SdpError::MissingConnection)?;
    let mut telephone_event = None;
    let mut telephone_event_48k = None;
    let mut codecs = Vec::with_capacity(pts.len());
    for pt in pts {
        let name = rtpmaps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, n)| n.as_str());
        let codec = match name {
            Some(n) if is_encoding(n, "telephone-event", 8000) => {
                telephone_event = telephone_event.or(Some(pt));
                continue;
            }
            // RFC 4733 §2.1: at the audio codec's clock, so Opus callers
            // may offer it at 48 kHz (the events are the same).
            Some(n) if is_encoding(n, "telephone-event", 48000) => {
                telephone_event_48k = telephone_event_48k.or(Some(pt));
                continue;
            }
            Some(n) if is_encoding(n, "PCMU", 8000) => Codec::Pcmu,
            Some(n) if is_encoding(n, "PCMA", 8000) => Codec::Pcma,
            Some(n) if is_encoding(n, "opus", 48000) => Codec::Opus,
            Some(n) if is_encoding(n, "G722", 8000) => Codec::G722,
            Some(_) => Codec::Other,
            None if pt == 0 => Codec::Pcmu,
            None if pt == 8 => Codec::Pcma,
            None if pt == 9 => Codec::G722,
            None => Codec::Other,
        };
        codecs.push(OfferedCodec { pt, codec });
    }
    let events_of = |te: u8| {
        fmtps
            .iter()
            .find(|(pt, _)| *pt == te)
            .map_or(DTMF_EVENTS, |(_, list)| event_mask(list))
    };
    let opus = codecs
        .iter()
        .find(|c| c.codec == Codec::Opus)
        .and_then(|c| fmtps.iter().find(|(pt, _)| *pt == c.pt))
        .map(|(_, params)| OpusFmtp::parse(params))
        .unwrap_or_default();
    let telephone_events = telephone_event.map_or(0, events_of);
    let telephone_events_48k = telephone_event_48k.map_or(0, events_of);
    let direction = media_dir.or(session_dir).unwrap_or(Direction::SendRecv);
    let held = connection.is_unspecified()
        || matches!(direction, Direction::SendOnly | Direction::Inactive);
    Ok(MediaOffer {
        connection,
        port,
        secure,
        codecs,
        telephone_event,
        telephone_events,
        telephone_event_48k,
        telephone_events_48k,
        crypto,
        direction,
        ptime,
        held,
        rtcp_mux,
        rtcp,
        opus,
    })
}

/// `<port> [IN IP4|IP6 <address>]` of `a=rtcp` (RFC 3605 §2.1); `None` when
/// unreadable (then RTCP goes to the RTP port + 1).
fn parse_rtcp(arg: &str) -> Option<(u16, Option<IpAddr>)> {
    let arg = arg.trim();
    let (port, rest) = arg.split_once(' ').unwrap_or((arg, ""));
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let rest = rest.trim();
    let addr = if rest.is_empty() {
        None
    } else {
        Some(parse_connection(rest).ok()?)
    };
    Some((port, addr))
}

/// Events 0-15 (the DTMF digits, `*`, `#` and A-D), what an offer without
/// `a=fmtp` for telephone-event means (RFC 4733 §2.4.1) and all sluice
/// understands.
pub(crate) const DTMF_EVENTS: u16 = 0xFFFF;

/// The events 0-15 of an RFC 4733 §7.1.1 event list (`0-15,66,70`);
/// others are ignored, as is anything unreadable.
fn event_mask(list: &str) -> u16 {
    let mut mask = 0u16;
    for item in list.split(',') {
        let item = item.trim();
        let (low, high) = item.split_once('-').unwrap_or((item, item));
        let (Ok(low), Ok(high)) = (low.trim().parse::<u16>(), high.trim().parse::<u16>()) else {
            continue;
        };
        for event in low..=high.min(15) {
            mask |= 1 << event;
        }
    }
    mask
}

/// `audio <port>[/<count>] <proto> <fmt> ...`: (port, secure, payload types).
fn parse_m_line(value: &str) -> Result<(u16, bool, Vec<u8>), SdpError> {
    let mut words = value.split_whitespace().skip(1);
    let port = words.next().ok_or(SdpError::BadMediaLine)?;
    let port = port.split_once('/').map_or(port, |(p, _count)| p);
    let port: u16 = port.parse().map_err(|_| SdpError::BadMediaLine)?;
    let proto = words.next().ok_or(SdpError::BadMediaLine)?;
    let secure = match proto.to_ascii_uppercase().as_str() {
        "RTP/AVP" | "RTP/AVPF" => false,
        "RTP/SAVP" | "RTP/SAVPF" => true,
        _ => {
            return Err(SdpError::UnsupportedTransport(
                proto.chars().take(32).collect(),
            ));
        }
    };
    let mut pts = Vec::new();
    for fmt in words {
        match fmt.parse::<u8>() {
            Ok(pt) if pt <= 127 => {
                if !pts.contains(&pt) {
                    pts.push(pt);
                }
            }
            _ => return Err(SdpError::BadMediaLine),
        }
    }
    if pts.is_empty() {
        return Err(SdpError::BadMediaLine);
    }
    Ok((port, secure, pts))
}

/// `IN IP4|IP6 <address>[/ttl[/count]]`, address literals only.
fn parse_connection(value: &str) -> Result<IpAddr, SdpError> {
    let mut words = value.split_whitespace();
    let (Some("IN"), Some(addrtype), Some(addr)) = (words.next(), words.next(), words.next())
    else {
        return Err(SdpError::BadConnection);
    };
    let addr = addr.split_once('/').map_or(addr, |(a, _ttl)| a);
    let ip: IpAddr = addr.parse().map_err(|_| SdpError::BadConnection)?;
    match (addrtype, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err(SdpError::BadConnection),
    }
}

/// `<pt> <encoding>/<clock>[/<channels>]`.
fn parse_rtpmap(arg: &str) -> Option<(u8, String)> {
    let (pt, encoding) = arg.trim().split_once(' ')?;
    let pt: u8 = pt.parse().ok()?;
    Some((pt, encoding.trim().to_owned()))
}

/// `name/clock[/channels]` names `name` (case-insensitive) at `clock` Hz.
fn is_encoding(encoding: &str, name: &str, clock: u32) -> bool {
    let mut parts = encoding.split('/');
    parts.next().is_some_and(|n| n.eq_ignore_ascii_case(name))
        && parts.next().and_then(|c| c.parse().ok()) == Some(clock)
}

/// `<tag> <suite> inline:<key||salt>[|lifetime][|MKI:len] [session-params]`;
/// `None` for lines sluice cannot use.
fn parse_crypto(arg: &str) -> Option<CryptoOffer> {
    let mut words = arg.split_whitespace();
    let tag = words.next()?;
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tag: u32 = tag.parse().ok()?;
    let profile: SrtpProfile = words.next()?.parse().ok()?;
    // More than one key (';'-separated) needs MKIs, which sluice does not do.
    let key_params = words.next()?.strip_prefix("inline:")?;
    if key_params.contains(';') {
        return None;
    }
    let mut fields = key_params.split('|');
    let key = fields.next()?;
    for field in fields {
        if field.contains(':') {
            return None; // MKI
        }
        if !is_lifetime(field) {
            return None;
        }
    }
    for param in words {
        let known_harmless =
            param.starts_with("WSH=") || param == "KDR=0" || param.starts_with('-');
        if !known_harmless {
            // KDR != 0, UNENCRYPTED_*, UNAUTHENTICATED_SRTP, FEC_*: not
            // what our SRTP does.
            return None;
        }
    }
    let key_material = STANDARD
        .decode(key)
        .or_else(|_| STANDARD_NO_PAD.decode(key))
        .ok()?;
    (key_material.len() == profile.key_material_len()).then_some(CryptoOffer {
        tag,
        profile,
        key_material,
    })
}

/// A key lifetime: decimal, or `2^n` (RFC 4568 §6.1).
fn is_lifetime(s: &str) -> bool {
    let digits = s.strip_prefix("2^").unwrap_or(s);
    !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASTERISK: &str = "v=0\r\n\
o=- 1234 1234 IN IP4 198.51.100.7\r\n\
s=Asterisk\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 17654 RTP/AVP 8 0 9 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n\
m=video 0 RTP/AVP 96\r\n\
a=sendonly\r\n";

    #[test]
    fn plain_offer() {
        let o = parse_offer(ASTERISK.as_bytes()).unwrap();
        assert_eq!(o.connection, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(o.port, 17654);
        assert!(!o.secure);
        assert_eq!(
            o.codecs,
            [
                OfferedCodec {
                    pt: 8,
                    codec: Codec::Pcma
                },
                OfferedCodec {
                    pt: 0,
                    codec: Codec::Pcmu
                },
                OfferedCodec {
                    pt: 9,
                    codec: Codec::G722
                },
            ]
        );
        assert_eq!(o.telephone_event, Some(101));
        assert_eq!(o.ptime, Some(20));
        // The video section's sendonly is not the audio's.
        assert_eq!(o.direction, Direction::SendRecv);
        assert!(!o.held);
        assert!(o.crypto.is_empty());
    }

    #[test]
    fn static_payload_types_lf_endings_and_case() {
        let o = parse_offer(
            b"v=0\no=- 1 1 IN IP6 ::1\ns=-\nt=0 0\nm=audio 4000 rtp/avp 0 8 96 97\nc=IN IP6 2001:db8::5\na=rtpmap:96 OPUS/48000/2\na=rtpmap:97 Telephone-Event/8000\n",
        )
        .unwrap();
        assert_eq!(o.connection, "2001:db8::5".parse::<IpAddr>().unwrap());
        let codecs: Vec<_> = o.codecs.iter().map(|c| c.codec).collect();
        assert_eq!(codecs, [Codec::Pcmu, Codec::Pcma, Codec::Opus]);
        assert_eq!(o.telephone_event, Some(97));
    }

    #[test]
    fn hold_forms() {
        let base = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n";
        let held = |extra: &str| parse_offer(format!("{base}{extra}").as_bytes()).unwrap();
        let o = held("c=IN IP4 0.0.0.0\r\nm=audio 5000 RTP/AVP 0\r\n");
        assert!(o.held);
        assert_eq!(o.direction, Direction::SendRecv);
        let o = held("c=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 0\r\na=sendonly\r\n");
        assert!(o.held);
        assert_eq!(o.direction, Direction::SendOnly);
        let o = held("c=IN IP4 10.0.0.1\r\na=inactive\r\nm=audio 5000 RTP/AVP 0\r\n");
        assert!(o.held);
        assert_eq!(o.direction, Direction::Inactive);
        let o = held("c=IN IP4 10.0.0.1\r\na=inactive\r\nm=audio 5000 RTP/AVP 0\r\na=recvonly\r\n");
        assert!(!o.held);
        assert_eq!(o.direction, Direction::RecvOnly);
    }

    #[test]
    fn the_opus_fmtp_is_read() {
        let offer = parse_offer(
            b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
              m=audio 5000 RTP/AVP 96 0\r\na=rtpmap:96 opus/48000/2\r\n\
              a=fmtp:0 maxplaybackrate=1\r\n\
              a=fmtp:96 minptime=10; MaxPlaybackRate=16000 ;useinbandfec=1;stereo=1\r\n",
        )
        .unwrap();
        assert_eq!(
            offer.opus,
            OpusFmtp {
                max_playback_rate: Some(16_000),
                inband_fec: true,
                stereo: true,
            }
        );
        // No fmtp, or nothing readable in it: RFC 7587's defaults.
        assert_eq!(OpusFmtp::parse(""), OpusFmtp::default());
        assert_eq!(
            OpusFmtp::parse("maxplaybackrate=lots;useinbandfec=2;=;x"),
            OpusFmtp::default()
        );
    }

    #[test]
    fn sdes_crypto_lines() {
        let key30 = STANDARD.encode([7u8; 30]);
        let key44 = STANDARD.encode([9u8; 44]);
        let key28 = STANDARD.encode([5u8; 28]);
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 5000 RTP/SAVP 0\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key30}|2^20|1:4\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{key30}|2^31\r\n\
a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{key44}\r\n\
a=crypto:4 AES_256_CM_HMAC_SHA1_80 inline:{key44}\r\n\
a=crypto:5 AEAD_AES_256_GCM inline:{key44} WSH=64\r\n\
a=crypto:6 AES_CM_128_HMAC_SHA1_32 inline:{key30} UNENCRYPTED_SRTP\r\n\
a=crypto:7 AEAD_AES_128_GCM inline:{}\r\n\
a=crypto:8 AES_CM_128_HMAC_SHA1_32 inline:{key30}\r\n\
a=crypto:x AES_CM_128_HMAC_SHA1_32 inline:{key30}\r\n\
a=crypto:9 AES_CM_128_HMAC_SHA1_32 inline:not*base64\r\n",
            key28.trim_end_matches('=')
        );
        let o = parse_offer(sdp.as_bytes()).unwrap();
        assert!(o.secure);
        let got: Vec<_> = o.crypto.iter().map(|c| (c.tag, c.profile)).collect();
        assert_eq!(
            got,
            [
                (2, SrtpProfile::AesCm128HmacSha1_80),
                (5, SrtpProfile::AeadAes256Gcm),
                (7, SrtpProfile::AeadAes128Gcm),
                (8, SrtpProfile::AesCm128HmacSha1_32),
            ]
        );
        assert_eq!(o.crypto[0].key_material, [7u8; 30]);
        assert_eq!(o.crypto[2].key_material, [5u8; 28]);
        assert!(!format!("{:?}", o.crypto[0]).contains('7'));
    }

    #[test]
    fn errors() {
        let base = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n";
        let err = |extra: &str| parse_offer(format!("{base}{extra}").as_bytes()).unwrap_err();
        assert_eq!(
            err("c=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 96\r\n"),
            SdpError::NoAudio
        );
        assert_eq!(
            err("c=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n"),
            SdpError::AudioDisabled
        );
        assert_eq!(
            err("m=audio 5000 RTP/AVP 0\r\n"),
            SdpError::MissingConnection
        );
        assert_eq!(
            err("c=IN IP4 pbx.example.com\r\nm=audio 5000 RTP/AVP 0\r\n"),
            SdpError::BadConnection
        );
        assert_eq!(
            err("c=IN IP6 10.0.0.1\r\nm=audio 5000 RTP/AVP 0\r\n"),
            SdpError::BadConnection
        );
        assert_eq!(
            err("c=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP\r\n"),
            SdpError::BadMediaLine
        );
        assert_eq!(
            err("c=IN IP4 10.0.0.1\r\nm=audio 70000 RTP/AVP 0\r\n"),
            SdpError::BadMediaLine
        );
        assert_eq!(
            err("c=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 200\r\n"),
            SdpError::BadMediaLine
        );
        assert_eq!(
            err("c=IN IP4 10.0.0.1\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 111\r\n"),
            SdpError::UnsupportedTransport("UDP/TLS/RTP/SAVPF".into())
        );
        assert_eq!(parse_offer(b"\xff\xfe"), Err(SdpError::NotUtf8));
        assert_eq!(parse_offer(b""), Err(SdpError::NoAudio));
    }
}
