//! Where the packets of an authenticated RTCP compound go (RFC 3550 §6,
//! RFC 4585 §6, RFC 5104 §4.3.1), decided once per compound into an
//! [`RtcpPlan`]; the worker then writes one SRTCP packet per destination
//! leg with the parts meant for it, in their original order.
//!
//! - SR, SDES and BYE from a leg pass through to every other participant
//!   of its meeting (sender timing and CNAMEs for lip sync, departures).
//! - NACK and PLI go to the publisher of their media SSRC; FIR to the
//!   publishers of its entries' SSRCs. Only within the sender's meeting,
//!   and never back to the sender itself.
//! - RR, APP, REMB and unknown types stop at the relay: an RR has done its
//!   job once it authenticated (it latches receive-only participants); the
//!   relay does not pass receivers' reception statistics between
//!   participants.
//!
//! Parts going to several destinations (SR, FIR) are not copied here: a
//! part is a byte range of the plaintext compound.

use std::ops::Range;

use arrayvec::ArrayVec;

use super::rtcp_interim::{RtcpCompound, RtcpError, RtcpPacket};
use super::{LegId, LegRoute, RoutingSnapshot};
use crate::rtp::Ssrc;

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
            let len = compound.get(start + 2..start + 4).map_or(0, |l| {
                (usize::from(u16::from_be_bytes([l[0], l[1]])) + 1) * 4
            });
            let range = start..start + len;
            start += len;
            let publisher = |ssrc: Ssrc| publisher_of(ssrc, sender, snapshot);
            let audience = match packet {
                RtcpPacket::SenderReport(_) | RtcpPacket::Sdes(_) | RtcpPacket::Bye(_) => {
                    Some(Audience::Meeting)
                }
                RtcpPacket::Nack(nack) => publisher(nack.media_ssrc()).map(one),
                RtcpPacket::Pli(pli) => publisher(pli.media_ssrc()).map(one),
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
    let leg = snapshot.streams.get(&ssrc.0)?.leg;
    let route = snapshot.legs.get(&leg)?;
    (leg != sender.id && route.meeting == sender.meeting).then_some(leg)
}
