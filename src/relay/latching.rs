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

use std::sync::atomic::Ordering;

use super::{Latch, LegRoute, Path, StreamRoute};

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

/// Decides, and applies, what an authenticated RTP packet from `from`
/// does to `latch`.
pub(crate) fn admit(latch: &Latch, from: impl Into<Path>, fresher: bool) -> Admission {
    let from = from.into();
    let before = latch.path();
    let admission = match before {
        Some(addr) if addr == from => Admission::Stay,
        Some(_) if !fresher => Admission::Stale,
        // Unset, or a fresher packet from a new address. `set` says false
        // only if another worker latched the same address meanwhile.
        _ if latch.set_path(from) => Admission::Latched,
        _ => Admission::Stay,
    };
    // The first RTP of a leg that was latched by its RTCP (a peer without
    // rtcp-mux that reports before it sends, as ffmpeg does): the address
    // RTCP came from stays the RTCP latch.
    if let Some(rtcp) = before
        && admission == Admission::Latched
        && !latch.rtp_from_rtp()
    {
        latch.set_rtcp_path(rtcp);
    }
    if admission != Admission::Stale {
        latch.mark_rtp_from_rtp();
    }
    admission
}

/// Decides, and applies, what an authenticated RTCP packet from `from`
/// does to `latch`. Peers without rtcp-mux send RTCP from another port
/// (RFC 3550 §11: the RTP port + 1), so RTCP keeps a latch of its own:
/// - a leg with no address yet (a receive-only participant's first
///   report) is latched there, RTP and RTCP alike;
/// - once the RTP address was learnt from RTP, RTCP never moves it: RTCP
///   from elsewhere, if fresher, moves only the RTCP latch;
/// - while the RTP address came from RTCP (a receive-only participant,
///   which sends nothing else), fresher RTCP from elsewhere moves it, so
///   such a leg follows its NAT rebinding.
pub(crate) fn admit_rtcp(latch: &Latch, from: impl Into<Path>, fresher: bool) -> Admission {
    let from = from.into();
    if latch.path().is_none() {
        return if latch.set_path(from) {
            Admission::Latched
        } else {
            Admission::Stay
        };
    }
    if latch.rtcp_path() == Some(from) {
        return Admission::Stay;
    }
    if !fresher {
        return Admission::Stale;
    }
    let moved = if latch.rtp_from_rtp() {
        // Also when `from` is the RTP address again (RTCP followed RTP to
        // a new address): the RTCP latch names it then.
        latch.set_rtcp_path(from)
    } else {
        latch.set_path(from)
    };
    if moved {
        Admission::Latched
    } else {
        Admission::Stay
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
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
    fn rtcp_from_another_port_keeps_its_own_latch() {
        let latch = Latch::default();
        // A peer without rtcp-mux: RTP from 5000, RTCP from 5001.
        assert_eq!(admit(&latch, addr(5000), true), Admission::Latched);
        assert_eq!(admit_rtcp(&latch, addr(5001), true), Admission::Latched);
        assert_eq!(latch.get(), Some(addr(5000)));
        assert_eq!(latch.rtcp(), Some(addr(5001)));
        // Alternating never moves either again.
        for _ in 0..3 {
            assert_eq!(admit(&latch, addr(5000), true), Admission::Stay);
            assert_eq!(admit_rtcp(&latch, addr(5001), true), Admission::Stay);
        }
        // A stale report from elsewhere moves nothing.
        assert_eq!(admit_rtcp(&latch, addr(6001), false), Admission::Stale);
        assert_eq!(
            (latch.get(), latch.rtcp()),
            (Some(addr(5000)), Some(addr(5001)))
        );
        // The peer rebinds: RTP and RTCP each follow their own packets.
        assert_eq!(admit(&latch, addr(7000), true), Admission::Latched);
        assert_eq!(latch.rtcp(), Some(addr(5001)));
        assert_eq!(admit_rtcp(&latch, addr(7001), true), Admission::Latched);
        assert_eq!(
            (latch.get(), latch.rtcp()),
            (Some(addr(7000)), Some(addr(7001)))
        );
    }

    #[test]
    fn a_peer_that_reports_before_it_sends_keeps_its_rtcp_port() {
        let latch = Latch::default();
        assert_eq!(admit_rtcp(&latch, addr(5001), true), Admission::Latched);
        assert_eq!(admit(&latch, addr(5000), true), Admission::Latched);
        assert_eq!(
            (latch.get(), latch.rtcp()),
            (Some(addr(5000)), Some(addr(5001)))
        );
        assert_eq!(admit_rtcp(&latch, addr(5001), true), Admission::Stay);
        assert_eq!(admit(&latch, addr(5000), true), Admission::Stay);
    }

    #[test]
    fn a_receive_only_leg_latches_and_moves_with_its_rtcp() {
        let latch = Latch::default();
        assert_eq!(admit_rtcp(&latch, addr(1), false), Admission::Latched);
        assert_eq!((latch.get(), latch.rtcp()), (Some(addr(1)), Some(addr(1))));
        assert_eq!(admit_rtcp(&latch, addr(1), false), Admission::Stay);
        assert_eq!(admit_rtcp(&latch, addr(2), false), Admission::Stale);
        // Its NAT rebinds: a fresher report moves where its media goes.
        assert_eq!(admit_rtcp(&latch, addr(2), true), Admission::Latched);
        assert_eq!((latch.get(), latch.rtcp()), (Some(addr(2)), Some(addr(2))));
        // Once it sends RTP, RTCP from elsewhere no longer moves the RTP latch.
        assert_eq!(admit(&latch, addr(3), true), Admission::Latched);
        assert_eq!(admit_rtcp(&latch, addr(4), true), Admission::Latched);
        assert_eq!((latch.get(), latch.rtcp()), (Some(addr(3)), Some(addr(4))));
    }

    #[test]
    fn the_local_address_is_part_of_the_latch() {
        let latch = Latch::default();
        let at = |ip: [u8; 4]| Path::new(addr(5000), Some(IpAddr::from(ip)));
        assert_eq!(
            admit(&latch, at([198, 51, 100, 1]), false),
            Admission::Latched
        );
        assert_eq!(admit(&latch, at([198, 51, 100, 1]), false), Admission::Stay);
        // The same peer reaching another of the box's addresses is a move,
        // subject to freshness like any other.
        assert_eq!(
            admit(&latch, at([198, 51, 100, 2]), false),
            Admission::Stale
        );
        assert_eq!(
            admit(&latch, at([198, 51, 100, 2]), true),
            Admission::Latched
        );
        assert_eq!(latch.path(), Some(at([198, 51, 100, 2])));
        assert_eq!(latch.rtcp_path(), Some(at([198, 51, 100, 2])));
        assert_eq!(latch.get(), Some(addr(5000)));
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
