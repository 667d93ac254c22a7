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
//! # What is wired, what is not yet
//!
//! Done and tested: every sans-IO machine, and the join of a finished
//! handshake to the data plane ([`BrowserLegKeys`] into a `LegRoute`,
//! exercised through `RelayWorker` in this module's tests). Not yet: the
//! `transport: "webrtc"` admission and its token, the WHIP/WHEP routes in
//! `control/` (their checks, statuses and answer are ready in [`whip`]),
//! and the media port handing STUN/DTLS datagrams (RFC 7983
//! demux) to a handshake thread that owns the [`proto::session::Session`]s
//! and publishes the finished leg; nor the fan-out calling
//! [`proto::slots::SlotRouter::rewrite`] for WHEP viewers.
//!
//! # Library choice
//!
//! DTLS is `dimpl` 0.9 (str0m's sans-IO DTLS 1.2/1.3) on its pure-Rust
//! `rust-crypto` provider: server role, `use_srtp` with
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
