//! Where the packets of an authenticated RTCP compound go (RFC 3550 §6,
//! RFC 4585 §6, RFC 5104 §4.3.1), decided once per compound into an
//! [`RtcpPlan`]; the worker then writes one SRTCP packet per destination
//! leg with the parts meant for it, in their original order.
//!
//! - SR, SDES and BYE from a leg pass through to every other participant
//!   of its meeting (sender timing and CNAMEs for lip sync, departures);
//!   a WHEP viewer gets the SR and SDES of what fills its slots, under
//!   the slots' SSRCs, timestamps and CNAME, and no BYE (`slot_rtcp.rs`).
//! - NACK and PLI go to the publisher of their media SSRC; FIR to the
//!   publishers of its entries' SSRCs. Only within the sender's meeting,
//!   and never back to the sender itself.
//! - REMB about a rendition goes to the transcoder publishing it (a media
//!   service leg, `RoutingSnapshot::services`).
//! - RR, APP, other REMB and unknown types stop at the relay: an RR has done its
//!   job once it authenticated (it latches receive-only participants); the
//!   relay does not pass receivers' reception statistics between
//!   participants.
//!
//! Parts going to several destinations (SR, FIR) are not copied here: a
//! part is a byte range of the plaintext compound.

use std::ops::Range;

use arrayvec::ArrayVec;

use super::{LegId, LegRoute, RoutingSnapshot};
use crate::rtp::{RtcpCompound, RtcpError, RtcpPacket, Ssrc};

/// Most parts of one compound the relay forwards; further ones are
/// ignored (a compound has a handful: SR or RR, SDES, some feedback).
pub(crate) const MAX_PARTS: usize = 16;
/// Most distinct publishers one FIR is forwarded to.
pub(crate) const MAX_FIR_TARGETS: usize = 4;

/// Who one part of a compound is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Every other participant of the sender's meeting.
    Meeting,
    /// The publishers of the media the feedback is about.
    Publishers(ArrayVec<LegId, MAX_FIR_TARGETS>),
}

impl Audience {
    fn includes(&self, leg: LegId) -> bool {
        match self {
            Self::Meeting => true,
            Self::Publishers(legs) => legs.contains(&leg),
        }
    }
}

/// The parts of one compound to forward, and to whom.
#[derive(Debug, Default)]
pub(crate) struct RtcpPlan {
    parts: ArrayVec<(Range<usize>, Audience), MAX_PARTS>,
}

impl RtcpPlan {
    /// Walks the plaintext `compound` that `sender` sent.
    pub(crate) fn new(
        compound: &[u8],
        sender: &LegRoute,
        snapshot: &RoutingSnapshot,
    ) -> Result<Self, RtcpError> {
        let mut plan = Self::default();
        let mut start = 0;
        for packet in RtcpCompound::new(compound) {
            let packet = packet?;
            // The walk checked this header: its length field fits the buffer.
            let len = match compound.get(start + 2..start + 4) {
                Some(&[hi, lo]) => (usize::from(u16::from_be_bytes([hi, lo])) + 1) * 4,
                _ => 0,
            };
            let range = start..start + len;
            start += len;
            let publisher = |ssrc: Ssrc| publisher_of(ssrc, sender, snapshot);
            let audience = match packet {
                RtcpPacket::SenderReport(_) | RtcpPacket::Sdes(_) | RtcpPacket::Bye(_) => {
                    Some(Audience::Meeting)
                }
                RtcpPacket::Nack(nack) => publisher(nack.media_ssrc()).map(one),
                RtcpPacket::Pli(pli) => publisher(pli.media_ssrc()).map(one),
                // A REMB about a rendition goes to its transcoder, which
                // caps the rendition's bitrate; to an endpoint it stops here.
                RtcpPacket::Remb(remb) if !snapshot.services.is_empty() => {
                    let mut legs = ArrayVec::new();
                    for leg in remb
                        .ssrcs()
                        .filter_map(publisher)
                        .filter(|leg| snapshot.services.contains(leg))
                    {
                        if !legs.contains(&leg) && legs.try_push(leg).is_err() {
                            break;
                        }
                    }
                    (!legs.is_empty()).then_some(Audience::Publishers(legs))
                }
                RtcpPacket::Fir(fir) => {
                    let mut legs = ArrayVec::new();
                    for leg in fir.entries().filter_map(|e| publisher(e.ssrc)) {
                        if !legs.contains(&leg) && legs.try_push(leg).is_err() {
                            break;
                        }
                    }
                    (!legs.is_empty()).then_some(Audience::Publishers(legs))
                }
                _ => None,
            };
            if let Some(audience) = audience
                && plan.parts.try_push((range, audience)).is_err()
            {
                break;
            }
        }
        Ok(plan)
    }

