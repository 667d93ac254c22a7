//! Writing the relay's answer (RFC 8829 §5.3, RFC 8839 ICE-lite, RFC 8842).

use std::fmt::Write;
use std::net::SocketAddr;

use super::offer::{CodecName, MediaKind, Offer};
use super::{AUDIO_LEVEL_EXTENSION, MID_EXTENSION, Purpose};
use crate::identity::Fingerprint;

/// The SSRC the relay sends on one WHEP slot (declared with `a=ssrc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSsrc {
    /// The slot's mid.
    pub mid: String,
    /// The SSRC every packet on that slot carries, whoever fills it.
    pub ssrc: u32,
}

/// What the relay puts in every answer.
#[derive(Debug, Clone)]
pub struct AnswerParams<'a> {
    /// The session's ICE ufrag.
    pub ice_ufrag: &'a str,
    /// The session's ICE password.
    pub ice_pwd: &'a str,
    /// The relay certificate's fingerprint.
    pub fingerprint: &'a Fingerprint,
    /// The media port's addresses: one host candidate each.
    pub candidates: &'a [SocketAddr],
    /// The `o=` session id.
    pub session_id: u64,
    /// WHEP: the SSRC of each slot; empty for WHIP.
    pub slots: &'a [SlotSsrc],
}

/// RFC 8445 §5.1.2.1 with type preference 126 (host), local preference
/// 65535, component 1.
const HOST_PRIORITY: u32 = (126 << 24) | (65535 << 8) | 255;

/// The answer to an offer already checked for `purpose` by
/// [`Offer::parse`]. Every accepted m-line answers with the offer's own
/// payload type for the chosen codec and extension ids; m-lines the relay
/// does not carry (data channels, ones the offer rejected) get port 0 and
/// leave the BUNDLE group.
pub fn build_answer(offer: &Offer, purpose: Purpose, params: &AnswerParams<'_>) -> String {
    let mut s = String::with_capacity(2048);
    let accepted: Vec<&str> = offer
        .media
        .iter()
        .filter(|m| !m.rejected && m.kind != MediaKind::Other && m.codec.is_some())
        .map(|m| m.mid.as_str())
        .collect();
    let default = params.candidates.first().copied();
    let (c_family, c_addr, port) = match default {
        Some(SocketAddr::V4(a)) => ("IP4", a.ip().to_string(), a.port()),
        Some(SocketAddr::V6(a)) => ("IP6", a.ip().to_string(), a.port()),
        None => ("IP4", "0.0.0.0".to_owned(), 9),
    };
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        s,
        "v=0\r\no=sluice {} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n",
        params.session_id
    );
    if !accepted.is_empty() {
        let _ = write!(s, "a=group:BUNDLE {}\r\n", accepted.join(" "));
    }
    for m in &offer.media {
        let kind = match m.kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Other => "application",
        };
        let (Some(codec), true) = (&m.codec, accepted.contains(&m.mid.as_str())) else {
            let proto = if m.kind == MediaKind::Other {
                "UDP/DTLS/SCTP webrtc-datachannel"
            } else {
                "UDP/TLS/RTP/SAVPF 0"
            };
            let _ = write!(
                s,
                "m={kind} 0 {proto}\r\nc=IN IP4 0.0.0.0\r\na=mid:{}\r\na=inactive\r\n",
                m.mid
            );
            continue;
        };
        let pt = codec.payload_type;
        let _ = write!(
            s,
            "m={kind} {port} UDP/TLS/RTP/SAVPF {pt}\r\nc=IN {c_family} {c_addr}\r\n\
             a=mid:{}\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{}\r\n\
             a=setup:passive\r\n",
            m.mid, params.ice_ufrag, params.ice_pwd, params.fingerprint
        );
        for (i, c) in params.candidates.iter().enumerate() {
            let _ = write!(
                s,
                "a=candidate:{} 1 udp {} {} {} typ host\r\n",
                i + 1,
                HOST_PRIORITY - u32::try_from(i).unwrap_or(0),
                c.ip(),
                c.port()
            );
        }
        let direction = match purpose {
            Purpose::Publish => "recvonly",
            Purpose::Receive { .. } => "sendonly",
        };
        let _ = write!(s, "a=end-of-candidates\r\na=rtcp-mux\r\na={direction}\r\n");
        if let Some(id) = m.mid_extension {
            let _ = write!(s, "a=extmap:{id} {MID_EXTENSION}\r\n");
        }
        if let Some(id) = m.audio_level_extension {
            let _ = write!(s, "a=extmap:{id} {AUDIO_LEVEL_EXTENSION}\r\n");
        }
        let rtpmap = match codec.name {
            CodecName::Opus => "opus/48000/2",
            CodecName::Vp8 => "VP8/90000",
            CodecName::H264 => "H264/90000",
        };
        let _ = write!(s, "a=rtpmap:{pt} {rtpmap}\r\n");
        if let Some(fmtp) = &codec.fmtp {
            let _ = write!(s, "a=fmtp:{pt} {fmtp}\r\n");
        }
        for fb in &codec.feedback {
            let _ = write!(s, "a=rtcp-fb:{pt} {fb}\r\n");
        }
        if let Some(slot) = params.slots.iter().find(|slot| slot.mid == m.mid) {
            let _ = write!(
                s,
                "a=msid:sluice {mid}\r\na=ssrc:{ssrc} cname:{cname}\r\na=ssrc:{ssrc} msid:sluice {mid}\r\n",
                mid = m.mid,
                ssrc = slot.ssrc,
                cname = super::SLOT_CNAME,
            );
        }
    }
    s
}
