//! The SIP side of SDP offer/answer (RFC 3264) for one audio stream:
//! [`parse_offer`] reads the caller's offer (RFC 4566, with SDES keys from
//! RFC 4568), [`negotiate`] picks what we answer with, and [`build_answer`]
//! writes the answer. For a call sluice places itself, [`make_audio_offer`]
//! writes the offer, and [`negotiate`] reads the far end's answer the same
//! way (an answer is an SDP with one codec chosen from ours).
//!
//! Only the first audio m-line counts. The codec is chosen in sluice's
//! order, Opus, then G.722, then PCMU, then PCMA, whatever the caller's
//! order: a wideband codec skips the G.711 step, and a PBX commonly lists
//! G.711 first for the sake of old phones rather than by preference.
//! telephone-event (RFC 4733) is carried along, `a=rtcp-mux` (RFC 5761)
//! answered when offered, `a=rtcp` (RFC 3605) honoured, and for RTP/SAVP
//! the caller's first usable `a=crypto` line is taken, in the caller's
//! order.

mod answer;
mod offer;

use std::fmt;
use std::net::IpAddr;

pub use answer::{
    AnswerSpec, CODEC_PREFERENCE, Negotiated, OFFERED_CODECS, OFFERED_TELEPHONE_EVENT, OfferSpec,
    build_answer, make_audio_offer, negotiate, negotiate_keeping,
};
pub use offer::parse_offer;

use crate::srtp::SrtpProfile;

/// What the caller offered for its first audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOffer {
    /// Where the caller wants media (media-level `c=`, else session-level);
    /// `0.0.0.0` for an RFC 2543 hold.
    pub connection: IpAddr,
    /// The RTP port.
    pub port: u16,
    /// RTP/SAVP (or RTP/SAVPF): media must be SRTP keyed by `crypto`.
    pub secure: bool,
    /// The payload types of the m-line in the caller's order of
    /// preference, telephone-event left out.
    pub codecs: Vec<OfferedCodec>,
    /// The payload type of telephone-event/8000, if offered.
    pub telephone_event: Option<u8>,
    /// The events 0-15 offered for it, a bit each (bit n: event n); events
    /// above 15 are left out, as sluice does not take them.
    pub telephone_events: u16,
    /// telephone-event/48000's payload type, if offered (an Opus caller's
    /// DTMF at its codec's clock, RFC 4733 §2.1), and its events.
    pub telephone_event_48k: Option<u8>,
    pub telephone_events_48k: u16,
    /// The usable `a=crypto` lines, in the caller's order: supported suite,
    /// one key of the right length, no MKI.
    pub crypto: Vec<CryptoOffer>,
    /// The stream's direction (media-level attribute, else session-level,
    /// else sendrecv).
    pub direction: Direction,
    /// `a=ptime`, in milliseconds.
    pub ptime: Option<u32>,
    /// The caller put us on hold: `c=0.0.0.0` (or `::`), sendonly or
    /// inactive.
    pub held: bool,
    /// `a=rtcp-mux` (RFC 5761): RTCP on the RTP port.
    pub rtcp_mux: bool,
    /// `a=rtcp:<port> [IN IP4 <address>]` (RFC 3605): where the caller's
    /// RTCP goes when not muxed, if not to the RTP port + 1.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// The `a=fmtp` of the first Opus payload type (RFC 7587 §6.1): what
    /// the caller wants to receive.
    pub opus: OpusFmtp,
}

/// What an Opus receiver asks of its sender (RFC 7587 §6.1, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpusFmtp {
    /// `maxplaybackrate`: the widest audio worth sending, in Hz.
    pub max_playback_rate: Option<u32>,
    /// `useinbandfec=1`: the receiver decodes Opus in-band FEC.
    pub inband_fec: bool,
    /// `stereo=1`: the receiver prefers stereo (mono is always allowed,
    /// and is what sluice sends).
    pub stereo: bool,
}

