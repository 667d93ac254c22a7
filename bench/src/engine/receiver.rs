//! A receiver thread: waits on many non-blocking sockets with epoll and
//! drains each ready one with `recvmmsg` (GRO trains split back into
//! datagrams). Loss, duplicates and order come from the clear RTP header
//! of every delivery (SSRC and sequence are in clear in SRTP); a sample
//! of the deliveries (1 in `verify_every`, every one with `--verify-all`)
//! is also authenticated and decrypted (SRTP, then the E2EE layer where
//! the meeting has one), its payload header checked against the clear
//! header, and timed: latency and jitter come from that sample.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use sluice::crypto::AnyGcm;
use sluice::rtp::{RtpHeader, is_rtcp};
use sluice::srtp::{SrtpError, SrtpSession};

use super::batch::RecvBatch;
use super::e2ee::E2eeKey;
use super::{Clock, Progress};
use crate::histogram::Histogram;
use crate::payload::PayloadHeader;
use crate::stats::StreamReception;
use crate::target::Path;

/// One receiving participant, as its receiver thread owns it.
#[derive(Debug)]
pub(crate) struct Subscriber {
    /// The participant's index in the run.
    pub(crate) participant: usize,
    pub(crate) socket: Arc<UdpSocket>,
    pub(crate) paths: Vec<Path>,
    pub(crate) e2ee: Option<[u8; 16]>,
    /// Its arrivals cross a relay-to-relay hop (see `LegPlan::behind_hop`).
    pub(crate) behind_hop: bool,
}

/// What one participant received.
#[derive(Debug, Default)]
pub(crate) struct Reception {
    pub(crate) participant: usize,
    /// Per stream id.
    pub(crate) streams: HashMap<u32, StreamReception>,
    /// Verified packets that failed SRTP authentication or the E2EE
    /// layer, or whose payload header disagreed with their clear header.
    pub(crate) decrypt_failures: u64,
    /// Packets authenticated and decrypted (the sample).
    pub(crate) verified: u64,
    /// Packets the SRTP replay window refused (duplicates).
    pub(crate) replayed: u64,
    /// Packets from an address no path names, or not of this run.
    pub(crate) foreign: u64,
    /// RTCP packets (reports the relay forwarded): not counted as media.
    pub(crate) rtcp: u64,
}

/// What a receiver thread saw.
#[derive(Debug, Default)]
pub(crate) struct ReceiverResult {
    pub(crate) receptions: Vec<Reception>,
    pub(crate) latency: Histogram,
    /// The latency of the participants behind a relay-to-relay hop only.
    pub(crate) hop_latency: Histogram,
    /// Packets and bytes that arrived inside the steady window.
    pub(crate) steady_packets: u64,
    pub(crate) steady_bytes: u64,
}

struct Leg {
    socket: Arc<UdpSocket>,
    sessions: Vec<Option<SrtpSession<AnyGcm>>>,
    by_source: HashMap<SocketAddr, usize>,
    e2ee: Option<E2eeKey>,
    behind_hop: bool,
    seen: Reception,
}

/// Receives until `stop` is set and the sockets are drained. Packets
/// arriving within `steady` (ns, same clock) count toward the rates.
/// How a receiver thread checks what arrives.
#[derive(Debug, Clone)]
pub(crate) struct Checking {
    /// Run-wide stream id by SSRC, for the clear-header count.
    pub(crate) streams: Arc<HashMap<u32, u32>>,
    /// Verify 1 delivery in this many (1: every one).
    pub(crate) verify_every: u32,
    /// Receive slots sized for GRO trains.
    pub(crate) gro: bool,
}

