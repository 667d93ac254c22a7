//! Arbitrary bytes as one RTP payload of each codec, for the picture
//! height a source's key frames declare (`sluice::video::dimensions`: the
//! VP8 key frame header, the H.264 SPS bit reader, alone and in a
//! STAP-A). Nothing may panic, and a height, when found, is in range.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::video::{VideoCodec, picture_height};

fuzz_target!(|data: &[u8]| {
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        if let Some(h) = picture_height(codec, data) {
            assert!((1..=16_383).contains(&h), "{h}");
        }
    }
    // The same bytes behind an SPS header byte, and inside a STAP-A.
    let mut sps = vec![0x67];
    sps.extend_from_slice(data);
    let _ = picture_height(VideoCodec::H264, &sps);
    if let Ok(size) = u16::try_from(sps.len()) {
        let mut stap = vec![0x78];
        stap.extend(size.to_be_bytes());
        stap.extend_from_slice(&sps);
        assert_eq!(
            picture_height(VideoCodec::H264, &stap),
            picture_height(VideoCodec::H264, &sps)
        );
    }
});
