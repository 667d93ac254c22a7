//! An SRTP session: one master key, its derived SRTP and SRTCP transforms,
//! and per-SSRC index and replay state, for protecting (sending) and
//! unprotecting (receiving). Everything happens in the caller's buffer.
//!
//! How to drive it: make one [`SrtpSession`] per key and direction of a leg
//! (the relay holds a client→relay session it unprotects with and a
//! relay→client session it protects with). Call [`SrtpSession::protect_rtp`]
//! with the RTP packet in `buf[..len]` and room for the tag after it; call
//! [`SrtpSession::unprotect_rtp`] with the SRTP packet in `buf[..len]`. On
//! error the buffer's contents are unspecified and the packet is dropped.
//! For many packets at once, across sessions, see [`super::protect_rtp_batch`].

use std::sync::Arc;

use super::index::{self, MAX_INDEX};
use super::journal::{IndexJournal, ReceivedRecord, Reservation};
use super::keys::Protocol;
use super::replay::{Replay, ReplayWindow};
use super::streams::StreamTable;
use super::transform::{Transform, gcm_rtp_nonce};
use super::{MasterKey, SrtpError, SrtpProfile};
use crate::crypto::{AeadBackend, GCM_NONCE_LEN, GCM_TAG_LEN, OpenJob, SealJob};
use crate::rtp::RtpHeader;

/// The default bound on SSRCs per session and direction.
pub const DEFAULT_MAX_STREAMS: usize = 4096;

/// SRTP/SRTCP state under one master key.
#[derive(Debug)]
pub struct SrtpSession<B: AeadBackend> {
    pub(crate) backend: B,
    pub(crate) profile: SrtpProfile,
    pub(crate) rtp: Transform<B::Key>,
    pub(crate) rtcp: Transform<B::Key>,
    /// Indices already used for sending, per SSRC (refuses reuse).
    pub(crate) send_rtp: StreamTable<SentStream>,
    /// Replay windows for receiving, per SSRC.
    pub(crate) recv_rtp: StreamTable<ReceivedStream>,
    /// Next SRTCP index to send, per SSRC.
    pub(crate) send_rtcp: StreamTable<u32>,
    /// SRTCP replay windows for receiving, per SSRC.
    pub(crate) recv_rtcp: StreamTable<ReplayWindow>,
    /// Where the RTP indices are recorded for a successor, under which
    /// key (`super::journal`).
    journal: Option<(Arc<IndexJournal>, u64)>,
}

/// One sent SSRC's state: the indices used, and how far the journal
/// covers them.
#[derive(Debug, Default)]
pub(crate) struct SentStream {
    window: ReplayWindow,
    reservation: Reservation,
    /// The top of the block of indices this session last reserved on the
    /// SSRC's shared send index, if it sends one (`shared_index.rs`).
    shared_block: Option<u64>,
}

impl SentStream {
    /// A stream about to be sent on for the first time in this session,
    /// recorded under `key` in `journal`: if an earlier session with the
    /// key recorded it, every index below its reservation counts as used.
    fn start(journal: Option<&(Arc<IndexJournal>, u64)>, ssrc: u32) -> Self {
        let Some((journal, key)) = journal else {
            return Self::default();
        };
        let cell = journal.sent(*key, ssrc);
        let below = cell.load(std::sync::atomic::Ordering::Relaxed);
        Self {
            window: match below.checked_sub(1) {
                Some(top) => ReplayWindow::spent_through(top),
                None => ReplayWindow::default(),
            },
            reservation: Reservation::new(Some(cell), below),
            shared_block: None,
        }
    }
}

/// One received SSRC's state: its replay window, and its journal record.
#[derive(Debug, Default)]
pub(crate) struct ReceivedStream {
    window: ReplayWindow,
    record: ReceivedRecord,
}

impl ReceivedStream {
    /// A stream whose first packet just authenticated, recorded under
    /// `key` in `journal`.
    fn start(journal: Option<&(Arc<IndexJournal>, u64)>, ssrc: u32) -> Self {
        Self {
            window: ReplayWindow::default(),
            record: ReceivedRecord::new(journal.map(|(j, key)| j.received(*key, ssrc)), None),
        }
    }

    fn accept(&mut self, index: u64) {
        self.window.accept(index);
        self.record.accepted(index);
    }
}

/// What was decided about an outgoing GCM packet before sealing it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SealPlan {
    header_len: usize,
    len: usize,
    nonce: [u8; GCM_NONCE_LEN],
}

impl SealPlan {
    /// Where the RTP header (the AAD) ends.
    pub(crate) fn header_len(&self) -> usize {
        self.header_len
    }

