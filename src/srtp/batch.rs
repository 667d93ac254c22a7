//! Protecting and unprotecting many RTP packets, across sessions, with one
//! backend call per chunk: the fan-out of one publisher's packet to many
//! legs (each leg its own key) is the batch a GPU or multi-buffer backend
//! is built for.
//!
//! Each call runs three phases per chunk of up to [`BATCH_CHUNK`] items:
//! plan every packet (parse, index, replay; AES-CM profiles finish here),
//! hand all GCM jobs to [`AeadBackend::seal_batch`] /
//! [`AeadBackend::open_batch`] at once, then record each outcome. Nothing
//! is allocated: the job list lives on the stack.

use arrayvec::ArrayVec;

use super::session::Phase;
use super::{SrtpError, SrtpSession};
use crate::crypto::{AeadBackend, GCM_TAG_LEN};

/// Most packets handed to the backend in one call.
pub const BATCH_CHUNK: usize = 64;

/// One packet of a batch: its session, its buffer, its length, and (after
/// the call) its outcome: the new length, or why it was refused.
#[derive(Debug)]
pub struct BatchItem<'a, B: AeadBackend> {
    /// The session (key and stream state) this packet belongs to.
    pub session: &'a mut SrtpSession<B>,
    /// The packet, with room after it for the tag when protecting.
    pub buf: &'a mut [u8],
    /// Length of the packet in `buf`.
    pub len: usize,
    /// When protecting: the packet's index, if it was claimed (and
    /// recorded) already ([`SrtpSession::claim_shared_index`]).
    pub claimed: Option<u64>,
    /// `None` until the batch ran.
    pub outcome: Option<Result<usize, SrtpError>>,
}

impl<'a, B: AeadBackend> BatchItem<'a, B> {
    /// A packet in `buf[..len]` for `session`.
    pub fn new(session: &'a mut SrtpSession<B>, buf: &'a mut [u8], len: usize) -> Self {
        Self {
            session,
            buf,
            len,
            claimed: None,
            outcome: None,
        }
    }

    /// The same, protected at the index `claimed` when it is one
    /// ([`SrtpSession::protect_rtp_at`]).
    #[must_use]
    pub fn with_claimed_index(mut self, claimed: Option<u64>) -> Self {
        self.claimed = claimed;
        self
    }
}

/// Phase one for every item of a chunk: the GCM plans for the backend,
/// `None` where the item already finished (AES-CM, or refused) and holds
/// its outcome.
fn plan_chunk<B: AeadBackend, P, D>(
    chunk: &mut [BatchItem<'_, B>],
    plan: impl Fn(&mut SrtpSession<B>, &mut [u8], usize, Option<u64>) -> Result<Phase<P, D>, SrtpError>,
    done_len: impl Fn(D) -> usize,
) -> ArrayVec<Option<P>, BATCH_CHUNK> {
    chunk
        .iter_mut()
        .map(
            |item| match plan(item.session, item.buf, item.len, item.claimed) {
                Ok(Phase::Gcm(plan)) => Some(plan),
                Ok(Phase::Done(done)) => {
                    item.outcome = Some(Ok(done_len(done)));
                    None
                }
                Err(e) => {
                    item.outcome = Some(Err(e));
                    None
                }
            },
        )
        .collect()
}

/// Protects every item's RTP packet; see [`SrtpSession::protect_rtp`].
pub fn protect_rtp_batch<B: AeadBackend>(backend: &B, items: &mut [BatchItem<'_, B>]) {
    for chunk in items.chunks_mut(BATCH_CHUNK) {
        let plans = plan_chunk(chunk, SrtpSession::plan_protect_rtp_at, |n| n);
        let mut jobs = ArrayVec::<_, BATCH_CHUNK>::new();
        for (item, plan) in chunk.iter_mut().zip(&plans) {
            if let Some(plan) = plan {
                jobs.push(item.session.seal_job(plan, item.buf));
            }
        }
        backend.seal_batch(&mut jobs);
        drop(jobs);
        for (item, plan) in chunk.iter_mut().zip(&plans) {
            if plan.is_some() {
                item.outcome = Some(Ok(item.len + GCM_TAG_LEN));
            }
        }
    }
}

/// Unprotects every item's SRTP packet; see [`SrtpSession::unprotect_rtp`].
pub fn unprotect_rtp_batch<B: AeadBackend>(backend: &B, items: &mut [BatchItem<'_, B>]) {
    for chunk in items.chunks_mut(BATCH_CHUNK) {
        let plans = plan_chunk(
            chunk,
            |session, buf, len, _| session.plan_unprotect_rtp(buf, len),
            |(n, _)| n,
        );
        let mut jobs = ArrayVec::<_, BATCH_CHUNK>::new();
        for (item, plan) in chunk.iter_mut().zip(&plans) {
            if let Some(plan) = plan {
                jobs.push(item.session.open_job(plan, item.buf));
            }
        }
        backend.open_batch(&mut jobs);
        let mut verdicts = jobs
            .iter()
            .map(|job| job.authentic)
            .collect::<ArrayVec<bool, BATCH_CHUNK>>()
            .into_iter();
        drop(jobs);
        for (item, plan) in chunk.iter_mut().zip(&plans) {
            if let Some(plan) = plan {
                let authentic = verdicts.next().unwrap_or(false);
                item.outcome = Some(item.session.finish_unprotect_rtp(plan, authentic));
            }
        }
    }
}
