//! A worker's own SRTP state per leg: the inbound session (client→relay
//! key: unprotect, replay windows) and the outbound one (relay→client key:
//! protect), each made the first time the worker needs it and owned by
//! `&mut`, never shared. Keys are derived and expanded once, at creation;
//! nothing here allocates per packet.
//!
//! Legs live in a slab (`Vec` of slots plus an index by [`LegId`]) so the
//! fan-out can borrow the outbound sessions of many receivers at once, one
//! `&mut` each, for a single crypto batch ([`LegSessions::outbound_many`]).
//!
//! Also kept per leg: the address this worker last accepted the leg's
//! packets from, indexed for RTCP sender demux (a receive-only participant's
//! RTCP names an SSRC no stream has; its address says whose it is).
//!
//! Both sessions of a leg record their RTP indices in the worker's
//! [`IndexJournal`] under the leg's id, which outlives the worker: the
//! sessions a restarted worker makes take their streams up from it
//! (module doc of `worker.rs`, "Restarts").
//!
//! State of legs that left the snapshot is dropped by [`LegSessions::sweep`],
//! a few slots per snapshot change, so a change costs the worker
//! O(budget), not O(legs held); a route republished under the same id with
//! other keys loses its sessions the first time it is looked up
//! ([`LegSessions::slot_of`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::{IdHash, LegId, LegRoute, Path, RoutingSnapshot};
use crate::crypto::AeadBackend;
use crate::srtp::{IndexJournal, MasterKey, SrtpSession};

/// Index of a leg's slot; valid until the next [`LegSessions::prune`].
pub(crate) type SlotIdx = usize;

/// One leg's state on this worker.
#[derive(Debug)]
struct LegState<B: AeadBackend> {
    /// The route the sessions were keyed from (to notice a re-key).
    route: Arc<LegRoute>,
    /// Unprotects what the participant sends.
    inbound: Option<SrtpSession<B>>,
    /// Protects what the relay sends the participant.
    outbound: Option<SrtpSession<B>>,
    /// Where this worker last accepted the leg's packets from.
    seen_at: Option<SocketAddr>,
}

/// Every leg this worker has state for.
#[derive(Debug)]
pub(crate) struct LegSessions<B: AeadBackend> {
    slots: Vec<Option<LegState<B>>>,
    by_id: HashMap<LegId, SlotIdx, IdHash>,
    free: Vec<SlotIdx>,
    by_addr: HashMap<SocketAddr, LegId>,
    /// Where the next [`Self::sweep`] starts.
    sweep_at: SlotIdx,
    /// Where the sessions record their indices, by leg id.
    journal: Arc<IndexJournal>,
}

