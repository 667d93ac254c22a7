//! Browsers on the media port: how a WebRTC session becomes an ordinary
//! leg of the data plane.
//!
//! The protocol machines live in the `sluice-webrtc` crate
//! (`crates/sluice-webrtc`, sans-IO): the RFC 7983 demux, STUN and the
//! ICE-lite agent, the DTLS-SRTP server, the SDP offer/answer for WHIP and
//! WHEP. This module is the seam between them and the relay: a finished
//! handshake's [`LegKeying`] becomes the two [`MasterKey`]s of a
//! [`crate::relay::LegRoute`], and the nominated ICE address its latch,
//! so from then on a browser leg goes through the same SRTP engine,
//! replay windows, fan-out and policy as an SDES leg. Nothing of WebRTC
//! runs on the packet path after that.
//!
//! # How a browser gets in
//!
//! 1. Admission (`control/api.rs`): `"transport": "webrtc"` goes through
//!    the same `MeetingDesk`/policy as every participant; the answer is
//!    `webrtc: {token, whip, whep}` (`control/registry/browser.rs` keeps
//!    the token and the sessions; the admission leg itself is never
//!    published, its keys being nobody's).
//! 2. WHIP/WHEP POST (`control/webrtc.rs`, checks in [`whip`]): the
//!    session is queued to the handshake thread *before* the answer
//!    leaves, so the browser's first check finds it.
//! 3. The media port ([`port`]): every worker's handler is wrapped in
//!    [`port::WebrtcDemux`], which passes RTP/RTCP on and copies STUN and
//!    DTLS (RFC 7983) into one bounded queue (`try_send`: a worker never
//!    waits; a full queue drops and counts). One handshake thread owns the
//!    [`proto::table::SessionTable`], answers from a clone of a media
//!    socket, and tells the registry when a session is established (a
//!    new leg, keyed by [`BrowserLegKeys`], latched to the ICE address),
//!    re-nominated, or ended (consent expired, handshake failed, closed).
//! 4. From then on the leg is ordinary: same SRTP engine, replay windows,
//!    fan-out, policy. Three snapshot facts are all WebRTC adds to the
//!    data plane: a WHIP leg takes nothing (`send_only`), a participant's
//!    legs skip each other (`participant_of`), and RTCP from a
//!    receive-only browser finds its leg by ICE address (`ice_addresses`).
//!    A WHIP offer without `a=ssrc` still publishes: RTP with an unknown
//!    SSRC from a browser's ICE address is offered (rate-limited, off the
//!    routed path) to the handshake thread, and once it authenticates
//!    under the session's key its MID (or payload type) maps it to its
//!    m-line ([`learn`]) and it becomes a stream like an announced one.
//! 5. WHEP receive slots: the answer declares one SSRC per recvonly
//!    m-line. Each WHEP session has a sans-IO
//!    [`proto::slots::SlotRouter`] on the control plane: audio slots
//!    carry the loudest publishers (RFC 6464 level, smoothed, with a
//!    margin against flapping), video slots the most recent speakers
//!    (last-N, with a dwell). The packet workers only record each
//!    candidate stream's last level and position (`relay/slot_feed.rs`:
//!    two relaxed stores); the handshake thread runs the routers every
//!    100 ms off the packet path (`control/registry/browser/slots.rs`),
//!    since no single worker sees every publisher. A switch publishes
//!    new offsets, and the fan-out rewrites SSRC, sequence number,
//!    timestamp and the MID extension for the slot
//!    (`relay/slot_rewrite.rs`, never the payload), so each slot is one
//!    continuous stream; a video slot's new source gets a PLI from the
//!    relay ([`keyframe`]); the viewer's NACK/PLI reach the publisher
//!    under its own SSRC and numbers. A publisher joining later fills a
//!    free slot with no renegotiation. `GET` on a WHEP session says who
//!    fills each slot (for the meeting page's names).
//!
//! A publisher's SR and SDES reach a viewer rewritten for the slot its
//! stream fills (`relay/slot_rtcp.rs`: the slot's SSRC, the SR's RTP
//! timestamp moved like the packets', the CNAME the answer declared), so
//! the browser maps the slot's timestamps to wall-clock time; those of
//! streams in no slot of the viewer, and every BYE, are not sent to it.
//!
//! Not yet: the payload type is passed as the publisher numbered it
//! (Chrome numbers Opus and VP8 alike in every offer); ICE
//! restarts (422) and cluster mode (400) are refused.
//!
//! A slot's SRTP index toward the viewer is shared by the workers: the
//! slot's SSRC is protected by whichever worker receives its current
//! source, so each slot has one `srtp::SharedSendIndex` for the
//! session's life, and every copy claims its index there before it is
//! sealed (`relay/slot_rewrite.rs`): after a switch to a publisher on
//! another worker, or a worker's restart, the rollover counter continues
//! past a wrap and no index (GCM nonce) is ever sealed twice. SRTCP
//! toward the viewer needed nothing: its index is explicit in each packet
//! and drawn from the leg's one counter by every worker
//! (`LegRoute::next_srtcp_index`).

