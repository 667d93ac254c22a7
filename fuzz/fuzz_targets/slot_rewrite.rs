//! The WHEP slot rewrites on bytes from the network: a publisher's RTP
//! packet rewritten for a slot (SSRC, sequence number, timestamp, the MID
//! extension element), the level and position a worker records from it,
//! a viewer's RTCP feedback mapped back to the publisher, and a
//! publisher's RTCP packet (SR, SDES) as a viewer's slots carry it. None
//! may panic; the rewrite never changes the length, and changes nothing
//! past the header's extension block; what a viewer is sent of RTCP is
//! whole RTCP packets.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::relay::{
    RoutingSnapshot, SlotEntry, SlotMap, SourceFeed, feedback_to_sources, rewrite_header,
    rtcp_for_viewer,
};
use sluice::rtp::RtcpCompound;

fuzz_target!(|data: &[u8]| {
    let Some((params, packet)) = data.split_first_chunk::<16>() else {
        return;
    };
    let mut mid = [0u8; 8];
    mid.copy_from_slice(&params[8..16]);
    let slot = SlotEntry {
        source: u32::from_be_bytes([params[0], params[1], params[2], params[3]]),
        ssrc: 0x5107_5107,
        mid,
        mid_len: params[4] % 9,
        source_mid_ext: params[5] % 16,
        mid_ext: params[6] % 16,
        seq_offset: u16::from(params[7]) << 8 | u16::from(params[0]),
        ts_offset: u32::from_be_bytes([params[1], params[2], params[3], params[7]]),
    };
    let mut rtp = packet.to_vec();
    rewrite_header(&mut rtp, &slot);
    assert_eq!(rtp.len(), packet.len());
    if rtp.len() >= 12 {
        assert_eq!(rtp[8..12], slot.ssrc.to_be_bytes());
        // Only the fixed header, CSRCs and the extension block may change.
        let csrcs = 4 * usize::from(packet[0] & 0x0f);
        let ext_end = packet
            .get(12 + csrcs + 2..12 + csrcs + 4)
            .filter(|_| packet[0] & 0x10 != 0)
            .map_or(12 + csrcs, |w| {
                12 + csrcs + 4 + 4 * usize::from(u16::from_be_bytes([w[0], w[1]]))
            });
        if let (Some(after), Some(before)) = (rtp.get(ext_end..), packet.get(ext_end..)) {
            assert_eq!(after, before, "the payload is never touched");
        }
    }
    let feed = SourceFeed::new(params[5] % 15);
    feed.observe(packet);
    let _ = (feed.take_level(), feed.last());

    let mut snapshot = RoutingSnapshot::default();
    let slot_ssrc = packet
        .get(8..12)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    snapshot.slot_sources.insert(slot_ssrc, slot.source);
    snapshot.slot_seq_offsets.insert(slot_ssrc, slot.seq_offset);
    let mut rtcp = packet.to_vec();
    feedback_to_sources(&mut rtcp, &snapshot);
    assert_eq!(rtcp.len(), packet.len());

    // The SR's (or first SDES chunk's) sender fills the slot.
    let sender = packet
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let map = SlotMap {
        entries: vec![SlotEntry {
            source: sender,
            ..slot
        }],
        indices: Vec::new(),
    };
    let mut out = [0u8; 256];
    let room = usize::from(params[4]);
    let n = rtcp_for_viewer(packet, &map, |ssrc| ssrc != 0, &mut out[..room]);
    assert!(n <= room && n % 4 == 0);
    if n > 0 {
        for parsed in RtcpCompound::new(&out[..n]) {
            assert!(parsed.is_ok(), "the viewer gets well-formed RTCP");
        }
    }
});
