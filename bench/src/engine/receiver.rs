//! A receiver thread: waits on many non-blocking sockets with epoll,
//! drains each ready one, decrypts every packet (SRTP, then the E2EE
//! layer where the meeting has one) and accounts for it per stream.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use sluice::crypto::AnyGcm;
use sluice::rtp::{RtpHeader, is_rtcp};
use sluice::srtp::{SrtpError, SrtpSession};

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
    /// Packets that failed SRTP authentication or the E2EE layer.
    pub(crate) decrypt_failures: u64,
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
pub(crate) fn run(
    subscribers: Vec<Subscriber>,
    clock: Clock,
    steady: (u64, u64),
    stop: &AtomicBool,
    progress: &Progress,
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
    let mut buf = vec![0u8; 2048];
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
            got += drain(leg, &mut buf, clock, steady, &mut result);
        }
        progress.received.fetch_add(got, Ordering::Relaxed);
        if stopping && ready == 0 {
            break;
        }
    }
    result.receptions = legs.into_iter().map(|l| l.seen).collect();
    Ok(result)
}

/// Reads `leg`'s socket until it would block; returns media packets read.
fn drain(
    leg: &mut Leg,
    buf: &mut [u8],
    clock: Clock,
    steady: (u64, u64),
    result: &mut ReceiverResult,
) -> u64 {
    let mut count = 0;
    loop {
        let (n, from) = match leg.socket.recv_from(buf) {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return count,
        };
        let arrived = clock.now_ns();
        if is_rtcp(&buf[..n]) {
            leg.seen.rtcp += 1;
            continue;
        }
        let path = if leg.sessions.len() == 1 {
            Some(0)
        } else {
            leg.by_source.get(&from).copied()
        };
        let Some(session) = path.and_then(|p| leg.sessions.get_mut(p)) else {
            leg.seen.foreign += 1;
            continue;
        };
        let len = match session {
            Some(session) => match session.unprotect_rtp(buf, n) {
                Ok(len) => len,
                Err(SrtpError::Replayed | SrtpError::TooOld) => {
                    leg.seen.replayed += 1;
                    continue;
                }
                Err(_) => {
                    leg.seen.decrypt_failures += 1;
                    continue;
                }
            },
            None => n,
        };
        let Ok(header_len) = RtpHeader::parse(&buf[..len]).map(|h| h.header_len()) else {
            leg.seen.foreign += 1;
            continue;
        };
        let payload = &mut buf[header_len..len];
        let plain = match &leg.e2ee {
            Some(key) => match key.open(payload) {
                Some(plain) => plain,
                None => {
                    leg.seen.decrypt_failures += 1;
                    continue;
                }
            },
            None => payload,
        };
        let Some(packet) = PayloadHeader::parse(plain) else {
            leg.seen.foreign += 1;
            continue;
        };
        count += 1;
        let stats = leg.seen.streams.entry(packet.stream).or_default();
        let before = stats.received;
        let latency = if leg.behind_hop {
            &mut result.hop_latency
        } else {
            &mut result.latency
        };
        stats.handle_packet(&packet, n, arrived, latency);
        if stats.received > before && (steady.0..steady.1).contains(&arrived) {
            result.steady_packets += 1;
            result.steady_bytes += n as u64;
        }
    }
}
