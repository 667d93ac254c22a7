//! The header every generated RTP payload starts with: which stream, which
//! packet, and when it was sent. The receiver reads it back after SRTP
//! (and, in E2EE meetings, after the end-to-end layer) to count loss,
//! duplicates and reordering and to time the packet's one-way trip.
//!
//! Layout, big-endian: magic `b"SLBN"` (4) ‖ stream id (4) ‖ sequence (8)
//! ‖ send time in ns since the run's epoch (8). The rest of the payload is
//! filler up to the packet size the scenario asks for.

/// Bytes the header takes.
pub const HEADER_LEN: usize = 24;

const MAGIC: [u8; 4] = *b"SLBN";

/// One packet's identity and send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    /// The stream's index in the run (not its SSRC: SSRCs may be rewritten).
    pub stream: u32,
    /// 0, 1, 2, … per stream; never wraps in a run.
    pub sequence: u64,
    /// Nanoseconds since the run's epoch, read just before protecting.
    pub sent_ns: u64,
}

impl PayloadHeader {
    /// Writes the header to the start of `out`; `false` if `out` is
    /// shorter than [`HEADER_LEN`].
    pub fn write(&self, out: &mut [u8]) -> bool {
        let Some(out) = out.get_mut(..HEADER_LEN) else {
            return false;
        };
        out[..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&self.stream.to_be_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        out[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
        true
    }

    /// Reads a header from the start of `payload`; `None` if it is too
    /// short or does not start with the magic (not a packet of this run).
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let head = payload.get(..HEADER_LEN)?;
        if head[..4] != MAGIC {
            return None;
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let mut stream = [0u8; 4];
        stream.copy_from_slice(&head[4..8]);
        Some(Self {
            stream: u32::from_be_bytes(stream),
            sequence: u64_at(8),
            sent_ns: u64_at(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = PayloadHeader {
            stream: 0xdead_beef,
            sequence: u64::MAX - 3,
            sent_ns: 1_234_567_890_123,
        };
        let mut buf = [0u8; 40];
        assert!(h.write(&mut buf));
        assert_eq!(PayloadHeader::parse(&buf), Some(h));
    }

    #[test]
    fn short_or_foreign_payloads_are_refused() {
        let h = PayloadHeader {
            stream: 1,
            sequence: 2,
            sent_ns: 3,
        };
        let mut short = [0u8; HEADER_LEN - 1];
        assert!(!h.write(&mut short));
        assert_eq!(PayloadHeader::parse(&short), None);
        let mut buf = [0u8; HEADER_LEN];
        assert!(h.write(&mut buf));
        buf[0] ^= 1;
        assert_eq!(PayloadHeader::parse(&buf), None);
    }
}
