//! Safe bindings to the system **libsrtp 2.5**, the reference peer that
//! sluice's own SRTP implementation is checked and benchmarked against.
//!
//! Test and bench only: it is a dev-dependency of `sluice` and is never
//! linked into the daemon. Interop tests run libsrtp on one side and sluice
//! on the other (libsrtp protects, sluice unprotects, and back); the SRTP
//! benchmark times [`Session::protect`] next to sluice's protect.
//!
//! Driving it: create one [`Session`] per [`Direction`] with a [`Profile`]
//! and the master key‖salt, then call `protect`/`unprotect` (RTP) or
//! `protect_rtcp`/`unprotect_rtcp` on packets in caller-owned, 4-byte
//! aligned buffers with room for the trailer ([`RTP_TRAILER_ROOM`],
//! [`RTCP_TRAILER_ROOM`]). [`Session`] documents the libsrtp rules a peer
//! must respect (ROC handling, replay window, trailer room).
//!
//! Installing the library: `apt-get install libsrtp2-dev pkg-config` on
//! Debian/Ubuntu. The Debian build links NSS, which provides the AEAD GCM
//! profiles; a libsrtp built without GCM support fails to link here.
//! `build.rs` finds it with pkg-config and stops with an install hint if it
//! is missing.

// This is an FFI crate: every call into libsrtp is unsafe. The workspace
// denies unsafe_code everywhere else; here each block carries a SAFETY note.
#![allow(unsafe_code)]

mod error;
mod ffi;
mod profile;
mod session;

pub use error::{LibSrtpError, Status};
pub use profile::{Direction, Profile};
pub use session::{RTCP_TRAILER_ROOM, RTP_TRAILER_ROOM, Session};
