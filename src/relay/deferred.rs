//! Fan-outs whose seals run on a device queue (the GPU backend): handed
//! over in one loop turn, sent in a later one, never reordered.
//!
//! [`submit_fanout`] plans every receiver's SRTP packet (index, nonce)
//! as the CPU path would, copies header and payload into a staging slot
//! per receiver, and submits the seals with
//! [`AeadBackend::submit_seal`]. While anything is outstanding, fan-outs
//! sealed on the CPU are queued behind it ([`DeferredSends::sealed`])
//! instead of going straight out, so the worker's packets leave in the
//! order it handled them, and a stream's packets never overtake each
//! other. [`DeferredSends::poll`], called every loop turn, moves what is
//! finished, from the front, into the turn's [`Transmits`].
//!
//! A batch the device fails is dropped and counted (`other`, and the
//! GPU fallback counter); the backend then stops offloading. Its SRTP
//! indices are spent, so nothing is ever sealed twice under one nonce.

use std::collections::VecDeque;

use super::fanout::Receiver;
use super::legs::LegSessions;
use super::worker::drop_reason;
use super::{MeetingMode, Path, SLOT, Transmits};
use crate::crypto::{AeadBackend, GCM_TAG_LEN, SealJob};
use crate::metrics::{Drop, WorkerCounters};
use crate::srtp::{Phase, SealPlan};

/// Where one receiver's packet of a staged fan-out stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowState {
    /// Refused before sealing (counted): not sent.
    Skipped,
    /// On the device.
    Pending,
    /// Protected, ready to send.
    Done,
}

/// One receiver's packet in a staged fan-out.
#[derive(Debug, Clone, Copy)]
struct Row {
    dest: Path,
    /// Where the header ends and the sealed packet's whole length.
    header_len: usize,
    len: usize,
    state: RowState,
}

/// A fan-out waiting for the device: each row's packet in its own
/// [`SLOT`] of `bytes` (header and payload; ciphertext and tag land
/// there when the device returns them).
#[derive(Debug, Default)]
struct Staged {
    bytes: Vec<u8>,
    rows: Vec<Row>,
    mode: Option<MeetingMode>,
    /// Whether the device holds a batch for this fan-out.
    submitted: bool,
}

#[derive(Debug)]
enum Entry {
    /// Already sealed on the CPU, queued behind device work.
    Sealed(Transmits),
    /// On the device.
    Staged(Staged),
}

/// A worker's queue of fan-outs not yet sent.
#[derive(Debug, Default)]
pub(crate) struct DeferredSends {
    entries: VecDeque<Entry>,
    spare_sealed: Vec<Transmits>,
    spare_staged: Vec<Staged>,
}

impl DeferredSends {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where a CPU-sealed fan-out goes while device work is outstanding.
    pub(crate) fn sealed(&mut self) -> &mut Transmits {
        if !matches!(self.entries.back(), Some(Entry::Sealed(_))) {
            let t = self.spare_sealed.pop().unwrap_or_default();
            self.entries.push_back(Entry::Sealed(t));
        }
        match self.entries.back_mut() {
            Some(Entry::Sealed(t)) => t,
            // Pushed just above.
            _ => unreachable!("the back entry is a Sealed one"),
        }
    }

    /// Moves finished entries, oldest first, into `out`; stops at the
    /// first one the device has not finished (with `block`, waits for
    /// every one). Returns whether anything still waits.
    pub(crate) fn poll<B: AeadBackend>(
        &mut self,
        backend: &B,
        block: bool,
        counters: &WorkerCounters,
        out: &mut Transmits,
    ) -> bool {
        while let Some(front) = self.entries.front_mut() {
            match front {
                Entry::Sealed(sealed) => {
                    for t in sealed.iter() {
                        copy_out(out, t.data, Path::new(t.dest, t.src), t.mode);
                    }
                }
                Entry::Staged(staged) => {
                    if staged.submitted && !finish(backend, block, staged, counters) {
                        return true;
                    }
                    let mode = staged.mode.unwrap_or(MeetingMode::E2ee);
                    for (k, row) in staged.rows.iter().enumerate() {
                        if row.state == RowState::Done {
                            let slot = &staged.bytes[k * SLOT..k * SLOT + row.len];
                            copy_out(out, slot, row.dest, mode);
                        }
                    }
                }
            }
            match self.entries.pop_front() {
                Some(Entry::Sealed(mut t)) => {
                    t.clear();
                    self.spare_sealed.push(t);
                }
                Some(Entry::Staged(s)) => self.spare_staged.push(s),
                None => {}
            }
        }
        false
    }
}

