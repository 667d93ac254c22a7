//! An index journal: what a session has used of each SSRC's SRTP index
//! space, kept outside the session so that a successor made with the
//! same master key (the session was lost with a panicking packet worker)
//! takes up each stream where it was, never below.
//!
//! What is kept, per (journal key, SSRC, direction), in one atomic cell
//! each:
//! - **sent**: a *reservation*, an exclusive bound on every index the
//!   session protected. The session raises it before it uses an index at
//!   or above it, to that index plus [`RESERVE_AHEAD`]: a relaxed store
//!   once per [`RESERVE_AHEAD`] packets of a stream, never per packet. A
//!   successor refuses every index below the bound, so it can never seal
//!   under an index (an AES-GCM nonce, or an AES-CM keystream) that was
//!   used before, whatever happened between the last store and the loss:
//!   the store precedes the use, on the same thread. The price: after a
//!   restart a receiver misses at most [`RESERVE_AHEAD`] packets of each
//!   stream (those whose index lies in the unused rest of the
//!   reservation).
//! - **received**: the highest index accepted, stored when the stream
//!   first authenticates and then whenever it crosses a multiple of
//!   [`RECEIVED_STRIDE`] (which every rollover-counter change does), so
//!   the record trails the stream by less than that. A successor starts
//!   the stream's replay window there (everything at or below refused),
//!   so its index estimate (RFC 3711 §3.3.1) picks the right rollover
//!   counter: the stride is well inside the estimate's 2^15 reach.
//!
//! The cells are written only by the session that holds them, with
//! relaxed stores; which cells exist (a map by key and SSRC behind a
//! mutex) changes only when a session starts on a stream, resumes, or
//! is forgotten, never per packet. Sessions without a journal
//! ([`super::SrtpSession::with_journal`] not called) behave as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How far ahead of an index a sent-side reservation reaches: the most
/// packets of one stream a receiver misses after its sender's session
/// was lost and resumed (the receive batch of a packet worker).
pub const RESERVE_AHEAD: u64 = 32;

/// Every how many indices a received-side record is brought up to date.
pub const RECEIVED_STRIDE: u64 = 1 << 12;

/// Which way a stream's recorded indices went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Way {
    Sent,
    Received,
}

/// One atomic cell of the journal.
pub(crate) type Cell = Arc<AtomicU64>;

/// The cells of one key, by SSRC and way.
type Cells = HashMap<(u32, Way), Cell>;

/// The cells of every session journaled here, by the key each session
/// was given.
#[derive(Debug, Default)]
pub struct IndexJournal {
    keys: Mutex<HashMap<u64, Cells>>,
}

impl IndexJournal {
    fn with_keys<T>(&self, f: impl FnOnce(&mut HashMap<u64, Cells>) -> T) -> T {
        // Nothing panics while the lock is held (map operations on
        // integers), so a poisoned lock still holds a consistent map.
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut keys)
    }

    fn cell(&self, key: u64, ssrc: u32, way: Way) -> Cell {
        self.with_keys(|keys| {
            Arc::clone(
                keys.entry(key)
                    .or_default()
                    .entry((ssrc, way))
                    .or_insert_with(|| Arc::new(AtomicU64::new(0))),
            )
        })
    }

    /// The cell for what is sent on `ssrc` under `key`.
    pub(crate) fn sent(&self, key: u64, ssrc: u32) -> Cell {
        self.cell(key, ssrc, Way::Sent)
    }

    /// The cell for what is received on `ssrc` under `key`.
    pub(crate) fn received(&self, key: u64, ssrc: u32) -> Cell {
        self.cell(key, ssrc, Way::Received)
    }

    /// Every received stream recorded under `key`: its SSRC, the index
    /// it reached, and its cell (to go on recording in). A successor
    /// session starts its replay windows from these before its first
    /// packet, since its first index estimate needs them.
    pub(crate) fn received_streams(&self, key: u64) -> Vec<(u32, u64, Cell)> {
        self.with_keys(|keys| {
            let Some(cells) = keys.get(&key) else {
                return Vec::new();
            };
            cells
                .iter()
                .filter(|((_, way), _)| *way == Way::Received)
                .filter_map(|(&(ssrc, _), cell)| {
                    let index = cell.load(Ordering::Relaxed).checked_sub(1)?;
                    Some((ssrc, index, Arc::clone(cell)))
                })
                .collect()
        })
    }

    /// Every key with records (for a successor to take up, or forget).
    pub fn recorded_keys(&self) -> Vec<u64> {
        self.with_keys(|keys| keys.keys().copied().collect())
    }

    /// Forgets everything recorded under `key` (its leg left, or was
    /// given other keys: the indices start over under a new key).
    pub fn forget(&self, key: u64) {
        self.with_keys(|keys| keys.remove(&key));
    }

    /// How many keys have records.
    pub fn keys(&self) -> usize {
        self.with_keys(|keys| keys.len())
    }
}

/// Journals per packet worker, by worker index, kept by whoever restarts
/// the workers: a restarted worker gets the journal its predecessor
/// wrote.
#[derive(Debug, Default)]
pub struct IndexJournals {
    workers: Mutex<Vec<Arc<IndexJournal>>>,
}

impl IndexJournals {
    /// The journal of worker `index` (made on first use). Called when a
    /// worker's handler is made, never on the packet path.
    pub fn for_worker(&self, index: usize) -> Arc<IndexJournal> {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if workers.len() <= index {
            workers.resize_with(index + 1, Arc::default);
        }
        Arc::clone(&workers[index])
    }
}

