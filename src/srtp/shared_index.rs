//! One SSRC's SRTP send index space shared by several sessions under one
//! key (RFC 3711 §3.3.1, RFC 7714 §8.1): the relay's WHEP receive slots,
//! whose SSRC one packet worker protects while the slot carries a
//! publisher whose packets reach that worker, and another worker once the
//! slot switches to a publisher steered elsewhere.
//!
//! Each session keeps its own send window per SSRC (`session.rs`), which
//! refuses an index *it* used. Across sessions that is not enough: a
//! worker that never sent on the SSRC would start at rollover counter 0
//! (which the receiver, long past 2^16 packets, cannot decrypt) and could
//! use an index, an AES-GCM nonce under the receiver's key, that another
//! worker used already. A [`SharedSendIndex`] is one atomic: the highest
//! index reserved on the SSRC by any session. Sessions reserve indices in
//! blocks of [`CLAIM_AHEAD`]; before protecting, a session claims the
//! packet's index ([`SrtpSession::claim_shared_index`]):
//!
//! - The rollover counter is guessed from the higher of its own window's
//!   top and the shared one (RFC 3711 Appendix A), so a session that
//!   takes the SSRC over continues the receiver's count.
//! - An index above the shared highest is claimed by raising it to the
//!   top of a block: that index and the [`CLAIM_AHEAD`]` - 1` after it (a
//!   compare-and-swap: of two sessions racing for it, one wins).
//! - An index at or below it may be used only by the session that made
//!   the last reservation (the top of its own block *is* the shared
//!   highest, so nobody reserved since), with neither a store nor a
//!   compare-and-swap: its own window then says whether it used it. Any
//!   other session is refused ([`SrtpError::IndexReused`]); a claim lost
//!   to a race is refused too, and the packet dropped.
//! - A session whose reservation succeeded over someone else's (the
//!   shared highest was not the top of its own block) counts every index
//!   below the one it claimed as used (`ReplayWindow::close_up_to`): what
//!   it cannot know about, it never uses.
//!
//! So indices only grow across sessions, each index is used once, and a
//! late packet of the session that lost the SSRC, or an early one of the
//! session that took it over, is dropped rather than sealed twice.
//!
//! The block is what keeps the cost off the fan-out: one relaxed load per
//! copy, and one uncontended compare-and-swap per [`CLAIM_AHEAD`] packets
//! of the stream (a compare-and-swap per copy cost WHEP viewers ~10 % of
//! the fan-out at 160 bytes, bench/README.md). What it costs instead: the
//! indices of a block its session did not use before another session took
//! the SSRC over are never used by anyone. A gap in the index is harmless
//! to SRTP (the receiver's estimate of the rollover counter, RFC 3711
//! §3.3.1 and Appendix A, follows any jump under 2^15; here the index is
//! the packet's own sequence number with the receiver's rollover counter,
//! so the receiver never sees a jump the sequence numbers do not make). A
//! session taking the SSRC over is only refused its packets numbered into
//! the old session's unused block: a WHEP slot's switch leaves
//! `SWITCH_SEQ_GAP` (16) numbers out for the old worker's last packets
//! (`sluice_webrtc::slots`), of which a block takes at most
//! [`CLAIM_AHEAD`]` - 1`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::index::{self, MAX_INDEX};
use super::replay::ReplayWindow;
use super::{SrtpError, SrtpSession};
use crate::crypto::AeadBackend;

/// How many indices a session reserves on a [`SharedSendIndex`] at a
/// time (module doc).
pub const CLAIM_AHEAD: u64 = 8;

/// The highest SRTP index reserved on one SSRC under one key, by any of
/// the sessions that protect it (module doc). Starts with none.
#[derive(Debug, Default)]
pub struct SharedSendIndex {
    /// The highest reserved index plus one; 0 for none.
    claimed: AtomicU64,
}

impl SharedSendIndex {
    /// None claimed yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest index reserved so far (claimed, or in the block of the
    /// last claim).
    #[must_use]
    pub fn highest(&self) -> Option<u64> {
        decode(self.claimed.load(Ordering::Relaxed))
    }

