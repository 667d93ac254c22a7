//! [`CallerRtcp`]: RTCP between the bridge and one phone caller (RFC 3550
//! §6): reception statistics of the caller's RTP (loss, interarrival
//! jitter, §6.4.1 and Appendix A.3, A.8), our sender or receiver report
//! every [`REPORT_INTERVAL`] with an SDES CNAME, and the caller's reports
//! read back into [`CallQuality`]: the loss and jitter the caller sees of
//! our stream and the round-trip time (§6.4.1: A − LSR − DLSR).
//!
//! Sans-IO: fed `now` and plain (already unprotected) RTCP; writes plain
//! RTCP into the caller's buffer, which the call protects as SRTCP when
//! the call is SRTP and sends to the caller's RTCP address (RTP port + 1,
//! `a=rtcp`, or the RTP port with rtcp-mux). Parsing is
//! [`crate::rtp::rtcp::RtcpCompound`]'s (fuzzed, `rtcp_parse`); the state
//! here is fuzzed by `caller_rtcp` (arbitrary RTP arrivals, reports from
//! the caller, polls at any moment); nothing here panics on network input.

use std::time::{Duration, Instant};

use crate::rtp::Ssrc;
use crate::rtp::rtcp::{
    ReceiverReportBuilder, ReportBlock, RtcpCompound, RtcpPacket, SenderReportBuilder,
};

/// How often the bridge reports: RFC 3550 §6.2's minimum of 5 s (one
/// sender and one receiver: the bandwidth share never binds).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 3550 §6.4.1's `SDES` packet type.
const SDES: u8 = 202;

/// What the call's RTCP says of its quality so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallQuality {
    /// The caller's RTP as we receive it: packets lost in total, and the
    /// fraction (of 256) in the last report interval.
    pub lost: i64,
    pub fraction_lost: u8,
    /// Interarrival jitter of the caller's RTP, in milliseconds.
    pub jitter_ms: f64,
    /// Our RTP as the caller reports it (its last report block about us).
    pub remote_lost: i32,
    pub remote_fraction_lost: u8,
    pub remote_jitter_ms: f64,
    /// Round-trip time from the caller's last report block, if it echoed
    /// one of our sender reports.
    pub rtt: Option<Duration>,
    /// Reports sent and received.
    pub reports_sent: u64,
    pub reports_received: u64,
}

/// Reception state of the caller's one RTP source (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone, Copy)]
struct Reception {
    ssrc: u32,
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Jitter estimate in RTP units, scaled by 16 (A.8).
    jitter_q4: u32,
    /// The last packet's (arrival in RTP units, RTP timestamp).
    transit: Option<i64>,
}

impl Reception {
    fn new(ssrc: u32, seq: u16) -> Self {
        Self {
            ssrc,
            base_seq: seq,
            max_seq: seq,
            cycles: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            transit: None,
        }
    }

    fn extended_max(&self) -> u32 {
        self.cycles | u32::from(self.max_seq)
    }

    fn expected(&self) -> u32 {
        self.extended_max()
            .wrapping_sub(u32::from(self.base_seq))
            .wrapping_add(1)
    }

    fn lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }
}

/// One call's RTCP.
#[derive(Debug)]
pub struct CallerRtcp {
    /// Our SSRC towards the caller, and the RTP clock of its codec.
    ssrc: u32,
    clock_rate: u32,
    /// A moment and the NTP time (RFC 3550 §4, 32.32 fixed point) it was:
    /// the call's wall clock, fixed at the start.
    epoch: (Instant, u64),
    start: Instant,
    source: Option<Reception>,
    /// Sent since the start, and whether anything was since the last report.
    packets_sent: u32,
    octets_sent: u32,
    last_rtp_timestamp: Option<(Instant, u32)>,
    sent_since_report: bool,
    /// The caller's last SR: its NTP middle 32 bits, and when it came.
    last_sr: Option<(u32, Instant)>,
    next_report: Instant,
    quality: CallQuality,
}