    /// Whether anything goes to the whole meeting.
    pub(crate) fn has_meeting_parts(&self) -> bool {
        self.parts.iter().any(|(_, a)| *a == Audience::Meeting)
    }

    /// Whether nothing is forwarded.
    pub(crate) fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Every leg named as a feedback destination (with repeats).
    pub(crate) fn publishers(&self) -> impl Iterator<Item = LegId> + '_ {
        self.parts
            .iter()
            .flat_map(|(_, a)| match a {
                Audience::Meeting => &[][..],
                Audience::Publishers(legs) => legs.as_slice(),
            })
            .copied()
    }

    /// The byte ranges of `compound` that go to `leg`, in order.
    pub(crate) fn parts_for(&self, leg: LegId) -> impl Iterator<Item = Range<usize>> + '_ {
        self.parts
            .iter()
            .filter(move |(_, a)| a.includes(leg))
            .map(|(r, _)| r.clone())
    }
}

fn one(leg: LegId) -> Audience {
    let mut legs = ArrayVec::new();
    // An empty ArrayVec has room for one.
    let _ = legs.try_push(leg);
    Audience::Publishers(legs)
}

/// The leg publishing `ssrc`, if it is in `sender`'s meeting and is not
/// the sender.
fn publisher_of(ssrc: Ssrc, sender: &LegRoute, snapshot: &RoutingSnapshot) -> Option<LegId> {
    // A WHEP viewer's feedback names its slot: the slot's publisher.
    let ssrc = snapshot
        .slot_sources
        .get(&ssrc.0)
        .copied()
        .unwrap_or(ssrc.0);
    let leg = snapshot.streams.get(&ssrc)?.leg;
    let route = snapshot.legs.get(&leg)?;
    let same = snapshot.meeting_of(route.meeting) == snapshot.meeting_of(sender.meeting);
    (leg != sender.id && same).then_some(leg)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, AtomicU64};

    use super::*;
    use crate::relay::{Latch, MediaKind, MeetingIdx, MeetingMode, StreamRoute};
    use crate::srtp::{MasterKey, SrtpProfile};

    /// Legs 1 and 2 meet in meeting 1, leg 3 in meeting 2; leg n
    /// publishes SSRC 10 * n.
    fn snapshot() -> RoutingSnapshot {
        let key = MasterKey::new(SrtpProfile::AeadAes128Gcm, &[7; 28]).unwrap();
        let mut snapshot = RoutingSnapshot::default();
        for (leg, meeting) in [(1, 1), (2, 1), (3, 2)] {
            let route = LegRoute {
                id: LegId(leg),
                meeting: MeetingIdx(meeting),
                mode: MeetingMode::Standard,
                client_to_relay: key.clone(),
                relay_to_client: key.clone(),
                latch: Arc::new(Latch::default()),
                next_srtcp_index: Arc::new(AtomicU32::new(0)),
                highest_srtcp_index: Arc::new(AtomicU64::new(0)),
            };
            snapshot.legs.insert(LegId(leg), Arc::new(route));
            let ssrc = 10 * leg as u32;
            let stream = StreamRoute {
                ssrc,
                leg: LegId(leg),
                kind: MediaKind::Video,
                payload_type: 96,
                highest_index: Arc::new(AtomicU64::new(0)),
            };
            snapshot.streams.insert(ssrc, Arc::new(stream));
        }
        snapshot
    }

    /// A packet of `header` and 32-bit `words` (the length field is set).
    fn packet(first: u8, packet_type: u8, words: &[u32]) -> Vec<u8> {
        let mut p = vec![first, packet_type];
        p.extend_from_slice(&(words.len() as u16).to_be_bytes());
        p.extend(words.iter().flat_map(|w| w.to_be_bytes()));
        p
    }

    #[test]
    fn parts_go_to_the_meeting_or_to_the_publishers_within_it() {
        let snapshot = snapshot();
        let sender = &snapshot.legs[&LegId(2)];
        let parts = [
            packet(0x80, 201, &[20]),                         // RR: stops here
            packet(0x81, 202, &[20, 0x0102_6100, 0]),         // SDES: the meeting
            packet(0x81, 205, &[20, 10, 0x0001_0000]),        // NACK for leg 1
            packet(0x81, 206, &[20, 30]),                     // PLI, other meeting
            packet(0x81, 206, &[20, 20]),                     // PLI, own stream
            packet(0x84, 206, &[20, 0, 10, 0, 20, 0, 10, 0]), // FIR: leg 1 once
            packet(0x81, 206, &[20, 99]),                     // PLI, unknown SSRC
        ];
        let compound = parts.concat();
        let plan = RtcpPlan::new(&compound, sender, &snapshot).unwrap();
        assert!(plan.has_meeting_parts());
        let at = |i: usize| {
            let start: usize = parts[..i].iter().map(Vec::len).sum();
            start..start + parts[i].len()
        };
        assert_eq!(
            plan.parts_for(LegId(1)).collect::<Vec<_>>(),
            vec![at(1), at(2), at(5)]
        );
        assert_eq!(plan.parts_for(LegId(3)).collect::<Vec<_>>(), vec![at(1)]);
        assert_eq!(
            plan.publishers().collect::<Vec<_>>(),
            vec![LegId(1), LegId(1)]
        );
    }

    #[test]
    fn feedback_crosses_between_a_meeting_and_its_relayed_set_only() {
        // Meeting 2 stands for meeting 1's relayed set (cluster mode):
        // a PLI from leg 3 (a relay leg) reaches leg 1's stream, and back.
        let mut snapshot = snapshot();
        let pli_for_1 = packet(0x81, 206, &[30, 10]);
        let sender = &snapshot.legs[&LegId(3)];
        let plan = RtcpPlan::new(&pli_for_1, sender, &snapshot).unwrap();
        assert!(plan.publishers().next().is_none(), "another meeting");
        snapshot.relayed.insert(MeetingIdx(2), MeetingIdx(1));
        let sender = &snapshot.legs[&LegId(3)];
        let plan = RtcpPlan::new(&pli_for_1, sender, &snapshot).unwrap();
        assert_eq!(plan.publishers().collect::<Vec<_>>(), vec![LegId(1)]);
        let pli_for_3 = packet(0x81, 206, &[10, 30]);
        let sender = &snapshot.legs[&LegId(1)];
        let plan = RtcpPlan::new(&pli_for_3, sender, &snapshot).unwrap();
        assert_eq!(plan.publishers().collect::<Vec<_>>(), vec![LegId(3)]);
    }

    #[test]
    fn a_malformed_compound_is_refused() {
        let snapshot = snapshot();
        let sender = &snapshot.legs[&LegId(2)];
        // An SR claiming a report block it does not have.
        let compound = packet(0x81, 200, &[20, 0, 0]);
        assert!(RtcpPlan::new(&compound, sender, &snapshot).is_err());
        // Nothing to forward at all.
        let rr = packet(0x80, 201, &[20]);
        assert!(RtcpPlan::new(&rr, sender, &snapshot).unwrap().is_empty());
    }
}
