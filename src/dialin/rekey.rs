//! SDES re-keying of a call (RFC 4568 §7.1.4, §6.4): what a re-INVITE's
//! `a=crypto` changes, and the caller's inbound SRTP across the change.
//!
//! A re-offer with the same key as before keeps both keys (a hold, a new
//! address). A re-offer with a new key (or a new suite) gets a new key of
//! ours in the answer too, so both directions change together; our packets
//! use the new key from the answer on. The caller may still send under its
//! old key for a moment (packets in flight, a phone that switches when it
//! sees our 200), so [`InboundKeys`] accepts the old key until the first
//! packet that authenticates under the new one, and from then on only the
//! new one.

use crate::crypto::AnyGcm;
use crate::sip::CryptoOffer;
use crate::srtp::{SrtpError, SrtpProfile, SrtpSession};

use super::call::MAX_DATAGRAM;

/// What a re-offer's crypto line does to the call's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyChange {
    /// Same suite, same key: keep everything (the tag may have changed:
    /// the answer echoes the new one).
    Keep {
        /// The offer's tag.
        tag: u32,
    },
    /// A new key or suite: new keys both ways.
    New,
}

/// Why a re-offer cannot be taken: the INVITE gets 488.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RekeyError {
    /// SRTP turned into plain RTP or the other way round.
    #[error("a re-INVITE may not switch between RTP and SRTP")]
    SecurityChanged,
}

/// The key change `offered` asks for against the call's current caller
/// key `current` (suite and key ‖ salt); `None`/`None` is a plain RTP call.
pub(crate) fn key_change(
    current: Option<(SrtpProfile, &[u8])>,
    offered: Option<&CryptoOffer>,
) -> Result<Option<KeyChange>, RekeyError> {
    match (current, offered) {
        (None, None) => Ok(None),
        (Some((profile, key)), Some(offer)) => {
            if offer.profile == profile && offer.key_material == key {
                Ok(Some(KeyChange::Keep { tag: offer.tag }))
            } else {
                Ok(Some(KeyChange::New))
            }
        }
        _ => Err(RekeyError::SecurityChanged),
    }
}

/// The caller's inbound SRTP: the current key, and after a re-key the
/// new one until a packet proves the caller switched.
pub(crate) struct InboundKeys {
    current: SrtpSession<AnyGcm>,
    next: Option<SrtpSession<AnyGcm>>,
}

impl std::fmt::Debug for InboundKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundKeys")
            .field("rekeying", &self.next.is_some())
            .finish_non_exhaustive()
    }
}

impl InboundKeys {
    pub(crate) fn new(current: SrtpSession<AnyGcm>) -> Self {
        Self {
            current,
            next: None,
        }
    }

    /// The caller's new key (a re-INVITE): tried first from now on; the
    /// old one still accepted until the new one authenticates a packet.
    pub(crate) fn rekey(&mut self, next: SrtpSession<AnyGcm>) {
        self.next = Some(next);
    }

    /// Whether a new key waits for its first packet.
    #[cfg(test)]
    pub(crate) fn rekeying(&self) -> bool {
        self.next.is_some()
    }

    /// Unprotects one SRTP packet in place; the plaintext length.
    pub(crate) fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let Some(next) = &mut self.next else {
            return self.current.unprotect_rtp(buf, len);
        };
        // A failed try may leave `buf` changed: try the new key on a copy
        // (a stack buffer; only while a re-key is pending).
        let mut copy = [0u8; MAX_DATAGRAM];
        let Some(src) = buf.get(..len).filter(|b| b.len() <= copy.len()) else {
            return self.current.unprotect_rtp(buf, len);
        };
        copy[..len].copy_from_slice(src);
        match next.unprotect_rtp(&mut copy, len) {
            Ok(n) => {
                buf[..n].copy_from_slice(&copy[..n]);
                // The caller switched: the old key is done.
                if let Some(next) = self.next.take() {
                    self.current = next;
                }
                Ok(n)
            }
            Err(_) => self.current.unprotect_rtp(buf, len),
        }
    }
}

