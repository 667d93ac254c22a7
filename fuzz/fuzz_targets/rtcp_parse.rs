//! Walks arbitrary bytes as a compound RTCP packet, every packet and every
//! iterator inside it, and rebuilds the packets that have builders to check
//! they parse back the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::rtp::SeqNum;
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

/// The set of sequence numbers, as a 2^16-bit bitmap.
fn seq_set(seqs: impl IntoIterator<Item = SeqNum>) -> Vec<u64> {
    let mut bits = vec![0u64; 1024];
    for s in seqs {
        bits[usize::from(s.0 / 64)] |= 1 << (s.0 % 64);
    }
    bits
}

/// Rebuilds `packet` into `out`, as long as the whole input: no rebuilt
/// packet is longer than the one it came from.
fn check(packet: RtcpPacket<'_>, out: &mut [u8]) {
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
            .write(out)
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
            .write(out)
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
            .write(out)
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
            let lost: Vec<_> = nack.lost_sequences().collect();
            let n = NackBuilder {
                sender_ssrc: nack.sender_ssrc(),
                media_ssrc: nack.media_ssrc(),
                lost: &lost,
            }
            .write(out)
            .expect("builds");
            let RtcpPacket::Nack(re) = only(&out[..n]) else {
                panic!()
            };
            // Repacking may merge entries: compare the sets of numbers.
            assert_eq!(seq_set(re.lost_sequences()), seq_set(lost));
        }
        RtcpPacket::Pli(pli) => {
            let n = PliBuilder {
                sender_ssrc: pli.sender_ssrc(),
                media_ssrc: pli.media_ssrc(),
            }
            .write(out)
            .expect("builds");
            assert_eq!(only(&out[..n]), RtcpPacket::Pli(pli));
        }
        RtcpPacket::Fir(fir) => {
            let entries: Vec<_> = fir.entries().collect();
            let n = FirBuilder {
                sender_ssrc: fir.sender_ssrc(),
                entries: &entries,
            }
            .write(out)
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
            .write(out)
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
    let mut out = vec![0u8; data.len()];
    let mut errors = 0;
    for packet in RtcpCompound::new(data) {
        match packet {
            Ok(packet) => check(packet, &mut out),
            Err(_) => errors += 1,
        }
    }
    assert!(errors <= 1, "the walk stops after its first error");
});
