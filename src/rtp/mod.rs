//! RTP and RTCP on the wire (RFC 3550), sans-IO and zero-copy.
//!
//! Parsing gives views over the caller's bytes and never allocates:
//! [`RtpHeader::parse`] reads only the header (what SRTP needs before it
//! decrypts, RFC 3711 §3.1), [`RtpPacket::parse`] also the payload and its
//! padding, and [`rtcp::RtcpCompound`] walks a compound RTCP packet. Header
//! extensions follow RFC 8285 (one-byte and two-byte elements). Builders
//! ([`RtpBuilder`], the RTCP ones in [`rtcp`]) write into a caller buffer
//! and return the length written. No input makes any of it panic.
//!
//! RTP and RTCP sharing one port are told apart with [`is_rtcp`]
//! (RFC 5761 §4). The RTCP names most code needs are re-exported here.

mod builder;
mod error;
mod extension;
mod header;
mod packet;
pub mod rtcp;
mod types;
mod wire;

pub use builder::{MAX_CSRCS, RtpBuilder};
pub use error::RtpError;
pub use extension::{
    ExtensionBlock, ExtensionElement, ExtensionElements, ExtensionForm, ONE_BYTE_PROFILE,
    TWO_BYTE_PROFILE,
};
pub use header::{FIXED_HEADER_LEN, RtpHeader};
pub use packet::RtpPacket;
pub use rtcp::{RtcpCompound, RtcpError, RtcpPacket, is_rtcp, rtcp_header_ssrc};
pub use types::{PayloadType, SeqNum, Ssrc};