    /// Claims the index of a packet with sequence number `seq` for the
    /// session whose send window for the SSRC is `window` and whose last
    /// block on this index ends at `block`; the index, or why it must not
    /// be used.
    #[inline]
    pub(crate) fn claim(
        &self,
        window: &mut ReplayWindow,
        block: &mut Option<u64>,
        seq: u16,
    ) -> Result<u64, SrtpError> {
        // Every ordering is relaxed: the claims are ordered by this one
        // atomic's modification order, and nothing else is published
        // through it.
        let current = self.highest();
        let index = index::estimate(window.top().max(current), seq).ok_or(SrtpError::TooOld)?;
        match current {
            // Only the last claimer may use what is reserved, within its
            // own block and window (the fast path: no store).
            Some(highest) if index <= highest && *block == Some(highest) => Ok(index),
            Some(highest) if index <= highest => Err(SrtpError::IndexReused),
            _ => self.reserve(window, block, index, current),
        }
    }

    /// The slow path of [`Self::claim`]: reserves the block from `index`,
    /// above `current`, the shared highest last seen.
    #[inline(never)]
    fn reserve(
        &self,
        window: &mut ReplayWindow,
        block: &mut Option<u64>,
        index: u64,
        mut current: Option<u64>,
    ) -> Result<u64, SrtpError> {
        if index > MAX_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        let top = (index + (CLAIM_AHEAD - 1)).min(MAX_INDEX);
        loop {
            if let Some(highest) = current
                && index <= highest
            {
                // Another session reserved it meanwhile.
                return Err(SrtpError::IndexReused);
            }
            match self.claimed.compare_exchange_weak(
                encode(current),
                top + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => current = decode(now),
            }
        }
        if current != *block
            && let Some(below) = index.checked_sub(1)
        {
            window.close_up_to(below);
        }
        *block = Some(top);
        Ok(index)
    }
}

fn encode(index: Option<u64>) -> u64 {
    index.map_or(0, |i| i + 1)
}

fn decode(raw: u64) -> Option<u64> {
    raw.checked_sub(1)
}

