//! Arbitrary bytes as the first plaintext RTP of an unannounced WHIP
//! stream (`sluice::webrtc::learn`): never a panic, and whatever m-line
//! is named is free and carries the packet's payload type.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::relay::MediaKind;
use sluice::webrtc::learn::{PublishedLine, line_of};

fuzz_target!(|data: &[u8]| {
    let (taken, rtp) = data.split_first().unwrap_or((&0, &[]));
    let line = |mid: &str, kind, codec, payload_type, bit: u8| PublishedLine {
        mid: mid.to_owned(),
        mid_ext: 4,
        kind,
        codec,
        payload_type,
        taken: taken & bit != 0,
    };
    let lines = [
        line("0", MediaKind::Audio, "opus", 111, 1),
        line("1", MediaKind::Video, "VP8", 96, 2),
        line("v2", MediaKind::Video, "H264", 96, 4),
    ];
    if let Ok(at) = line_of(&lines, rtp) {
        assert!(!lines[at].taken);
        assert_eq!(rtp[1] & 0x7f, lines[at].payload_type);
    }
});
