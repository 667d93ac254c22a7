//! SRTP packet index estimation (RFC 3711 §3.3.1 and Appendix A): the
//! 48-bit index `i = 2^16 * ROC + SEQ` is guessed from the 16-bit sequence
//! number and the highest index seen, so reordering across a sequence
//! wrap picks the right rollover counter.

/// Bits in an SRTP index; at `2^48` the master key must be replaced.
pub(crate) const MAX_INDEX: u64 = (1 << 48) - 1;

/// The index a packet with sequence number `seq` most likely has, given the
/// highest index `top` accepted so far (`None`: first packet, ROC 0).
///
/// Returns `None` when the guess lies before index 0 (a packet from "before"
/// a stream that started near ROC 0; it cannot be legitimate).
pub(crate) fn estimate(top: Option<u64>, seq: u16) -> Option<u64> {
    let Some(top) = top else {
        return Some(u64::from(seq));
    };
    let roc = top >> 16;
    // Truncation to the low 16 bits is the definition of s_l.
    #[allow(clippy::cast_possible_truncation)]
    let s_l = (top & 0xffff) as u16;
    let seq_wide = u64::from(seq);
    let guess_roc = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.checked_sub(1)?
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    Some((guess_roc << 16) | seq_wide)
}

/// The rollover counter of an index.
pub(crate) fn roc_of(index: u64) -> u32 {
    // A 48-bit index leaves 32 bits above the sequence number.
    #[allow(clippy::cast_possible_truncation)]
    let roc = (index >> 16) as u32;
    roc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_packet_has_roc_zero() {
        assert_eq!(estimate(None, 0xf17b), Some(0xf17b));
    }

    #[test]
    fn in_order_and_wrapping_forward() {
        assert_eq!(estimate(Some(10), 11), Some(11));
        assert_eq!(estimate(Some(0xfffe), 0xffff), Some(0xffff));
        assert_eq!(
            estimate(Some(0xffff), 0),
            Some(0x1_0000),
            "wrap 65535 -> 0 bumps ROC"
        );
        assert_eq!(estimate(Some(0xfff0), 5), Some(0x1_0005));
    }

    #[test]
    fn late_packets_from_before_a_wrap_keep_the_old_roc() {
        assert_eq!(estimate(Some(0x1_0002), 0xfffe), Some(0xfffe));
        assert_eq!(estimate(Some(0x5_0002), 0xfff0), Some(0x4_fff0));
    }

    #[test]
    fn a_late_packet_from_before_roc_zero_has_no_index() {
        assert_eq!(estimate(Some(3), 0xfff0), None);
    }

    #[test]
    fn roc_is_the_upper_32_bits() {
        assert_eq!(roc_of(0x1234_5678_9abc), 0x1234_5678);
    }
}