    /// The packet's length once sealed (tag included).
    pub(crate) fn sealed_len(&self) -> usize {
        self.len + GCM_TAG_LEN
    }
}

/// What was decided about an incoming GCM packet before opening it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenPlan {
    header_len: usize,
    body_end: usize,
    nonce: [u8; GCM_NONCE_LEN],
    tag: [u8; GCM_TAG_LEN],
    ssrc: u32,
    index: u64,
}

/// The first phase of a protect or unprotect: either finished (AES-CM runs
/// inline, and errors end it) or a GCM job to run in a backend batch.
#[derive(Debug)]
pub(crate) enum Phase<P, D = usize> {
    Done(D),
    Gcm(P),
}

impl<B: AeadBackend> SrtpSession<B> {
    /// A session for `master`, with its keys derived and expanded now.
    pub fn new(backend: B, master: &MasterKey) -> Result<Self, SrtpError> {
        let rtp = Transform::new(&backend, master, Protocol::Rtp)?;
        let rtcp = Transform::new(&backend, master, Protocol::Rtcp)?;
        Ok(Self::from_transforms(backend, master.profile(), rtp, rtcp))
    }

    pub(crate) fn from_transforms(
        backend: B,
        profile: SrtpProfile,
        rtp: Transform<B::Key>,
        rtcp: Transform<B::Key>,
    ) -> Self {
        Self {
            backend,
            profile,
            rtp,
            rtcp,
            send_rtp: StreamTable::new(DEFAULT_MAX_STREAMS),
            recv_rtp: StreamTable::new(DEFAULT_MAX_STREAMS),
            send_rtcp: StreamTable::new(DEFAULT_MAX_STREAMS),
            recv_rtcp: StreamTable::new(DEFAULT_MAX_STREAMS),
            journal: None,
        }
    }

    /// Records the session's RTP indices in `journal` under `key` (one
    /// key per master key: a leg and direction), and takes up every
    /// stream an earlier session under `key` recorded there: received
    /// streams start where the record says (their rollover counters
    /// estimated from it, nothing at or below it accepted again), sent
    /// streams, on their first packet, above every index the earlier
    /// session may have used (module doc of `journal.rs`).
    #[must_use]
    pub fn with_journal(mut self, journal: Arc<IndexJournal>, key: u64) -> Self {
        for (ssrc, index, cell) in journal.received_streams(key) {
            if let Ok(stream) = self.recv_rtp.entry(ssrc) {
                *stream = ReceivedStream {
                    window: ReplayWindow::spent_through(index),
                    record: ReceivedRecord::new(Some(cell), Some(index)),
                };
            }
        }
        self.journal = Some((journal, key));
        self
    }

    /// Bounds the SSRCs tracked per direction (default
    /// [`DEFAULT_MAX_STREAMS`]); packets of further SSRCs are refused with
    /// [`SrtpError::TooManyStreams`].
    pub fn with_max_streams(mut self, limit: usize) -> Self {
        self.send_rtp.set_limit(limit);
        self.recv_rtp.set_limit(limit);
        self.send_rtcp.set_limit(limit);
        self.recv_rtcp.set_limit(limit);
        self
    }

    /// The session's profile.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// The backend the session's GCM keys belong to.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Forgets an SSRC's state in both directions (its stream ended).
    pub fn remove_stream(&mut self, ssrc: u32) {
        self.send_rtp.remove(ssrc);
        self.recv_rtp.remove(ssrc);
        self.send_rtcp.remove(ssrc);
        self.recv_rtcp.remove(ssrc);
    }

    /// The rollover counter of the highest packet received from `ssrc`.
    pub fn received_roc(&self, ssrc: u32) -> Option<u32> {
        self.recv_rtp.get(ssrc)?.window.top().map(index::roc_of)
    }

