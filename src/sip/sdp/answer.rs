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
    /// The clock of that telephone-event: 8000, or 48000 for an Opus
    /// call whose offer had telephone-event/48000.
    pub telephone_event_clock: u32,
    /// For RTP/SAVP: the caller's first usable crypto line (its key is the
    /// caller→us key; the answer carries ours under the same tag and suite).
    pub crypto: Option<CryptoOffer>,
    /// Our answer's direction (RFC 3264 §6.1).
    pub direction: Direction,
    /// The caller offered `a=rtcp-mux`: our answer says it too, and RTCP
    /// shares the RTP port both ways (RFC 5761 §5.1.1).
    pub rtcp_mux: bool,
    /// Where to send the caller's RTCP ([`MediaOffer::rtcp_addr`]).
    pub rtcp: SocketAddr,
}

/// The codecs sluice takes, in the order it picks them.
pub const CODEC_PREFERENCE: [Codec; 4] = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma];

/// Picks the codec ([`CODEC_PREFERENCE`]: Opus, then G.722, then PCMU,
/// then PCMA, whatever the offer's order; see the module docs), the
/// offered telephone-event, rtcp-mux when offered, and for RTP/SAVP the
/// first usable crypto line in the caller's order. An error means the
/// INVITE gets 488.
///
/// Also reads the answer to an offer of ours ([`make_audio_offer`]): the
/// far end's answer names the codec it took, and this takes it.
pub fn negotiate(offer: &MediaOffer) -> Result<Negotiated, SdpError> {
    negotiate_keeping(offer, None)
}

/// [`negotiate`] for a re-offer in a call that has `current` as its codec:
/// the call keeps it while the offer still has it (a hold, a refresh, a new
/// address never switch codecs, whatever else the offer adds), and takes
/// [`CODEC_PREFERENCE`]'s pick among what is offered otherwise.
pub fn negotiate_keeping(
    offer: &MediaOffer,
    current: Option<Codec>,
) -> Result<Negotiated, SdpError> {
    let codec = current
        .filter(|c| CODEC_PREFERENCE.contains(c))
        .into_iter()
        .chain(CODEC_PREFERENCE)
        .find_map(|want| offer.codecs.iter().find(|c| c.codec == want).copied())
        .ok_or(SdpError::NoCommonCodec)?;
    // DTMF at the codec's clock when offered so (Opus), else at 8000.
    let at_48k = (codec.codec == Codec::Opus)
        .then_some(offer.telephone_event_48k)
        .flatten()
        .filter(|_| offer.telephone_events_48k != 0);
    let (telephone_event, telephone_events, telephone_event_clock) = match at_48k {
        Some(pt) => (Some(pt), offer.telephone_events_48k, 48_000),
        None => (
            offer
                .telephone_event
                .filter(|_| offer.telephone_events != 0),
            offer.telephone_events,
            8000,
        ),
    };
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
        telephone_event,
        telephone_events,
        telephone_event_clock,
        crypto,
        direction: offer.direction.answer(),
        rtcp_mux: offer.rtcp_mux,
        rtcp: offer.rtcp_addr(),
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
    /// Its clock: 8000, or 48000 (see [`Negotiated::telephone_event_clock`]).
    pub telephone_event_clock: u32,
    /// For RTP/SAVP: (the offer's tag, its suite, our key ‖ salt).
    pub crypto: Option<(u32, SrtpProfile, Vec<u8>)>,
    /// Our direction.
    pub direction: Direction,
    /// `o=` session id, fixed for the call.
    pub session_id: u64,
    /// `o=` version, incremented whenever the answer changes (RFC 3264 §8).
    pub session_version: u64,
    /// Answer `a=rtcp-mux` (the offer had it).
    pub rtcp_mux: bool,
    /// Without rtcp-mux: our RTCP port, written as `a=rtcp` (RFC 3605)
    /// when it is not the RTP port + 1.
    pub rtcp_port: Option<u16>,
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
    let mut out = String::with_capacity(320);
    write_session(
        &mut out,
        (spec.address, spec.port),
        (spec.session_id, spec.session_version),
        spec.crypto.is_some(),
    );
    // Writing to a String cannot fail.
    let _ = write!(out, " {}", spec.codec.pt);
    if let Some(te) = spec.telephone_event {
        let _ = write!(out, " {te}");
    }
    out.push_str("\r\n");
    write_rtpmap(&mut out, spec.codec);
    if let Some(te) = spec.telephone_event {
        let _ = write!(
            out,
            "a=rtpmap:{te} telephone-event/{}\r\na=fmtp:{te} {}\r\n",
            spec.telephone_event_clock,
            EventList(spec.telephone_events)
        );
    }
    out.push_str("a=ptime:20\r\n");
    write_rtcp(&mut out, spec.rtcp_mux, spec.rtcp_port, spec.port);
    write_crypto(&mut out, spec.crypto.as_ref());
    let _ = write!(out, "a={}\r\n", spec.direction.as_str());
    out
}

