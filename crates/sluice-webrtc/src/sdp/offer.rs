//! Reading a browser's offer into what sluice needs, and checking it.

use std::io::Cursor;

use super::{AUDIO_LEVEL_EXTENSION, MID_EXTENSION, Purpose, SdpError, Unacceptable};
use crate::identity::Fingerprint;

/// Most bytes of offer sluice reads (a browser's offer is 3–10 kB).
pub const MAX_OFFER_LEN: usize = 64 * 1024;

/// Kind of an m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `m=audio`.
    Audio,
    /// `m=video`.
    Video,
    /// Anything else (`application` for data channels): answered rejected.
    Other,
}

/// An m-line's direction from the offerer's side (RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }
}

/// The offer's `a=setup` (RFC 8842 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// `actpass`: either; the relay answers passive.
    ActPass,
    /// `active`: the browser is the DTLS client.
    Active,
}

/// A codec sluice relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecName {
    /// Opus 48 kHz stereo (RFC 7587).
    Opus,
    /// VP8 (RFC 7741).
    Vp8,
    /// H.264 packetization-mode 1 (RFC 6184).
    H264,
}

/// The codec chosen for an m-line, as the offer numbered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// Which codec.
    pub name: CodecName,
    /// The offer's payload type for it (the answer reuses it).
    pub payload_type: u8,
    /// The offer's `a=fmtp` parameters for it, if any.
    pub fmtp: Option<String>,
    /// The `a=rtcp-fb` values offered for it that sluice carries
    /// (`nack`, `nack pli`, `ccm fir`, `goog-remb`).
    pub feedback: Vec<String>,
}

/// One m-line of the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    /// Audio, video or other.
    pub kind: MediaKind,
    /// `a=mid`.
    pub mid: String,
    /// `a=sendonly` and friends.
    pub direction: Direction,
    /// Port 0: the offerer itself rejected it.
    pub rejected: bool,
    /// The first codec in the offer's order that sluice relays.
    pub codec: Option<Codec>,
    /// The MID extension's id, if offered.
    pub mid_extension: Option<u8>,
    /// The audio level extension's id, if offered (audio only).
    pub audio_level_extension: Option<u8>,
    /// Media SSRCs from `a=ssrc` (RTX SSRCs of `a=ssrc-group:FID` excluded).
    pub ssrcs: Vec<u32>,
}

/// A parsed and checked WebRTC offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The browser's ICE ufrag (second half of its checks' USERNAME).
    pub ice_ufrag: String,
    /// The browser's ICE password.
    pub ice_pwd: String,
    /// The browser's certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// The browser's DTLS role offer.
    pub setup: Setup,
    /// The m-lines, in order.
    pub media: Vec<OfferedMedia>,
}

fn malformed(what: impl Into<String>) -> SdpError {
    SdpError::Malformed(what.into())
}

fn refuse(why: Unacceptable) -> SdpError {
    SdpError::Unacceptable(why)
}

