//! The sender thread: paces every stream it owns from one deadline heap,
//! sleeping until shortly before the next deadline and spinning the rest
//! (timer slack would otherwise add tens of µs of jitter and, summed,
//! bursts), then protects each packet of the burst once per key and sends
//! the burst to every destination of that key in one `sendmmsg` (a video
//! frame as one UDP GSO message per destination, see [`super::batch`]).
//! A burst counts as late, all its packets, when its first send starts
//! more than 1 ms after its deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice::crypto::AnyGcm;
use sluice::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
use sluice::srtp::{MasterKey, SrtpSession};

use nix::sys::socket::SockaddrStorage;

use super::batch::{self, MAX_SEGMENTS, SendBatch};
use super::e2ee::E2eeKey;
use super::schedule::StreamSchedule;
use super::{Clock, Progress};
use crate::payload::PayloadHeader;
use crate::target::StreamSpec;

/// Sleep only when the next deadline is further than this; spin below it.
const SPIN_NS: u64 = 200_000;
/// A send this far behind its deadline counts as late.
const LATE_NS: u64 = 1_000_000;
/// Room for the RTP header, the largest payload and the SRTP tag.
const BUF_LEN: usize = 2048;

/// One publishing participant, as its sender thread owns it.
#[derive(Debug)]
pub(crate) struct Publisher {
    pub(crate) socket: Arc<UdpSocket>,
    /// Destinations grouped by the key that protects packets to them.
    pub(crate) groups: Vec<(Option<MasterKey>, Vec<SocketAddr>)>,
    pub(crate) e2ee: Option<[u8; 16]>,
    /// (run-wide stream id, spec, schedule)
    pub(crate) streams: Vec<(u32, StreamSpec, StreamSchedule)>,
}

/// What a sender thread did.
#[derive(Debug, Default)]
pub(crate) struct SenderResult {
    /// (stream id, packets generated)
    pub(crate) sent: Vec<(u32, u64)>,
    /// Datagrams the kernel refused (per destination).
    pub(crate) send_failures: u64,
    /// Packets whose burst started more than 1 ms after its deadline.
    pub(crate) late: u64,
    /// Worst lateness seen, ns.
    pub(crate) worst_late_ns: u64,
    /// Protect failures (a bug or a spent key).
    pub(crate) protect_failures: u64,
    /// `sendmmsg` calls made.
    pub(crate) send_calls: u64,
    /// Whether GSO stayed on to the end.
    pub(crate) gso: bool,
}

struct Group {
    session: Option<SrtpSession<AnyGcm>>,
    dests: Vec<SockaddrStorage>,
}

struct Live {
    publisher: usize,
    id: u32,
    ssrc: Ssrc,
    pt: PayloadType,
    schedule: StreamSchedule,
    sequence: u64,
}