impl<B: AeadBackend> Default for LegSessions<B> {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

/// The journal key of a leg's sessions: one per master key.
fn journal_key(leg: LegId, outbound: bool) -> u64 {
    (leg.0 << 1) | u64::from(outbound)
}

/// The leg a journal key belongs to.
pub(crate) fn leg_of_journal_key(key: u64) -> LegId {
    LegId(key >> 1)
}

/// Forgets what `journal` recorded for `leg`'s sessions.
fn forget(journal: &IndexJournal, leg: LegId) {
    journal.forget(journal_key(leg, false));
    journal.forget(journal_key(leg, true));
}

fn same_key(a: &MasterKey, b: &MasterKey) -> bool {
    a.profile() == b.profile() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn same_keys(a: &LegRoute, b: &LegRoute) -> bool {
    same_key(&a.client_to_relay, &b.client_to_relay)
        && same_key(&a.relay_to_client, &b.relay_to_client)
}

impl<B: AeadBackend> LegSessions<B> {
    /// No legs yet; sessions record their indices in `journal`.
    pub(crate) fn new(journal: Arc<IndexJournal>) -> Self {
        Self {
            slots: Vec::new(),
            by_id: HashMap::default(),
            free: Vec::new(),
            by_addr: HashMap::new(),
            sweep_at: 0,
            journal,
        }
    }

    /// The journal the sessions record their indices in.
    pub(crate) fn journal(&self) -> &IndexJournal {
        &self.journal
    }

    /// The slot of `route`'s leg, made (without sessions) on first use.
    /// A route republished under the same id keeps the slot, and its
    /// sessions too unless its keys changed.
    pub(crate) fn slot_of(&mut self, route: &Arc<LegRoute>) -> SlotIdx {
        if let Some(&slot) = self.by_id.get(&route.id) {
            if let Some(state) = self.slots.get_mut(slot).and_then(Option::as_mut)
                && !Arc::ptr_eq(&state.route, route)
            {
                if !same_keys(route, &state.route) {
                    state.inbound = None;
                    state.outbound = None;
                    // New keys: their indices start over.
                    forget(&self.journal, route.id);
                    if let Some(addr) = state.seen_at.take() {
                        self.by_addr.remove(&addr);
                    }
                }
                state.route = Arc::clone(route);
            }
            return slot;
        }
        let state = LegState {
            route: Arc::clone(route),
            inbound: None,
            outbound: None,
            seen_at: None,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(entry) = self.slots.get_mut(slot) {
                    *entry = Some(state);
                }
                slot
            }
            None => {
                self.slots.push(Some(state));
                self.slots.len() - 1
            }
        };
        self.by_id.insert(route.id, slot);
        slot
    }

    /// The leg's inbound session, made from its client→relay key on first
    /// use. `None` if the key cannot be set up (the
    /// backend refused it; the snapshot's keys are validated, so this is
    /// not expected) or the slot does not exist.
    pub(crate) fn inbound(&mut self, slot: SlotIdx, backend: &B) -> Option<&mut SrtpSession<B>> {
        let journal = &self.journal;
        let state = self.slots.get_mut(slot)?.as_mut()?;
        if state.inbound.is_none() {
            state.inbound = SrtpSession::new(backend.clone(), &state.route.client_to_relay)
                .ok()
                .map(|s| s.with_journal(Arc::clone(journal), journal_key(state.route.id, false)));
        }
        state.inbound.as_mut()
    }

    /// The leg's outbound session, made from its relay→client key on first
    /// use. `None` if the key cannot be set up (the
    /// backend refused it; the snapshot's keys are validated, so this is
    /// not expected) or the slot does not exist.
    pub(crate) fn outbound(&mut self, slot: SlotIdx, backend: &B) -> Option<&mut SrtpSession<B>> {
        let journal = &self.journal;
        let state = self.slots.get_mut(slot)?.as_mut()?;
        if state.outbound.is_none() {
            state.outbound = SrtpSession::new(backend.clone(), &state.route.relay_to_client)
                .ok()
                .map(|s| s.with_journal(Arc::clone(journal), journal_key(state.route.id, true)));
        }
        state.outbound.as_mut()
    }

    /// The outbound sessions of `slots`, which must be ascending and
    /// distinct, one `&mut` each, in that order. A slot out of order, or
    /// without an outbound session, yields `None`.
    pub(crate) fn outbound_many<'a>(
        &'a mut self,
        slots: impl Iterator<Item = SlotIdx> + 'a,
    ) -> impl Iterator<Item = Option<&'a mut SrtpSession<B>>> + 'a {
        let mut walk = self.slots.iter_mut();
        let mut next = 0;
        slots.map(move |slot| {
            let skip = slot.checked_sub(next)?;
            next = slot + 1;
            // Slice iterators skip in O(1).
            walk.nth(skip)?.as_mut()?.outbound.as_mut()
        })
    }

    /// Notes that the leg in `slot` was accepted from `addr`, for RTCP
    /// sender demux. Cheap when nothing changed (the usual case).
    pub(crate) fn seen_at(&mut self, slot: SlotIdx, addr: SocketAddr) {
        let Some(state) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if state.seen_at == Some(addr) {
            return;
        }
        if let Some(old) = state.seen_at.replace(addr) {
            self.by_addr.remove(&old);
        }
        self.by_addr.insert(addr, state.route.id);
    }

