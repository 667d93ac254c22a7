//! Symmetric RTP latching (DESIGN.md, "concepts"): a leg's remote address
//! is the source of its packets that authenticate. Called only after a
//! packet authenticated, so a forged packet never moves a latch.
//!
//! The first authenticated packet sets the latch. A later one from another
//! address moves it only if it is *fresher* than anything any worker
//! accepted for the stream (RTP) or the leg (SRTCP): a packet captured on
//! the wire and replayed from elsewhere lands on another worker, whose
//! replay window has never seen it, and must not hijack the leg. Freshness
//! is judged against the shared counters of the snapshot (module doc of
//! `snapshot.rs`), updated here with `fetch_max` for every accepted packet.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::{Latch, LegRoute, StreamRoute};

/// What an authenticated packet does to its leg's latch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// It came from the latched address: forward it.
    Stay,
    /// It set or moved the latch to its source: count it, forward it.
    Latched,
    /// It came from another address and is not fresher than what was
    /// accepted already: a replay from elsewhere, or a straggler from an
    /// address the leg has left. Drop it; the latch stays.
    Stale,
}

/// Records an accepted SRTP `index` for `stream`; whether it is newer
/// than every index accepted for the stream before, on any worker.
pub(crate) fn rtp_is_fresher(stream: &StreamRoute, index: u64) -> bool {
    index > stream.highest_index.fetch_max(index, Ordering::Relaxed)
}

/// Records an accepted SRTCP `index` from `leg` (the counter holds the
/// highest index plus one, 0 for none); whether it is newer than every
/// one accepted from the leg before, on any worker.
pub(crate) fn srtcp_is_fresher(leg: &LegRoute, index: u32) -> bool {
    let next = u64::from(index) + 1;
    next > leg.highest_srtcp_index.fetch_max(next, Ordering::Relaxed)
}

/// Decides, and applies, what an authenticated packet from `from` does to
/// `latch`.
pub(crate) fn admit(latch: &Latch, from: SocketAddr, fresher: bool) -> Admission {
    match latch.get() {
        Some(addr) if addr == from => Admission::Stay,
        Some(_) if !fresher => Admission::Stale,
        // Unset, or a fresher packet from a new address. `set` says false
        // only if another worker latched the same address meanwhile.
        _ if latch.set(from) => Admission::Latched,
        _ => Admission::Stay,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::relay::{LegId, MediaKind};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn first_sets_then_only_fresher_moves() {
        let latch = Latch::default();
        assert_eq!(admit(&latch, addr(1), false), Admission::Latched);
        assert_eq!(admit(&latch, addr(1), false), Admission::Stay);
        assert_eq!(admit(&latch, addr(2), false), Admission::Stale);
        assert_eq!(latch.get(), Some(addr(1)));
        assert_eq!(admit(&latch, addr(2), true), Admission::Latched);
        assert_eq!(latch.get(), Some(addr(2)));
    }

    #[test]
    fn freshness_is_strict_and_recorded() {
        let stream = StreamRoute {
            ssrc: 1,
            leg: LegId(1),
            kind: MediaKind::Audio,
            payload_type: 111,
            highest_index: Arc::new(AtomicU64::new(0)),
        };
        assert!(rtp_is_fresher(&stream, 10));
        assert!(!rtp_is_fresher(&stream, 10));
        assert!(!rtp_is_fresher(&stream, 3));
        assert!(rtp_is_fresher(&stream, 11));
        assert_eq!(stream.highest_index.load(Ordering::Relaxed), 11);
    }
}