impl Offer {
    /// Parses `text` and checks it for `purpose`. Never panics.
    pub fn parse(text: &str, purpose: Purpose) -> Result<Self, SdpError> {
        if text.len() > MAX_OFFER_LEN {
            return Err(malformed(format!(
                "offer is {} bytes; at most {MAX_OFFER_LEN} are read",
                text.len()
            )));
        }
        if text.trim().is_empty() {
            return Err(malformed("the body is empty; POST the SDP offer"));
        }
        let session = sdp::SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
            .map_err(|e| malformed(e.to_string()))?;
        let session_attr = |key: &str| -> Option<&str> {
            session
                .attributes
                .iter()
                .find(|a| a.key == key)
                .map(|a| a.value.as_deref().unwrap_or(""))
        };
        // ICE and DTLS parameters: media level (Chrome) or session level
        // (Firefox puts the fingerprint there); with BUNDLE the first
        // m-line's hold for all.
        let first = session.media_descriptions.first();
        let shared = |key: &str| -> Option<String> {
            first
                .and_then(|m| m.attributes.iter().find(|a| a.key == key))
                .map(|a| a.value.clone().unwrap_or_default())
                .or_else(|| session_attr(key).map(str::to_owned))
        };
        let ice_ufrag = shared("ice-ufrag").ok_or_else(|| malformed("no a=ice-ufrag"))?;
        let ice_pwd = shared("ice-pwd").ok_or_else(|| malformed("no a=ice-pwd"))?;
        if !valid_ice_chars(&ice_ufrag, 4) || !valid_ice_chars(&ice_pwd, 22) {
            return Err(malformed(
                "a=ice-ufrag or a=ice-pwd is too short or not ice-chars (RFC 8839 §5.4)",
            ));
        }
        let fingerprint = shared("fingerprint")
            .ok_or_else(|| malformed("no a=fingerprint"))
            .and_then(|v| Fingerprint::parse(&v).map_err(|e| malformed(e.to_string())))?;
        let setup = match shared("setup").as_deref() {
            Some("actpass") | None => Setup::ActPass,
            Some("active") => Setup::Active,
            Some("passive") => return Err(refuse(Unacceptable::SetupPassive)),
            Some(other) => return Err(malformed(format!("a=setup:{other} is not a DTLS role"))),
        };

        let mut media = Vec::with_capacity(session.media_descriptions.len());
        for (i, m) in session.media_descriptions.iter().enumerate() {
            media.push(read_media(i, m)?);
        }
        let offer = Self {
            ice_ufrag,
            ice_pwd,
            fingerprint,
            setup,
            media,
        };
        let bundle = session_attr("group")
            .and_then(|g| g.strip_prefix("BUNDLE"))
            .map(|mids| mids.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default();
        offer.check(&session, &bundle, purpose)?;
        Ok(offer)
    }

    fn check(
        &self,
        session: &sdp::SessionDescription,
        bundle: &[&str],
        purpose: Purpose,
    ) -> Result<(), SdpError> {
        let live: Vec<(&OfferedMedia, &sdp::MediaDescription)> = self
            .media
            .iter()
            .zip(&session.media_descriptions)
            .filter(|(m, _)| !m.rejected && m.kind != MediaKind::Other)
            .collect();
        if live.is_empty() {
            return Err(refuse(Unacceptable::NoMedia));
        }
        for (m, desc) in &live {
            if !bundle.contains(&m.mid.as_str()) {
                return Err(refuse(Unacceptable::NoBundle));
            }
            if !desc.has_attribute("rtcp-mux") {
                return Err(refuse(Unacceptable::NoRtcpMux { mid: m.mid.clone() }));
            }
            let proto = desc.media_name.protos.join("/");
            if proto != "UDP/TLS/RTP/SAVPF" {
                return Err(refuse(Unacceptable::NotDtlsSrtp {
                    mid: m.mid.clone(),
                    proto,
                }));
            }
            if m.codec.is_none() {
                return Err(refuse(Unacceptable::NoCodec { mid: m.mid.clone() }));
            }
            let (endpoint, ok, expected) = match purpose {
                Purpose::Publish => (
                    "WHIP",
                    matches!(m.direction, Direction::SendOnly | Direction::SendRecv),
                    "sendonly",
                ),
                Purpose::Receive { .. } => (
                    "WHEP",
                    matches!(m.direction, Direction::RecvOnly | Direction::SendRecv),
                    "recvonly",
                ),
            };
            if !ok {
                return Err(refuse(Unacceptable::WrongDirection {
                    mid: m.mid.clone(),
                    direction: m.direction.name(),
                    endpoint,
                    expected,
                }));
            }
        }
        let (max_audio, max_video) = match purpose {
            Purpose::Publish => (1, 1),
            Purpose::Receive {
                max_audio,
                max_video,
            } => (max_audio, max_video),
        };
        for (kind, name, max) in [
            (MediaKind::Audio, "audio", max_audio),
            (MediaKind::Video, "video", max_video),
        ] {
            let got = live.iter().filter(|(m, _)| m.kind == kind).count();
            if got > max {
                return Err(refuse(Unacceptable::TooManyTracks {
                    kind: name,
                    got,
                    max,
                }));
            }
        }
        Ok(())
    }
}

/// RFC 8839 §5.4: ice-char is ALPHA / DIGIT / "+" / "/", 4–256 (ufrag)
/// or 22–256 (pwd) of them.
fn valid_ice_chars(s: &str, min: usize) -> bool {
    (min..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn read_media(index: usize, m: &sdp::MediaDescription) -> Result<OfferedMedia, SdpError> {
    let kind = match m.media_name.media.as_str() {
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        _ => MediaKind::Other,
    };
    let values = |key: &'static str| {
        m.attributes
            .iter()
            .filter(move |a| a.key == key)
            .map(|a| a.value.as_deref().unwrap_or(""))
    };
    let mid = values("mid")
        .next()
        .map(str::to_owned)
        .ok_or_else(|| malformed(format!("m-line {index} has no a=mid")))?;
    if mid.is_empty() || mid.len() > 16 || !mid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed(format!(
            "m-line {index}: a=mid must be 1–16 visible characters"
        )));
    }
    let direction = if m.has_attribute("sendonly") {
        Direction::SendOnly
    } else if m.has_attribute("recvonly") {
        Direction::RecvOnly
    } else if m.has_attribute("inactive") {
        Direction::Inactive
    } else {
        Direction::SendRecv
    };
    let rejected = m.media_name.port.value == 0 && !m.has_attribute("bundle-only");

