//! [`negotiate`] picks what to answer an offer with; [`build_answer`]
//! writes the answer (RFC 3264 §6, RFC 4566, RFC 4568 §7.1.2).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Codec, CryptoOffer, Direction, MediaOffer, OfferedCodec, SdpError};
use crate::srtp::SrtpProfile;

/// What we agreed to from an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send the caller's media (`0.0.0.0` while on RFC 2543 hold).
    pub remote: SocketAddr,
    /// PCMU if offered, else PCMA, with the caller's payload type.
    pub codec: OfferedCodec,
    /// The caller's telephone-event payload type, if it offered one with
    /// an event sluice takes.
    pub telephone_event: Option<u8>,
    /// The events answered: those offered that sluice takes (0-15).
    pub telephone_events: u16,
    /// For RTP/SAVP: the caller's first usable crypto line (its key is the
    /// caller→us key; the answer carries ours under the same tag and suite).
    pub crypto: Option<CryptoOffer>,
    /// Our answer's direction (RFC 3264 §6.1).
    pub direction: Direction,
}

/// Picks PCMU, else PCMA (the bridge is G.711), the offered
/// telephone-event, and for RTP/SAVP the first usable crypto line in the
/// caller's order. An error means the INVITE gets 488.
pub fn negotiate(offer: &MediaOffer) -> Result<Negotiated, SdpError> {
    let codec = [Codec::Pcmu, Codec::Pcma]
        .into_iter()
        .find_map(|want| offer.codecs.iter().find(|c| c.codec == want).copied())
        .ok_or(SdpError::NoCommonCodec)?;
    let crypto = if offer.secure {
        Some(
            offer
                .crypto
                .first()
                .cloned()
                .ok_or(SdpError::NoUsableCrypto)?,
        )
    } else {
        None
    };
    Ok(Negotiated {
        remote: SocketAddr::new(offer.connection, offer.port),
        codec,
        telephone_event: offer
            .telephone_event
            .filter(|_| offer.telephone_events != 0),
        telephone_events: offer.telephone_events,
        crypto,
        direction: offer.direction.answer(),
    })
}

/// What our answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerSpec {
    /// Our media address (`c=` and `o=`).
    pub address: IpAddr,
    /// Our RTP port.
    pub port: u16,
    /// The codec, with the caller's payload type.
    pub codec: OfferedCodec,
    /// telephone-event payload type, echoed from the offer.
    pub telephone_event: Option<u8>,
    /// The events of its `a=fmtp`, a bit each (bit n: event n; 0-15).
    pub telephone_events: u16,
    /// For RTP/SAVP: (the offer's tag, its suite, our key ‖ salt).
    pub crypto: Option<(u32, SrtpProfile, Vec<u8>)>,
    /// Our direction.
    pub direction: Direction,
    /// `o=` session id, fixed for the call.
    pub session_id: u64,
    /// `o=` version, incremented whenever the answer changes (RFC 3264 §8).
    pub session_version: u64,
}

/// An event mask written as an RFC 4733 list of ranges (`0-15`, `0-9,11`).
struct EventList(u16);

impl std::fmt::Display for EventList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        let mut event = 0u16;
        while event < 16 {
            if self.0 & (1 << event) == 0 {
                event += 1;
                continue;
            }
            let start = event;
            while event < 16 && self.0 & (1 << event) != 0 {
                event += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match event - 1 {
                end if end == start => write!(f, "{start}")?,
                end => write!(f, "{start}-{end}")?,
            }
        }
        Ok(())
    }
}

