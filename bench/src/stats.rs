//! What one receiver saw of one stream: packets received, duplicated and
//! reordered, one-way latency and RFC 3550 jitter. Loss is worked out at
//! the end against what the sender sent. Sans-IO: fed the payload header
//! and the arrival time.

use crate::histogram::Histogram;
use crate::payload::PayloadHeader;

/// Sequences behind the highest one still told apart as new or duplicate.
const WINDOW: u64 = 1024;

/// One receiver's view of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamReception {
    /// Distinct packets received (duplicates not counted).
    pub received: u64,
    /// Packets that arrived again.
    pub duplicated: u64,
    /// Packets that arrived after a later one of the same stream.
    pub reordered: u64,
    /// Payload bytes of the distinct packets.
    pub bytes: u64,
    /// RFC 3550 §6.4.1 interarrival jitter, in ns (kept as f64, as the
    /// RFC's running estimate).
    pub jitter_ns: f64,
    highest: Option<u64>,
    /// Bit `i` set: `highest - i` was received.
    seen: [u64; (WINDOW / 64) as usize],
    /// Transit time (arrival − send) of the previous in-order packet.
    last_transit: Option<i128>,
}

impl StreamReception {
    /// Accounts for one decrypted packet of `len` bytes that arrived at
    /// `arrived_ns` (same clock as `header.sent_ns`); records its latency
    /// in `latency`.
    pub fn handle_packet(
        &mut self,
        header: &PayloadHeader,
        len: usize,
        arrived_ns: u64,
        latency: &mut Histogram,
    ) {
        if self.handle_sequence(header.sequence, len) {
            self.handle_timing(header.sent_ns, arrived_ns, latency);
        }
    }

    /// The 64-bit sequence a 16-bit RTP sequence number stands for, next
    /// to the highest one seen (RFC 3550 A.1's extension: the nearest of
    /// the candidates, so a wrap forward or a late packet from before a
    /// wrap both land right). The generator numbers packets from 0, so
    /// this is the payload header's sequence as long as less than half
    /// the sequence space is lost in a row.
    pub fn extend(&self, seq: u16) -> u64 {
        let Some(high) = self.highest else {
            return u64::from(seq);
        };
        let delta = seq.wrapping_sub(high as u16) as i16;
        high.checked_add_signed(i64::from(delta))
            .unwrap_or(u64::from(seq))
    }

    /// Accounts for one delivery of packet `seq` (`len` bytes) from what
    /// its header says alone: new, duplicate or late. Returns whether it
    /// was new (then [`Self::handle_timing`] may add its timing).
    pub fn handle_sequence(&mut self, seq: u64, len: usize) -> bool {
        match self.highest {
            None => {
                self.highest = Some(seq);
                self.mark(0);
            }
            Some(high) if seq > high => {
                self.shift(seq - high);
                self.highest = Some(seq);
                self.mark(0);
            }
            Some(high) => {
                let behind = high - seq;
                if behind < WINDOW && self.is_marked(behind) {
                    self.duplicated += 1;
                    return false;
                }
                if behind < WINDOW {
                    self.mark(behind);
                }
                self.reordered += 1;
            }
        }
        self.received += 1;
        self.bytes += len as u64;
        true
    }

    /// Adds the one-way latency and the RFC 3550 jitter step of a new
    /// packet sent at `sent_ns` and read at `arrived_ns` (one clock).
    /// Fed every packet in `--verify-all` runs, else the verified sample.
    pub fn handle_timing(&mut self, sent_ns: u64, arrived_ns: u64, latency: &mut Histogram) {
        latency.record(arrived_ns.saturating_sub(sent_ns));
        let transit = i128::from(arrived_ns) - i128::from(sent_ns);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Counts one packet the SRTP replay window refused as already seen:
    /// the relay (or the network) sent it twice.
    pub fn handle_replayed(&mut self) {
        self.duplicated += 1;
    }

    /// Packets of the `sent` the sender sent that never arrived.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.received)
    }