/// The session lines and `m=audio <port> <proto>`, up to the first
/// payload type (RTP/SAVP when `secure`), shared by answers and offers.
fn write_session(
    out: &mut String,
    (address, port): (IpAddr, u16),
    (session_id, session_version): (u64, u64),
    secure: bool,
) {
    let ip = match address {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let proto = if secure { "RTP/SAVP" } else { "RTP/AVP" };
    let _ = write!(
        out,
        "v=0\r\no=sluice {session_id} {session_version} IN {ip} {address}\r\ns=sluice\r\n\
         c=IN {ip} {address}\r\nt=0 0\r\nm=audio {port} {proto}"
    );
}

/// `a=crypto` with our key under the offer's tag and suite (RFC 4568).
fn write_crypto(out: &mut String, crypto: Option<&(u32, SrtpProfile, Vec<u8>)>) {
    if let Some((tag, profile, key)) = crypto {
        let _ = write!(
            out,
            "a=crypto:{tag} {} inline:{}\r\n",
            profile.name(),
            STANDARD.encode(key)
        );
    }
}

/// `a=rtpmap` (and for Opus `a=fmtp`) of one codec; a `Codec::Other`
/// payload type gets none (only static types can be answered that way).
fn write_rtpmap(out: &mut String, codec: OfferedCodec) {
    let name = match codec.codec {
        Codec::Pcmu => "PCMU/8000",
        Codec::Pcma => "PCMA/8000",
        // RFC 3551 §4.5.2: 8000, though the audio is 16 kHz.
        Codec::G722 => "G722/8000",
        // RFC 7587 §7: always /48000/2; mono is said by the fmtp.
        Codec::Opus => "opus/48000/2",
        Codec::Other => return,
    };
    let _ = write!(out, "a=rtpmap:{} {name}\r\n", codec.pt);
    if codec.codec == Codec::Opus {
        let _ = write!(
            out,
            "a=fmtp:{} minptime=10;useinbandfec=1;stereo=0;sprop-stereo=0\r\n",
            codec.pt
        );
    }
}

/// `a=rtcp-mux`, or `a=rtcp:<port>` when RTCP is not on RTP + 1.
fn write_rtcp(out: &mut String, mux: bool, rtcp_port: Option<u16>, rtp_port: u16) {
    if mux {
        out.push_str("a=rtcp-mux\r\n");
    } else if let Some(port) = rtcp_port.filter(|&p| p != rtp_port.wrapping_add(1)) {
        let _ = write!(out, "a=rtcp:{port}\r\n");
    }
}

/// What an offer of ours says (a call sluice places: dial-out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSpec {
    /// Our media address (`c=` and `o=`).
    pub address: IpAddr,
    /// Our RTP port.
    pub port: u16,
    /// Offer `a=rtcp-mux`; our RTCP port otherwise (`a=rtcp` unless RTP + 1).
    pub rtcp_mux: bool,
    /// Our RTCP port when the far end does not take rtcp-mux.
    pub rtcp_port: Option<u16>,
    /// RTP/SAVP with this (tag, suite, our key ‖ salt); RTP/AVP when `None`.
    pub crypto: Option<(u32, SrtpProfile, Vec<u8>)>,
    /// `o=` session id and version.
    pub session_id: u64,
    /// See [`AnswerSpec::session_version`].
    pub session_version: u64,
}