    /// Like [`Self::seen_at`], but only if the leg has no address noted
    /// yet.
    pub(crate) fn seen_first_at(&mut self, slot: SlotIdx, addr: SocketAddr) {
        let known = self
            .slots
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|state| state.seen_at.is_some());
        if !known {
            self.seen_at(slot, addr);
        }
    }

    /// The latched path of the leg in `slot`.
    pub(crate) fn latched(&self, slot: SlotIdx) -> Option<Path> {
        self.slots.get(slot)?.as_ref()?.route.latch.path()
    }

    /// The leg in `slot`.
    pub(crate) fn id_of(&self, slot: SlotIdx) -> Option<LegId> {
        Some(self.slots.get(slot)?.as_ref()?.route.id)
    }

    /// The leg this worker last accepted packets from `addr` for.
    pub(crate) fn leg_at(&self, addr: SocketAddr) -> Option<LegId> {
        self.by_addr.get(&addr).copied()
    }

    /// Looks at up to `budget` slots, continuing where the last sweep
    /// stopped, and drops the state of those whose leg is not in
    /// `snapshot`. Called once per snapshot change, so a change costs
    /// O(budget) and the state of departed legs goes within a few changes.
    ///
    /// A freed slot may be reused by another leg at once: callers holding
    /// slot numbers (the fan-out plans) must revalidate them after every
    /// snapshot change, which they do against the meeting's [`Members`]
    /// (a leg that left changed its meeting's set).
    ///
    /// [`Members`]: super::Members
    pub(crate) fn sweep(&mut self, snapshot: &RoutingSnapshot, budget: usize) {
        let count = self.slots.len();
        if count == 0 {
            return;
        }
        for _ in 0..budget.min(count) {
            let slot = self.sweep_at % count;
            self.sweep_at = slot + 1;
            let Some(entry) = self.slots.get_mut(slot) else {
                continue;
            };
            let Some(state) = entry else { continue };
            if snapshot.legs.contains_key(&state.route.id) {
                continue;
            }
            self.by_id.remove(&state.route.id);
            forget(&self.journal, state.route.id);
            if let Some(addr) = state.seen_at {
                self.by_addr.remove(&addr);
            }
            self.free.push(slot);
            *entry = None;
        }
    }

    /// How many legs this worker holds state for.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicU64};

    use super::*;
    use crate::crypto::AnyGcm;
    use crate::relay::{Latch, MeetingIdx, MeetingMode};
    use crate::srtp::SrtpProfile;

    fn key(seed: u8) -> MasterKey {
        let material: Vec<u8> = (0..44).map(|i| seed.wrapping_add(i)).collect();
        MasterKey::new(SrtpProfile::AeadAes256Gcm, &material).unwrap()
    }

    fn route(id: u64, seed: u8) -> Arc<LegRoute> {
        Arc::new(LegRoute {
            id: LegId(id),
            meeting: MeetingIdx(1),
            mode: MeetingMode::E2ee,
            client_to_relay: key(seed),
            relay_to_client: key(seed + 100),
            latch: Arc::new(Latch::default()),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        })
    }

    fn snapshot(routes: &[&Arc<LegRoute>]) -> RoutingSnapshot {
        let mut snapshot = RoutingSnapshot::default();
        for route in routes {
            snapshot.insert_leg(Arc::clone(route));
        }
        snapshot
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn sessions_are_made_once_and_pruned_with_their_leg() {
        let backend = AnyGcm::default();
        let (a, b) = (route(1, 1), route(2, 2));
        let mut legs = LegSessions::default();
        let (sa, sb) = (legs.slot_of(&a), legs.slot_of(&b));
        assert_eq!(legs.slot_of(&a), sa);
        assert!(legs.inbound(sa, &backend).is_some());
        assert!(legs.outbound(sb, &backend).is_some());
        legs.seen_at(sb, addr(2));
        assert_eq!(legs.leg_at(addr(2)), Some(LegId(2)));
        legs.seen_at(sb, addr(3));
        assert_eq!(legs.leg_at(addr(2)), None);

        legs.sweep(&snapshot(&[&a]), usize::MAX);
        assert_eq!(legs.len(), 1);
        assert_eq!(legs.leg_at(addr(3)), None);
        // The freed slot is reused.
        assert_eq!(legs.slot_of(&b), sb);
        assert!(legs.inbound(99, &backend).is_none());
    }

    #[test]
    fn a_republished_route_keeps_state_unless_rekeyed() {
        let backend = AnyGcm::default();
        let a = route(1, 1);
        let mut legs = LegSessions::<AnyGcm>::default();
        let slot = legs.slot_of(&a);
        legs.seen_at(slot, addr(1));
        assert!(legs.inbound(slot, &backend).is_some());
        // Same keys in a new Arc: kept.
        let same = route(1, 1);
        legs.sweep(&snapshot(&[&same]), usize::MAX);
        assert_eq!(legs.slot_of(&same), slot);
        assert_eq!(legs.leg_at(addr(1)), Some(LegId(1)));
        assert!(legs.slots[slot].as_ref().unwrap().inbound.is_some());
        // New keys under the same id: the old sessions must go.
        let rekeyed = route(1, 7);
        assert_eq!(legs.slot_of(&rekeyed), slot);
        assert_eq!(legs.leg_at(addr(1)), None);
        let state = legs.slots[slot].as_ref().unwrap();
        assert!(state.inbound.is_none() && state.outbound.is_none());
        assert!(Arc::ptr_eq(&state.route, &rekeyed));
    }

    #[test]
    fn a_sweep_looks_at_its_budget_of_slots_and_resumes() {
        let routes: Vec<_> = (0..10).map(|i| route(i, i as u8)).collect();
        let mut legs = LegSessions::<AnyGcm>::default();
        for r in &routes {
            legs.slot_of(r);
        }
        // Only legs 0 and 9 stay.
        let kept = snapshot(&[&routes[0], &routes[9]]);
        legs.sweep(&kept, 4);
        assert_eq!(legs.len(), 7, "slots 1..=3 went");
        legs.sweep(&kept, 4);
        assert_eq!(legs.len(), 3);
        legs.sweep(&kept, 4);
        assert_eq!(legs.len(), 2);
        assert_eq!(legs.slot_of(&routes[9]), 9);
    }

    #[test]
    fn outbound_many_borrows_disjoint_sessions_in_order() {
        let backend = AnyGcm::default();
        let routes: Vec<_> = (0..5).map(|i| route(i, i as u8)).collect();
        let mut legs = LegSessions::default();
        for r in &routes {
            let slot = legs.slot_of(r);
            if slot != 2 {
                assert!(legs.outbound(slot, &backend).is_some());
            }
        }
        let got: Vec<bool> = legs
            .outbound_many([0, 2, 3, 1].into_iter())
            .map(|s| s.is_some())
            .collect();
        // 2 has no outbound session; 1 after 3 is out of order.
        assert_eq!(got, vec![true, false, true, false]);
    }
}
