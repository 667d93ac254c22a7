//! Newtypes for the RTP header's numbers (RFC 3550 §5.1): SSRC/CSRC
//! identifiers, 16-bit sequence numbers compared with serial arithmetic,
//! and 7-bit payload types.

/// A synchronization (or contributing) source identifier (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ssrc(pub u32);

/// An RTP sequence number (RFC 3550 §5.1). It wraps at 2^16, so it has no
/// total order: compare two with [`SeqNum::is_newer_than`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqNum(pub u16);

impl SeqNum {
    /// The sequence number `n` packets after this one, wrapping at 2^16.
    #[must_use]
    pub const fn wrapping_add(self, n: u16) -> Self {
        Self(self.0.wrapping_add(n))
    }

    /// How many packets `self` is ahead of `other`, modulo 2^16.
    #[must_use]
    pub const fn wrapping_distance_from(self, other: Self) -> u16 {
        self.0.wrapping_sub(other.0)
    }

    /// Whether `self` comes after `other` in 16-bit serial arithmetic
    /// (RFC 1982, as RFC 3550 Appendix A.1 uses it): it is ahead by
    /// 1..2^15 steps. Two numbers exactly 2^15 apart are ambiguous; neither
    /// is newer than the other.
    #[must_use]
    pub const fn is_newer_than(self, other: Self) -> bool {
        let ahead = self.wrapping_distance_from(other);
        ahead != 0 && ahead < 0x8000
    }
}

/// An RTP payload type: 7 bits, 0..=127 (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadType(u8);

impl PayloadType {
    /// The payload type `value`, or `None` when it does not fit in 7 bits.
    #[must_use]
    pub const fn new(value: u8) -> Option<Self> {
        if value <= 0x7f {
            Some(Self(value))
        } else {
            None
        }
    }

    /// The low 7 bits of `byte` (the second header byte without the marker).
    pub(crate) const fn from_low_bits(byte: u8) -> Self {
        Self(byte & 0x7f)
    }

    /// The payload type as a number in 0..=127.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_wraps() {
        assert_eq!(SeqNum(0xffff).wrapping_add(1), SeqNum(0));
        assert_eq!(SeqNum(0xfff0).wrapping_add(0x20), SeqNum(0x10));
        assert_eq!(SeqNum(3).wrapping_distance_from(SeqNum(0xfffe)), 5);
    }

    #[test]
    fn seq_serial_order() {
        assert!(SeqNum(1).is_newer_than(SeqNum(0)));
        assert!(!SeqNum(0).is_newer_than(SeqNum(1)));
        assert!(!SeqNum(7).is_newer_than(SeqNum(7)));
        // Across the wrap.
        assert!(SeqNum(2).is_newer_than(SeqNum(0xfffe)));
        assert!(!SeqNum(0xfffe).is_newer_than(SeqNum(2)));
        // The largest step that still counts as newer.
        assert!(SeqNum(0x7fff).is_newer_than(SeqNum(0)));
        // Exactly half the space apart: ambiguous both ways.
        assert!(!SeqNum(0x8000).is_newer_than(SeqNum(0)));
        assert!(!SeqNum(0).is_newer_than(SeqNum(0x8000)));
    }

    #[test]
    fn payload_type_range() {
        assert_eq!(PayloadType::new(0).map(PayloadType::get), Some(0));
        assert_eq!(PayloadType::new(127).map(PayloadType::get), Some(127));
        assert_eq!(PayloadType::new(128), None);
        assert_eq!(PayloadType::new(255), None);
        assert_eq!(PayloadType::from_low_bits(0xe0).get(), 0x60);
    }
}
