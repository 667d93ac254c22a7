//! WebRTC offer/answer as WHIP and WHEP use it (RFC 8829 JSEP, RFC 8843
//! BUNDLE, RFC 8842 DTLS in SDP, RFC 8839 ICE in SDP).
//!
//! The offer is tokenised by the `sdp` crate (webrtc-rs; small: `url`,
//! `rand`, `thiserror`), then read into [`Offer`]: what sluice checks and
//! needs, nothing else. The answer is written here as text
//! ([`build_answer`]): it is a fixed shape (ICE-lite, one host candidate
//! per media address, `a=setup:passive`, one codec per m-line), and
//! writing it directly keeps every line in view of the tests.
//!
//! Errors come in two kinds the WHIP/WHEP edge maps to two statuses:
//! [`SdpError::Malformed`] (400: not SDP, or not a WebRTC offer) and
//! [`SdpError::Unacceptable`] (422: a WebRTC offer sluice will not take,
//! with what to change).

mod answer;
mod offer;

#[cfg(test)]
mod tests;

pub use answer::{AnswerParams, SlotSsrc, build_answer};
pub use offer::{
    Codec, CodecName, Direction, MAX_OFFER_LEN, MediaKind, Offer, OfferedMedia, Setup,
};

/// The MID header extension (RFC 8843 §15.1).
pub const MID_EXTENSION: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// The client-to-mixer audio level extension (RFC 6464).
pub const AUDIO_LEVEL_EXTENSION: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// The CNAME the answer declares for every WHEP receive slot
/// (`a=ssrc:<slot> cname:`): the relay's RTCP SDES toward the viewer
/// names each slot with it, whoever fills the slot.
pub const SLOT_CNAME: &str = "sluice";

/// What the offer is for: the relay receives (WHIP) or sends (WHEP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// WHIP: the browser publishes; at most one audio and one video m-line.
    Publish,
    /// WHEP: the browser receives; each m-line is a slot.
    Receive {
        /// Most audio slots one viewer may ask for.
        max_audio: usize,
        /// Most video slots one viewer may ask for.
        max_video: usize,
    },
}

/// Why an offer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Not parseable SDP, or missing what every WebRTC offer carries.
    #[error("malformed SDP offer: {0}")]
    Malformed(String),
    /// A WebRTC offer sluice does not accept; the text says what to change.
    #[error("{0}")]
    Unacceptable(Unacceptable),
}

/// The 422 reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unacceptable {
    /// No `a=group:BUNDLE` covering every m-line.
    #[error("the offer must BUNDLE every m-line in one a=group:BUNDLE (RFC 8843)")]
    NoBundle,
    /// An m-line without `a=rtcp-mux`.
    #[error("m-line {mid:?} lacks a=rtcp-mux; sluice multiplexes RTP and RTCP on one port")]
    NoRtcpMux {
        /// The m-line's mid.
        mid: String,
    },
    /// Not `UDP/TLS/RTP/SAVPF`.
    #[error("m-line {mid:?} uses {proto:?}; sluice takes UDP/TLS/RTP/SAVPF")]
    NotDtlsSrtp {
        /// The m-line's mid.
        mid: String,
        /// Its transport protocol.
        proto: String,
    },
    /// `a=setup:passive` in the offer: the relay is always passive.
    #[error(
        "the offer says a=setup:passive; offer actpass or active (the relay is the DTLS server)"
    )]
    SetupPassive,
    /// More audio or video m-lines than allowed.
    #[error("the offer has {got} {kind} m-lines; at most {max} are allowed here")]
    TooManyTracks {
        /// `audio` or `video`.
        kind: &'static str,
        /// How many the offer has.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The wrong direction for the endpoint (sendonly to WHEP, recvonly to WHIP).
    #[error("m-line {mid:?} is {direction}; {endpoint} takes {expected}")]
    WrongDirection {
        /// The m-line's mid.
        mid: String,
        /// Its direction.
        direction: &'static str,
        /// `WHIP` or `WHEP`.
        endpoint: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// No codec sluice relays (Opus; VP8; H.264 packetization-mode 1).
    #[error(
        "m-line {mid:?} offers no codec sluice relays (audio: opus/48000/2; video: VP8, H264 packetization-mode=1)"
    )]
    NoCodec {
        /// The m-line's mid.
        mid: String,
    },
    /// No m-line of a kind sluice carries.
    #[error("the offer has no audio or video m-line")]
    NoMedia,
}
