//! placeholder
pub mod demux;
pub mod stun;