impl InboundKeys {
    /// Unprotects one SRTCP packet in place: under the new key if a
    /// re-key is pending and it authenticates, else under the current one
    /// (RTCP does not end the old key; the caller's RTP does).
    pub(crate) fn unprotect_rtcp(
        &mut self,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, SrtpError> {
        if let Some(next) = &mut self.next {
            let mut copy = [0u8; MAX_DATAGRAM];
            if let Some(src) = buf.get(..len).filter(|b| b.len() <= copy.len()) {
                copy[..len].copy_from_slice(src);
                if let Ok(n) = next.unprotect_rtcp(&mut copy, len) {
                    buf[..n].copy_from_slice(&copy[..n]);
                    return Ok(n);
                }
            }
        }
        self.current.unprotect_rtcp(buf, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
    use crate::srtp::MasterKey;

    const SUITE: SrtpProfile = SrtpProfile::AesCm128HmacSha1_80;

    fn session(fill: u8) -> SrtpSession<AnyGcm> {
        SrtpSession::new(
            AnyGcm::default(),
            &MasterKey::new(SUITE, &[fill; 30]).unwrap(),
        )
        .unwrap()
    }

    fn packet(tx: &mut SrtpSession<AnyGcm>, seq: u16) -> ([u8; MAX_DATAGRAM], usize) {
        let mut buf = [0u8; MAX_DATAGRAM];
        let pt = PayloadType::new(0).unwrap();
        let len = RtpBuilder::new(pt, SeqNum(seq), u32::from(seq) * 160, Ssrc(7))
            .write(&[0xFF; 160], &mut buf)
            .unwrap();
        let len = tx.protect_rtp(&mut buf, len).unwrap();
        (buf, len)
    }

    #[test]
    fn the_old_key_is_taken_until_the_first_packet_under_the_new_one() {
        let mut inbound = InboundKeys::new(session(1));
        let (mut old_tx, mut new_tx) = (session(1), session(2));
        let (mut p, n) = packet(&mut old_tx, 1);
        assert_eq!(inbound.unprotect_rtp(&mut p, n).unwrap(), 172);
        inbound.rekey(session(2));
        assert!(inbound.rekeying());
        // In flight under the old key: still taken.
        let (mut p, n) = packet(&mut old_tx, 2);
        assert_eq!(inbound.unprotect_rtp(&mut p, n).unwrap(), 172);
        assert_eq!(&p[12..172], &[0xFF; 160]);
        // The first under the new key switches.
        let (mut p, n) = packet(&mut new_tx, 3);
        assert_eq!(inbound.unprotect_rtp(&mut p, n).unwrap(), 172);
        assert_eq!(&p[12..172], &[0xFF; 160]);
        assert!(!inbound.rekeying());
        // Now the old key is refused.
        let (mut p, n) = packet(&mut old_tx, 4);
        assert!(inbound.unprotect_rtp(&mut p, n).is_err());
        let (mut p, n) = packet(&mut new_tx, 5);
        assert!(inbound.unprotect_rtp(&mut p, n).is_ok());
        // Neither key: refused, nothing panics.
        let (mut p, n) = packet(&mut session(9), 6);
        assert!(inbound.unprotect_rtp(&mut p, n).is_err());
        assert!(inbound.unprotect_rtp(&mut p, 3).is_err());
    }

    #[test]
    fn a_reoffer_keeps_or_renews_the_keys() {
        let offer = |profile, fill: u8, tag| CryptoOffer {
            tag,
            profile,
            key_material: vec![fill; profile.key_material_len()],
        };
        let same = offer(SUITE, 1, 1);
        let current = Some((SUITE, &same.key_material[..]));
        assert_eq!(
            key_change(current, Some(&same)),
            Ok(Some(KeyChange::Keep { tag: 1 }))
        );
        assert_eq!(
            key_change(current, Some(&offer(SUITE, 1, 4))),
            Ok(Some(KeyChange::Keep { tag: 4 }))
        );
        assert_eq!(
            key_change(current, Some(&offer(SUITE, 2, 1))),
            Ok(Some(KeyChange::New))
        );
        assert_eq!(
            key_change(current, Some(&offer(SrtpProfile::AeadAes256Gcm, 1, 1))),
            Ok(Some(KeyChange::New))
        );
        assert_eq!(key_change(None, None), Ok(None));
        assert_eq!(key_change(current, None), Err(RekeyError::SecurityChanged));
        assert_eq!(
            key_change(None, Some(&same)),
            Err(RekeyError::SecurityChanged)
        );
    }
}
