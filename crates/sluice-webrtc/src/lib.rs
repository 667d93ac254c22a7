//! placeholder
pub mod demux;
pub mod dtls;
pub mod ice;
pub mod identity;
pub mod keying;
pub mod sdp;
pub mod stun;