    /// Protects the RTP packet in `buf[..len]` in place, appending the tag;
    /// returns the SRTP packet's length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        match self.plan_protect_rtp(buf, len)? {
            Phase::Done(n) => Ok(n),
            Phase::Gcm(plan) => {
                let job = self.seal_job(&plan, buf);
                self.backend.seal_batch(&mut [job]);
                Ok(plan.len + GCM_TAG_LEN)
            }
        }
    }

    /// [`Self::protect_rtp`] for a packet whose index `index` was claimed
    /// (and recorded as used) by [`Self::claim_shared_index`]; refused if
    /// the packet's sequence number is not the index's.
    pub fn protect_rtp_at(
        &mut self,
        buf: &mut [u8],
        len: usize,
        index: u64,
    ) -> Result<usize, SrtpError> {
        match self.plan_protect_rtp_at(buf, len, Some(index))? {
            Phase::Done(n) => Ok(n),
            Phase::Gcm(plan) => {
                let job = self.seal_job(&plan, buf);
                self.backend.seal_batch(&mut [job]);
                Ok(plan.len + GCM_TAG_LEN)
            }
        }
    }

    /// Verifies and decrypts the SRTP packet in `buf[..len]` in place;
    /// returns the RTP packet's length.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.unprotect_rtp_indexed(buf, len).map(|(n, _)| n)
    }

    /// As [`Self::unprotect_rtp`], also returning the packet's 48-bit SRTP
    /// index (ROC and sequence number), e.g. to compare freshness across
    /// sessions.
    pub fn unprotect_rtp_indexed(
        &mut self,
        buf: &mut [u8],
        len: usize,
    ) -> Result<(usize, u64), SrtpError> {
        match self.plan_unprotect_rtp(buf, len)? {
            Phase::Done(done) => Ok(done),
            Phase::Gcm(plan) => {
                let mut job = [self.open_job(&plan, buf)];
                self.backend.open_batch(&mut job);
                let authentic = job[0].authentic;
                self.finish_unprotect_rtp(&plan, authentic)
                    .map(|n| (n, plan.index))
            }
        }
    }

    /// Phase one of protecting: validates, claims the packet index (so it
    /// is never used twice), and for AES-CM does all the work.
    pub(crate) fn plan_protect_rtp(
        &mut self,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Phase<SealPlan>, SrtpError> {
        self.plan_protect_rtp_at(buf, len, None)
    }

    /// [`Self::plan_protect_rtp`], or with `claimed`, for a packet whose
    /// index was claimed and recorded already
    /// ([`Self::claim_shared_index`]): then no stream state is looked up,
    /// and a packet whose sequence number is not the index's is refused.
    pub(crate) fn plan_protect_rtp_at(
        &mut self,
        buf: &mut [u8],
        len: usize,
        claimed: Option<u64>,
    ) -> Result<Phase<SealPlan>, SrtpError> {
        let (header_len, ssrc, seq) = rtp_fields(buf, len)?;
        let tag_len = self.profile.rtp_tag_len();
        if buf.len() < len + tag_len {
            return Err(SrtpError::BufferTooSmall {
                needed: len + tag_len,
                got: buf.len(),
            });
        }
        let index = match claimed {
            // The low 16 bits of an index are its sequence number.
            #[allow(clippy::cast_possible_truncation)]
            Some(index) if index as u16 == seq => index,
            Some(_) => return Err(SrtpError::IndexReused),
            None => self.record_sent(ssrc, seq, None)?,
        };
        match &self.rtp {
            Transform::Gcm { salt, .. } => Ok(Phase::Gcm(SealPlan {
                header_len,
                len,
                nonce: gcm_rtp_nonce(salt, ssrc, index),
            })),
            Transform::Cm(cm) => {
                cm.apply_keystream(ssrc, index, &mut buf[header_len..len]);
                let (authenticated, tail) = buf.split_at_mut(len);
                let roc = index::roc_of(index).to_be_bytes();
                cm.tag(&[authenticated, &roc], &mut tail[..tag_len]);
                Ok(Phase::Done(len + tag_len))
            }
        }
    }

    /// Estimates the index of the packet with sequence number `seq` on
    /// `ssrc` this session is about to send, checks it was never used and
    /// records it as used (before it is: a compare, and a relaxed store
    /// once per `RESERVE_AHEAD` packets for the journal). With `shared`,
    /// the index is claimed against that shared index space first
    /// (`shared_index.rs`).
    #[inline]
    pub(crate) fn record_sent(
        &mut self,
        ssrc: u32,
        seq: u16,
        shared: Option<&super::SharedSendIndex>,
    ) -> Result<u64, SrtpError> {
        let journal = self.journal.as_ref();
        let stream = self
            .send_rtp
            .entry_with(ssrc, || SentStream::start(journal, ssrc))?;
        let index = match shared {
            Some(shared) => shared.claim(&mut stream.window, &mut stream.shared_block, seq)?,
            None => index::estimate(stream.window.top(), seq).ok_or(SrtpError::TooOld)?,
        };
        if index > MAX_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        stream.window.check(index).map_err(|r| match r {
            Replay::Duplicate => SrtpError::IndexReused,
            Replay::TooOld => SrtpError::TooOld,
        })?;
        stream.reservation.cover(index);
        stream.window.accept(index);
        Ok(index)
    }

    /// The backend job for a planned GCM seal over `buf`.
    pub(crate) fn seal_job<'a>(
        &'a self,
        plan: &SealPlan,
        buf: &'a mut [u8],
    ) -> SealJob<'a, B::Key> {
        let Transform::Gcm { key, .. } = &self.rtp else {
            unreachable!("a SealPlan is only made for GCM sessions")
        };
        let (aad, rest) = buf.split_at_mut(plan.header_len);
        let (data, tail) = rest.split_at_mut(plan.len - plan.header_len);
        let tag: &mut [u8; GCM_TAG_LEN] = (&mut tail[..GCM_TAG_LEN])
            .try_into()
            .unwrap_or_else(|_| unreachable!("plan_protect_rtp checked room for the tag"));
        SealJob {
            key,
            nonce: plan.nonce,
            aad,
            data,
            tag,
        }
    }

    /// Phase one of unprotecting: validates, estimates the index, checks
    /// replay; for AES-CM verifies, decrypts and commits.
    pub(crate) fn plan_unprotect_rtp(
        &mut self,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Phase<OpenPlan, (usize, u64)>, SrtpError> {
        let (header_len, ssrc, seq) = rtp_fields(buf, len)?;
        let tag_len = self.profile.rtp_tag_len();
        if len < header_len + tag_len {
            return Err(SrtpError::TooShort {
                needed: header_len + tag_len,
                got: len,
            });
        }
        let window = self
            .recv_rtp
            .get(ssrc)
            .map(|stream| stream.window)
            .unwrap_or_default();
        let index = index::estimate(window.top(), seq).ok_or(SrtpError::TooOld)?;
        window.check(index).map_err(replay_error)?;
        let body_end = len - tag_len;

        match &self.rtp {
            Transform::Gcm { salt, .. } => {
                let mut tag = [0u8; GCM_TAG_LEN];
                tag.copy_from_slice(&buf[body_end..len]);
                Ok(Phase::Gcm(OpenPlan {
                    header_len,
                    body_end,
                    nonce: gcm_rtp_nonce(salt, ssrc, index),
                    tag,
                    ssrc,
                    index,
                }))
            }
            Transform::Cm(cm) => {
                let roc = index::roc_of(index).to_be_bytes();
                if !cm.verify(&[&buf[..body_end], &roc], &buf[body_end..len]) {
                    return Err(SrtpError::AuthFailed);
                }
                received(&mut self.recv_rtp, self.journal.as_ref(), ssrc)?.accept(index);
                cm.apply_keystream(ssrc, index, &mut buf[header_len..body_end]);
                Ok(Phase::Done((body_end, index)))
            }
        }
    }

    /// The backend job for a planned GCM open over `buf`.
    pub(crate) fn open_job<'a>(
        &'a self,
        plan: &'a OpenPlan,
        buf: &'a mut [u8],
    ) -> OpenJob<'a, B::Key> {
        let Transform::Gcm { key, .. } = &self.rtp else {
            unreachable!("an OpenPlan is only made for GCM sessions")
        };
        let (aad, rest) = buf[..plan.body_end].split_at_mut(plan.header_len);
        OpenJob {
            key,
            nonce: plan.nonce,
            aad,
            data: rest,
            tag: &plan.tag,
            authentic: false,
        }
    }

    /// Phase three of a GCM unprotect: commit the index if authentic.
    pub(crate) fn finish_unprotect_rtp(
        &mut self,
        plan: &OpenPlan,
        authentic: bool,
    ) -> Result<usize, SrtpError> {
        if !authentic {
            return Err(SrtpError::AuthFailed);
        }
        received(&mut self.recv_rtp, self.journal.as_ref(), plan.ssrc)?.accept(plan.index);
        Ok(plan.body_end)
    }
}

/// The received state of `ssrc` in `streams`, made now (its first packet
/// authenticated) if new.
fn received<'a>(
    streams: &'a mut StreamTable<ReceivedStream>,
    journal: Option<&(Arc<IndexJournal>, u64)>,
    ssrc: u32,
) -> Result<&'a mut ReceivedStream, SrtpError> {
    streams.entry_with(ssrc, || ReceivedStream::start(journal, ssrc))
}

/// The header length, SSRC and sequence number of the RTP packet in
/// `buf[..len]`.
fn rtp_fields(buf: &[u8], len: usize) -> Result<(usize, u32, u16), SrtpError> {
    let packet = buf.get(..len).ok_or(SrtpError::BufferTooSmall {
        needed: len,
        got: buf.len(),
    })?;
    let header = RtpHeader::parse(packet)?;
    Ok((header.header_len(), header.ssrc().0, header.sequence().0))
}

pub(crate) fn replay_error(r: Replay) -> SrtpError {
    match r {
        Replay::Duplicate => SrtpError::Replayed,
        Replay::TooOld => SrtpError::TooOld,
    }
}
