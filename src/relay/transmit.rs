//! Outgoing datagrams a worker produced in one loop turn, in one reusable
//! arena: the relay core writes each packet straight into its slot (no
//! per-packet allocation once the arena has grown to the largest fan-out
//! seen), and the I/O layer sends them all in one batch.

use std::net::{IpAddr, SocketAddr};

use super::{MeetingMode, Path};

/// Room for one datagram: a full Ethernet-MTU UDP payload plus the SRTP/
/// SRTCP trailer sluice may append.
pub const SLOT: usize = 1536;

/// One datagram to send.
#[derive(Debug, Clone, Copy)]
pub struct Transmit<'a> {
    /// The bytes.
    pub data: &'a [u8],
    /// Where to.
    pub dest: SocketAddr,
    /// The local address to send from (the one `dest` sent to), when the
    /// socket is bound to several; `None`: the kernel's choice.
    pub src: Option<IpAddr>,
    /// The mode of the meeting it belongs to (for metrics).
    pub mode: MeetingMode,
}

/// The arena.
#[derive(Debug, Default)]
pub struct Transmits {
    bytes: Vec<u8>,
    meta: Vec<(usize, Path, MeetingMode)>,
}

impl Transmits {
    /// An empty arena with room for `slots` datagrams before it grows.
    pub fn with_capacity(slots: usize) -> Self {
        Self {
            bytes: vec![0; slots * SLOT],
            meta: Vec::with_capacity(slots),
        }
    }

    /// The next free slot, [`SLOT`] bytes long; finish it with
    /// [`Self::commit`] or leave it (an uncommitted slot is reused).
    pub fn slot(&mut self) -> &mut [u8] {
        let start = self.meta.len() * SLOT;
        if self.bytes.len() < start + SLOT {
            self.bytes.resize(start + SLOT, 0);
        }
        &mut self.bytes[start..start + SLOT]
    }

    /// Keeps the first `len` bytes of the current slot as a datagram to
    /// `dest` (an address, or a [`Path`] naming the local address to send
    /// from too).
    pub fn commit(&mut self, len: usize, dest: impl Into<Path>, mode: MeetingMode) {
        debug_assert!(len <= SLOT);
        self.meta.push((len.min(SLOT), dest.into(), mode));
    }

    /// The next `n` free slots as one buffer of `n * SLOT` bytes, to fill
    /// several datagrams at once (one packet protected for many receivers
    /// in one crypto batch). Keep them with [`Self::commit_free`].
    pub fn free_slots(&mut self, n: usize) -> &mut [u8] {
        let start = self.meta.len() * SLOT;
        let end = start + n * SLOT;
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        &mut self.bytes[start..end]
    }

    /// Keeps the first `len` bytes of free slot `k` (0 is the slot
    /// [`Self::slot`] returns) as a datagram to `dest`. Free slots before it
    /// are given up: the datagram moves down into the first free slot. So
    /// slots filled through [`Self::free_slots`] are committed in order,
    /// with `k` counting from the first one still free, and the ones to
    /// drop are simply skipped (no copy unless one was skipped).
    pub fn commit_free(&mut self, k: usize, len: usize, dest: impl Into<Path>, mode: MeetingMode) {
        let len = len.min(SLOT);
        let first = self.meta.len() * SLOT;
        if k > 0 {
            let from = first + k * SLOT;
            if from + len > self.bytes.len() {
                debug_assert!(false, "commit_free of a slot never handed out");
                return;
            }
            self.bytes.copy_within(from..from + len, first);
        }
        self.commit(len, dest, mode);
    }

    /// Datagrams committed so far.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether none were committed.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The `i`th datagram.
    pub fn get(&self, i: usize) -> Option<Transmit<'_>> {
        let &(len, dest, mode) = self.meta.get(i)?;
        Some(Transmit {
            data: &self.bytes[i * SLOT..i * SLOT + len],
            dest: dest.remote,
            src: dest.local,
            mode,
        })
    }

    /// Every datagram, in commit order.
    pub fn iter(&self) -> impl Iterator<Item = Transmit<'_>> {
        (0..self.meta.len()).filter_map(|i| self.get(i))
    }

    /// Forgets every datagram, keeping the memory.
    pub fn clear(&mut self) {
        self.meta.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_committed_in_order_and_reused_after_clear() {
        let dest: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut t = Transmits::with_capacity(1);
        t.slot()[..3].copy_from_slice(b"abc");
        t.commit(3, dest, MeetingMode::E2ee);
        t.slot()[..2].copy_from_slice(b"xy");
        // An uncommitted slot is simply overwritten next time.
        t.slot()[..2].copy_from_slice(b"de");
        t.commit(2, dest, MeetingMode::Standard);
        let got: Vec<_> = t.iter().map(|x| (x.data.to_vec(), x.mode)).collect();
        assert_eq!(
            got,
            vec![
                (b"abc".to_vec(), MeetingMode::E2ee),
                (b"de".to_vec(), MeetingMode::Standard)
            ]
        );
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.slot().len(), SLOT);
    }

    #[test]
    fn free_slots_commit_in_order_skipping_dropped_ones() {
        let dest: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut t = Transmits::default();
        t.slot()[..1].copy_from_slice(b"0");
        t.commit(1, dest, MeetingMode::E2ee);
        let region = t.free_slots(3);
        assert_eq!(region.len(), 3 * SLOT);
        for (i, slot) in region.chunks_exact_mut(SLOT).enumerate() {
            slot[..2].copy_from_slice(&[b'a' + i as u8; 2]);
        }
        // Keep the first, drop the second, keep the third.
        t.commit_free(0, 2, dest, MeetingMode::E2ee);
        t.commit_free(1, 2, dest, MeetingMode::E2ee);
        let got: Vec<_> = t.iter().map(|x| x.data.to_vec()).collect();
        assert_eq!(got, vec![b"0".to_vec(), b"aa".to_vec(), b"cc".to_vec()]);
    }
}
