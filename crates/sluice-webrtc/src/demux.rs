//! What a datagram on the media port is, from its first byte (RFC 7983 §7,
//! with RFC 5764 §5.1.2 as updated): STUN 0–3, ZRTP 16–19, DTLS 20–63,
//! TURN channel 64–79, RTP/RTCP 128–191. One comparison chain, no parsing:
//! the packet worker calls it on every datagram before anything else.

/// The protocol a datagram on the shared media port belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    /// STUN (ICE connectivity checks and consent), first byte 0–3.
    Stun,
    /// DTLS records, first byte 20–63.
    Dtls,
    /// RTP or RTCP (SRTP/SRTCP), first byte 128–191.
    Rtp,
    /// Anything else (ZRTP, TURN channels, an empty datagram, noise):
    /// sluice speaks none of it, so it is dropped and counted.
    Other,
}

impl PacketClass {
    /// Classifies `datagram` by its first byte; an empty one is `Other`.
    #[inline]
    pub fn of(datagram: &[u8]) -> Self {
        match datagram.first() {
            Some(0..=3) => Self::Stun,
            Some(20..=63) => Self::Dtls,
            Some(128..=191) => Self::Rtp,
            _ => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_first_byte_lands_in_the_rfc_7983_range() {
        for b in 0..=255u8 {
            let expected = match b {
                0..=3 => PacketClass::Stun,
                20..=63 => PacketClass::Dtls,
                128..=191 => PacketClass::Rtp,
                _ => PacketClass::Other,
            };
            assert_eq!(PacketClass::of(&[b, 0, 0, 0]), expected, "first byte {b}");
        }
    }

    #[test]
    fn boundaries_and_empty_datagrams() {
        assert_eq!(PacketClass::of(&[]), PacketClass::Other);
        assert_eq!(PacketClass::of(&[3]), PacketClass::Stun);
        assert_eq!(PacketClass::of(&[4]), PacketClass::Other);
        assert_eq!(PacketClass::of(&[16]), PacketClass::Other, "ZRTP");
        assert_eq!(PacketClass::of(&[19]), PacketClass::Other, "ZRTP");
        assert_eq!(PacketClass::of(&[20]), PacketClass::Dtls);
        assert_eq!(PacketClass::of(&[22]), PacketClass::Dtls, "handshake");
        assert_eq!(PacketClass::of(&[63]), PacketClass::Dtls);
        assert_eq!(PacketClass::of(&[64]), PacketClass::Other, "TURN channel");
        assert_eq!(PacketClass::of(&[127]), PacketClass::Other);
        assert_eq!(PacketClass::of(&[0x80]), PacketClass::Rtp);
        assert_eq!(PacketClass::of(&[0x90]), PacketClass::Rtp, "RTP with X");
        assert_eq!(PacketClass::of(&[191]), PacketClass::Rtp);
        assert_eq!(PacketClass::of(&[192]), PacketClass::Other);
    }
}
