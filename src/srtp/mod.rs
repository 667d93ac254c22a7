//! SRTP and SRTCP (RFC 3711, RFC 7714): sans-IO, in place, no allocation
//! per packet.
//!
//! - [`SrtpProfile`]: AEAD_AES_256_GCM (default), AEAD_AES_128_GCM,
//!   AES_CM_128_HMAC_SHA1_80 and _32.
//! - [`MasterKey`]: SDES key material (master key ‖ master salt); session
//!   keys are derived from it once (RFC 3711 §4.3, KDR 0).
//! - [`SrtpSession`]: protect/unprotect of RTP and RTCP under one master
//!   key, with RFC 3711 Appendix A index estimation across sequence wraps
//!   and a 128-packet replay window per SSRC, for SRTP and SRTCP alike.
//! - [`SharedSendIndex`]: one SSRC's send index space shared by several
//!   sessions under one key (a WHEP slot that moves between workers).
//! - [`protect_rtp_batch`] / [`unprotect_rtp_batch`]: many packets across
//!   sessions in one backend call.
//! - [`IndexJournal`]: what a session used of each stream's index space,
//!   kept where a successor session (after a packet worker's restart)
//!   takes the streams up without reusing an index.
//!
//! The AES-GCM work goes through a [`crate::crypto::AeadBackend`]; AES-CM
//! and HMAC-SHA1 use the RustCrypto `aes`, `ctr`, `hmac`, `sha1` crates
//! with their keys expanded once per session.

mod batch;
mod error;
mod index;
mod journal;
mod kdf;
mod keys;
mod profile;
mod replay;
mod session;
mod shared_index;
mod srtcp;
mod streams;
mod transform;

pub use batch::{BATCH_CHUNK, BatchItem, protect_rtp_batch, unprotect_rtp_batch};
pub use error::SrtpError;
pub use journal::{IndexJournal, IndexJournals, RECEIVED_STRIDE, RESERVE_AHEAD};
pub use keys::MasterKey;
pub use profile::{SrtpProfile, UnknownProfile};
pub use session::{DEFAULT_MAX_STREAMS, SrtpSession};
pub(crate) use session::{Phase, SealPlan};
pub use shared_index::{CLAIM_AHEAD, SharedSendIndex};

#[cfg(test)]
mod tests;
