//! The rtpengine target's protocol pieces: [`bencode`] (the encoding),
//! [`ng`] (framing, replies, the blocking UDP client), [`sdp`] (writing
//! offers/answers and reading rtpengine's rewrites).

pub mod bencode;
pub mod ng;
pub mod sdp;