    fn shift(&mut self, by: u64) {
        if by >= WINDOW {
            self.seen = [0; (WINDOW / 64) as usize];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        let n = self.seen.len();
        for i in (0..n).rev() {
            let src = i.checked_sub(words);
            let cur = src.map_or(0, |s| self.seen[s]);
            let lower = src
                .and_then(|s| s.checked_sub(1))
                .map_or(0, |s| self.seen[s]);
            self.seen[i] = if bits == 0 {
                cur
            } else {
                (cur << bits) | (lower >> (64 - bits))
            };
        }
    }

    fn mark(&mut self, behind: u64) {
        self.seen[(behind / 64) as usize] |= 1 << (behind % 64);
    }

    fn is_marked(&self, behind: u64) -> bool {
        self.seen[(behind / 64) as usize] & (1 << (behind % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(r: &mut StreamReception, h: &mut Histogram, seq: u64, sent: u64, arrived: u64) {
        let header = PayloadHeader {
            stream: 0,
            sequence: seq,
            sent_ns: sent,
        };
        r.handle_packet(&header, 100, arrived, h);
    }

    #[test]
    fn loss_duplicates_and_reordering() {
        let mut r = StreamReception::default();
        let mut h = Histogram::default();
        // 0 1 3 2 3 5 ; 4 never comes; 1 again much later.
        for seq in [0, 1, 3, 2, 3, 5] {
            feed(&mut r, &mut h, seq, seq * 20, seq * 20 + 1000);
        }
        for seq in 6..200 {
            feed(&mut r, &mut h, seq, seq * 20, seq * 20 + 1000);
        }
        feed(&mut r, &mut h, 1, 20, 5000);
        assert_eq!(r.received, 199);
        assert_eq!(r.duplicated, 2);
        assert_eq!(r.reordered, 1);
        assert_eq!(r.lost(200), 1);
        assert_eq!(r.bytes, 199 * 100);
        assert_eq!(h.count(), 199);
        // A duplicate far behind, past a jump of several words.
        feed(&mut r, &mut h, 1000, 0, 0);
        feed(&mut r, &mut h, 199, 0, 0);
        assert_eq!(r.duplicated, 3);
        feed(&mut r, &mut h, 198 - 64 * 3, 0, 0);
        assert_eq!(r.duplicated, 4);
        r.handle_replayed();
        assert_eq!(r.duplicated, 5);
    }

    #[test]
    fn sequences_extend_across_the_16_bit_wrap() {
        let mut r = StreamReception::default();
        assert_eq!(r.extend(7), 7);
        let mut seq = 0u64;
        // Three wraps, with one packet lost and one late around each.
        while seq < 3 * 65_536 + 100 {
            let wire = seq as u16;
            assert_eq!(r.extend(wire), seq, "at {seq}");
            assert!(r.handle_sequence(r.extend(wire), 100));
            seq += if wire == 65_534 { 2 } else { 1 };
        }
        // The one lost before the last wrap turns up late after it.
        assert_eq!(
            r.extend(65_535),
            3 * 65_536 - 1,
            "late, from before the wrap"
        );
        assert!(r.handle_sequence(3 * 65_536 - 1, 100));
        assert_eq!(r.reordered, 1);
        assert!(!r.handle_sequence(3 * 65_536 + 99, 100));
        assert_eq!(r.duplicated, 1);
    }

    #[test]
    fn jitter_follows_rfc_3550() {
        let mut r = StreamReception::default();
        let mut h = Histogram::default();
        // Constant transit: no jitter.
        for seq in 0..10 {
            feed(
                &mut r,
                &mut h,
                seq,
                seq * 20_000_000,
                seq * 20_000_000 + 500_000,
            );
        }
        assert_eq!(r.jitter_ns, 0.0);
        // Transit alternating 0.5 ms and 1.5 ms: |D| = 1 ms every packet;
        // J converges to 1 ms from below, J_n = 1ms * (1 - (15/16)^n).
        for seq in 10..410 {
            let extra = if seq % 2 == 0 { 0 } else { 1_000_000 };
            feed(
                &mut r,
                &mut h,
                seq,
                seq * 20_000_000,
                seq * 20_000_000 + 500_000 + extra,
            );
        }
        assert!((r.jitter_ns - 1_000_000.0).abs() < 1.0, "{}", r.jitter_ns);
        let mut one = StreamReception::default();
        feed(&mut one, &mut h, 0, 0, 100);
        feed(&mut one, &mut h, 1, 1000, 1100 + 1600);
        assert!((one.jitter_ns - 100.0).abs() < 1e-9);
    }
}
