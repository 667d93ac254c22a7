//! Fan-out of one publisher's RTP packet: to whom (per sending leg, the
//! other legs of its meeting, worked out once per snapshot generation so
//! the per-packet loop does no lookups by id) and how (every receiver's
//! copy written into its own [`Transmits`] slot and protected there, one
//! backend call per [`BATCH_CHUNK`] receivers: the batch a multi-buffer
//! or GPU backend fills its lanes with).

use std::collections::HashMap;
use std::net::SocketAddr;

use arrayvec::ArrayVec;

use super::legs::{LegSessions, SlotIdx};
use super::worker::drop_reason;
use super::{LegRoute, MeetingMode, RoutingSnapshot, SLOT, Transmits};
use crate::crypto::AeadBackend;
use crate::metrics::{Drop, WorkerCounters};
use crate::srtp::{BATCH_CHUNK, BatchItem, protect_rtp_batch};

/// A latched receiver of one fan-out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Receiver {
    /// Its leg's slot (outbound session made).
    pub(crate) slot: SlotIdx,
    /// Its latched address.
    pub(crate) dest: SocketAddr,
}

/// Per sending leg (by slot): the slots of the other legs of its meeting,
/// ascending and distinct, as [`LegSessions::outbound_many`] lends them.
/// Streams with an audience of their own (`RoutingSnapshot::audiences`)
/// have a plan by SSRC instead.
#[derive(Debug, Default)]
pub(crate) struct FanoutPlans {
    by_sender: Vec<Option<Vec<SlotIdx>>>,
    by_stream: HashMap<u32, Vec<SlotIdx>>,
}

impl FanoutPlans {
    /// Forgets every plan (the snapshot changed; slots may be reused).
    pub(crate) fn clear(&mut self) {
        self.by_sender.clear();
        self.by_stream.clear();
    }

    /// Who the stream `ssrc` from `sender` goes to: its own audience when
    /// the snapshot gives it one, else the rest of the sender's meeting.
    /// The audience lookup is skipped while no stream has one.
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

    /// Who `sender`, in `sender_slot`, fans out to; worked out on the
    /// first packet after [`Self::clear`].
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
        entry.get_or_insert_with(|| {
            let members = snapshot.meetings.get(&sender.meeting);
            let mut slots: Vec<SlotIdx> = members
                .into_iter()
                .flatten()
                .filter(|id| **id != sender.id)
                .filter_map(|id| snapshot.legs.get(id))
                .map(|route| legs.slot_of(route))
                .collect();
            slots.sort_unstable();
            slots.dedup();
            slots
        })
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
        for (session, buf) in sessions.zip(region.chunks_exact_mut(SLOT)) {
            let copied = buf
                .get_mut(..rtp.len())
                .map(|plain| plain.copy_from_slice(rtp))
                .is_some();
            let ok = match session {
                Some(session) if copied => items
                    .try_push(BatchItem::new(session, buf, rtp.len()))
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