impl CallerRtcp {
    /// RTCP for a call sending as `ssrc`, whose codec's RTP clock is
    /// `clock_rate`, starting at `now`, which was `ntp_now` on the wall
    /// clock (RFC 3550 §4 format; the I/O edge reads it once). The first
    /// report is due after half an interval (§6.2: a quick first one).
    pub fn new(ssrc: u32, clock_rate: u32, now: Instant, ntp_now: u64) -> Self {
        Self {
            ssrc,
            clock_rate: clock_rate.max(1),
            epoch: (now, ntp_now),
            start: now,
            source: None,
            packets_sent: 0,
            octets_sent: 0,
            last_rtp_timestamp: None,
            sent_since_report: false,
            last_sr: None,
            next_report: now + REPORT_INTERVAL / 2,
            quality: CallQuality::default(),
        }
    }

    /// The quality so far.
    pub fn quality(&self) -> CallQuality {
        self.quality
    }

    fn ntp(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch.0);
        let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
        self.epoch
            .1
            .wrapping_add(since.as_secs() << 32)
            .wrapping_add(frac)
    }

    /// `now` in the caller's RTP clock units since the start (for jitter).
    fn arrival_units(&self, now: Instant) -> i64 {
        let since = now.saturating_duration_since(self.start);
        (since.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as i64
    }

    /// An RTP packet from the caller arrived (after SRTP, when any).
    pub fn on_rtp_received(&mut self, now: Instant, ssrc: u32, seq: u16, timestamp: u32) {
        let arrival = self.arrival_units(now);
        let source = match &mut self.source {
            Some(s) if s.ssrc == ssrc => s,
            // A new source (the caller's phone restarted its stream).
            _ => self.source.insert(Reception::new(ssrc, seq)),
        };
        source.received = source.received.wrapping_add(1);
        let ahead = seq.wrapping_sub(source.max_seq);
        if ahead != 0 && ahead < 0x8000 {
            if seq < source.max_seq {
                source.cycles = source.cycles.wrapping_add(1 << 16);
            }
            source.max_seq = seq;
        }
        // A.8: D = (Rj - Ri) - (Sj - Si); J += (|D| - J) / 16.
        let transit = arrival - i64::from(timestamp);
        if let Some(last) = source.transit {
            let d = (transit - last)
                .unsigned_abs()
                .min(u64::from(u32::MAX >> 4)) as u32;
            let j = source.jitter_q4;
            source.jitter_q4 = j.wrapping_add(d).wrapping_sub((j + 8) >> 4);
        }
        source.transit = Some(transit);
        self.quality.lost = source.lost().max(0);
        self.quality.jitter_ms =
            f64::from(source.jitter_q4 >> 4) * 1000.0 / f64::from(self.clock_rate);
    }

    /// We sent the caller an RTP packet with `timestamp` and `payload` bytes.
    pub fn on_rtp_sent(&mut self, now: Instant, timestamp: u32, payload: usize) {
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload as u32);
        self.last_rtp_timestamp = Some((now, timestamp));
        self.sent_since_report = true;
    }

    /// A plain RTCP compound from the caller. Anything malformed is
    /// ignored from where it stops parsing; returns whether it held a
    /// sender or receiver report.
    pub fn handle_rtcp(&mut self, now: Instant, compound: &[u8]) -> bool {
        let mut reported = false;
        for packet in RtcpCompound::new(compound) {
            let Ok(packet) = packet else { break };
            let blocks = match packet {
                RtcpPacket::SenderReport(sr) => {
                    // The middle 32 bits of its NTP timestamp (§6.4.1 LSR).
                    self.last_sr = Some(((sr.ntp_timestamp() >> 16) as u32, now));
                    sr.report_blocks()
                }
                RtcpPacket::ReceiverReport(rr) => rr.report_blocks(),
                _ => continue,
            };
            reported = true;
            let ours = self.ssrc;
            for block in blocks.filter(|b| b.ssrc.0 == ours) {
                self.on_block(now, &block);
            }
        }
        if reported {
            self.quality.reports_received += 1;
        }
        reported
    }

    fn on_block(&mut self, now: Instant, block: &ReportBlock) {
        self.quality.remote_lost = block.cumulative_lost;
        self.quality.remote_fraction_lost = block.fraction_lost;
        self.quality.remote_jitter_ms =
            f64::from(block.jitter) * 1000.0 / f64::from(self.clock_rate);
        if block.lsr != 0 {
            // RTT = A - LSR - DLSR, in 1/65536 s (§6.4.1).
            let a = (self.ntp(now) >> 16) as u32;
            let rtt = a.wrapping_sub(block.lsr).wrapping_sub(block.dlsr);
            // A negative result (a clock or a caller gone wrong) wraps
            // past half the range: no RTT from it.
            if rtt < 0x8000_0000 {
                self.quality.rtt = Some(Duration::from_nanos(
                    u64::from(rtt) * 1_000_000_000 / 65_536,
                ));
            }
        }
    }

    /// When [`Self::poll_report`] next has a report. The pool ticks every
    /// call each 20 ms and polls then; tests and the fuzz target ask.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.next_report
    }

    /// The next report, when due: an SR if we sent RTP since the last
    /// report, else an RR, with one report block about the caller's RTP
    /// (once it sent any) and an SDES CNAME; plain RTCP written into
    /// `out`, its length returned. `None` when not due or `out` is short.
    pub fn poll_report(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        if now < self.next_report {
            return None;
        }
        self.next_report = now + REPORT_INTERVAL;
        let block = self.report_block(now);
        let blocks: &[ReportBlock] = match &block {
            Some(b) => std::slice::from_ref(b),
            None => &[],
        };
        let len = if self.sent_since_report {
            // The RTP timestamp that corresponds to `now` (§6.4.1).
            let rtp_timestamp = self.last_rtp_timestamp.map_or(0, |(at, ts)| {
                let since = now.saturating_duration_since(at);
                let units = since.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
                ts.wrapping_add(units as u32)
            });
            SenderReportBuilder {
                ssrc: Ssrc(self.ssrc),
                ntp_timestamp: self.ntp(now),
                rtp_timestamp,
                packet_count: self.packets_sent,
                octet_count: self.octets_sent,
                report_blocks: blocks,
            }
            .write(out)
            .ok()?
        } else {
            ReceiverReportBuilder {
                ssrc: Ssrc(self.ssrc),
                report_blocks: blocks,
            }
            .write(out)
            .ok()?
        };
        let len = len + write_cname(self.ssrc, out.get_mut(len..)?)?;
        self.sent_since_report = false;
        self.quality.reports_sent += 1;
        Some(len)
    }

    /// The report block about the caller's RTP, updating the interval's
    /// counts (A.3).
    fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let last_sr = self.last_sr;
        let source = self.source.as_mut()?;
        let expected = source.expected();
        let expected_interval = expected.wrapping_sub(source.expected_prior);
        let received_interval = source.received.wrapping_sub(source.received_prior);
        source.expected_prior = expected;
        source.received_prior = source.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        self.quality.fraction_lost = fraction_lost;
        let (lsr, dlsr) = last_sr.map_or((0, 0), |(lsr, at)| {
            let delay = now.saturating_duration_since(at);
            let dlsr =
                delay.as_secs() << 16 | ((u64::from(delay.subsec_nanos()) << 16) / 1_000_000_000);
            (lsr, dlsr.min(u64::from(u32::MAX)) as u32)
        });
        Some(ReportBlock {
            ssrc: Ssrc(source.ssrc),
            fraction_lost,
            cumulative_lost: source.lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: source.extended_max(),
            jitter: source.jitter_q4 >> 4,
            lsr,
            dlsr,
        })
    }
}