/// Runs the load of `publishers` to its end; `gso`: send a frame's run
/// of packets to each destination as one UDP GSO message.
pub(crate) fn run(
    publishers: Vec<Publisher>,
    clock: Clock,
    progress: &Progress,
    gso: bool,
) -> SenderResult {
    let mut result = SenderResult::default();
    let mut sockets = Vec::new();
    let mut groups: Vec<Vec<Group>> = Vec::new();
    let mut keys = Vec::new();
    let mut live = Vec::new();
    for (p, publisher) in publishers.into_iter().enumerate() {
        sockets.push(publisher.socket);
        keys.push(publisher.e2ee.map(|k| E2eeKey::new(&k)));
        let mut mine = Vec::new();
        for (key, dests) in publisher.groups {
            let session = match key
                .map(|k| SrtpSession::new(AnyGcm::default(), &k))
                .transpose()
            {
                Ok(session) => session,
                Err(_) => {
                    result.protect_failures += 1;
                    continue;
                }
            };
            let dests = dests.into_iter().map(batch::storage).collect();
            mine.push(Group { session, dests });
        }
        groups.push(mine);
        for (id, spec, schedule) in publisher.streams {
            // Scenario payload types are 96 and 111, both valid 7-bit values.
            let Some(pt) = PayloadType::new(spec.payload_type) else {
                result.protect_failures += 1;
                continue;
            };
            live.push(Live {
                publisher: p,
                id,
                ssrc: Ssrc(spec.ssrc),
                pt,
                schedule,
                sequence: 0,
            });
        }
    }
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = live
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.schedule.due_ns().map(|due| Reverse((due, i))))
        .collect();
    let mut plain = vec![0u8; BUF_LEN];
    // Every packet of the burst under way, once per key: slot
    // (group × packets + packet) × BUF_LEN. It grows to the largest burst
    // once, then never again.
    let mut arena: Vec<u8> = Vec::new();
    let mut lens: Vec<usize> = Vec::new();
    let mut sizes = Vec::new();
    let mut batch = SendBatch::new(gso);
    while let Some(&Reverse((due, i))) = heap.peek() {
        let now = clock.now_ns();
        if due > now + SPIN_NS {
            std::thread::sleep(Duration::from_nanos(due - now - SPIN_NS / 2));
            continue;
        }
        let mut now = now;
        while now < due {
            std::hint::spin_loop();
            now = clock.now_ns();
        }
        heap.pop();
        let stream = &mut live[i];
        stream.schedule.take_burst(&mut sizes);
        let timestamp = stream.schedule.rtp_timestamp();
        let mine = &mut groups[stream.publisher];
        let n = sizes.len();
        if arena.len() < mine.len() * n * BUF_LEN {
            arena.resize(mine.len() * n * BUF_LEN, 0);
        }
        lens.clear();
        lens.resize(mine.len() * n, 0);
        for (k, &size) in sizes.iter().enumerate() {
            let sequence = stream.sequence;
            stream.sequence += 1;
            let builder =
                RtpBuilder::new(stream.pt, SeqNum(sequence as u16), timestamp, stream.ssrc)
                    .marker(k + 1 == n);
            let Ok(header_len) = builder.write(&[], &mut plain) else {
                result.protect_failures += 1;
                continue;
            };
            let len = header_len + size;
            let payload = &mut plain[header_len..len];
            let header = PayloadHeader {
                stream: stream.id,
                sequence,
                sent_ns: clock.now_ns(),
            };
            let written = match &keys[stream.publisher] {
                Some(key) => {
                    header.write(&mut payload[ring::aead::NONCE_LEN..])
                        && key.seal(payload, size, stream.id, sequence)
                }
                None => header.write(payload),
            };
            if !written {
                result.protect_failures += 1;
                continue;
            }
            for (g, group) in mine.iter_mut().enumerate() {
                let at = (g * n + k) * BUF_LEN;
                let slot = &mut arena[at..at + BUF_LEN];
                slot[..len].copy_from_slice(&plain[..len]);
                lens[g * n + k] = match &mut group.session {
                    Some(session) => match session.protect_rtp(slot, len) {
                        Ok(m) => m,
                        Err(_) => {
                            result.protect_failures += 1;
                            0
                        }
                    },
                    None => len,
                };
            }
        }
        // Lateness is read just before the burst's first send.
        let behind = clock.now_ns().saturating_sub(due);
        if behind > LATE_NS {
            result.late += n as u64;
        }
        result.worst_late_ns = result.worst_late_ns.max(behind);
        let fd = sockets[stream.publisher].as_raw_fd();
        for (g, group) in mine.iter().enumerate() {
            for chunk in (0..n).step_by(MAX_SEGMENTS) {
                let end = (chunk + MAX_SEGMENTS).min(n);
                // The run's packets that were protected, in order.
                let mut count = 0;
                let mut run_lens = [0usize; MAX_SEGMENTS];
                let mut starts = [0usize; MAX_SEGMENTS];
                for k in chunk..end {
                    let len = lens[g * n + k];
                    if len > 0 {
                        run_lens[count] = len;
                        starts[count] = (g * n + k) * BUF_LEN;
                        count += 1;
                    }
                }
                let packets: [&[u8]; MAX_SEGMENTS] = std::array::from_fn(|j| {
                    if j < count {
                        &arena[starts[j]..starts[j] + run_lens[j]]
                    } else {
                        &[]
                    }
                });
                let sent = batch.send(fd, &packets[..count], &run_lens[..count], &group.dests);
                result.send_failures += sent.failed;
                result.send_calls += sent.calls;
            }
        }
        progress.sent.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(next) = stream.schedule.due_ns() {
            heap.push(Reverse((next, i)));
        }
    }
    result.gso = batch.gso();
    result.sent = live.iter().map(|s| (s.id, s.sequence)).collect();
    result
}