/// Writes the answer: one audio stream, RTP/SAVP when `crypto` is given,
/// CRLF line ends. A `Codec::Other` payload type is written without
/// `a=rtpmap` (only static types can be answered that way).
pub fn build_answer(spec: &AnswerSpec) -> String {
    let ip = match spec.address {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let proto = if spec.crypto.is_some() {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    let mut out = String::with_capacity(320);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "v=0\r\no=sluice {} {} IN {ip} {}\r\ns=sluice\r\nc=IN {ip} {}\r\nt=0 0\r\nm=audio {} {proto} {}",
        spec.session_id, spec.session_version, spec.address, spec.address, spec.port, spec.codec.pt
    );
    if let Some(te) = spec.telephone_event {
        let _ = write!(out, " {te}");
    }
    out.push_str("\r\n");
    let name = match spec.codec.codec {
        Codec::Pcmu => Some("PCMU/8000"),
        Codec::Pcma => Some("PCMA/8000"),
        Codec::Opus => Some("opus/48000/2"),
        Codec::Other => None,
    };
    if let Some(name) = name {
        let _ = write!(out, "a=rtpmap:{} {name}\r\n", spec.codec.pt);
    }
    if let Some(te) = spec.telephone_event {
        let _ = write!(
            out,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} {}\r\n",
            EventList(spec.telephone_events)
        );
    }
    out.push_str("a=ptime:20\r\n");
    if let Some((tag, profile, key)) = &spec.crypto {
        let _ = write!(
            out,
            "a=crypto:{tag} {} inline:{}\r\n",
            profile.name(),
            STANDARD.encode(key)
        );
    }
    let _ = write!(out, "a={}\r\n", spec.direction.as_str());
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse_offer;
    use super::*;

    fn offer(m: &str, extra: &str) -> MediaOffer {
        parse_offer(
            format!("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{m}\r\n{extra}")
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn prefers_pcmu_then_pcma() {
        let n = negotiate(&offer(
            "m=audio 5000 RTP/AVP 8 0 101",
            "a=rtpmap:101 telephone-event/8000\r\n",
        ))
        .unwrap();
        assert_eq!(
            n.codec,
            OfferedCodec {
                pt: 0,
                codec: Codec::Pcmu
            }
        );
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, "10.0.0.1:5000".parse().unwrap());
        assert_eq!(n.crypto, None);
        let n = negotiate(&offer("m=audio 5000 RTP/AVP 9 8", "a=sendonly\r\n")).unwrap();
        assert_eq!(
            n.codec,
            OfferedCodec {
                pt: 8,
                codec: Codec::Pcma
            }
        );
        assert_eq!(n.direction, Direction::RecvOnly);
        assert_eq!(
            negotiate(&offer(
                "m=audio 5000 RTP/AVP 9 96",
                "a=rtpmap:96 opus/48000/2\r\n"
            )),
            Err(SdpError::NoCommonCodec)
        );
    }

    #[test]
    fn telephone_events_answered_are_those_offered_that_sluice_takes() {
        let answer_of = |fmtp: &str| {
            let n = negotiate(&offer(
                "m=audio 5000 RTP/AVP 0 101",
                &format!("a=rtpmap:101 telephone-event/8000\r\n{fmtp}"),
            ))
            .unwrap();
            let spec = AnswerSpec {
                address: "192.0.2.10".parse().unwrap(),
                port: 30000,
                codec: n.codec,
                telephone_event: n.telephone_event,
                telephone_events: n.telephone_events,
                crypto: None,
                direction: n.direction,
                session_id: 1,
                session_version: 1,
            };
            build_answer(&spec)
        };
        // The caller offered 0-15: the answer says 0-15, not 0-16.
        assert!(answer_of("a=fmtp:101 0-15\r\n").contains("a=fmtp:101 0-15\r\n"));
        // 16 (flash) and beyond are not taken.
        assert!(answer_of("a=fmtp:101 0-16\r\n").contains("a=fmtp:101 0-15\r\n"));
        assert!(answer_of("a=fmtp:101 0-11,16\r\n").contains("a=fmtp:101 0-11\r\n"));
        assert!(answer_of("a=fmtp:101 0-9,11,13-15\r\n").contains("a=fmtp:101 0-9,11,13-15\r\n"));
        // No fmtp means 0-15 (RFC 4733 §2.4.1).
        assert!(answer_of("").contains("a=fmtp:101 0-15\r\n"));
        // Only events sluice does not take: no telephone-event at all.
        let none = answer_of("a=fmtp:101 16\r\n");
        assert!(!none.contains("telephone-event"), "{none}");
        assert!(none.contains("m=audio 30000 RTP/AVP 0\r\n"), "{none}");
    }

    #[test]
    fn secure_offers_need_a_crypto_line_and_keep_the_callers_order() {
        assert_eq!(
            negotiate(&offer("m=audio 5000 RTP/SAVP 0", "")),
            Err(SdpError::NoUsableCrypto)
        );
        let k30 = STANDARD.encode([1u8; 30]);
        let k44 = STANDARD.encode([2u8; 44]);
        let o = offer(
            "m=audio 5000 RTP/SAVP 0",
            &format!(
                "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{k30}\r\na=crypto:4 AEAD_AES_256_GCM inline:{k44}\r\n"
            ),
        );
        let c = negotiate(&o).unwrap().crypto.unwrap();
        assert_eq!((c.tag, c.profile), (3, SrtpProfile::AesCm128HmacSha1_80));
    }

    #[test]
    fn answer_round_trips_through_the_parser() {
        let spec = AnswerSpec {
            address: "192.0.2.10".parse().unwrap(),
            port: 30000,
            codec: OfferedCodec {
                pt: 0,
                codec: Codec::Pcmu,
            },
            telephone_event: Some(101),
            telephone_events: super::super::offer::DTMF_EVENTS,
            crypto: Some((1, SrtpProfile::AesCm128HmacSha1_80, vec![3; 30])),
            direction: Direction::SendRecv,
            session_id: 42,
            session_version: 1,
        };
        let sdp = build_answer(&spec);
        assert_eq!(
            sdp,
            format!(
                "v=0\r\no=sluice 42 1 IN IP4 192.0.2.10\r\ns=sluice\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 30000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=ptime:20\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\na=sendrecv\r\n",
                STANDARD.encode([3u8; 30])
            )
        );
        let back = parse_offer(sdp.as_bytes()).unwrap();
        assert_eq!(back.port, 30000);
        assert!(back.secure);
        assert_eq!(back.crypto[0].key_material, [3u8; 30]);
        assert_eq!(back.telephone_event, Some(101));
        assert_eq!(back.telephone_events, 0xFFFF);

        let plain = build_answer(&AnswerSpec {
            address: "2001:db8::1".parse().unwrap(),
            crypto: None,
            telephone_event: None,
            direction: Direction::Inactive,
            ..spec
        });
        assert!(plain.contains("c=IN IP6 2001:db8::1\r\n"));
        assert!(plain.contains("m=audio 30000 RTP/AVP 0\r\n"));
        assert!(plain.ends_with("a=inactive\r\n"));
    }
}