    // Extensions: "id[/direction] uri [attributes]".
    let mut mid_extension = None;
    let mut audio_level_extension = None;
    for v in values("extmap") {
        let mut parts = v.split_whitespace();
        let (Some(id), Some(uri)) = (parts.next(), parts.next()) else {
            return Err(malformed(format!(
                "m-line {mid:?}: a=extmap:{v} is not `id uri`"
            )));
        };
        let id = id.split('/').next().unwrap_or(id);
        let id: u8 = match id.parse() {
            Ok(n @ 1..=14) => n,
            // Two-byte-header ids (15–255) are legal but sluice writes
            // one-byte headers only; it ignores those extensions.
            Ok(_) => continue,
            Err(_) => {
                return Err(malformed(format!(
                    "m-line {mid:?}: a=extmap id {id:?} is not a number"
                )));
            }
        };
        match uri {
            MID_EXTENSION => mid_extension = Some(id),
            AUDIO_LEVEL_EXTENSION if kind == MediaKind::Audio => audio_level_extension = Some(id),
            _ => {}
        }
    }

    let codec = if kind == MediaKind::Other {
        None
    } else {
        choose_codec(kind, &m.media_name.formats, &mid, |k| values(k))?
    };

    // SSRCs: every `a=ssrc:<n> ...`, less the second of each FID pair (RTX).
    let mut ssrcs = Vec::new();
    for v in values("ssrc") {
        let n = v.split_whitespace().next().unwrap_or("");
        let ssrc: u32 = n
            .parse()
            .map_err(|_| malformed(format!("m-line {mid:?}: a=ssrc:{v} has no SSRC number")))?;
        if !ssrcs.contains(&ssrc) {
            ssrcs.push(ssrc);
        }
    }
    for v in values("ssrc-group") {
        let mut parts = v.split_whitespace();
        if parts.next() == Some("FID")
            && let (Some(_), Some(rtx)) = (parts.next(), parts.next())
            && let Ok(rtx) = rtx.parse::<u32>()
        {
            ssrcs.retain(|&s| s != rtx);
        }
    }

    Ok(OfferedMedia {
        kind,
        mid,
        direction,
        rejected,
        codec,
        mid_extension,
        audio_level_extension,
        ssrcs,
    })
}

fn choose_codec<'a, I>(
    kind: MediaKind,
    formats: &[String],
    mid: &str,
    values: impl Fn(&'static str) -> I,
) -> Result<Option<Codec>, SdpError>
where
    I: Iterator<Item = &'a str>,
{
    // "PT rest" lines for one payload type.
    let for_pt = |key: &'static str, pt: &str| -> Vec<String> {
        values(key)
            .filter_map(|v| {
                let (p, rest) = v.split_once(' ')?;
                (p == pt).then(|| rest.trim().to_owned())
            })
            .collect()
    };
    let mut payload_types = Vec::with_capacity(formats.len());
    for format in formats {
        match format.parse::<u8>() {
            Ok(pt @ 0..=127) => payload_types.push(pt),
            _ => {
                return Err(malformed(format!(
                    "m-line {mid:?}: format {format:?} is not a payload type (0–127)"
                )));
            }
        }
    }
    for (format, payload_type) in formats.iter().zip(payload_types) {
        let Some(rtpmap) = for_pt("rtpmap", format).into_iter().next() else {
            continue;
        };
        let fmtp = for_pt("fmtp", format).into_iter().next();
        let lower = rtpmap.to_ascii_lowercase();
        let name = match (kind, lower.as_str()) {
            (MediaKind::Audio, "opus/48000/2") => CodecName::Opus,
            (MediaKind::Video, "vp8/90000") => CodecName::Vp8,
            (MediaKind::Video, "h264/90000")
                if fmtp
                    .as_deref()
                    .is_some_and(|f| f.split(';').any(|p| p.trim() == "packetization-mode=1")) =>
            {
                CodecName::H264
            }
            _ => continue,
        };
        let feedback = for_pt("rtcp-fb", format)
            .into_iter()
            .filter(|f| matches!(f.as_str(), "nack" | "nack pli" | "ccm fir" | "goog-remb"))
            .collect();
        return Ok(Some(Codec {
            name,
            payload_type,
            fmtp,
            feedback,
        }));
    }
    Ok(None)
}