/// The payload types [`make_audio_offer`] uses: Opus 111, G.722 9, PCMU 0,
/// PCMA 8, telephone-event 101.
pub const OFFERED_CODECS: [OfferedCodec; 4] = [
    OfferedCodec {
        pt: 111,
        codec: Codec::Opus,
    },
    OfferedCodec {
        pt: 9,
        codec: Codec::G722,
    },
    OfferedCodec {
        pt: 0,
        codec: Codec::Pcmu,
    },
    OfferedCodec {
        pt: 8,
        codec: Codec::Pcma,
    },
];
/// telephone-event's payload type in [`make_audio_offer`].
pub const OFFERED_TELEPHONE_EVENT: u8 = 101;

/// Writes an offer of one audio stream with every codec sluice takes, in
/// [`CODEC_PREFERENCE`] order ([`OFFERED_CODECS`]), telephone-event 0-15,
/// sendrecv. Read the answer with [`super::parse_offer`] and
/// [`negotiate`].
pub fn make_audio_offer(spec: &OfferSpec) -> String {
    let mut out = String::with_capacity(512);
    write_session(
        &mut out,
        (spec.address, spec.port),
        (spec.session_id, spec.session_version),
        spec.crypto.is_some(),
    );
    for c in OFFERED_CODECS {
        let _ = write!(out, " {}", c.pt);
    }
    let _ = write!(out, " {OFFERED_TELEPHONE_EVENT}\r\n");
    for c in OFFERED_CODECS {
        write_rtpmap(&mut out, c);
    }
    let _ = write!(
        out,
        "a=rtpmap:{OFFERED_TELEPHONE_EVENT} telephone-event/8000\r\na=fmtp:{OFFERED_TELEPHONE_EVENT} 0-15\r\na=ptime:20\r\n"
    );
    write_rtcp(&mut out, spec.rtcp_mux, spec.rtcp_port, spec.port);
    write_crypto(&mut out, spec.crypto.as_ref());
    out.push_str("a=sendrecv\r\n");
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
    fn among_g711_pcmu_then_pcma() {
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
        let n = negotiate(&offer("m=audio 5000 RTP/AVP 3 8", "a=sendonly\r\n")).unwrap();
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
                "m=audio 5000 RTP/AVP 3 96",
                "a=rtpmap:96 AMR/8000\r\n"
            )),
            Err(SdpError::NoCommonCodec)
        );
    }

    #[test]
    fn wideband_first_whatever_the_callers_order() {
        let n = negotiate(&offer(
            "m=audio 5000 RTP/AVP 0 8 9 96 101",
            "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\n",
        ))
        .unwrap();
        assert_eq!(
            n.codec,
            OfferedCodec {
                pt: 96,
                codec: Codec::Opus
            }
        );
        // G.722 by its static type alone, or by name on another type.
        let n = negotiate(&offer("m=audio 5000 RTP/AVP 0 9", "")).unwrap();
        assert_eq!(n.codec.codec, Codec::G722);
        let n = negotiate(&offer(
            "m=audio 5000 RTP/AVP 8 118",
            "a=rtpmap:118 G722/8000\r\n",
        ))
        .unwrap();
        assert_eq!((n.codec.pt, n.codec.codec), (118, Codec::G722));
        // A G.722 at the wrong clock is not G.722.
        let n = negotiate(&offer(
            "m=audio 5000 RTP/AVP 118 8",
            "a=rtpmap:118 G722/16000\r\n",
        ))
        .unwrap();
        assert_eq!(n.codec.codec, Codec::Pcma);

        let spec = |codec| AnswerSpec {
            address: "192.0.2.10".parse().unwrap(),
            port: 30000,
            codec,
            telephone_event: None,
            telephone_events: 0,
            telephone_event_clock: 8000,
            crypto: None,
            direction: Direction::SendRecv,
            session_id: 1,
            session_version: 1,
            rtcp_mux: false,
            rtcp_port: Some(30001),
        };
        let opus = build_answer(&spec(OfferedCodec {
            pt: 96,
            codec: Codec::Opus,
        }));
        assert!(
            opus.contains("m=audio 30000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 "),
            "{opus}"
        );
        // RTCP on RTP + 1 needs no a=rtcp.
        assert!(!opus.contains("a=rtcp"), "{opus}");
        let g722 = build_answer(&spec(OfferedCodec {
            pt: 9,
            codec: Codec::G722,
        }));
        assert!(
            g722.contains("m=audio 30000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n"),
            "{g722}"
        );
    }

    #[test]
    fn an_opus_caller_s_dtmf_at_48_khz_is_answered_at_48_khz() {
        let both = "a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-15\r\n";
        let n = negotiate(&offer("m=audio 5000 RTP/AVP 96 110 101", both)).unwrap();
        assert_eq!(n.codec.codec, Codec::Opus);
        assert_eq!(
            (n.telephone_event, n.telephone_event_clock),
            (Some(110), 48_000)
        );
        let spec = AnswerSpec {
            address: "192.0.2.10".parse().unwrap(),
            port: 30000,
            codec: n.codec,
            telephone_event: n.telephone_event,
            telephone_events: n.telephone_events,
            telephone_event_clock: n.telephone_event_clock,
            crypto: None,
            direction: Direction::SendRecv,
            session_id: 1,
            session_version: 1,
            rtcp_mux: false,
            rtcp_port: None,
        };
        let sdp = build_answer(&spec);
        assert!(sdp.contains("m=audio 30000 RTP/AVP 96 110\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-15\r\n"),
            "{sdp}"
        );
        // A G.711 call takes the 8 kHz one; with only a 48 kHz one, none.
        let n = negotiate(&offer("m=audio 5000 RTP/AVP 0 110 101", both)).unwrap();
        assert_eq!(
            (n.telephone_event, n.telephone_event_clock),
            (Some(101), 8000)
        );
        let only48 = "a=rtpmap:110 telephone-event/48000\r\n";
        let n = negotiate(&offer("m=audio 5000 RTP/AVP 0 110", only48)).unwrap();
        assert_eq!(n.telephone_event, None);
    }

    #[test]
    fn a_reoffer_keeps_the_calls_codec_while_it_is_offered() {
        let both = offer(
            "m=audio 5000 RTP/AVP 0 9 101",
            "a=rtpmap:101 telephone-event/8000\r\n",
        );
        // A PCMU call re-offered PCMU and G.722 stays on PCMU...
        let kept = negotiate_keeping(&both, Some(Codec::Pcmu)).unwrap();
        assert_eq!(
            kept.codec,
            OfferedCodec {
                pt: 0,
                codec: Codec::Pcmu
            }
        );
        // ...which a new call would not have picked.
        assert_eq!(negotiate(&both).unwrap().codec.codec, Codec::G722);
        // Without PCMU in the re-offer: sluice's pick of what is there.
        let pcma = offer(
            "m=audio 5000 RTP/AVP 8 101",
            "a=rtpmap:101 telephone-event/8000\r\n",
        );
        let moved = negotiate_keeping(&pcma, Some(Codec::Pcmu)).unwrap();
        assert_eq!(
            moved.codec,
            OfferedCodec {
                pt: 8,
                codec: Codec::Pcma
            }
        );
        assert_eq!(moved.telephone_event, Some(101));
        // Nothing sluice takes: refused as for a new call.
        let other = offer("m=audio 5000 RTP/AVP 18", "a=rtpmap:18 G729/8000\r\n");
        assert_eq!(
            negotiate_keeping(&other, Some(Codec::Pcmu)),
            Err(SdpError::NoCommonCodec)
        );
        assert_eq!(
            negotiate_keeping(&other, Some(Codec::Other)),
            Err(SdpError::NoCommonCodec)
        );
    }

    #[test]
    fn rtcp_mux_and_a_rtcp_are_honoured() {
        let plain = offer("m=audio 5000 RTP/AVP 0", "");
        assert!(!plain.rtcp_mux);
        assert_eq!(
            negotiate(&plain).unwrap().rtcp,
            "10.0.0.1:5001".parse().unwrap()
        );
        let mux = offer("m=audio 5000 RTP/AVP 0", "a=rtcp-mux\r\na=rtcp:5000\r\n");
        let n = negotiate(&mux).unwrap();
        assert!(n.rtcp_mux);
        assert_eq!(n.rtcp, "10.0.0.1:5000".parse().unwrap());
        let moved = offer("m=audio 5000 RTP/AVP 0", "a=rtcp:6100 IN IP4 10.0.0.9\r\n");
        let n = negotiate(&moved).unwrap();
        assert!(!n.rtcp_mux);
        assert_eq!(n.rtcp, "10.0.0.9:6100".parse().unwrap());
        let port_only = offer("m=audio 5000 RTP/AVP 0", "a=rtcp:6100\r\n");
        assert_eq!(
            negotiate(&port_only).unwrap().rtcp,
            "10.0.0.1:6100".parse().unwrap()
        );
        // Unreadable a=rtcp: RTP + 1.
        let junk = offer("m=audio 5000 RTP/AVP 0", "a=rtcp:x IN IP4 nowhere\r\n");
        assert_eq!(
            negotiate(&junk).unwrap().rtcp,
            "10.0.0.1:5001".parse().unwrap()
        );

        let spec = AnswerSpec {
            address: "192.0.2.10".parse().unwrap(),
            port: 30000,
            codec: OfferedCodec {
                pt: 0,
                codec: Codec::Pcmu,
            },
            telephone_event: None,
            telephone_events: 0,
            telephone_event_clock: 8000,
            crypto: None,
            direction: Direction::SendRecv,
            session_id: 1,
            session_version: 1,
            rtcp_mux: true,
            rtcp_port: None,
        };
        let sdp = build_answer(&spec);
        assert!(sdp.contains("a=rtcp-mux\r\n"), "{sdp}");
        assert!(parse_offer(sdp.as_bytes()).unwrap().rtcp_mux);
        let sdp = build_answer(&AnswerSpec {
            rtcp_mux: false,
            rtcp_port: Some(40123),
            ..spec
        });
        assert!(sdp.contains("a=rtcp:40123\r\n"), "{sdp}");
        assert_eq!(
            parse_offer(sdp.as_bytes()).unwrap().rtcp_addr(),
            "192.0.2.10:40123".parse().unwrap()
        );
    }

    #[test]
    fn our_offer_lists_every_codec_and_an_answer_to_it_negotiates() {
        let k30 = vec![5u8; 30];
        let sdp = make_audio_offer(&OfferSpec {
            address: "192.0.2.10".parse().unwrap(),
            port: 30000,
            rtcp_mux: true,
            rtcp_port: None,
            crypto: Some((1, SrtpProfile::AesCm128HmacSha1_80, k30.clone())),
            session_id: 7,
            session_version: 1,
        });
        assert!(
            sdp.contains("m=audio 30000 RTP/SAVP 111 9 0 8 101\r\n"),
            "{sdp}"
        );
        let back = parse_offer(sdp.as_bytes()).unwrap();
        let codecs: Vec<Codec> = back.codecs.iter().map(|c| c.codec).collect();
        assert_eq!(codecs, [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma]);
        assert_eq!(back.telephone_event, Some(101));
        assert!(back.rtcp_mux && back.secure);
        assert_eq!(back.crypto[0].key_material, k30);
        // Our own offer, read as if it were an answer, picks Opus.
        assert_eq!(negotiate(&back).unwrap().codec.codec, Codec::Opus);
        // A far end answering PCMA only (no rtcp-mux): PCMA, RTCP on + 1.
        let answer = offer("m=audio 7000 RTP/AVP 8", "");
        let n = negotiate(&answer).unwrap();
        assert_eq!(n.codec.codec, Codec::Pcma);
        assert!(!n.rtcp_mux);
        assert_eq!(n.rtcp, "10.0.0.1:7001".parse().unwrap());
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
                telephone_event_clock: 8000,
                crypto: None,
                direction: n.direction,
                session_id: 1,
                session_version: 1,
                rtcp_mux: false,
                rtcp_port: None,
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
            telephone_event_clock: 8000,
            crypto: Some((1, SrtpProfile::AesCm128HmacSha1_80, vec![3; 30])),
            direction: Direction::SendRecv,
            session_id: 42,
            session_version: 1,
            rtcp_mux: false,
            rtcp_port: None,
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
