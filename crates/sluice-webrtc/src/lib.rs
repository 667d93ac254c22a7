//! sluice's WebRTC pieces, sans-IO: what a browser leg needs before it
//! becomes an ordinary SRTP leg of the data plane.
//!
//! - [`demux`]: which protocol a datagram on the shared media port is
//!   (RFC 7983), from its first byte.
//! - [`stun`]: zero-copy STUN messages with MESSAGE-INTEGRITY and
//!   FINGERPRINT (RFC 8489), and a writer into the caller's buffer.
//! - [`ice`]: the ICE-lite agent of one session (RFC 8445 §2.5): answers
//!   authenticated checks, latches the nominated 5-tuple, RFC 7675 consent.
//! - [`dtls`]: the DTLS-SRTP server of one session (RFC 5764), over
//!   `dimpl`, checking the peer certificate against the offer's
//!   fingerprint before any key is released; [`identity`] holds the
//!   relay's certificate and the fingerprints; [`keying`] splits the
//!   exporter output into the leg's two master keys.
//! - [`sdp`]: the WHIP/WHEP offer read and checked, the answer written.
//! - [`session`]: one browser's ICE-lite agent and DTLS server together,
//!   fed what the media port routed to it.
//!
//! - [`crypto`]: the handshakes' ECDHE and ECDSA on `ring` (dimpl's
//!   rust-crypto provider otherwise), for the handshake rate.
//! - [`table`]: every pending session of a media port, and which one a
//!   datagram belongs to (bounded).
//! - [`counters`]: drops by reason, handshakes by outcome, consent
//!   expiries, slot switches, for the metrics edge.
//! - [`client`]: the browser's side (DTLS client, ICE check), for tests
//!   and `sluice-bench` only.
//!
//! Every machine here is fed bytes and `now` and never reads a clock or
//! touches a socket (`handle_*` / `poll_*`, as in quinn-proto and str0m);
//! the media port and the HTTP endpoints in the `sluice` crate drive them.
//!
//! # Why these libraries (and why a crate of its own)
//!
//! DTLS is the one piece worth not writing: a DTLS 1.2 server with
//! cookies, flight retransmission, handshake fragment reassembly (Chrome's
//! ~1.4 kB ClientHello), extended master secret, `use_srtp` and the
//! RFC 5764 exporter. The sans-IO candidates read for it:
//!
//! - **`dimpl` 0.9** (str0m's DTLS, MIT/Apache-2.0): `handle_packet` /
//!   `poll_output` / `handle_timeout(Instant)`, no I/O, no clock of its
//!   own, no `unsafe`; server role by default; exports keying material for
//!   SRTP_AEAD_AES_256_GCM, SRTP_AEAD_AES_128_GCM and
//!   SRTP_AES128_CM_HMAC_SHA1_80 and picks them in exactly sluice's order;
//!   hands the peer certificate to the caller for fingerprint pinning; in
//!   production against every browser through str0m. Its `rust-crypto`
//!   feature is pure Rust (p256, aes-gcm, x25519-dalek), so CI builds no C:
//!   the default `aws-lc-rs` feature would add a cmake/C build of
//!   several minutes on a 2-core machine.
//! - **`rtc-dtls` 0.21** (webrtc-rs's sans-IO rewrite): also sans-IO, but
//!   pulls rustls and its crypto provider stack for a handshake we need
//!   one shape of, and is newer with less mileage against browsers.
//!
//! Chosen: `dimpl` with `rust-crypto`. The certificate is made with
//! `rcgen` on `ring` (already in sluice's tree). SDP is tokenised by the
//! `sdp` crate (webrtc-rs; `url`, `rand`, `thiserror` and nothing else);
//! its model is generic, so [`sdp`] reads it into what sluice checks.
//! STUN is written here ([`stun`] says why: zero-copy, no allocation per
//! check on the media port, six attributes). SRTP is not here at all: the
//! keys go to sluice's own SRTP engine, so a browser leg is protected by
//! the same code, batch and fan-out as an SDES leg.
//!
//! The crate is separate (quinn's proto/udp split) so that its ~40
//! dependencies build once, in parallel with the daemon, and never
//! recompile with it.

pub mod client;
pub mod counters;
pub mod crypto;
pub mod demux;
pub mod dtls;
pub mod ice;
pub mod identity;
pub mod keying;
pub mod sdp;
pub mod session;
pub mod slots;
pub mod stun;
pub mod table;