/// A sent stream's reservation: the bound its journal cell holds, kept
/// next to the stream's state so the check is one comparison.
#[derive(Debug, Default)]
pub(crate) struct Reservation {
    /// Every index used is below this (0: none reserved yet).
    below: u64,
    cell: Option<Cell>,
}

impl Reservation {
    /// A reservation recorded in `cell`, resuming at `below`.
    pub(crate) fn new(cell: Option<Cell>, below: u64) -> Self {
        Self { below, cell }
    }

    /// Makes sure `index` is covered before it is used.
    #[inline]
    pub(crate) fn cover(&mut self, index: u64) {
        if index >= self.below {
            self.below = reserved_bound(index);
            if let Some(cell) = &self.cell {
                cell.store(self.below, Ordering::Relaxed);
            }
        }
    }
}

/// The bound a reservation for `index` records.
pub(crate) fn reserved_bound(index: u64) -> u64 {
    index + 1 + RESERVE_AHEAD
}

/// A received stream's record: the journal cell and when to write it next.
#[derive(Debug, Default)]
pub(crate) struct ReceivedRecord {
    /// The record is written when an index reaches this.
    next: u64,
    cell: Option<Cell>,
}

impl ReceivedRecord {
    /// A record in `cell`, last written at `index` (`None`: not yet).
    pub(crate) fn new(cell: Option<Cell>, index: Option<u64>) -> Self {
        Self {
            next: index.map_or(0, next_record),
            cell,
        }
    }

    /// Notes that `index` was accepted.
    #[inline]
    pub(crate) fn accepted(&mut self, index: u64) {
        if index >= self.next {
            self.next = next_record(index);
            if let Some(cell) = &self.cell {
                cell.store(index + 1, Ordering::Relaxed);
            }
        }
    }
}

/// The index at which a received record last written at `index` is
/// written again: the next multiple of [`RECEIVED_STRIDE`].
fn next_record(index: u64) -> u64 {
    (index | (RECEIVED_STRIDE - 1)) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_raised_before_the_index_it_covers_is_used() {
        let journal = IndexJournal::default();
        let cell = journal.sent(7, 0xaa);
        let mut r = Reservation::new(Some(Arc::clone(&cell)), 0);
        r.cover(0);
        assert_eq!(cell.load(Ordering::Relaxed), 1 + RESERVE_AHEAD);
        // Inside the reservation: no store.
        cell.store(0, Ordering::Relaxed);
        r.cover(RESERVE_AHEAD);
        assert_eq!(cell.load(Ordering::Relaxed), 0, "covered, not written");
        r.cover(RESERVE_AHEAD + 1);
        assert_eq!(
            cell.load(Ordering::Relaxed),
            RESERVE_AHEAD + 2 + RESERVE_AHEAD
        );
        // A jump (loss upstream) is covered at once.
        r.cover(1 << 20);
        assert_eq!(cell.load(Ordering::Relaxed), (1 << 20) + 1 + RESERVE_AHEAD);
    }

    #[test]
    fn every_used_index_stays_below_the_recorded_bound() {
        let journal = IndexJournal::default();
        let cell = journal.sent(1, 1);
        let mut r = Reservation::new(Some(Arc::clone(&cell)), 0);
        let mut index = 0xfff0_u64;
        for step in [1, 1, 3, 40, 1, 1000, 2, 1] {
            index += step;
            r.cover(index);
            assert!(index < cell.load(Ordering::Relaxed), "{index}");
        }
    }

    #[test]
    fn a_received_record_trails_by_less_than_the_stride() {
        let journal = IndexJournal::default();
        let cell = journal.received(3, 9);
        let mut r = ReceivedRecord::new(Some(Arc::clone(&cell)), None);
        r.accepted(0xfffe);
        assert_eq!(cell.load(Ordering::Relaxed), 0xffff, "first one recorded");
        r.accepted(0xffff);
        assert_eq!(cell.load(Ordering::Relaxed), 0xffff, "same stride");
        // The rollover counter changes: recorded.
        r.accepted(0x1_0000);
        assert_eq!(cell.load(Ordering::Relaxed), 0x1_0001);
        for index in 0x1_0001..0x1_0000 + 3 * RECEIVED_STRIDE {
            r.accepted(index);
            let recorded = cell.load(Ordering::Relaxed) - 1;
            assert!(
                index - recorded < RECEIVED_STRIDE,
                "{index:#x} {recorded:#x}"
            );
        }
    }

    #[test]
    fn received_streams_are_listed_by_key_and_forgotten_with_it() {
        let journal = IndexJournal::default();
        journal.sent(1, 10).store(50, Ordering::Relaxed);
        journal.received(1, 11).store(0x2_0001, Ordering::Relaxed);
        // Made, never written: nothing to resume.
        let _ = journal.received(1, 12);
        journal.received(2, 10).store(9, Ordering::Relaxed);
        let got: Vec<_> = journal
            .received_streams(1)
            .into_iter()
            .map(|(ssrc, index, _)| (ssrc, index))
            .collect();
        assert_eq!(got, vec![(11, 0x2_0000)]);
        journal.forget(1);
        assert!(journal.received_streams(1).is_empty());
        assert_eq!(journal.keys(), 1);
        journal.received(3, 1).store(1, Ordering::Relaxed);
        let mut keys = journal.recorded_keys();
        keys.sort_unstable();
        assert_eq!(keys, vec![2, 3]);
    }

    #[test]
    fn a_worker_gets_the_journal_its_predecessor_wrote() {
        let journals = IndexJournals::default();
        let first = journals.for_worker(2);
        first.sent(5, 5).store(3, Ordering::Relaxed);
        let again = journals.for_worker(2);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &journals.for_worker(0)));
    }
}