pub(crate) fn run(
    subscribers: Vec<Subscriber>,
    clock: Clock,
    steady: (u64, u64),
    stop: &AtomicBool,
    progress: &Progress,
    checking: &Checking,
) -> Result<ReceiverResult, String> {
    let epoll = Epoll::new(EpollCreateFlags::empty()).map_err(|e| format!("epoll_create: {e}"))?;
    let mut legs = Vec::with_capacity(subscribers.len());
    for (i, sub) in subscribers.into_iter().enumerate() {
        epoll
            .add(&*sub.socket, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .map_err(|e| format!("epoll_ctl: {e}"))?;
        let sessions = sub
            .paths
            .iter()
            .map(|p| {
                p.key
                    .as_ref()
                    .map(|k| SrtpSession::new(AnyGcm::default(), k))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("receive key: {e}"))?;
        let by_source = if sub.paths.len() > 1 {
            sub.paths
                .iter()
                .enumerate()
                .map(|(i, p)| (p.relay, i))
                .collect()
        } else {
            HashMap::new()
        };
        legs.push(Leg {
            socket: sub.socket,
            sessions,
            by_source,
            e2ee: sub.e2ee.map(|k| E2eeKey::new(&k)),
            behind_hop: sub.behind_hop,
            seen: Reception {
                participant: sub.participant,
                ..Reception::default()
            },
        });
    }
    let mut result = ReceiverResult::default();
    let mut events = vec![EpollEvent::empty(); 256];
    let mut batch = RecvBatch::new(checking.gro);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let ready = epoll
            .wait(&mut events, EpollTimeout::from(5u8))
            .map_err(|e| format!("epoll_wait: {e}"))?;
        let mut got = 0;
        for event in &events[..ready] {
            let Some(leg) = legs.get_mut(event.data() as usize) else {
                continue;
            };
            got += drain(leg, &mut batch, clock, steady, checking, &mut result);
        }
        progress.received.fetch_add(got, Ordering::Relaxed);
        if stopping && ready == 0 {
            break;
        }
    }
    result.receptions = legs.into_iter().map(|l| l.seen).collect();
    Ok(result)
}

/// Reads `leg`'s socket until it would block, a batch at a time;
/// returns media packets counted.
fn drain(
    leg: &mut Leg,
    batch: &mut RecvBatch,
    clock: Clock,
    steady: (u64, u64),
    checking: &Checking,
    result: &mut ReceiverResult,
) -> u64 {
    let mut count = 0;
    let fd = leg.socket.as_raw_fd();
    loop {
        let messages = batch.recv(fd);
        // One stamp per batch: every datagram in it was read by this call.
        let arrived = clock.now_ns();
        for i in 0..batch.datagrams().len() {
            let d = batch.datagrams()[i];
            let from = d.from;
            let bytes = batch.bytes_mut(d);
            if handle(leg, bytes, from, arrived, steady, checking, result) {
                count += 1;
            }
        }
        if messages < super::batch::BATCH {
            return count;
        }
    }
}

/// Whether to verify this delivery: a cheap hash of stream, sequence and
/// receiver, so every position in a burst and every receiver is sampled
/// alike.
fn sampled(ssrc: u32, sequence: u64, participant: usize, every: u32) -> bool {
    if every <= 1 {
        return true;
    }
    let mut z = sequence
        ^ (u64::from(ssrc) << 32)
        ^ (participant as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).is_multiple_of(u64::from(every))
}

/// Accounts for one datagram; `true` if it counted as a media delivery.
fn handle(
    leg: &mut Leg,
    buf: &mut [u8],
    from: Option<SocketAddr>,
    arrived: u64,
    steady: (u64, u64),
    checking: &Checking,
    result: &mut ReceiverResult,
) -> bool {
    let n = buf.len();
    if is_rtcp(buf) {
        leg.seen.rtcp += 1;
        return false;
    }
    let Ok(clear) = RtpHeader::parse(buf) else {
        leg.seen.foreign += 1;
        return false;
    };
    let (ssrc, wire_seq) = (clear.ssrc().0, clear.sequence().0);
    let path = if leg.sessions.len() == 1 {
        Some(0)
    } else {
        from.and_then(|from| leg.by_source.get(&from).copied())
    };
    let Some(p) = path.filter(|&p| p < leg.sessions.len()) else {
        leg.seen.foreign += 1;
        return false;
    };
    // A stream the run does not know by SSRC (a relay that rewrote it) is
    // verified, which names it.
    let known = checking.streams.get(&ssrc).copied();
    let (stream, sequence) = match known {
        Some(id) => {
            let sequence = leg
                .seen
                .streams
                .get(&id)
                .map_or(u64::from(wire_seq), |s| s.extend(wire_seq));
            (Some(id), sequence)
        }
        None => (None, u64::from(wire_seq)),
    };
    let participant = leg.seen.participant;
    if known.is_some() && !sampled(ssrc, sequence, participant, checking.verify_every) {
        let id = stream.unwrap_or_default();
        let stats = leg.seen.streams.entry(id).or_default();
        if stats.handle_sequence(sequence, n) && (steady.0..steady.1).contains(&arrived) {
            result.steady_packets += 1;
            result.steady_bytes += n as u64;
        }
        return true;
    }
    leg.seen.verified += 1;
    let len = match &mut leg.sessions[p] {
        Some(session) => match session.unprotect_rtp(buf, n) {
            Ok(len) => len,
            Err(SrtpError::Replayed | SrtpError::TooOld) => {
                leg.seen.replayed += 1;
                return false;
            }
            Err(_) => {
                leg.seen.decrypt_failures += 1;
                return false;
            }
        },
        None => n,
    };
    let Ok(header_len) = RtpHeader::parse(&buf[..len]).map(|h| h.header_len()) else {
        leg.seen.foreign += 1;
        return false;
    };
    let payload = &mut buf[header_len..len];
    let plain = match &leg.e2ee {
        Some(key) => match key.open(payload) {
            Some(plain) => plain,
            None => {
                leg.seen.decrypt_failures += 1;
                return false;
            }
        },
        None => payload,
    };
    let Some(packet) = PayloadHeader::parse(plain) else {
        leg.seen.foreign += 1;
        return false;
    };
    // What the clear header said must be what the sealed payload says.
    if stream.is_some_and(|id| id != packet.stream || sequence != packet.sequence) {
        leg.seen.decrypt_failures += 1;
        return false;
    }
    let stats = leg.seen.streams.entry(packet.stream).or_default();
    let latency = if leg.behind_hop {
        &mut result.hop_latency
    } else {
        &mut result.latency
    };
    if stats.handle_sequence(packet.sequence, n) {
        stats.handle_timing(packet.sent_ns, arrived, latency);
        if (steady.0..steady.1).contains(&arrived) {
            result.steady_packets += 1;
            result.steady_bytes += n as u64;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_takes_about_one_in_n_and_all_at_one() {
        let hits = (0..16_000u64)
            .filter(|&seq| sampled(0x1234, seq, 3, 16))
            .count();
        assert!((800..1200).contains(&hits), "{hits}");
        assert!((0..100).all(|seq| sampled(7, seq, 1, 1)));
        // Another receiver samples other packets of the same stream.
        let a: Vec<bool> = (0..64).map(|seq| sampled(9, seq, 0, 4)).collect();
        let b: Vec<bool> = (0..64).map(|seq| sampled(9, seq, 1, 4)).collect();
        assert_ne!(a, b);
    }
}