//! # Library choice
//!
//! DTLS is `dimpl` 0.9 (str0m's sans-IO DTLS 1.2/1.3) on its pure-Rust
//! `rust-crypto` provider, with the ECDHE groups and ECDSA signing and
//! verification on `ring` (`sluice_webrtc::crypto`: 3× the handshakes per
//! core, bench/README.md): server role, `use_srtp` with
//! SRTP_AEAD_AES_256_GCM, SRTP_AEAD_AES_128_GCM and
//! SRTP_AES128_CM_HMAC_SHA1_80 chosen in that order, the RFC 5764 exporter,
//! fragment reassembly, cookies, retransmission, all driven by
//! `handle_packet` / `poll_output` / `handle_timeout(now)` with our sockets
//! and our time. webrtc-rs's `rtc-dtls` was the other sans-IO candidate;
//! it brings rustls and its provider stack for one handshake shape and has
//! less mileage against browsers. `dimpl`'s default `aws-lc-rs` provider
//! was declined because it compiles C with cmake (minutes on a 2-core CI).
//! SDP is tokenised by webrtc-rs's `sdp` crate; STUN is ours (zero-copy, no
//! allocation per check, fuzzed). The crate's own doc has the details.
//! It is a crate of its own so its dependencies build once and in
//! parallel, never with every change to the daemon.

use sluice_webrtc::keying::{DtlsSrtpProfile, LegKeying};

use crate::srtp::{MasterKey, SrtpError, SrtpProfile};

pub use sluice_webrtc as proto;

pub mod keyframe;
pub mod learn;
pub mod port;
pub mod whip;

#[cfg(test)]
mod tests;

/// sluice's SRTP profile for a negotiated DTLS-SRTP profile.
pub fn srtp_profile(profile: DtlsSrtpProfile) -> SrtpProfile {
    match profile {
        DtlsSrtpProfile::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
        DtlsSrtpProfile::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        DtlsSrtpProfile::AesCm128HmacSha1_80 => SrtpProfile::AesCm128HmacSha1_80,
    }
}

/// A browser leg's two master keys, as a [`crate::relay::LegRoute`] holds them.
#[derive(Debug, Clone)]
pub struct BrowserLegKeys {
    /// Unprotects what the browser sends.
    pub client_to_relay: MasterKey,
    /// Protects what the relay sends the browser.
    pub relay_to_client: MasterKey,
}

impl BrowserLegKeys {
    /// The keys of a finished handshake (the relay was the DTLS server).
    pub fn from_keying(keying: &LegKeying) -> Result<Self, SrtpError> {
        let profile = srtp_profile(keying.profile);
        Ok(Self {
            client_to_relay: MasterKey::new(profile, keying.client_to_relay.as_bytes())?,
            relay_to_client: MasterKey::new(profile, keying.relay_to_client.as_bytes())?,
        })
    }
}

/// The Prometheus text of the media port's WebRTC counters.
pub fn render_counters(c: &proto::counters::WebRtcSnapshot) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(2048);
    out.push_str(
        "# HELP sluice_webrtc_handshakes_total DTLS-SRTP handshakes by outcome.\n\
         # TYPE sluice_webrtc_handshakes_total counter\n",
    );
    for (outcome, n) in &c.handshakes {
        let _ = writeln!(
            out,
            "sluice_webrtc_handshakes_total{{outcome=\"{}\"}} {n}",
            outcome.label()
        );
    }
    out.push_str(
        "# HELP sluice_webrtc_drops_total STUN and DTLS datagrams dropped on the media port, by reason.\n\
         # TYPE sluice_webrtc_drops_total counter\n",
    );
    for (why, n) in &c.drops {
        let _ = writeln!(
            out,
            "sluice_webrtc_drops_total{{reason=\"{}\"}} {n}",
            why.label()
        );
    }
    let _ = write!(
        out,
        "# HELP sluice_webrtc_consent_expiries_total Browser legs that lost ICE consent (RFC 7675).\n\
         # TYPE sluice_webrtc_consent_expiries_total counter\n\
         sluice_webrtc_consent_expiries_total {}\n\
         # HELP sluice_webrtc_slot_switches_total WHEP receive-slot switches.\n\
         # TYPE sluice_webrtc_slot_switches_total counter\n\
         sluice_webrtc_slot_switches_total {}\n",
        c.consent_expiries, c.slot_switches
    );
    out
}
