//! Fan-out of one publisher's RTP packet: to whom (per sending leg, the
//! other legs of its meeting, worked out when its meeting's [`Members`]
//! change, so the per-packet loop does no lookups by id, and a join
//! elsewhere on the node costs a plan one pointer comparison) and how (every receiver's
//! copy written into its own [`Transmits`] slot and protected there, one
//! backend call per [`BATCH_CHUNK`] receivers: the batch a multi-buffer
//! or GPU backend fills its lanes with).

use std::collections::HashMap;
use std::sync::Arc;

use arrayvec::ArrayVec;

use super::legs::{LegSessions, SlotIdx};
use super::pt_rewrite::set_payload_type;
use super::slot_rewrite::rewrite_header;
use super::worker::drop_reason;
use super::{
    LegId, LegRoute, MeetingMode, Members, Path, RoutingSnapshot, SLOT, SlotEntry, Transmits,
};
use crate::crypto::AeadBackend;
use crate::metrics::{Drop, WorkerCounters};
use crate::srtp::{BATCH_CHUNK, BatchItem, protect_rtp_batch};

/// A latched receiver of one fan-out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Receiver {
    /// Its leg's slot (outbound session made).
    pub(crate) slot: SlotIdx,
    /// Its latched address (and the local address it sent to).
    pub(crate) dest: Path,
    /// A WHEP slot's rewrite of the header (SSRC, mid), if it has one.
    pub(crate) rewrite: Option<SlotEntry>,
    /// The SRTP index claimed for the copy against its slot's shared send
    /// index (`slot_rewrite::claim_index`), if it goes to a slot.
    pub(crate) index: Option<u64>,
    /// Its payload type for this stream, where it numbers the codec
    /// otherwise than the publisher (`pt_rewrite.rs`).
    pub(crate) payload_type: Option<u8>,
}

impl Receiver {
    /// Rewrites this receiver's plaintext copy `plain` of the packet:
    /// the slot's SSRC and mid, then the payload type. In place, no
    /// allocation; the payload is never touched.
    #[inline]
    pub(crate) fn rewrite_copy(&self, plain: &mut [u8]) {
        if let Some(slot) = &self.rewrite {
            rewrite_header(plain, slot);
        }
        if let Some(pt) = self.payload_type {
            set_payload_type(plain, pt);
        }
    }
}

/// One sending leg's plan.
#[derive(Debug)]
struct Plan {
    /// The leg it is for (its slot may since have gone to another leg).
    sender: LegId,
    /// The fan-out set it was made from (`None`: the meeting was gone).
    members: Option<Members>,
    /// The snapshot generation it was last found current in.
    checked: u64,
    /// The slots of the other legs of the set, ascending and distinct, as
    /// [`LegSessions::outbound_many`] lends them.
    slots: Vec<SlotIdx>,
}

/// Per sending leg (by slot): its [`Plan`]. Streams with an audience of
/// their own (`RoutingSnapshot::audiences`) have a plan by SSRC instead.
#[derive(Debug, Default)]
pub(crate) struct FanoutPlans {
    by_sender: Vec<Option<Plan>>,
    by_stream: HashMap<u32, Vec<SlotIdx>>,
    /// The snapshot generation `by_stream` was made for.
    by_stream_generation: u64,
    /// How many plans were made (not merely checked).
    #[cfg(test)]
    made: usize,
}

impl FanoutPlans {
    /// Who the stream `ssrc` from `sender` goes to: its own audience when
    /// the snapshot gives it one, else the rest of the sender's meeting.
    /// The audience lookup is skipped while no stream has one; audience
    /// plans are made again for each new snapshot.
    pub(crate) fn receivers_of<B: AeadBackend>(
        &mut self,
        ssrc: u32,
        sender_slot: SlotIdx,
        sender: &LegRoute,
        snapshot: &RoutingSnapshot,
        legs: &mut LegSessions<B>,
    ) -> &[SlotIdx] {
        let audience = if snapshot.audiences.is_empty() {
            None
        } else {
            snapshot.audiences.get(&ssrc)
        };
        let Some(audience) = audience else {
            return self.receivers(sender_slot, sender, snapshot, legs);
        };
        if self.by_stream_generation != snapshot.generation {
            self.by_stream.clear();
            self.by_stream_generation = snapshot.generation;
        }
        self.by_stream.entry(ssrc).or_insert_with(|| {
            let mut slots: Vec<SlotIdx> = audience
                .iter()
                .filter(|id| **id != sender.id)
                .filter_map(|id| snapshot.legs.get(id))
                .filter(|route| route.meeting == sender.meeting)
                .map(|route| legs.slot_of(route))
                .collect();
            slots.sort_unstable();
            slots.dedup();
            slots
        })
    }