impl<B: AeadBackend> SrtpSession<B> {
    /// Claims the SRTP index of the RTP packet with SSRC `ssrc` and
    /// sequence number `seq` this session is about to protect, against
    /// `shared`, the index space every session sending `ssrc` under this
    /// key shares (module doc), and records it as used by this session.
    /// On `Ok`, protect that packet next with [`Self::protect_rtp_at`] and
    /// the index returned ([`Self::protect_rtp`] would refuse it as used).
    /// On `Err`, drop it.
    pub fn claim_shared_index(
        &mut self,
        ssrc: u32,
        seq: u16,
        shared: &SharedSendIndex,
    ) -> Result<u64, SrtpError> {
        self.record_sent(ssrc, seq, Some(shared))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::AnyGcm;
    use crate::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
    use crate::srtp::{MasterKey, SrtpProfile};

    const SSRC: u32 = 0x5107;

    fn key() -> MasterKey {
        MasterKey::new(SrtpProfile::AeadAes128Gcm, &[3; 28]).unwrap()
    }

    fn session() -> SrtpSession<AnyGcm> {
        SrtpSession::new(AnyGcm::default(), &key()).unwrap()
    }

    /// Claims and protects packet `seq` on `sender`; the SRTP packet.
    fn send(
        sender: &mut SrtpSession<AnyGcm>,
        shared: &SharedSendIndex,
        seq: u16,
    ) -> Result<Vec<u8>, SrtpError> {
        let index = sender.claim_shared_index(SSRC, seq, shared)?;
        let mut buf = vec![0; 256];
        let len = RtpBuilder::new(PayloadType::new(96).unwrap(), SeqNum(seq), 0, Ssrc(SSRC))
            .write(b"media", &mut buf)
            .unwrap();
        let n = sender.protect_rtp_at(&mut buf, len, index)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// The receiver's index of `srtp`, which it must authenticate.
    fn open(viewer: &mut SrtpSession<AnyGcm>, srtp: &[u8]) -> u64 {
        let mut buf = srtp.to_vec();
        viewer
            .unprotect_rtp_indexed(&mut buf, srtp.len())
            .expect("the receiver decrypts it")
            .1
    }

    #[test]
    fn a_session_taking_over_after_a_wrap_continues_the_rollover_counter() {
        let shared = SharedSendIndex::new();
        let (mut first, mut viewer) = (session(), session());
        let mut indices = Vec::new();
        // The first session sends across a wrap: ROC 1.
        for seq in (65_500u16..=u16::MAX).chain(0..50) {
            let srtp = send(&mut first, &shared, seq).unwrap();
            indices.push(open(&mut viewer, &srtp));
        }
        // 86 packets from 65_500: the 11th block, up to 65_587.
        assert_eq!(shared.highest(), Some(0x1_0033));
        // A fresh session (another worker) goes on 16 numbers later.
        let mut second = session();
        for seq in 66..100 {
            let srtp = send(&mut second, &shared, seq).unwrap();
            indices.push(open(&mut viewer, &srtp));
        }
        assert!(indices.windows(2).all(|w| w[0] < w[1]), "{indices:x?}");
        assert_eq!(indices.last(), Some(&0x1_0063));
    }

    #[test]
    fn a_block_is_reserved_with_one_claim_and_used_without_another() {
        let shared = SharedSendIndex::new();
        let mut a = session();
        send(&mut a, &shared, 100).unwrap();
        assert_eq!(shared.highest(), Some(100 + CLAIM_AHEAD - 1));
        // The rest of the block, out of order: the shared record stays.
        for seq in [103, 101, 102, 107, 104, 106, 105] {
            send(&mut a, &shared, seq).unwrap();
            assert_eq!(shared.highest(), Some(107), "seq {seq}");
        }
        // Its own window still refuses what it used.
        assert_eq!(send(&mut a, &shared, 104), Err(SrtpError::IndexReused));
        // The first index past the block reserves the next one.
        send(&mut a, &shared, 108).unwrap();
        assert_eq!(shared.highest(), Some(115));
        // A jump reserves from where it lands; the gap stays its own.
        send(&mut a, &shared, 130).unwrap();
        assert_eq!(shared.highest(), Some(137));
        send(&mut a, &shared, 120).unwrap();
        assert_eq!(shared.highest(), Some(137));
    }

    #[test]
    fn no_index_is_used_twice_across_sessions() {
        let shared = SharedSendIndex::new();
        let (mut a, mut b) = (session(), session());
        for seq in 0..20 {
            send(&mut a, &shared, seq).unwrap();
        }
        // A's block: 16..=23.
        assert_eq!(shared.highest(), Some(23));
        // B may not take what A reserved, used or not.
        for seq in [19, 21, 23] {
            assert_eq!(send(&mut b, &shared, seq), Err(SrtpError::IndexReused));
        }
        // B takes over at 30: A's stragglers below it are refused (also in
        // A's own block), and so is B's own early packet at 25 (A could
        // have reserved it).
        send(&mut b, &shared, 30).unwrap();
        assert_eq!(shared.highest(), Some(37));
        for seq in [20, 19, 22, 25, 33] {
            assert_eq!(send(&mut a, &shared, seq), Err(SrtpError::IndexReused));
        }
        assert_eq!(send(&mut b, &shared, 25), Err(SrtpError::IndexReused));
        assert_eq!(send(&mut b, &shared, 30), Err(SrtpError::IndexReused));
        // The last claimer fills its own gap, once.
        send(&mut b, &shared, 32).unwrap();
        send(&mut b, &shared, 31).unwrap();
        assert_eq!(send(&mut b, &shared, 31), Err(SrtpError::IndexReused));
        // A takes it back above B's block, and B is refused from then on,
        // in its block too.
        send(&mut a, &shared, 40).unwrap();
        assert_eq!(send(&mut b, &shared, 33), Err(SrtpError::IndexReused));
        assert_eq!(send(&mut b, &shared, 42), Err(SrtpError::IndexReused));
        assert_eq!(send(&mut a, &shared, 35), Err(SrtpError::IndexReused));
        assert_eq!(shared.highest(), Some(47));
        // B claims past A's block: A's next one is refused.
        send(&mut b, &shared, 48).unwrap();
        assert_eq!(send(&mut a, &shared, 41), Err(SrtpError::IndexReused));
    }

    #[test]
    fn a_block_across_the_wrap_is_taken_over_at_the_next_rollover_counter() {
        let shared = SharedSendIndex::new();
        let (mut a, mut b, mut viewer) = (session(), session(), session());
        let mut indices = Vec::new();
        for seq in [65_533u16, 65_534] {
            indices.push(open(&mut viewer, &send(&mut a, &shared, seq).unwrap()));
        }
        // A's block 65_533..=65_540 reaches into rollover counter 1.
        assert_eq!(shared.highest(), Some(0x1_0004));
        indices.push(open(&mut viewer, &send(&mut a, &shared, 1).unwrap()));
        // B starts inside A's block after the wrap: refused, not sealed at
        // rollover counter 0.
        for seq in [2, 4] {
            assert_eq!(send(&mut b, &shared, seq), Err(SrtpError::IndexReused));
        }
        for seq in 5..12 {
            indices.push(open(&mut viewer, &send(&mut b, &shared, seq).unwrap()));
        }
        assert!(indices.windows(2).all(|w| w[0] < w[1]), "{indices:x?}");
        assert_eq!(indices.last(), Some(&0x1_000B));
        // Near the end of the index space a block stops at its last index.
        let end = SharedSendIndex::new();
        let mut window = ReplayWindow::spent_through(MAX_INDEX - 3);
        end.claim(&mut window, &mut None, u16::MAX - 1).unwrap();
        assert_eq!(end.highest(), Some(MAX_INDEX));
    }

    #[test]
    fn two_sessions_racing_on_two_threads_never_share_an_index() {
        use std::sync::atomic::AtomicU32;
        let shared = Arc::new(SharedSendIndex::new());
        let start = Arc::new(std::sync::Barrier::new(2));
        // How far each thread has got. A thread more than `LEAD`
        // iterations ahead of the other waits for it (at most 10 s), so
        // the two really race even when the scheduler runs one of them
        // for milliseconds alone: without it, a thread that starts after
        // the other finished has every claim refused (all its indices are
        // below the shared highest) and the race never happens.
        const LEAD: u32 = 16;
        let progress = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        // Each thread sends the same sequence numbers, wrapping, with a
        // jump now and then (a switch); each keeps the indices it sealed.
        let racer = |me: usize, skew: u16| {
            let (shared, start, progress) = (
                Arc::clone(&shared),
                Arc::clone(&start),
                Arc::clone(&progress),
            );
            std::thread::spawn(move || {
                let mut sender = session();
                start.wait();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                let mut used = Vec::new();
                let mut seq = 65_000u16;
                for i in 0..3000u32 {
                    progress[me].store(i, Ordering::Release);
                    while i > progress[1 - me].load(Ordering::Acquire) + LEAD
                        && std::time::Instant::now() < deadline
                    {
                        std::thread::yield_now();
                    }
                    seq = seq.wrapping_add(if i % 97 == 0 { 20 + skew } else { 1 });
                    if let Ok(index) = sender.claim_shared_index(SSRC, seq, &shared) {
                        let mut buf = vec![0; 64];
                        let len = RtpBuilder::new(
                            PayloadType::new(96).unwrap(),
                            SeqNum(seq),
                            0,
                            Ssrc(SSRC),
                        )
                        .write(b"x", &mut buf)
                        .unwrap();
                        if sender.protect_rtp_at(&mut buf, len, index).is_ok() {
                            used.push(index);
                        }
                    }
                }
                progress[me].store(3000, Ordering::Release);
                used
            })
        };
        let (one, two) = (racer(0, 0), racer(1, 3));
        let (one, two) = (one.join().unwrap(), two.join().unwrap());
        let all: std::collections::BTreeSet<u64> = one.iter().chain(&two).copied().collect();
        assert_eq!(
            all.len(),
            one.len() + two.len(),
            "an index was sealed twice"
        );
        assert!(!one.is_empty() && !two.is_empty());
    }

    #[test]
    fn a_session_whose_window_is_behind_never_lowers_it() {
        let shared = SharedSendIndex::new();
        let mut a = session();
        send(&mut a, &shared, 10).unwrap();
        send(&mut a, &shared, 12).unwrap();
        // Its own gap: the last claimer may fill it.
        send(&mut a, &shared, 11).unwrap();
        // A shared record that is new (none claimed) while the window is
        // not: the window's top still counts, and so does everything
        // below it (it may have been another record's).
        let fresh = SharedSendIndex::new();
        assert_eq!(send(&mut a, &fresh, 12), Err(SrtpError::IndexReused));
        send(&mut a, &fresh, 13).unwrap();
        assert_eq!(send(&mut a, &fresh, 9), Err(SrtpError::IndexReused));
    }
}
