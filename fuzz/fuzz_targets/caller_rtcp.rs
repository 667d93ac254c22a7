//! The dial-in caller's RTCP state ([`CallerRtcp`]) driven by arbitrary
//! input: the caller's RTP arriving (any SSRC, sequence number, timestamp,
//! at any time), our RTP going out, the caller's RTCP compounds, our
//! reports polled at arbitrary moments, and our own reports fed back as if
//! echoed. Nothing may panic; every report it writes parses back as one
//! SR or RR about at most one source, then an SDES, and fits its buffer;
//! the quality figures stay finite and in range.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice::dialin::{CallerRtcp, REPORT_INTERVAL};
use sluice::rtp::rtcp::{RtcpCompound, RtcpPacket};

fuzz_target!(|data: &[u8]| {
    let Some((head, mut ops)) = data.split_first_chunk::<13>() else {
        return;
    };
    let ssrc = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let clock = if head[4] & 1 == 0 { 8000 } else { 48_000 };
    let ntp = u64::from_be_bytes([
        head[5], head[6], head[7], head[8], head[9], head[10], head[11], head[12],
    ]);
    let t0 = Instant::now();
    let mut now = t0;
    let mut rtcp = CallerRtcp::new(ssrc, clock, now, ntp);
    let mut buf = [0u8; 1500];
    let mut last_report = Vec::new();
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op % 5 {
            0 => {
                let Some((p, rest)) = ops.split_first_chunk::<10>() else {
                    return;
                };
                ops = rest;
                rtcp.on_rtp_received(
                    now,
                    u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                    u16::from_be_bytes([p[4], p[5]]),
                    u32::from_be_bytes([p[6], p[7], p[8], p[9]]),
                );
            }
            1 => {
                let Some((p, rest)) = ops.split_first_chunk::<6>() else {
                    return;
                };
                ops = rest;
                let timestamp = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                rtcp.on_rtp_sent(
                    now,
                    timestamp,
                    usize::from(u16::from_be_bytes([p[4], p[5]])),
                );
            }
            2 => {
                let Some((&len, rest)) = ops.split_first() else {
                    return;
                };
                let n = usize::from(len).min(rest.len());
                let (compound, rest) = rest.split_at(n);
                ops = rest;
                rtcp.handle_rtcp(now, compound);
            }
            3 => {
                let Some((p, rest)) = ops.split_first_chunk::<3>() else {
                    return;
                };
                ops = rest;
                // Up to about 65 s on, then a report into a buffer of any
                // size (a short one yields nothing, never a panic).
                now += Duration::from_millis(u64::from(u16::from_be_bytes([p[0], p[1]])));
                let size = (usize::from(p[2]) * 6).min(buf.len());
                let due = now >= rtcp.poll_timeout();
                match rtcp.poll_report(now, &mut buf[..size]) {
                    Some(len) => {
                        assert!(due, "a report before it was due");
                        assert!(len <= size);
                        check_report(&buf[..len], ssrc);
                        last_report = buf[..len].to_vec();
                        assert!(rtcp.poll_timeout() >= now + REPORT_INTERVAL);
                    }
                    // Not due, or the buffer too short for it.
                    None => {}
                }
            }
            _ => {
                // Our own last report echoed back (an SR's NTP as LSR).
                rtcp.handle_rtcp(now, &last_report);
            }
        }
        let q = rtcp.quality();
        assert!(q.jitter_ms.is_finite() && q.jitter_ms >= 0.0);
        assert!(q.remote_jitter_ms.is_finite() && q.remote_jitter_ms >= 0.0);
        assert!(q.lost >= 0);
        assert!(q.rtt.is_none_or(|d| d < Duration::from_secs(1 << 15)));
    }
});

/// One SR or RR from `ssrc` with at most one report block, then an SDES.
fn check_report(report: &[u8], ssrc: u32) {
    let mut packets = RtcpCompound::new(report);
    let blocks = match packets.next() {
        Some(Ok(RtcpPacket::SenderReport(sr))) => {
            assert_eq!(sr.ssrc().0, ssrc);
            sr.report_blocks().count()
        }
        Some(Ok(RtcpPacket::ReceiverReport(rr))) => {
            assert_eq!(rr.ssrc().0, ssrc);
            rr.report_blocks().count()
        }
        other => panic!("a report starts with an SR or RR: {other:?}"),
    };
    assert!(blocks <= 1);
    assert!(matches!(packets.next(), Some(Ok(_))), "then the SDES");
    assert!(packets.next().is_none());
}
