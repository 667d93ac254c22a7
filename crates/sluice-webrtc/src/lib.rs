//! placeholder
pub mod demux;
pub mod ice;
pub mod stun;