    /// Who `sender`, in `sender_slot`, fans out to in `snapshot`. The
    /// plan is checked once per generation (one lookup and a pointer
    /// comparison) and made again only when its meeting's fan-out set
    /// changed: slot numbers in it are valid while the set is the same
    /// `Arc`, since a leg leaving changes its meeting's set
    /// ([`LegSessions::sweep`]).
    pub(crate) fn receivers<B: AeadBackend>(
        &mut self,
        sender_slot: SlotIdx,
        sender: &LegRoute,
        snapshot: &RoutingSnapshot,
        legs: &mut LegSessions<B>,
    ) -> &[SlotIdx] {
        if self.by_sender.len() <= sender_slot {
            self.by_sender.resize_with(sender_slot + 1, || None);
        }
        let Some(entry) = self.by_sender.get_mut(sender_slot) else {
            return &[];
        };
        let generation = snapshot.generation;
        let fresh = entry
            .as_ref()
            .is_some_and(|plan| plan.sender == sender.id && plan.checked == generation);
        if !fresh {
            let members = snapshot.meetings.get(&sender.meeting);
            let same = entry.as_ref().is_some_and(|plan| {
                plan.sender == sender.id
                    && match (&plan.members, members) {
                        (Some(old), Some(new)) => Arc::ptr_eq(old, new),
                        (None, None) => true,
                        _ => false,
                    }
            });
            if same {
                if let Some(plan) = entry.as_mut() {
                    plan.checked = generation;
                }
            } else {
                // Reuse the old plan's allocation.
                let mut slots = entry.take().map(|plan| plan.slots).unwrap_or_default();
                slots.clear();
                slots.extend(
                    members
                        .into_iter()
                        .flat_map(|m| m.iter())
                        .filter(|id| **id != sender.id && !snapshot.skips(sender.id, **id))
                        .filter_map(|id| snapshot.legs.get(id))
                        .map(|route| legs.slot_of(route)),
                );
                slots.sort_unstable();
                slots.dedup();
                #[cfg(test)]
                {
                    self.made += 1;
                }
                *entry = Some(Plan {
                    sender: sender.id,
                    members: members.cloned(),
                    checked: generation,
                    slots,
                });
            }
        }
        entry.as_ref().map_or(&[], |plan| &plan.slots)
    }
}