/// An SDES packet with one chunk: our CNAME, `sluice-<ssrc>` (RFC 3550
/// §6.5.1: unique per session is what counts). Returns its length.
fn write_cname(ssrc: u32, out: &mut [u8]) -> Option<usize> {
    let mut cname = [0u8; 15];
    let name = {
        use std::io::Write as _;
        let mut w = &mut cname[..];
        write!(w, "sluice-{ssrc:08x}").ok()?;
        15 - w.len()
    };
    // SSRC, CNAME item (type 1, length, text), end item, padded to 4.
    let body = 4 + 2 + name + 1;
    let padded = body.div_ceil(4) * 4;
    let len = 4 + padded;
    let out = out.get_mut(..len)?;
    out.fill(0);
    out[0] = 0x81;
    out[1] = SDES;
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    out[8] = 1;
    out[9] = name as u8;
    out[10..10 + name].copy_from_slice(&cname[..name]);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::rtcp::{RtcpPacket, SenderReportBuilder};

    const NTP: u64 = 0xE000_0000_0000_0000;

    fn parse(buf: &[u8]) -> Vec<RtcpPacket<'_>> {
        RtcpCompound::new(buf).map(|p| p.unwrap()).collect()
    }

    #[test]
    fn receiver_report_until_we_send_then_sender_reports() {
        let t0 = Instant::now();
        let mut rtcp = CallerRtcp::new(0xAAAA, 8000, t0, NTP);
        let mut buf = [0u8; 256];
        assert_eq!(rtcp.poll_timeout(), t0 + REPORT_INTERVAL / 2);
        assert!(rtcp.poll_report(t0, &mut buf).is_none(), "not due yet");
        // Nothing sent, nothing received: an empty RR and the CNAME.
        let n = rtcp
            .poll_report(t0 + REPORT_INTERVAL / 2, &mut buf)
            .unwrap();
        let packets = parse(&buf[..n]);
        assert!(
            matches!(&packets[..], [RtcpPacket::ReceiverReport(rr), RtcpPacket::Sdes(_)]
            if rr.ssrc().0 == 0xAAAA && rr.report_blocks().count() == 0)
        );
        if let RtcpPacket::Sdes(sdes) = &packets[1] {
            let chunk = sdes.chunks().next().unwrap();
            assert_eq!(chunk.cname(), Some(&b"sluice-0000aaaa"[..]));
        }
        // 100 packets from the caller, 20 ms apart on time, 5 lost.
        let mut t = t0;
        for seq in 0..100u16 {
            t += Duration::from_millis(20);
            if seq % 20 != 7 {
                rtcp.on_rtp_received(
                    t,
                    0x5eed,
                    65_500u16.wrapping_add(seq),
                    1000 + u32::from(seq) * 160,
                );
            }
            rtcp.on_rtp_sent(t, 7000 + u32::from(seq) * 160, 160);
        }
        let q = rtcp.quality();
        assert_eq!(q.lost, 5);
        assert!(q.jitter_ms < 1.0, "on-time packets: {}", q.jitter_ms);
        let due = rtcp.poll_timeout();
        let n = rtcp.poll_report(due, &mut buf).unwrap();
        let packets = parse(&buf[..n]);
        let RtcpPacket::SenderReport(sr) = &packets[0] else {
            panic!("{packets:?}")
        };
        assert_eq!(
            (sr.ssrc().0, sr.packet_count(), sr.octet_count()),
            (0xAAAA, 100, 16_000)
        );
        let block = sr.report_blocks().next().unwrap();
        assert_eq!(block.ssrc.0, 0x5eed);
        assert_eq!(block.cumulative_lost, 5);
        // 65500 + 99 wrapped once: one cycle.
        assert_eq!(
            block.highest_seq,
            1 << 16 | u32::from(65_500u16.wrapping_add(99))
        );
        assert_eq!(block.fraction_lost, (5 * 256 / 100) as u8);
        assert_eq!(rtcp.quality().reports_sent, 2);
        // Nothing sent since: the next one is an RR again.
        let n = rtcp.poll_report(rtcp.poll_timeout(), &mut buf).unwrap();
        assert!(matches!(parse(&buf[..n])[0], RtcpPacket::ReceiverReport(_)));
        // A buffer too short gives nothing, and no panic.
        assert!(
            rtcp.poll_report(rtcp.poll_timeout(), &mut buf[..20])
                .is_none()
        );
    }

    #[test]
    fn jitter_follows_late_packets() {
        let t0 = Instant::now();
        let mut rtcp = CallerRtcp::new(1, 8000, t0, NTP);
        for seq in 0..200u16 {
            // Every other packet 10 ms late.
            let late = if seq % 2 == 1 { 10 } else { 0 };
            let t = t0 + Duration::from_millis(20 * u64::from(seq) + late);
            rtcp.on_rtp_received(t, 9, seq, u32::from(seq) * 160);
        }
        let j = rtcp.quality().jitter_ms;
        // |D| = 10 ms every packet: J converges to 10 ms.
        assert!((8.0..=10.5).contains(&j), "jitter {j} ms");
    }

    #[test]
    fn the_callers_reports_give_its_view_and_the_round_trip() {
        let t0 = Instant::now();
        let mut rtcp = CallerRtcp::new(0xAAAA, 8000, t0, NTP);
        rtcp.on_rtp_sent(t0, 0, 160);
        let mut buf = [0u8; 256];
        let at = t0 + REPORT_INTERVAL / 2;
        let n = rtcp.poll_report(at, &mut buf).unwrap();
        let RtcpPacket::SenderReport(sr) = parse(&buf[..n])[0] else {
            panic!("an SR")
        };
        let lsr = (sr.ntp_timestamp() >> 16) as u32;
        // The caller answers 300 ms later, having held our SR 100 ms:
        // a 200 ms round trip.
        let block = ReportBlock {
            ssrc: Ssrc(0xAAAA),
            fraction_lost: 12,
            cumulative_lost: 3,
            highest_seq: 500,
            jitter: 80,
            lsr,
            dlsr: 65_536 / 10,
        };
        let mut report = [0u8; 128];
        let len = SenderReportBuilder {
            ssrc: Ssrc(0x5eed),
            ntp_timestamp: 0x1234_5678_9abc_def0,
            rtp_timestamp: 1,
            packet_count: 1,
            octet_count: 1,
            report_blocks: &[block],
        }
        .write(&mut report)
        .unwrap();
        assert!(rtcp.handle_rtcp(at + Duration::from_millis(300), &report[..len]));
        let q = rtcp.quality();
        assert_eq!((q.remote_lost, q.remote_fraction_lost), (3, 12));
        assert!((q.remote_jitter_ms - 10.0).abs() < 1e-9);
        let rtt = q.rtt.unwrap().as_secs_f64();
        assert!((rtt - 0.2).abs() < 0.001, "rtt {rtt}");
        assert_eq!(q.reports_received, 1);
        // Our next report echoes the caller's SR (LSR = its NTP middle).
        rtcp.on_rtp_received(at, 0x5eed, 1, 0);
        let n = rtcp.poll_report(rtcp.poll_timeout(), &mut buf).unwrap();
        let packets = parse(&buf[..n]);
        let block = match &packets[0] {
            RtcpPacket::SenderReport(sr) => sr.report_blocks().next(),
            RtcpPacket::ReceiverReport(rr) => rr.report_blocks().next(),
            _ => None,
        }
        .unwrap();
        assert_eq!(block.lsr, 0x5678_9abc);
        assert!(block.dlsr > 0);
    }

    #[test]
    fn garbage_is_ignored() {
        let t0 = Instant::now();
        let mut rtcp = CallerRtcp::new(1, 48_000, t0, 0);
        for junk in [
            &[][..],
            &[0x80],
            &[0x81, 200, 0, 40, 1, 2],
            &[0xff; 64],
            &[0x80, 201, 0, 1, 0, 0, 0, 1],
        ] {
            let _ = rtcp.handle_rtcp(t0, junk);
        }
        // A report block claiming an LSR from the future: no RTT.
        let block = ReportBlock {
            ssrc: Ssrc(1),
            fraction_lost: 0,
            cumulative_lost: 0,
            highest_seq: 0,
            jitter: 0,
            lsr: 0x7fff_ffff,
            dlsr: 0,
        };
        let mut report = [0u8; 64];
        let len = ReceiverReportBuilder {
            ssrc: Ssrc(2),
            report_blocks: &[block],
        }
        .write(&mut report)
        .unwrap();
        assert!(rtcp.handle_rtcp(t0, &report[..len]));
        assert_eq!(rtcp.quality().rtt, None);
    }
}
