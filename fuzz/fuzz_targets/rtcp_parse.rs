//! Walks arbitrary bytes as a compound RTCP packet, every packet and every
//! iterator inside it, and rebuilds the packets that have builders to check
//! they parse back the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::rtp::rtcp::{
    ByeBuilder, FirBuilder, NackBuilder, PliBuilder, ReceiverReportBuilder, RembBuilder,
    RtcpCompound, RtcpPacket, SenderReportBuilder, is_rtcp, rtcp_header_ssrc,
};

fn only(buf: &[u8]) -> RtcpPacket<'_> {
    let mut walk = RtcpCompound::new(buf);
    let packet = walk
        .next()
        .expect("one packet")
        .expect("a built packet parses");
    assert!(walk.next().is_none());
    packet
}

/// Rebuilds `packet`, which came from an input of `input_len` bytes: no
/// rebuilt packet is longer than the one it came from.
fn check(packet: RtcpPacket<'_>, input_len: usize) {
    let mut out = vec![0u8; input_len];
    match packet {
        RtcpPacket::SenderReport(sr) => {
            let blocks: Vec<_> = sr.report_blocks().collect();
            let n = SenderReportBuilder {
                ssrc: sr.ssrc(),
                ntp_timestamp: sr.ntp_timestamp(),
                rtp_timestamp: sr.rtp_timestamp(),
                packet_count: sr.packet_count(),
                octet_count: sr.octet_count(),
                report_blocks: &blocks,
            }
            .write(&mut out)
            .expect("builds");
            let RtcpPacket::SenderReport(re) = only(&out[..n]) else {
                panic!()
            };
            assert_eq!(
                (re.ssrc(), re.ntp_timestamp()),
                (sr.ssrc(), sr.ntp_timestamp())
            );
            assert!(re.report_blocks().eq(blocks));
        }
        RtcpPacket::ReceiverReport(rr) => {
            let blocks: Vec<_> = rr.report_blocks().collect();
            let _ = rr.profile_extension();
            let n = ReceiverReportBuilder {
                ssrc: rr.ssrc(),
                report_blocks: &blocks,
            }
            .write(&mut out)
            .expect("builds");
            let RtcpPacket::ReceiverReport(re) = only(&out[..n]) else {
                panic!()
            };
            assert_eq!(re.ssrc(), rr.ssrc());
            assert!(re.report_blocks().eq(blocks));
        }
        RtcpPacket::Sdes(sdes) => {
            for chunk in sdes.chunks() {
                let _ = chunk.cname();
                for item in chunk.items() {
                    assert_ne!(item.item_type, 0);
                }
            }
        }
        RtcpPacket::Bye(bye) => {
            let ssrcs: Vec<_> = bye.ssrcs().collect();
            let n = ByeBuilder {
                ssrcs: &ssrcs,
                reason: bye.reason(),
            }
            .write(&mut out)
            .expect("builds");
            let RtcpPacket::Bye(re) = only(&out[..n]) else {
                panic!()
            };
            assert!(re.ssrcs().eq(ssrcs));
            assert_eq!(re.reason(), bye.reason());
        }
        RtcpPacket::App(app) => {
            let _ = (app.subtype(), app.ssrc(), app.name(), app.data());
        }
        RtcpPacket::Nack(nack) => {
            let mut lost: Vec<_> = nack.lost_sequences().collect();
            let n = NackBuilder {
                sender_ssrc: nack.sender_ssrc(),
                media_ssrc: nack.media_ssrc(),
                lost: &lost,
            }
            .write(&mut out)
            .expect("builds");
            let RtcpPacket::Nack(re) = only(&out[..n]) else {
                panic!()
            };
            let mut again: Vec<_> = re.lost_sequences().collect();
            lost.sort_by_key(|s| s.0);
            lost.dedup();
            again.sort_by_key(|s| s.0);
            again.dedup();
            assert_eq!(lost, again);
        }
        RtcpPacket::Pli(pli) => {
            let n = PliBuilder {
                sender_ssrc: pli.sender_ssrc(),
                media_ssrc: pli.media_ssrc(),
            }
            .write(&mut out)
            .expect("builds");
            assert_eq!(only(&out[..n]), RtcpPacket::Pli(pli));
        }
        RtcpPacket::Fir(fir) => {
            let entries: Vec<_> = fir.entries().collect();
            let n = FirBuilder {
                sender_ssrc: fir.sender_ssrc(),
                entries: &entries,
            }
            .write(&mut out)
            .expect("builds");
            let RtcpPacket::Fir(re) = only(&out[..n]) else {
                panic!()
            };
            assert!(re.entries().eq(entries));
        }
        RtcpPacket::Remb(remb) => {
            let ssrcs: Vec<_> = remb.ssrcs().collect();
            let bitrate_bps = remb.bitrate_bps();
            let n = RembBuilder {
                sender_ssrc: remb.sender_ssrc(),
                bitrate_bps,
                ssrcs: &ssrcs,
            }
            .write(&mut out)
            .expect("builds");
            let RtcpPacket::Remb(re) = only(&out[..n]) else {
                panic!()
            };
            assert!(re.ssrcs().eq(ssrcs));
            if bitrate_bps != u64::MAX {
                assert_eq!(re.bitrate_bps(), bitrate_bps);
            }
        }
        RtcpPacket::Unknown { body, .. } => {
            assert!(body.len() < (1 << 18));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = (is_rtcp(data), rtcp_header_ssrc(data));
    let mut errors = 0;
    for packet in RtcpCompound::new(data) {
        match packet {
            Ok(packet) => check(packet, data.len()),
            Err(_) => errors += 1,
        }
    }
    assert!(errors <= 1, "the walk stops after its first error");
});
