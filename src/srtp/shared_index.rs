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
//! index claimed on the SSRC by any session. Before protecting, a session
//! claims the packet's index ([`SrtpSession::claim_shared_index`]):
//!
//! - The rollover counter is guessed from the higher of its own window's
//!   top and the shared one (RFC 3711 Appendix A), so a session that
//!   takes the SSRC over continues the receiver's count.
//! - An index above the shared highest is claimed by raising it (a
//!   compare-and-swap: of two sessions racing for it, one wins).
//! - An index at or below it may be used only by the session that made
//!   the last claim (its window top *is* the shared highest, so nobody
//!   claimed since): its own window then says whether it used it. Any
//!   other session is refused ([`SrtpError::IndexReused`]); a claim lost
//!   to a race is refused too, and the packet dropped.
//! - A session whose claim succeeded over someone else's (the shared
//!   highest was not its own top) counts every index below the one it
//!   claimed as used (`ReplayWindow::close_up_to`): what it cannot know
//!   about, it never uses.
//!
//! So indices only grow across sessions, each index is used once, and a
//! late packet of the session that lost the SSRC, or an early one of the
//! session that took it over, is dropped rather than sealed twice. The
//! cost is one relaxed load and, for a packet that advances the stream,
//! one uncontended compare-and-swap (the SSRC moves between workers only
//! at a slot switch).

use std::sync::atomic::{AtomicU64, Ordering};

use super::index::{self, MAX_INDEX};
use super::replay::ReplayWindow;
use super::{SrtpError, SrtpSession};
use crate::crypto::AeadBackend;

/// The highest SRTP index claimed on one SSRC under one key, by any of
/// the sessions that protect it (module doc). Starts with none.
#[derive(Debug, Default)]
pub struct SharedSendIndex {
    /// The highest claimed index plus one; 0 for none.
    claimed: AtomicU64,
}

impl SharedSendIndex {
    /// None claimed yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest index claimed so far.
    #[must_use]
    pub fn highest(&self) -> Option<u64> {
        decode(self.claimed.load(Ordering::Relaxed))
    }

    /// Claims the index of a packet with sequence number `seq` for the
    /// session whose send window for the SSRC is `window`; the index, or
    /// why it must not be used.
    pub(crate) fn claim(&self, window: &mut ReplayWindow, seq: u16) -> Result<u64, SrtpError> {
        let top = window.top();
        // Every ordering is relaxed: the claims are ordered by this one
        // atomic's modification order, and nothing else is published
        // through it.
        let mut current = self.highest();
        let index = index::estimate(top.max(current), seq).ok_or(SrtpError::TooOld)?;
        if index > MAX_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        loop {
            if let Some(highest) = current
                && index <= highest
            {
                // Only the last claimer may go back, within its own window.
                return if top == Some(highest) {
                    Ok(index)
                } else {
                    Err(SrtpError::IndexReused)
                };
            }
            match self.claimed.compare_exchange_weak(
                encode(current),
                index + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => current = decode(now),
            }
        }
        if current != top
            && let Some(below) = index.checked_sub(1)
        {
            window.close_up_to(below);
        }
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
    /// key shares (module doc). On `Ok`, protect that packet next: its
    /// index is the one returned. On `Err`, drop it.
    pub fn claim_shared_index(
        &mut self,
        ssrc: u32,
        seq: u16,
        shared: &SharedSendIndex,
    ) -> Result<u64, SrtpError> {
        shared.claim(self.sent_window(ssrc)?, seq)
    }
}

#[cfg(test)]
mod tests {
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
        sender.claim_shared_index(SSRC, seq, shared)?;
        let mut buf = vec![0; 256];
        let len = RtpBuilder::new(PayloadType::new(96).unwrap(), SeqNum(seq), 0, Ssrc(SSRC))
            .write(b"media", &mut buf)
            .unwrap();
        let n = sender.protect_rtp(&mut buf, len)?;
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
        assert_eq!(shared.highest(), Some(0x1_0031));
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
    fn no_index_is_used_twice_across_sessions() {
        let shared = SharedSendIndex::new();
        let (mut a, mut b) = (session(), session());
        for seq in 0..20 {
            send(&mut a, &shared, seq).unwrap();
        }
        // B takes over at 30: A's stragglers below it are refused, and so
        // is B's own early packet at 25 (A could have used it).
        send(&mut b, &shared, 30).unwrap();
        for seq in [20, 19, 25] {
            assert_eq!(send(&mut a, &shared, seq), Err(SrtpError::IndexReused));
        }
        assert_eq!(send(&mut b, &shared, 25), Err(SrtpError::IndexReused));
        assert_eq!(send(&mut b, &shared, 30), Err(SrtpError::IndexReused));
        // The last claimer fills its own gap, once.
        send(&mut b, &shared, 32).unwrap();
        send(&mut b, &shared, 31).unwrap();
        assert_eq!(send(&mut b, &shared, 31), Err(SrtpError::IndexReused));
        // A takes it back above B, and B is refused from then on.
        send(&mut a, &shared, 40).unwrap();
        assert_eq!(send(&mut b, &shared, 33), Err(SrtpError::IndexReused));
        assert_eq!(send(&mut a, &shared, 35), Err(SrtpError::IndexReused));
        assert_eq!(shared.highest(), Some(40));
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
        // not: the window's top still counts.
        let fresh = SharedSendIndex::new();
        assert_eq!(send(&mut a, &fresh, 12), Err(SrtpError::IndexReused));
        send(&mut a, &fresh, 13).unwrap();
        assert_eq!(send(&mut a, &fresh, 9), Err(SrtpError::IndexReused));
    }
}