/// Protects `rtp` for up to [`BATCH_CHUNK`] receivers in one backend call,
/// each copy written into its own arena slot, and commits those that
/// succeeded.
pub(crate) fn protect_chunk<B: AeadBackend>(
    backend: &B,
    legs: &mut LegSessions<B>,
    counters: &WorkerCounters,
    chunk: &[Receiver],
    rtp: &[u8],
    mode: MeetingMode,
    out: &mut Transmits,
) {
    let mut outcomes = ArrayVec::<Result<usize, Drop>, BATCH_CHUNK>::new();
    {
        let region = out.free_slots(chunk.len());
        let mut items = ArrayVec::<BatchItem<'_, B>, BATCH_CHUNK>::new();
        // Whether each receiver got a batch item, in receiver order.
        let mut queued = ArrayVec::<bool, BATCH_CHUNK>::new();
        let sessions = legs.outbound_many(chunk.iter().map(|r| r.slot));
        for ((session, buf), receiver) in sessions.zip(region.chunks_exact_mut(SLOT)).zip(chunk) {
            let copied = buf
                .get_mut(..rtp.len())
                .map(|plain| {
                    plain.copy_from_slice(rtp);
                    receiver.rewrite_copy(plain);
                })
                .is_some();
            let ok = match session {
                Some(session) if copied => items
                    .try_push(
                        BatchItem::new(session, buf, rtp.len()).with_claimed_index(receiver.index),
                    )
                    .is_ok(),
                _ => false,
            };
            // At most BATCH_CHUNK receivers come in; an overflow would only
            // lose the verdict, never misalign it.
            let _ = queued.try_push(ok);
        }
        protect_rtp_batch(backend, &mut items);
        let mut verdicts = items.into_iter().map(|item| item.outcome);
        for ok in queued {
            let outcome = match ok.then(|| verdicts.next().flatten()).flatten() {
                Some(Ok(len)) => Ok(len),
                Some(Err(e)) => Err(drop_reason(&e)),
                None => Err(Drop::Other),
            };
            let _ = outcomes.try_push(outcome);
        }
    }
    let mut committed = 0;
    for (k, (receiver, outcome)) in chunk.iter().zip(outcomes).enumerate() {
        match outcome {
            Ok(len) => {
                out.commit_free(k - committed, len, receiver.dest, mode);
                committed += 1;
            }
            Err(why) => counters.dropped(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicU64};

    use super::*;
    use crate::crypto::AnyGcm;
    use crate::relay::{Latch, MeetingIdx};
    use crate::srtp::{MasterKey, SrtpProfile};

    fn route(id: u64, meeting: u64) -> Arc<LegRoute> {
        let key = MasterKey::new(SrtpProfile::AeadAes128Gcm, &[id as u8; 28]).unwrap();
        Arc::new(LegRoute {
            id: LegId(id),
            meeting: MeetingIdx(meeting),
            mode: MeetingMode::E2ee,
            client_to_relay: key.clone(),
            relay_to_client: key,
            latch: Arc::new(Latch::default()),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Publishes leg `id` into `meeting` as the control plane does: a new
    /// fan-out set for that meeting only.
    fn join(snapshot: &mut RoutingSnapshot, id: u64, meeting: u64) {
        snapshot.insert_leg(route(id, meeting));
        let idx = MeetingIdx(meeting);
        let mut members = snapshot
            .meetings
            .get(&idx)
            .map(|m| m.to_vec())
            .unwrap_or_default();
        members.push(LegId(id));
        snapshot.meetings.insert(idx, Arc::new(members));
        snapshot.generation += 1;
    }

    fn leave(snapshot: &mut RoutingSnapshot, id: u64, meeting: u64) {
        snapshot.legs.remove(&LegId(id));
        let idx = MeetingIdx(meeting);
        let kept: Vec<_> = snapshot.meetings[&idx]
            .iter()
            .copied()
            .filter(|l| l.0 != id)
            .collect();
        snapshot.meetings.insert(idx, Arc::new(kept));
        snapshot.generation += 1;
    }

    #[test]
    fn a_join_elsewhere_costs_a_plan_one_check_and_its_own_meeting_a_new_plan() {
        let mut snapshot = RoutingSnapshot::default();
        for (id, meeting) in [(1, 1), (2, 1), (3, 2), (4, 2)] {
            join(&mut snapshot, id, meeting);
        }
        let mut legs = LegSessions::<AnyGcm>::default();
        let mut plans = FanoutPlans::default();
        let sender = Arc::clone(&snapshot.legs[&LegId(1)]);
        let slot = legs.slot_of(&sender);
        let receivers = plans
            .receivers(slot, &sender, &snapshot, &mut legs)
            .to_vec();
        assert_eq!(receivers.len(), 1);
        assert_eq!(plans.made, 1);

        // A storm in meeting 2: meeting 1's plan is only checked.
        for id in 5..50 {
            join(&mut snapshot, id, 2);
            let again = plans.receivers(slot, &sender, &snapshot, &mut legs);
            assert_eq!(again, &receivers[..]);
        }
        assert_eq!(plans.made, 1);

        // A join in meeting 1 is planned for at once.
        join(&mut snapshot, 50, 1);
        assert_eq!(
            plans.receivers(slot, &sender, &snapshot, &mut legs).len(),
            2
        );
        assert_eq!(plans.made, 2);

        // A leave too, and the departed leg's slot, swept and reused by a
        // leg of another meeting, is never sent to.
        let gone = Arc::clone(&snapshot.legs[&LegId(2)]);
        let gone_slot = legs.slot_of(&gone);
        leave(&mut snapshot, 2, 1);
        legs.sweep(&snapshot, usize::MAX);
        join(&mut snapshot, 51, 2);
        let newcomer = Arc::clone(&snapshot.legs[&LegId(51)]);
        assert_eq!(legs.slot_of(&newcomer), gone_slot);
        let now = plans
            .receivers(slot, &sender, &snapshot, &mut legs)
            .to_vec();
        assert_eq!(now.len(), 1);
        assert!(!now.contains(&gone_slot));
        assert_eq!(plans.made, 3);

        // Another sender given the first sender's slot gets its own plan.
        let mut others = LegSessions::<AnyGcm>::default();
        let other = Arc::clone(&snapshot.legs[&LegId(3)]);
        let plan = plans.receivers(slot, &other, &snapshot, &mut others).len();
        assert_eq!(plan, snapshot.meetings[&MeetingIdx(2)].len() - 1);
    }
}