/// Collects the device's results for `staged`; false if not ready yet.
fn finish<B: AeadBackend>(
    backend: &B,
    block: bool,
    staged: &mut Staged,
    counters: &WorkerCounters,
) -> bool {
    // The device batch holds the pending rows, in row order: job i is
    // the i-th pending row, found by walking forward (no allocation).
    let Staged { bytes, rows, .. } = staged;
    let mut next_row = 0;
    let verdict = backend.poll_sealed(block, &mut |_, ciphertext, tag| {
        let Some(k) = (next_row..rows.len()).find(|&k| rows[k].state == RowState::Pending) else {
            return;
        };
        next_row = k + 1;
        let row = rows[k];
        let slot = &mut bytes[k * SLOT..(k + 1) * SLOT];
        let body_end = row.len - GCM_TAG_LEN;
        if body_end - row.header_len == ciphertext.len() {
            slot[row.header_len..body_end].copy_from_slice(ciphertext);
            slot[body_end..row.len].copy_from_slice(tag);
            rows[k].state = RowState::Done;
        } else {
            // Leave it pending: counted as dropped below.
            rows[k].state = RowState::Skipped;
            counters.dropped(Drop::Other);
        }
    });
    match verdict {
        None => false,
        Some(ok) => {
            // Whatever is still pending did not come back: the device
            // failed the batch (`ok` false) or returned too few results.
            let _ = ok;
            for row in rows.iter_mut().filter(|r| r.state == RowState::Pending) {
                row.state = RowState::Skipped;
                counters.dropped(Drop::Other);
            }
            staged.submitted = false;
            true
        }
    }
}

fn copy_out(out: &mut Transmits, data: &[u8], dest: impl Into<Path>, mode: MeetingMode) {
    let slot = out.slot();
    if let Some(into) = slot.get_mut(..data.len()) {
        into.copy_from_slice(data);
        out.commit(data.len(), dest, mode);
    }
}

/// Plans and submits one fan-out of `rtp` to `receivers` (ascending
/// slots, each with an outbound session). If the backend refuses the
/// batch, it is sealed here on the CPU; either way it is queued in order.
pub(crate) fn submit_fanout<B: AeadBackend>(
    backend: &B,
    legs: &mut LegSessions<B>,
    counters: &WorkerCounters,
    receivers: &[Receiver],
    rtp: &[u8],
    mode: MeetingMode,
    deferred: &mut DeferredSends,
) {
    let mut staged = deferred.spare_staged.pop().unwrap_or_default();
    staged.rows.clear();
    staged.mode = Some(mode);
    staged.submitted = false;
    if staged.bytes.len() < receivers.len() * SLOT {
        staged.bytes.resize(receivers.len() * SLOT, 0);
    }
    // Row k is receiver k, in slot k of `bytes`.
    let mut plans: Vec<(usize, SealPlan)> = Vec::with_capacity(receivers.len());
    let sessions = legs.outbound_many(receivers.iter().map(|r| r.slot));
    for (k, ((session, receiver), buf)) in sessions
        .zip(receivers)
        .zip(staged.bytes.chunks_exact_mut(SLOT))
        .enumerate()
    {
        let mut row = Row {
            dest: receiver.dest,
            header_len: 0,
            len: 0,
            state: RowState::Skipped,
        };
        match (session, buf.get_mut(..rtp.len())) {
            (Some(session), Some(plain)) => {
                plain.copy_from_slice(rtp);
                receiver.rewrite_copy(plain);
                match session.plan_protect_rtp_at(buf, rtp.len(), receiver.index) {
                    Ok(Phase::Gcm(plan)) => {
                        row.header_len = plan.header_len();
                        row.len = plan.sealed_len();
                        row.state = RowState::Pending;
                        plans.push((k, plan));
                    }
                    Ok(Phase::Done(len)) => {
                        row.len = len;
                        row.state = RowState::Done;
                    }
                    Err(e) => counters.dropped(drop_reason(&e)),
                }
            }
            _ => counters.dropped(Drop::Other),
        }
        staged.rows.push(row);
    }
    if !plans.is_empty() {
        let mut jobs: Vec<SealJob<'_, B::Key>> = Vec::with_capacity(plans.len());
        let sessions = legs.outbound_many(
            plans
                .iter()
                .filter_map(|(k, _)| receivers.get(*k))
                .map(|r| r.slot),
        );
        let mut slots = staged.bytes.chunks_exact_mut(SLOT).enumerate();
        for (session, (k, plan)) in sessions.zip(&plans) {
            let Some(session) = session else {
                break;
            };
            // Slots ascend with `plans`: skip to this one.
            let Some((_, buf)) = slots.by_ref().find(|(at, _)| at == k) else {
                break;
            };
            jobs.push(session.seal_job(plan, buf));
        }
        if jobs.len() == plans.len() && backend.submit_seal(&jobs) {
            staged.submitted = true;
        } else {
            backend.seal_batch(&mut jobs);
            let sealed = jobs.len();
            drop(jobs);
            for (n, (k, _)) in plans.iter().enumerate() {
                if let Some(row) = staged.rows.get_mut(*k) {
                    row.state = if n < sealed {
                        RowState::Done
                    } else {
                        RowState::Skipped
                    };
                }
            }
        }
    }
    deferred.entries.push_back(Entry::Staged(staged));
}