impl OpusFmtp {
    /// Reads `maxplaybackrate`, `useinbandfec` and `stereo` out of an
    /// fmtp parameter list (`a=fmtp:111 minptime=10;useinbandfec=1`);
    /// what is missing or unreadable keeps its RFC 7587 default.
    pub fn parse(params: &str) -> Self {
        let mut out = Self::default();
        for param in params.split(';') {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "maxplaybackrate" => out.max_playback_rate = value.parse().ok(),
                "useinbandfec" => out.inband_fec = value == "1",
                "stereo" => out.stereo = value == "1",
                _ => {}
            }
        }
        out
    }
}

impl MediaOffer {
    /// Where the caller wants RTCP: the RTP port when muxed, else the
    /// `a=rtcp` port and address, else the RTP port + 1 (RFC 3550 §11).
    pub fn rtcp_addr(&self) -> std::net::SocketAddr {
        use std::net::SocketAddr;
        if self.rtcp_mux {
            return SocketAddr::new(self.connection, self.port);
        }
        match self.rtcp {
            Some((port, addr)) => SocketAddr::new(addr.unwrap_or(self.connection), port),
            None => SocketAddr::new(self.connection, self.port.wrapping_add(1)),
        }
    }
}

/// One payload type of the m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OfferedCodec {
    /// The payload type.
    pub pt: u8,
    /// What it carries.
    pub codec: Codec,
}

/// The codecs sluice knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, 8 kHz (static payload type 0).
    Pcmu,
    /// G.711 A-law, 8 kHz (static payload type 8).
    Pcma,
    /// Opus, 48 kHz (RFC 7587).
    Opus,
    /// G.722, 16 kHz audio on an 8 kHz RTP clock (static payload type 9).
    G722,
    /// Anything else.
    Other,
}

/// One usable `a=crypto` line (RFC 4568 §9.1).
#[derive(Clone, PartialEq, Eq)]
pub struct CryptoOffer {
    /// The line's tag, echoed in the answer.
    pub tag: u32,
    /// The crypto suite.
    pub profile: SrtpProfile,
    /// Master key ‖ master salt, decoded from `inline:`; exactly
    /// `profile.key_material_len()` bytes.
    pub key_material: Vec<u8>,
}

impl fmt::Debug for CryptoOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoOffer")
            .field("tag", &self.tag)
            .field("profile", &self.profile)
            .field("key_material", &"<redacted>")
            .finish()
    }
}

/// A media direction attribute (RFC 4566 §6, RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The direction that answers this one (RFC 3264 §6.1).
    pub fn answer(self) -> Self {
        match self {
            Self::SendRecv => Self::SendRecv,
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            Self::Inactive => Self::Inactive,
        }
    }

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    fn parse(attr: &str) -> Option<Self> {
        Some(match attr {
            "sendrecv" => Self::SendRecv,
            "sendonly" => Self::SendOnly,
            "recvonly" => Self::RecvOnly,
            "inactive" => Self::Inactive,
            _ => return None,
        })
    }
}

/// Why an offer cannot be answered; the INVITE gets 488 Not Acceptable
/// Here ([`SdpError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not UTF-8.
    #[error("SDP is not UTF-8")]
    NotUtf8,
    /// No `m=audio` line.
    #[error("no audio stream offered")]
    NoAudio,
    /// The first audio stream has port 0.
    #[error("audio stream disabled (port 0)")]
    AudioDisabled,
    /// The first audio m-line is malformed.
    #[error("malformed m=audio line")]
    BadMediaLine,
    /// A transport other than RTP/AVP(F) or RTP/SAVP(F) (e.g. DTLS-SRTP).
    #[error("unsupported media transport {0}")]
    UnsupportedTransport(String),
    /// A `c=` line that is not `IN IP4|IP6 <address literal>`.
    #[error("malformed or non-literal c= line")]
    BadConnection,
    /// No `c=` line for the audio stream.
    #[error("no connection address")]
    MissingConnection,
    /// None of Opus, G.722, PCMU, PCMA offered.
    #[error("no common codec (Opus, G.722, PCMU or PCMA needed)")]
    NoCommonCodec,
    /// RTP/SAVP without a usable `a=crypto` line.
    #[error("RTP/SAVP without a supported a=crypto line")]
    NoUsableCrypto,
}

impl SdpError {
    /// The SIP status that refuses the offer: 488.
    pub fn status(&self) -> u16 {
        488
    }
}
