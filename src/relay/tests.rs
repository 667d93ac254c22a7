//! Scenario tests of [`RelayWorker`]: a snapshot built by hand (a standard
//! meeting of legs 1-3, an E2EE meeting of legs 4-6), simulated clients
//! holding the other side of each leg's keys at fixed addresses, and
//! datagrams stepped through the worker. Deterministic; no sockets.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::*;
use crate::crypto::{AeadBackend, AnyGcm, CryptoError, OpenJob, SealJob};
use crate::metrics::{CounterSnapshot, Drop, WorkerCounters};
use crate::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
use crate::srtp::{MasterKey, SrtpError, SrtpProfile, SrtpSession};

const STANDARD: MeetingIdx = MeetingIdx(1);
const E2EE: MeetingIdx = MeetingIdx(2);
const AUDIO: usize = 160;
const VIDEO: usize = 1200;

fn key(leg: u64, direction: u8) -> MasterKey {
    let material: Vec<u8> = (0..44u8)
        .map(|i| (leg as u8).wrapping_mul(31) ^ direction.wrapping_mul(101) ^ i)
        .collect();
    MasterKey::new(SrtpProfile::AeadAes256Gcm, &material).unwrap()
}

fn client_addr(leg: u64) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, leg as u8], 40_000 + leg as u16))
}

fn other_addr(n: u16) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 7], n))
}

fn audio_ssrc(leg: u64) -> u32 {
    0x1000 * leg as u32 + 1
}

fn video_ssrc(leg: u64) -> u32 {
    0x1000 * leg as u32 + 2
}

/// A participant's end of a leg.
struct Client {
    /// Protects what it sends (the client→relay key).
    send: SrtpSession<AnyGcm>,
    /// Unprotects what the relay sends it (the relay→client key).
    recv: SrtpSession<AnyGcm>,
    seq: u16,
}

fn route(leg: u64, meeting: MeetingIdx, mode: MeetingMode) -> Arc<LegRoute> {
    Arc::new(LegRoute {
        id: LegId(leg),
        meeting,
        mode,
        client_to_relay: key(leg, 0),
        relay_to_client: key(leg, 1),
        latch: Arc::new(Latch::default()),
        next_srtcp_index: Arc::new(AtomicU32::new(0)),
        highest_srtcp_index: Arc::new(AtomicU64::new(0)),
    })
}

fn stream(ssrc: u32, leg: u64, kind: MediaKind) -> Arc<StreamRoute> {
    Arc::new(StreamRoute {
        ssrc,
        leg: LegId(leg),
        kind,
        payload_type: 111,
        highest_index: Arc::new(AtomicU64::new(0)),
    })
}

/// Adds leg `leg` to `meeting`, publishing audio and video unless
/// `receive_only`.
fn admit_leg(
    snapshot: &mut RoutingSnapshot,
    leg: u64,
    meeting: MeetingIdx,
    mode: MeetingMode,
    receive_only: bool,
) {
    snapshot.insert_leg(route(leg, meeting, mode));
    // A new fan-out set, as the control plane publishes it.
    let mut members = snapshot
        .meetings
        .get(&meeting)
        .map(|m| m.to_vec())
        .unwrap_or_default();
    members.push(LegId(leg));
    snapshot.meetings.insert(meeting, Arc::new(members));
    if !receive_only {
        for (ssrc, kind) in [
            (audio_ssrc(leg), MediaKind::Audio),
            (video_ssrc(leg), MediaKind::Video),
        ] {
            snapshot.streams.insert(ssrc, stream(ssrc, leg, kind));
        }
    }
    snapshot.generation += 1;
}

/// Removes leg `leg`, its streams and its membership, as the control plane
/// does when a participant is deleted.
fn remove_leg(snapshot: &mut RoutingSnapshot, leg: u64) {
    snapshot.legs.remove(&LegId(leg));
    snapshot.streams.retain(|_, s| s.leg != LegId(leg));
    for (_, members) in snapshot.meetings.iter_mut() {
        if members.contains(&LegId(leg)) {
            let kept = members.iter().copied().filter(|id| *id != LegId(leg));
            *members = Arc::new(kept.collect());
        }
    }
    snapshot.generation += 1;
}

fn client(leg: u64) -> Client {
    Client {
        send: SrtpSession::new(AnyGcm::default(), &key(leg, 0)).unwrap(),
        recv: SrtpSession::new(AnyGcm::default(), &key(leg, 1)).unwrap(),
        seq: 1000,
    }
}

/// What the worker sent for one datagram.
type Sent = Vec<(SocketAddr, Vec<u8>)>;

struct Scenario {
    snapshot: RoutingSnapshot,
    clients: HashMap<u64, Client>,
    counters: Arc<WorkerCounters>,
    worker: RelayWorker<AnyGcm>,
    out: Transmits,
}

impl Scenario {
    /// Legs 1-3 in a standard meeting, 4-6 in an E2EE one, all publishing
    /// audio and video; nobody latched yet.
    fn new() -> Self {
        let mut snapshot = RoutingSnapshot::default();
        for leg in 1..=3 {
            admit_leg(&mut snapshot, leg, STANDARD, MeetingMode::Standard, false);
        }
        for leg in 4..=6 {
            admit_leg(&mut snapshot, leg, E2EE, MeetingMode::E2ee, false);
        }
        let counters = Arc::new(WorkerCounters::default());
        Self {
            snapshot,
            clients: (1..=6).map(|leg| (leg, client(leg))).collect(),
            worker: RelayWorker::new(AnyGcm::default(), Arc::clone(&counters)),
            counters,
            out: Transmits::default(),
        }
    }

    /// Every leg sends one audio packet, which latches it.
    fn latch_all(&mut self) {
        for leg in 1..=6 {
            let (_, srtp) = self.rtp(leg, audio_ssrc(leg), AUDIO);
            self.deliver(client_addr(leg), &srtp);
        }
        for leg in 1..=6 {
            assert_eq!(self.latch(leg), Some(client_addr(leg)));
        }
    }

    fn counts(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    fn client(&mut self, leg: u64) -> &mut Client {
        self.clients
            .get_mut(&leg)
            .expect("a client of the scenario")
    }

    fn latch(&self, leg: u64) -> Option<SocketAddr> {
        self.snapshot.legs.get(&LegId(leg))?.latch.get()
    }

    /// The next RTP packet of `ssrc` from `leg`: (plaintext, SRTP).
    fn rtp(&mut self, leg: u64, ssrc: u32, payload_len: usize) -> (Vec<u8>, Vec<u8>) {
        let client = self.client(leg);
        client.seq = client.seq.wrapping_add(1);
        let seq = client.seq;
        let payload: Vec<u8> = (0..payload_len)
            .map(|i| (i as u32 ^ ssrc ^ u32::from(seq)) as u8)
            .collect();
        let mut buf = vec![0u8; payload_len + 64];
        let len = RtpBuilder::new(
            PayloadType::new(111).unwrap(),
            SeqNum(seq),
            u32::from(seq) * 960,
            Ssrc(ssrc),
        )
        .write(&payload, &mut buf)
        .unwrap();
        let plain = buf[..len].to_vec();
        let n = client.send.protect_rtp(&mut buf, len).unwrap();
        buf.truncate(n);
        (plain, buf)
    }

    /// `compound` protected as SRTCP by `leg`'s client.
    fn srtcp(&mut self, leg: u64, compound: &[u8]) -> Vec<u8> {
        let mut buf = compound.to_vec();
        buf.resize(compound.len() + 64, 0);
        let n = self
            .client(leg)
            .send
            .protect_rtcp(&mut buf, compound.len())
            .unwrap();
        buf.truncate(n);
        buf
    }

    /// Hands one datagram to the worker; returns what it sent.
    fn deliver(&mut self, from: SocketAddr, datagram: &[u8]) -> Sent {
        deliver_to(
            &mut self.worker,
            &self.snapshot,
            &mut self.out,
            from,
            datagram,
        )
    }

    /// Sends the next packet of `ssrc` from `leg`'s own address.
    fn send_rtp(&mut self, leg: u64, ssrc: u32, payload_len: usize) -> (Vec<u8>, Sent) {
        let (plain, srtp) = self.rtp(leg, ssrc, payload_len);
        (plain, self.deliver(client_addr(leg), &srtp))
    }

    /// Which leg's client is at `addr`.
    fn leg_at(&self, addr: SocketAddr) -> u64 {
        (1..=8)
            .find(|leg| self.latch(*leg) == Some(addr))
            .expect("sent to a latched client")
    }

    fn open_rtp(&mut self, leg: u64, srtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut buf = srtp.to_vec();
        let n = self.client(leg).recv.unprotect_rtp(&mut buf, srtp.len())?;
        buf.truncate(n);
        Ok(buf)
    }

    fn open_rtcp(&mut self, leg: u64, srtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut buf = srtcp.to_vec();
        let n = self
            .client(leg)
            .recv
            .unprotect_rtcp(&mut buf, srtcp.len())?;
        buf.truncate(n);
        Ok(buf)
    }
}

fn deliver_to<B: AeadBackend>(
    worker: &mut RelayWorker<B>,
    snapshot: &RoutingSnapshot,
    out: &mut Transmits,
    from: SocketAddr,
    datagram: &[u8],
) -> Sent {
    // A receive buffer as the I/O layer has one: larger than the datagram.
    let mut buf = datagram.to_vec();
    buf.resize(datagram.len().max(2048), 0);
    out.clear();
    worker.handle_datagram(snapshot, from, &mut buf, datagram.len(), out);
    out.iter().map(|t| (t.dest, t.data.to_vec())).collect()
}

fn destinations(sent: &Sent) -> BTreeSet<SocketAddr> {
    sent.iter().map(|(addr, _)| *addr).collect()
}

fn addrs(legs: &[u64]) -> BTreeSet<SocketAddr> {
    legs.iter().map(|leg| client_addr(*leg)).collect()
}

fn meeting_of(leg: u64) -> [u64; 3] {
    if leg <= 3 { [1, 2, 3] } else { [4, 5, 6] }
}

// RTCP packets, laid out by hand (RFC 3550 §6.4, RFC 4585 §6, RFC 5104 §4.3.1).

fn words(header: [u8; 2], body: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = body.concat();
    assert_eq!(body.len() % 4, 0);
    let mut p = vec![header[0], header[1]];
    p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
    p.extend_from_slice(&body);
    p
}

fn sender_report(ssrc: u32) -> Vec<u8> {
    let info = [0x11u8; 20]; // NTP, RTP timestamp, counts
    words([0x80, 200], &[&ssrc.to_be_bytes(), &info])
}

fn receiver_report(ssrc: u32, about: u32) -> Vec<u8> {
    let block = [0x22u8; 20];
    words(
        [0x81, 201],
        &[&ssrc.to_be_bytes(), &about.to_be_bytes(), &block],
    )
}

fn sdes(ssrc: u32, cname: &[u8; 6]) -> Vec<u8> {
    // CNAME item (2 + 6 bytes), then the null terminator padded to a word.
    words(
        [0x81, 202],
        &[&ssrc.to_be_bytes(), &[1, 6], cname, &[0, 0, 0, 0]],
    )
}

fn nack(sender: u32, media: u32) -> Vec<u8> {
    words(
        [0x81, 205],
        &[&sender.to_be_bytes(), &media.to_be_bytes(), &[0, 7, 0, 5]],
    )
}

fn pli(sender: u32, media: u32) -> Vec<u8> {
    words([0x81, 206], &[&sender.to_be_bytes(), &media.to_be_bytes()])
}

fn fir(sender: u32, entries: &[u32]) -> Vec<u8> {
    let fci: Vec<u8> = entries
        .iter()
        .flat_map(|ssrc| [&ssrc.to_be_bytes()[..], &[9, 0, 0, 0]].concat())
        .collect();
    words([0x84, 206], &[&sender.to_be_bytes(), &[0; 4], &fci])
}

#[test]
fn every_receiver_decrypts_what_every_other_participant_sent() {
    let mut s = Scenario::new();
    s.latch_all();
    let before = s.counts();
    for sender in 1..=6 {
        for (ssrc, size) in [(audio_ssrc(sender), AUDIO), (video_ssrc(sender), VIDEO)] {
            let (plain, sent) = s.send_rtp(sender, ssrc, size);
            let others: Vec<u64> = meeting_of(sender)
                .into_iter()
                .filter(|leg| *leg != sender)
                .collect();
            // Exactly the other participants of the meeting: never the
            // sender, never another meeting.
            assert_eq!(sent.len(), 2, "leg {sender} ssrc {ssrc:#x}");
            assert_eq!(destinations(&sent), addrs(&others));
            for (addr, srtp) in sent {
                let receiver = s.leg_at(addr);
                assert_eq!(srtp.len(), plain.len() + 16);
                assert_eq!(s.open_rtp(receiver, &srtp).unwrap(), plain);
            }
        }
    }
    let counts = s.counts();
    assert_eq!(counts.drops, before.drops, "{counts:?}");
    assert_eq!(counts.received(MeetingMode::Standard), 3 + 6);
    assert_eq!(counts.received(MeetingMode::E2ee), 3 + 6);
}

#[test]
fn receivers_without_a_latch_are_skipped_and_counted() {
    let mut s = Scenario::new();
    // Leg 1's first packet latches leg 1; legs 2 and 3 have not spoken.
    let (_, sent) = s.send_rtp(1, audio_ssrc(1), AUDIO);
    assert!(sent.is_empty());
    assert_eq!(s.counts().dropped(Drop::NotLatched), 2);
    assert_eq!(s.counts().latches, 1);
}

#[test]
fn e2ee_payload_leaves_byte_identical() {
    let mut s = Scenario::new();
    s.latch_all();
    // An SFrame-like payload with the P bit set and a last byte that is
    // no valid padding count: anything that parsed the payload would
    // trip over it; the relay must not look.
    let sframe: Vec<u8> = (0..VIDEO).map(|i| (i * 7 + 3) as u8 | 0x80).collect();
    let mut buf = vec![0u8; VIDEO + 64];
    let len = RtpBuilder::new(
        PayloadType::new(96).unwrap(),
        SeqNum(7),
        1234,
        Ssrc(video_ssrc(4)),
    )
    .marker(true)
    .write(&sframe, &mut buf)
    .unwrap();
    buf[0] |= 0x20;
    let plain = buf[..len].to_vec();
    let n = s.client(4).send.protect_rtp(&mut buf, len).unwrap();
    let received = buf[..n].to_vec();

    let sent = s.deliver(client_addr(4), &received);
    assert_eq!(destinations(&sent), addrs(&[5, 6]));
    for (addr, srtp) in sent {
        let receiver = s.leg_at(addr);
        // Only the hop layer changed: a different key, the same packet.
        assert_ne!(srtp, received);
        let opened = s.open_rtp(receiver, &srtp).unwrap();
        assert_eq!(opened, plain);
        assert_eq!(&opened[12..], &sframe[..]);
    }
}

#[test]
fn forged_replayed_unknown_and_malformed_packets_are_dropped_and_counted() {
    let mut s = Scenario::new();
    s.latch_all();
    let before = s.counts();

    // Forged: one payload bit flipped.
    let (_, mut forged) = s.rtp(1, video_ssrc(1), VIDEO);
    forged[40] ^= 1;
    assert!(s.deliver(client_addr(1), &forged).is_empty());

    // Replayed: the same packet twice.
    let (_, srtp) = s.rtp(1, video_ssrc(1), VIDEO);
    assert_eq!(s.deliver(client_addr(1), &srtp).len(), 2);
    assert!(s.deliver(client_addr(1), &srtp).is_empty());

    // Unknown SSRC, though under a valid key.
    let (_, unknown) = s.rtp(1, 0xdead_beef, AUDIO);
    assert!(s.deliver(client_addr(1), &unknown).is_empty());

    // Malformed: RTP version 1; too short for an RTP header; an RTCP
    // packet type with no sender SSRC; `len` past the buffer.
    assert!(s.deliver(client_addr(1), &[0x40; 40]).is_empty());
    assert!(s.deliver(client_addr(1), &[0x80, 0x6f, 0, 1]).is_empty());
    assert!(s.deliver(client_addr(1), &[0x80, 201, 0, 1]).is_empty());
    let mut short = [0x80u8; 4];
    s.worker
        .handle_datagram(&s.snapshot, client_addr(1), &mut short, 5, &mut s.out);

    // A forged SRTCP packet naming a publisher's SSRC.
    let mut srtcp = s.srtcp(2, &receiver_report(audio_ssrc(2), video_ssrc(1)));
    srtcp[12] ^= 1;
    assert!(s.deliver(client_addr(2), &srtcp).is_empty());

    let after = s.counts();
    let delta = |why| after.dropped(why) - before.dropped(why);
    assert_eq!(delta(Drop::AuthFailed), 2);
    assert_eq!(delta(Drop::Replayed), 1);
    assert_eq!(delta(Drop::UnknownSsrc), 1);
    assert_eq!(delta(Drop::Malformed), 4);
    assert_eq!(delta(Drop::Other), 0);
    // Only the one good packet counted as received.
    assert_eq!(
        after.received(MeetingMode::Standard) - before.received(MeetingMode::Standard),
        1
    );
}

#[test]
fn only_a_fresh_authenticated_packet_moves_a_latch() {
    let mut s = Scenario::new();
    s.latch_all();
    let (_, captured) = s.rtp(1, video_ssrc(1), VIDEO);
    assert_eq!(s.deliver(client_addr(1), &captured).len(), 2);
    let latches = s.counts().latches;

    // A bad tag from a new address: dropped, the latch stays.
    let (_, mut forged) = s.rtp(1, video_ssrc(1), VIDEO);
    forged[100] ^= 0x40;
    assert!(s.deliver(other_addr(1), &forged).is_empty());
    assert_eq!(s.latch(1), Some(client_addr(1)));

    // The captured packet replayed from a new address, to this worker
    // (its replay window catches it) ...
    assert!(s.deliver(other_addr(2), &captured).is_empty());
    // ... and to another worker, whose window never saw it: it
    // authenticates there, but is not fresher than what was accepted.
    let counters2 = Arc::new(WorkerCounters::default());
    let mut worker2 = RelayWorker::new(AnyGcm::default(), Arc::clone(&counters2));
    let mut out2 = Transmits::default();
    let sent = deliver_to(
        &mut worker2,
        &s.snapshot,
        &mut out2,
        other_addr(3),
        &captured,
    );
    assert!(sent.is_empty());
    assert_eq!(counters2.snapshot().dropped(Drop::Replayed), 1);
    assert_eq!(s.latch(1), Some(client_addr(1)));
    assert_eq!(s.counts().latches, latches);

    // A valid packet with a newer index from a new address moves it
    // (the client's NAT rebound), and traffic to leg 1 follows.
    let (_, fresh) = s.rtp(1, video_ssrc(1), VIDEO);
    assert_eq!(s.deliver(other_addr(4), &fresh).len(), 2);
    assert_eq!(s.latch(1), Some(other_addr(4)));
    assert_eq!(s.counts().latches, latches + 1);
    let (plain, sent) = s.send_rtp(2, audio_ssrc(2), AUDIO);
    let to_leg1: Vec<_> = sent.iter().filter(|(a, _)| *a == other_addr(4)).collect();
    assert_eq!(to_leg1.len(), 1);
    assert_eq!(s.open_rtp(1, &to_leg1[0].1).unwrap(), plain);

    // A straggler from the old address no longer gets through.
    let (_, late) = s.rtp(1, audio_ssrc(1), AUDIO);
    let replayed = s.counts().dropped(Drop::Replayed);
    let (_, newer) = s.rtp(1, audio_ssrc(1), AUDIO);
    assert_eq!(s.deliver(other_addr(4), &newer).len(), 2);
    assert!(s.deliver(client_addr(1), &late).is_empty());
    assert_eq!(s.counts().dropped(Drop::Replayed), replayed + 1);
    assert_eq!(s.latch(1), Some(other_addr(4)));
}

#[test]
fn a_stream_past_a_sequence_wrap_does_not_resume_on_another_worker() {
    // Documented limit (worker.rs): a new worker starts at rollover
    // counter 0 and refuses, rather than guesses, a wrapped stream.
    let mut s = Scenario::new();
    s.latch_all();
    s.client(1).seq = 0xfffa;
    for _ in 0..10 {
        let (_, sent) = s.send_rtp(1, video_ssrc(1), VIDEO);
        assert_eq!(sent.len(), 2);
    }
    let (_, moved) = s.rtp(1, video_ssrc(1), VIDEO);
    let counters2 = Arc::new(WorkerCounters::default());
    let mut worker2 = RelayWorker::new(AnyGcm::default(), Arc::clone(&counters2));
    let mut out2 = Transmits::default();
    let sent = deliver_to(&mut worker2, &s.snapshot, &mut out2, other_addr(5), &moved);
    assert!(sent.is_empty());
    assert_eq!(counters2.snapshot().dropped(Drop::AuthFailed), 1);
    assert_eq!(s.latch(1), Some(client_addr(1)));
    // The worker that holds the stream goes on across the wrap.
    assert_eq!(s.deliver(client_addr(1), &moved).len(), 2);
}

#[test]
fn a_wrapped_stream_follows_its_publisher_to_a_new_address_on_its_own_worker() {
    // The media port steers a stream by its SSRC (net/steer.rs): after
    // the publisher's NAT rebinds, its packets still reach the worker
    // that holds the stream's rollover counter, which moves the latch and
    // goes on. Every receiver sees strictly increasing indices under its
    // own key (a reused one would be refused by its replay window).
    let mut s = Scenario::new();
    s.latch_all();
    s.client(4).seq = 0xfff0;
    let mut last = HashMap::new();
    let mut check = |s: &mut Scenario, sent: &Sent| {
        assert_eq!(sent.len(), 2, "both other members of the meeting");
        for (dest, srtp) in sent {
            let leg = s.leg_at(*dest);
            let mut buf = srtp.clone();
            let (_, index) = s
                .client(leg)
                .recv
                .unprotect_rtp_indexed(&mut buf, srtp.len())
                .expect("the receiver authenticates it");
            if let Some(before) = last.insert(leg, index) {
                assert!(index > before, "leg {leg}: {index:#x} after {before:#x}");
            }
        }
    };
    for _ in 0..40 {
        let (_, sent) = s.send_rtp(4, video_ssrc(4), VIDEO);
        check(&mut s, &sent);
    }
    let latches = s.counts().latches;
    for n in 0..40 {
        let (_, srtp) = s.rtp(4, video_ssrc(4), VIDEO);
        let sent = s.deliver(other_addr(9), &srtp);
        check(&mut s, &sent);
        if n == 0 {
            assert_eq!(s.latch(4), Some(other_addr(9)), "the first moves it");
        }
    }
    assert_eq!(s.counts().latches, latches + 1);
    assert!(last.values().all(|&index| index >> 16 == 1), "{last:x?}");
    assert_eq!(s.counts().dropped(Drop::AuthFailed), 0);
    // What the others send now reaches the publisher at its new address.
    let (plain, sent) = s.send_rtp(5, audio_ssrc(5), AUDIO);
    let to_4: Vec<_> = sent.iter().filter(|(a, _)| *a == other_addr(9)).collect();
    assert_eq!(to_4.len(), 1);
    assert_eq!(s.open_rtp(4, &to_4[0].1).unwrap(), plain);
}

/// The SRTCP index of an AEAD SRTCP packet (RFC 7714 §9.2: E bit and
/// index are its last four bytes).
fn srtcp_index(packet: &[u8]) -> u32 {
    let tail: [u8; 4] = packet[packet.len() - 4..].try_into().unwrap();
    u32::from_be_bytes(tail) & 0x7fff_ffff
}

#[test]
fn a_receivers_rtcp_follows_its_nat_rebinding_to_another_worker() {
    const RR7: u32 = 0x7777_0000;
    let mut s = Scenario::new();
    s.latch_all();
    admit_leg(&mut s.snapshot, 7, STANDARD, MeetingMode::Standard, true);
    s.snapshot.rtcp_ssrcs.insert(RR7, LegId(7));
    s.clients.insert(7, client(7));
    let feedback = [receiver_report(RR7, video_ssrc(1)), pli(RR7, video_ssrc(1))].concat();

    // Reports and PLIs through worker 1, from where the receiver was.
    let mut to_publisher = Vec::new();
    let mut last = Vec::new();
    for _ in 0..5 {
        last = s.srtcp(7, &feedback);
        let sent = s.deliver(client_addr(7), &last);
        to_publisher.extend(sent.into_iter().filter(|(a, _)| *a == client_addr(1)));
    }
    assert_eq!(s.latch(7), Some(client_addr(7)));
    assert_eq!(to_publisher.len(), 5);

    // Its NAT rebinds and the new address hashes to worker 2: the
    // `rtcp_ssrc` finds the leg, the fresher index moves the latch.
    let counters2 = Arc::new(WorkerCounters::default());
    let mut worker2 = RelayWorker::new(AnyGcm::default(), Arc::clone(&counters2));
    let mut out2 = Transmits::default();
    for _ in 0..3 {
        let rr = s.srtcp(7, &feedback);
        let sent = deliver_to(&mut worker2, &s.snapshot, &mut out2, other_addr(7), &rr);
        to_publisher.extend(sent.into_iter().filter(|(a, _)| *a == client_addr(1)));
    }
    assert_eq!(s.latch(7), Some(other_addr(7)));
    assert_eq!(counters2.snapshot().latches, 1);
    assert_eq!(to_publisher.len(), 8);

    // Media follows it, from the worker that holds the publisher.
    let (plain, sent) = s.send_rtp(1, video_ssrc(1), VIDEO);
    let (_, to_7) = sent.iter().find(|(a, _)| *a == other_addr(7)).unwrap();
    assert_eq!(s.open_rtp(7, to_7).unwrap(), plain);
    assert!(!destinations(&sent).contains(&client_addr(7)));

    // A report captured at the old address, replayed from a third one,
    // reaches a worker whose replay window never saw it: still stale.
    let stale = s.counts().dropped(Drop::Replayed) + counters2.snapshot().dropped(Drop::Replayed);
    deliver_to(&mut worker2, &s.snapshot, &mut out2, other_addr(8), &last);
    s.deliver(other_addr(9), &last);
    let now = s.counts().dropped(Drop::Replayed) + counters2.snapshot().dropped(Drop::Replayed);
    assert_eq!(now, stale + 2);
    assert_eq!(s.latch(7), Some(other_addr(7)));

    // Both workers protect RTCP to the publisher under one key: no SRTCP
    // index was used twice, and the publisher opens every one.
    let mut indices: Vec<u32> = to_publisher.iter().map(|(_, p)| srtcp_index(p)).collect();
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len(), to_publisher.len());
    for (_, packet) in &to_publisher {
        s.open_rtcp(1, packet)
            .expect("the publisher opens every report");
    }
}

#[test]
fn a_receive_only_participant_latches_with_an_srtcp_rr_then_receives() {
    let mut s = Scenario::new();
    s.latch_all();
    admit_leg(&mut s.snapshot, 7, STANDARD, MeetingMode::Standard, true);
    s.clients.insert(7, client(7));

    let not_latched = s.counts().dropped(Drop::NotLatched);
    let (_, sent) = s.send_rtp(1, video_ssrc(1), VIDEO);
    assert_eq!(destinations(&sent), addrs(&[2, 3]));
    assert_eq!(s.counts().dropped(Drop::NotLatched), not_latched + 1);

    // Its RR names an SSRC no stream has; only its key opens it.
    let latches = s.counts().latches;
    let rr = s.srtcp(7, &receiver_report(0x7777_0000, video_ssrc(1)));
    assert!(
        s.deliver(client_addr(7), &rr).is_empty(),
        "an RR stops here"
    );
    assert_eq!(s.latch(7), Some(client_addr(7)));
    assert_eq!(s.counts().latches, latches + 1);

    let (plain, sent) = s.send_rtp(1, video_ssrc(1), VIDEO);
    assert_eq!(destinations(&sent), addrs(&[2, 3, 7]));
    let (_, to_7) = sent.iter().find(|(a, _)| *a == client_addr(7)).unwrap();
    assert_eq!(s.open_rtp(7, to_7).unwrap(), plain);

    // Later reports are known by their address; a stranger's is not.
    let received = s.counts().received(MeetingMode::Standard);
    let rr = s.srtcp(7, &receiver_report(0x7777_0000, video_ssrc(1)));
    assert!(s.deliver(client_addr(7), &rr).is_empty());
    assert_eq!(s.counts().received(MeetingMode::Standard), received + 1);
    let mut stranger = client(99);
    let mut buf = receiver_report(0x5555_0000, video_ssrc(1));
    let len = buf.len();
    buf.resize(len + 64, 0);
    let n = stranger.send.protect_rtcp(&mut buf, len).unwrap();
    let unknown = s.counts().dropped(Drop::UnknownSsrc);
    assert!(s.deliver(other_addr(9), &buf[..n]).is_empty());
    assert_eq!(s.counts().dropped(Drop::UnknownSsrc), unknown + 1);
}

#[test]
fn feedback_from_receivers_reaches_the_publisher_only() {
    let mut s = Scenario::new();
    s.latch_all();
    let before = s.counts();
    let me = audio_ssrc(2);

    // RR + NACK about leg 1's video: leg 1 gets the NACK, nothing else.
    let compound = [receiver_report(me, video_ssrc(1)), nack(me, video_ssrc(1))].concat();
    let srtcp = s.srtcp(2, &compound);
    let sent = s.deliver(client_addr(2), &srtcp);
    assert_eq!(destinations(&sent), addrs(&[1]));
    assert_eq!(s.open_rtcp(1, &sent[0].1).unwrap(), nack(me, video_ssrc(1)));

    // PLI from leg 3.
    let srtcp = s.srtcp(3, &pli(audio_ssrc(3), video_ssrc(1)));
    let sent = s.deliver(client_addr(3), &srtcp);
    assert_eq!(destinations(&sent), addrs(&[1]));
    assert_eq!(
        s.open_rtcp(1, &sent[0].1).unwrap(),
        pli(audio_ssrc(3), video_ssrc(1))
    );

    // A FIR naming two publishers reaches both.
    let request = fir(me, &[video_ssrc(1), video_ssrc(3)]);
    let srtcp = s.srtcp(2, &request);
    let sent = s.deliver(client_addr(2), &srtcp);
    assert_eq!(destinations(&sent), addrs(&[1, 3]));
    for (addr, packet) in sent {
        let leg = s.leg_at(addr);
        assert_eq!(s.open_rtcp(leg, &packet).unwrap(), request);
    }

    // Every SRTCP packet to leg 1 took its index from the leg's counter.
    let leg1 = &s.snapshot.legs[&LegId(1)];
    assert_eq!(leg1.next_srtcp_index.load(Ordering::Relaxed), 3);

    // Feedback about another meeting's stream, or the sender's own, or an
    // unknown one, goes nowhere.
    for media in [video_ssrc(4), video_ssrc(2), 0x0bad_0bad] {
        let srtcp = s.srtcp(2, &pli(me, media));
        assert!(s.deliver(client_addr(2), &srtcp).is_empty());
    }
    assert_eq!(s.counts().drops, before.drops);
}

#[test]
fn a_sender_report_reaches_the_other_participants() {
    let mut s = Scenario::new();
    s.latch_all();
    for sender in [1, 4] {
        let compound = [
            sender_report(audio_ssrc(sender)),
            sdes(audio_ssrc(sender), b"cname!"),
        ]
        .concat();
        let srtcp = s.srtcp(sender, &compound);
        let sent = s.deliver(client_addr(sender), &srtcp);
        let others: Vec<u64> = meeting_of(sender)
            .into_iter()
            .filter(|leg| *leg != sender)
            .collect();
        assert_eq!(destinations(&sent), addrs(&others));
        for (addr, packet) in sent {
            let leg = s.leg_at(addr);
            assert_eq!(s.open_rtcp(leg, &packet).unwrap(), compound);
        }
    }

    // SR plus a PLI for leg 2: leg 2 gets both, leg 3 the SR alone.
    let sr = sender_report(audio_ssrc(1));
    let request = pli(audio_ssrc(1), video_ssrc(2));
    let srtcp = s.srtcp(1, &[sr.clone(), request.clone()].concat());
    let sent = s.deliver(client_addr(1), &srtcp);
    assert_eq!(destinations(&sent), addrs(&[2, 3]));
    for (addr, packet) in sent {
        let leg = s.leg_at(addr);
        let expected = if leg == 2 {
            [sr.clone(), request.clone()].concat()
        } else {
            sr.clone()
        };
        assert_eq!(s.open_rtcp(leg, &packet).unwrap(), expected);
    }
}

#[test]
fn removing_a_leg_or_a_meeting_stops_forwarding_at_once() {
    let mut s = Scenario::new();
    s.latch_all();
    assert_eq!(s.worker.legs_held(), 6);

    remove_leg(&mut s.snapshot, 3);
    let (_, sent) = s.send_rtp(1, video_ssrc(1), VIDEO);
    assert_eq!(destinations(&sent), addrs(&[2]));
    assert_eq!(s.worker.legs_held(), 5, "leg 3's sessions were pruned");
    let unknown = s.counts().dropped(Drop::UnknownSsrc);
    let (_, sent) = s.send_rtp(3, video_ssrc(3), VIDEO);
    assert!(sent.is_empty());
    let srtcp = s.srtcp(3, &pli(audio_ssrc(3), video_ssrc(1)));
    assert!(s.deliver(client_addr(3), &srtcp).is_empty());
    assert_eq!(s.counts().dropped(Drop::UnknownSsrc), unknown + 2);

    // The whole E2EE meeting goes.
    for leg in 4..=6 {
        remove_leg(&mut s.snapshot, leg);
    }
    s.snapshot.meetings.remove(&E2EE);
    let (_, sent) = s.send_rtp(4, video_ssrc(4), VIDEO);
    assert!(sent.is_empty());
    assert_eq!(s.worker.legs_held(), 2);
    // The standard meeting is untouched.
    let (_, sent) = s.send_rtp(2, audio_ssrc(2), AUDIO);
    assert_eq!(destinations(&sent), addrs(&[1]));
}

/// AnyGcm, counting the seal and open calls the worker makes.
#[derive(Debug, Clone, Default)]
struct CountingGcm {
    inner: AnyGcm,
    seal_calls: Arc<AtomicUsize>,
    open_calls: Arc<AtomicUsize>,
}

impl AeadBackend for CountingGcm {
    type Key = <AnyGcm as AeadBackend>::Key;

    fn name(&self) -> &'static str {
        "counting"
    }

    fn key(&self, raw: &[u8]) -> Result<Self::Key, CryptoError> {
        self.inner.key(raw)
    }

    fn seal_batch(&self, jobs: &mut [SealJob<'_, Self::Key>]) {
        self.seal_calls.fetch_add(1, Ordering::Relaxed);
        self.inner.seal_batch(jobs);
    }

    fn open_batch(&self, jobs: &mut [OpenJob<'_, Self::Key>]) {
        self.open_calls.fetch_add(1, Ordering::Relaxed);
        self.inner.open_batch(jobs);
    }
}

#[test]
fn fan_out_protects_for_all_receivers_in_one_backend_call_per_64() {
    for subscribers in [10u64, 70] {
        let mut snapshot = RoutingSnapshot::default();
        admit_leg(&mut snapshot, 1, E2EE, MeetingMode::E2ee, false);
        for leg in 2..2 + subscribers {
            admit_leg(&mut snapshot, leg, E2EE, MeetingMode::E2ee, true);
            snapshot.legs[&LegId(leg)].latch.set(client_addr(leg));
        }
        snapshot.legs[&LegId(1)].latch.set(client_addr(1));
        let backend = CountingGcm::default();
        let calls = Arc::clone(&backend.seal_calls);
        let mut worker = RelayWorker::new(backend, Arc::new(WorkerCounters::default()));
        let mut out = Transmits::default();
        let mut publisher = client(1);
        let mut subscriber = client(2);
        for seq in 0..3u16 {
            let mut buf = vec![0u8; VIDEO + 64];
            let len = RtpBuilder::new(
                PayloadType::new(96).unwrap(),
                SeqNum(seq),
                0,
                Ssrc(video_ssrc(1)),
            )
            .write(&[seq as u8; VIDEO], &mut buf)
            .unwrap();
            let plain = buf[..len].to_vec();
            let n = publisher.send.protect_rtp(&mut buf, len).unwrap();
            calls.store(0, Ordering::Relaxed);
            let sent = deliver_to(&mut worker, &snapshot, &mut out, client_addr(1), &buf[..n]);
            assert_eq!(sent.len() as u64, subscribers);
            assert_eq!(
                calls.load(Ordering::Relaxed) as u64,
                subscribers.div_ceil(64)
            );
            let (_, to_2) = sent.iter().find(|(a, _)| *a == client_addr(2)).unwrap();
            let mut copy = to_2.clone();
            let m = subscriber
                .recv
                .unprotect_rtp(&mut copy, to_2.len())
                .unwrap();
            assert_eq!(copy[..m], plain[..]);
        }
    }
}

/// xorshift64*: a fixed-seed generator for the garbage test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn garbage_never_panics() {
    let mut s = Scenario::new();
    s.latch_all();
    admit_leg(&mut s.snapshot, 7, STANDARD, MeetingMode::Standard, true);
    s.clients.insert(7, client(7));
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let ssrcs: Vec<u32> = (1..=6)
        .flat_map(|leg| [audio_ssrc(leg), video_ssrc(leg)])
        .chain([0, 0x7777_0000, u32::MAX])
        .collect();
    for round in 0..10_000 {
        let leg = 1 + rng.below(6);
        let mut datagram = match rng.below(5) {
            // Random bytes of a random length.
            0 => (0..rng.below(1600)).map(|_| rng.next() as u8).collect(),
            // Random bytes behind an RTP or RTCP-looking header with a
            // known SSRC, to get past the demux.
            1 => {
                let len = 8 + rng.below(1500) as usize;
                let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                d[0] = 0x80 | (d[0] & 0x3f);
                if rng.below(2) == 0 {
                    d[1] = 192 + rng.below(32) as u8;
                    d[4..8].copy_from_slice(
                        &ssrcs[rng.below(ssrcs.len() as u64) as usize].to_be_bytes(),
                    );
                } else if len >= 12 {
                    d[8..12].copy_from_slice(
                        &ssrcs[rng.below(ssrcs.len() as u64) as usize].to_be_bytes(),
                    );
                }
                d
            }
            // Valid SRTP, then perhaps damaged.
            2 => s.rtp(leg, video_ssrc(leg), rng.below(1400) as usize).1,
            // Valid SRTCP of every kind, then perhaps damaged.
            3 => {
                let me = audio_ssrc(leg);
                let other = ssrcs[rng.below(ssrcs.len() as u64) as usize];
                let compound = match rng.below(4) {
                    0 => [sender_report(me), sdes(me, b"fuzzed")].concat(),
                    1 => [receiver_report(me, other), nack(me, other)].concat(),
                    2 => fir(me, &[other, video_ssrc(1), video_ssrc(4)]),
                    _ => pli(me, other),
                };
                s.srtcp(leg, &compound)
            }
            // A receive-only participant's report.
            _ => s.srtcp(7, &receiver_report(0x7777_0000, video_ssrc(1))),
        };
        for _ in 0..rng.below(4) {
            if !datagram.is_empty() {
                let at = rng.below(datagram.len() as u64) as usize;
                datagram[at] ^= 1 << rng.below(8);
            }
        }
        if rng.below(8) == 0 {
            datagram.truncate(rng.below(datagram.len() as u64 + 1) as usize);
        }
        let from = if rng.below(4) == 0 {
            other_addr(rng.below(4) as u16)
        } else {
            client_addr(leg)
        };
        let mut buf = datagram.clone();
        buf.resize(datagram.len() + rng.below(64) as usize, 0);
        // Now and then a length past the buffer.
        let len = if rng.below(50) == 0 {
            buf.len() + 1
        } else {
            datagram.len()
        };
        s.out.clear();
        s.worker
            .handle_datagram(&s.snapshot, from, &mut buf, len, &mut s.out);
        assert!(s.out.iter().all(|t| t.data.len() <= SLOT));
        // Now and then the control plane removes and re-admits a leg.
        if round % 1000 == 999 {
            remove_leg(&mut s.snapshot, 3);
            admit_leg(&mut s.snapshot, 3, STANDARD, MeetingMode::Standard, false);
        }
    }
    // The garbage reached every stage, and nothing fell through to `Other`.
    let counts = s.counts();
    for why in [
        Drop::Malformed,
        Drop::UnknownSsrc,
        Drop::AuthFailed,
        Drop::Replayed,
    ] {
        assert!(counts.dropped(why) > 0, "{why:?}: {counts:?}");
    }
    assert_eq!(counts.dropped(Drop::Other), 0);
    assert!(counts.received(MeetingMode::E2ee) > 0 && counts.received(MeetingMode::Standard) > 0);
}

/// Many receive-only participants joining at once, on one worker, each
/// re-sending its RR in the same order every round (as a client that
/// re-sends until it hears media does): every one of them latches within a
/// bounded number of rounds. A fixed rotation of the trial window fell into
/// step with that order and left a quarter of them unlatched for good
/// (found by sluice-bench's video fan-out with `--cpu-pin`).
#[test]
fn many_receive_only_participants_all_latch() {
    let mut s = Scenario::new();
    s.latch_all();
    let viewers: Vec<u64> = (100..160).collect();
    for &leg in &viewers {
        admit_leg(&mut s.snapshot, leg, STANDARD, MeetingMode::Standard, true);
        s.clients.insert(leg, client(leg));
    }
    let mut rounds = 0;
    while viewers.iter().any(|&leg| s.latch(leg).is_none()) {
        rounds += 1;
        assert!(
            rounds <= 40,
            "after {rounds} rounds still unlatched: {:?}",
            viewers
                .iter()
                .filter(|&&leg| s.latch(leg).is_none())
                .collect::<Vec<_>>()
        );
        for &leg in &viewers {
            if s.latch(leg).is_none() {
                let rr = s.srtcp(
                    leg,
                    &receiver_report(0x7000_0000 + leg as u32, video_ssrc(1)),
                );
                s.deliver(client_addr(leg), &rr);
            }
        }
    }
}

/// The list of legs waiting for a first packet is compacted a slice per
/// snapshot change: over a storm of joins and leaves it stays bounded by
/// the legs still waiting, and those all still latch by key trial.
#[test]
fn the_unlatched_list_is_compacted_in_slices_and_keeps_who_waits() {
    let mut s = Scenario::new();
    s.latch_all();
    let poke = |s: &mut Scenario| {
        // Any datagram makes the worker adopt the new snapshot.
        s.deliver(other_addr(1), &[0]);
    };
    // 600 join, one per snapshot: compactions of more than a slice.
    let mut saw_slices = false;
    for leg in 100..700 {
        admit_leg(&mut s.snapshot, leg, STANDARD, MeetingMode::Standard, true);
        poke(&mut s);
        saw_slices |= s.worker.unlatched_list().1;
    }
    assert!(saw_slices, "a compaction ran over several changes");
    // All but the last 30 leave; then 1,034 more join, each leaving
    // again ten joins later, but the last ten. (The scenario's keys repeat
    // every 256 legs; legs with one key are one to trial decryption, so
    // the ones that stay have distinct keys.)
    for leg in 100..670 {
        remove_leg(&mut s.snapshot, leg);
        poke(&mut s);
    }
    for leg in 700..1_734 {
        admit_leg(&mut s.snapshot, leg, STANDARD, MeetingMode::Standard, true);
        poke(&mut s);
        if leg >= 710 {
            remove_leg(&mut s.snapshot, leg - 10);
            poke(&mut s);
        }
    }
    // Let any compaction under way finish.
    for _ in 0..50 {
        s.snapshot.generation += 1;
        poke(&mut s);
    }
    let (len, compacting) = s.worker.unlatched_list();
    assert!(!compacting);
    let waiting = 30 + 10;
    assert!(len <= 2 * 64 + 2, "a list of {len} for {waiting} waiting");
    let joined: Vec<u64> = (100..1_734).collect();
    let stay: Vec<u64> = joined
        .iter()
        .copied()
        .filter(|&l| s.snapshot.legs.contains_key(&LegId(l)))
        .collect();
    assert_eq!(stay.len(), waiting);
    for &leg in &stay {
        s.clients.insert(leg, client(leg));
    }
    for round in 0.. {
        let left: Vec<u64> = stay
            .iter()
            .copied()
            .filter(|&l| s.latch(l).is_none())
            .collect();
        assert!(round < 40, "still unlatched after 40 rounds: {left:?}");
        let left: Vec<u64> = stay
            .iter()
            .copied()
            .filter(|&l| s.latch(l).is_none())
            .collect();
        if left.is_empty() {
            break;
        }
        for leg in left {
            let rr = s.srtcp(
                leg,
                &receiver_report(0x7100_0000 + leg as u32, video_ssrc(1)),
            );
            s.deliver(client_addr(leg), &rr);
        }
    }
}

/// A receive-only participant whose RR carries the `rtcp_ssrc` it was
/// admitted with latches on its first report with one decryption, however
/// many other legs wait for theirs; a forged report under its SSRC fails
/// that one decryption and moves nothing.
#[test]
fn a_registered_rtcp_ssrc_latches_with_one_decryption() {
    let mut snapshot = RoutingSnapshot::default();
    admit_leg(&mut snapshot, 1, STANDARD, MeetingMode::Standard, false);
    snapshot.legs[&LegId(1)].latch.set(client_addr(1));
    // 500 viewers, none latched yet, each with its RTCP SSRC registered.
    for leg in 100..600 {
        admit_leg(&mut snapshot, leg, STANDARD, MeetingMode::Standard, true);
        snapshot
            .rtcp_ssrcs
            .insert(0x5200_0000 + leg as u32, LegId(leg));
    }
    let backend = CountingGcm::default();
    let opens = Arc::clone(&backend.open_calls);
    let counters = Arc::new(WorkerCounters::default());
    let mut worker = RelayWorker::new(backend, Arc::clone(&counters));
    let mut out = Transmits::default();
    for leg in 100..600 {
        let mut viewer = client(leg);
        let compound = receiver_report(0x5200_0000 + leg as u32, video_ssrc(1));
        let mut buf = compound.clone();
        buf.resize(compound.len() + 64, 0);
        let n = viewer.send.protect_rtcp(&mut buf, compound.len()).unwrap();
        opens.store(0, Ordering::Relaxed);
        deliver_to(
            &mut worker,
            &snapshot,
            &mut out,
            client_addr(leg),
            &buf[..n],
        );
        assert_eq!(opens.load(Ordering::Relaxed), 1, "leg {leg}");
        assert_eq!(
            snapshot.legs[&LegId(leg)].latch.get(),
            Some(client_addr(leg))
        );
    }
    assert_eq!(counters.snapshot().latches, 500);

    // Someone else's key under a registered SSRC: one failed decryption,
    // counted, and the latch stays.
    let mut stranger = client(99);
    let compound = receiver_report(0x5200_0000 + 100, video_ssrc(1));
    let mut buf = Vec::new();
    let mut n = 0;
    // A fresh SRTCP index (index 0 is refused as a replay before any
    // decryption).
    for _ in 0..3 {
        buf = compound.clone();
        buf.resize(compound.len() + 64, 0);
        n = stranger
            .send
            .protect_rtcp(&mut buf, compound.len())
            .unwrap();
    }
    opens.store(0, Ordering::Relaxed);
    let failed = counters.snapshot().dropped(Drop::AuthFailed);
    deliver_to(&mut worker, &snapshot, &mut out, other_addr(5), &buf[..n]);
    assert_eq!(opens.load(Ordering::Relaxed), 1);
    assert_eq!(counters.snapshot().dropped(Drop::AuthFailed), failed + 1);
    assert_eq!(
        snapshot.legs[&LegId(100)].latch.get(),
        Some(client_addr(100))
    );
}

/// A publisher without rtcp-mux (the `ffmpeg` CLI, legacy SIP video):
/// RTP from its port, RTCP from the port above. Neither moves the other's
/// latch however they alternate; media goes to the RTP port, RTCP (a
/// receiver's PLI) to the RTCP port; its SR still reaches the meeting.
#[test]
fn a_peer_without_rtcp_mux_keeps_its_rtp_and_rtcp_latches_apart() {
    let mut s = Scenario::new();
    s.latch_all();
    let rtp_port = client_addr(1);
    let rtcp_port = SocketAddr::new(rtp_port.ip(), rtp_port.port() + 1);
    let latches = s.counts().latches;
    for round in 0..5 {
        let sr = s.srtcp(1, &sender_report(audio_ssrc(1)));
        let sent = s.deliver(rtcp_port, &sr);
        assert_eq!(
            destinations(&sent),
            addrs(&[2, 3]),
            "round {round}: the SR is forwarded"
        );
        let (_, sent) = s.send_rtp(1, video_ssrc(1), VIDEO);
        assert_eq!(destinations(&sent), addrs(&[2, 3]), "round {round}");
        assert_eq!(
            s.latch(1),
            Some(rtp_port),
            "round {round}: RTCP never moves the RTP latch"
        );
    }
    // One latch for the RTCP address, none after.
    assert_eq!(s.counts().latches, latches + 1);
    assert_eq!(s.counts().dropped(Drop::Replayed), 0);

    // Media to it goes to its RTP port, feedback about its stream to its
    // RTCP port.
    let (_, sent) = s.send_rtp(2, audio_ssrc(2), AUDIO);
    assert!(destinations(&sent).contains(&rtp_port));
    assert!(!destinations(&sent).contains(&rtcp_port));
    let feedback = s.srtcp(2, &pli(audio_ssrc(2), video_ssrc(1)));
    let sent = s.deliver(client_addr(2), &feedback);
    assert_eq!(destinations(&sent), BTreeSet::from([rtcp_port]));
    let opened = s.open_rtcp(1, &sent[0].1).unwrap();
    assert_eq!(opened, pli(audio_ssrc(2), video_ssrc(1)));
}

/// A backend that sends fan-outs of two or more receivers to the GPU
/// queue (a calibrated crossover of 2), when this machine has a device.
fn deferring_backend() -> Option<AnyGcm> {
    use crate::crypto::BackendKind;
    use crate::crypto::calibrate::Calibration;
    use crate::crypto::gpu::{GpuOffload, GpuPolicy, process_engine};
    if !crate::test_util::backend_kinds().contains(&BackendKind::Gpu) {
        return None;
    }
    let calibration = Calibration {
        payload: VIDEO,
        points: Vec::new(),
        crossover: Some(2),
    };
    let offload = GpuOffload::new(
        process_engine(true).ok()?,
        GpuPolicy::Auto,
        Some(calibration),
    );
    Some(AnyGcm::with_gpu(BackendKind::Ring, Arc::new(offload)))
}

/// Fan-outs handed to the GPU leave in a later loop turn, not in the turn
/// that handled them; a CPU-sealed fan-out handled meanwhile waits behind
/// them; then everything goes out in the order it was handled, and every
/// receiver opens every packet, in sequence.
#[test]
fn gpu_fanouts_go_out_in_a_later_turn_and_in_order() {
    let Some(backend) = deferring_backend() else {
        return;
    };
    let mut s = Scenario::new();
    // The E2EE meeting keeps two legs, so its fan-outs have one receiver
    // (below the crossover: sealed on the CPU).
    remove_leg(&mut s.snapshot, 6);
    s.worker = RelayWorker::new(backend, Arc::clone(&s.counters));
    for leg in 1..=5 {
        let (_, srtp) = s.rtp(leg, audio_ssrc(leg), AUDIO);
        s.deliver(client_addr(leg), &srtp);
    }
    s.out.clear();
    s.worker.poll_deferred(true, &mut s.out);
    assert!(!s.worker.has_deferred());

    let mut plains = Vec::new();
    for _ in 0..3 {
        let (plain, sent) = s.send_rtp(1, video_ssrc(1), VIDEO);
        assert!(sent.is_empty(), "a GPU fan-out left in its own turn");
        plains.push(plain);
    }
    let (e2ee_plain, sent) = s.send_rtp(4, audio_ssrc(4), AUDIO);
    assert!(sent.is_empty(), "a CPU fan-out overtook the GPU's");
    assert!(s.worker.has_deferred());

    s.out.clear();
    // Bounded: the device gets 30 s to finish, then the test fails.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.worker.poll_deferred(false, &mut s.out) {
        assert!(
            std::time::Instant::now() < deadline,
            "the GPU never finished"
        );
        std::thread::yield_now();
    }
    let sent: Sent = s.out.iter().map(|t| (t.dest, t.data.to_vec())).collect();
    // Three fan-outs to legs 2 and 3, then the E2EE one to leg 5.
    assert_eq!(sent.len(), 7);
    let order: Vec<SocketAddr> = sent.iter().map(|(a, _)| *a).collect();
    assert_eq!(order[6], client_addr(5));
    for (i, (dest, wire)) in sent.iter().enumerate() {
        let leg = s.leg_at(*dest);
        let client = s.client(leg);
        let mut buf = wire.clone();
        let n = client.recv.unprotect_rtp(&mut buf, wire.len()).unwrap();
        let want = if i < 6 { &plains[i / 2] } else { &e2ee_plain };
        assert_eq!(&buf[..n], &want[..], "packet {i} to leg {leg}");
    }
    assert_eq!(s.counts().dropped(Drop::Other), 0);
}

/// A stand-in for a device queue, on every machine: fan-outs of
/// `threshold` or more are "submitted" (sealed on the CPU into a queue)
/// and come back only once released; a batch can be made to fail.
#[derive(Debug, Clone, Default)]
struct FakeDeviceGcm {
    inner: AnyGcm,
    threshold: usize,
    state: Arc<std::sync::Mutex<FakeDevice>>,
}

/// One fake device batch: each job's ciphertext and tag, or `None` when
/// the device failed it.
type FakeBatch = Option<Vec<(Vec<u8>, [u8; 16])>>;

#[derive(Debug, Default)]
struct FakeDevice {
    /// Sealed batches, oldest first.
    queue: std::collections::VecDeque<FakeBatch>,
    /// How many of the oldest batches are finished.
    released: usize,
    fail_next: bool,
}

impl AeadBackend for FakeDeviceGcm {
    type Key = <AnyGcm as AeadBackend>::Key;

    fn name(&self) -> &'static str {
        "fake-device"
    }

    fn key(&self, raw: &[u8]) -> Result<Self::Key, CryptoError> {
        self.inner.key(raw)
    }

    fn seal_batch(&self, jobs: &mut [SealJob<'_, Self::Key>]) {
        self.inner.seal_batch(jobs);
    }

    fn open_batch(&self, jobs: &mut [OpenJob<'_, Self::Key>]) {
        self.inner.open_batch(jobs);
    }

    fn defers(&self, n: usize) -> bool {
        n >= self.threshold
    }

    fn submit_seal(&self, jobs: &[SealJob<'_, Self::Key>]) -> bool {
        let mut state = self.state.lock().unwrap();
        if std::mem::take(&mut state.fail_next) {
            state.queue.push_back(None);
            return true;
        }
        let mut results = Vec::new();
        for job in jobs {
            let mut data = job.data.to_vec();
            let mut tag = [0u8; 16];
            self.inner.seal_batch(&mut [SealJob {
                key: job.key,
                nonce: job.nonce,
                aad: job.aad,
                data: &mut data,
                tag: &mut tag,
            }]);
            results.push((data, tag));
        }
        state.queue.push_back(Some(results));
        true
    }

    fn poll_sealed(&self, _block: bool, each: &mut crate::crypto::SealedSink<'_>) -> Option<bool> {
        let mut state = self.state.lock().unwrap();
        if state.released == 0 {
            return None;
        }
        state.released -= 1;
        match state.queue.pop_front()? {
            Some(results) => {
                for (i, (data, tag)) in results.iter().enumerate() {
                    each(i, data, tag);
                }
                Some(true)
            }
            None => Some(false),
        }
    }
}

/// Deferred fan-outs wait for the device, leave in order once it is done,
/// and a batch the device fails is dropped and counted, never sent
/// half-sealed; the relay goes on after it.
#[test]
fn deferred_fanouts_wait_for_the_device_and_a_failed_batch_is_counted() {
    let mut snapshot = RoutingSnapshot::default();
    admit_leg(&mut snapshot, 1, E2EE, MeetingMode::E2ee, false);
    for leg in 2..=5 {
        admit_leg(&mut snapshot, leg, E2EE, MeetingMode::E2ee, true);
        snapshot.legs[&LegId(leg)].latch.set(client_addr(leg));
    }
    snapshot.legs[&LegId(1)].latch.set(client_addr(1));
    let backend = FakeDeviceGcm {
        threshold: 3,
        ..FakeDeviceGcm::default()
    };
    let device = Arc::clone(&backend.state);
    let counters = Arc::new(WorkerCounters::default());
    let mut worker = RelayWorker::new(backend, Arc::clone(&counters));
    let mut out = Transmits::default();
    let mut publisher = client(1);
    let mut receivers: HashMap<SocketAddr, Client> =
        (2..=5).map(|leg| (client_addr(leg), client(leg))).collect();
    let mut packet = |seq: u16| {
        let mut buf = vec![0u8; VIDEO + 64];
        let len = RtpBuilder::new(
            PayloadType::new(96).unwrap(),
            SeqNum(seq),
            0,
            Ssrc(video_ssrc(1)),
        )
        .write(&[seq as u8; VIDEO], &mut buf)
        .unwrap();
        let plain = buf[..len].to_vec();
        let n = publisher.send.protect_rtp(&mut buf, len).unwrap();
        (plain, buf[..n].to_vec())
    };

    let (first, wire1) = packet(1);
    let (second, wire2) = packet(2);
    assert!(deliver_to(&mut worker, &snapshot, &mut out, client_addr(1), &wire1).is_empty());
    assert!(deliver_to(&mut worker, &snapshot, &mut out, client_addr(1), &wire2).is_empty());
    out.clear();
    assert!(
        worker.poll_deferred(false, &mut out),
        "the device is not done yet"
    );
    assert!(out.is_empty());
    device.lock().unwrap().released = 2;
    assert!(!worker.poll_deferred(false, &mut out));
    let sent: Vec<(SocketAddr, Vec<u8>)> = out.iter().map(|t| (t.dest, t.data.to_vec())).collect();
    assert_eq!(sent.len(), 8);
    for (i, (dest, wire)) in sent.iter().enumerate() {
        let mut copy = wire.clone();
        let n = receivers
            .get_mut(dest)
            .unwrap()
            .recv
            .unprotect_rtp(&mut copy, wire.len())
            .unwrap();
        assert_eq!(
            &copy[..n],
            if i < 4 { &first[..] } else { &second[..] },
            "packet {i}"
        );
    }

    device.lock().unwrap().fail_next = true;
    let (_, wire3) = packet(3);
    deliver_to(&mut worker, &snapshot, &mut out, client_addr(1), &wire3);
    device.lock().unwrap().released = 1;
    out.clear();
    assert!(!worker.poll_deferred(false, &mut out));
    assert!(out.is_empty(), "a failed batch sends nothing");
    assert_eq!(counters.snapshot().dropped(Drop::Other), 4);

    let (fourth, wire4) = packet(4);
    deliver_to(&mut worker, &snapshot, &mut out, client_addr(1), &wire4);
    device.lock().unwrap().released = 1;
    out.clear();
    worker.poll_deferred(false, &mut out);
    assert_eq!(out.len(), 4);
    for t in out.iter() {
        let mut copy = t.data.to_vec();
        let n = receivers
            .get_mut(&t.dest)
            .unwrap()
            .recv
            .unprotect_rtp(&mut copy, t.data.len())
            .unwrap();
        assert_eq!(&copy[..n], &fourth[..]);
    }
}

#[test]
fn a_receiver_with_its_own_payload_type_gets_it_and_the_others_the_publishers() {
    let mut s = Scenario::new();
    s.latch_all();
    // Leg 2 numbers leg 1's video codec 120; in the E2EE meeting leg 5
    // numbers leg 4's 100 (the header is outside SFrame).
    s.snapshot
        .payload_types
        .insert(LegId(2), Arc::new(PtMap::new([(video_ssrc(1), 120)])));
    s.snapshot
        .payload_types
        .insert(LegId(5), Arc::new(PtMap::new([(video_ssrc(4), 100)])));
    s.snapshot.generation += 1;
    for (sender, rewritten, pt) in [(1, 2, 120), (4, 5, 100)] {
        let (plain, sent) = s.send_rtp(sender, video_ssrc(sender), VIDEO);
        assert_eq!(sent.len(), 2);
        for (addr, srtp) in sent {
            let receiver = s.leg_at(addr);
            let opened = s.open_rtp(receiver, &srtp).unwrap();
            let mut want = plain.clone();
            if receiver == rewritten {
                want[1] = (plain[1] & 0x80) | pt;
            }
            assert_eq!(opened, want, "leg {receiver}");
        }
        // Another stream of the same sender keeps its payload type.
        let (plain, sent) = s.send_rtp(sender, audio_ssrc(sender), AUDIO);
        for (addr, srtp) in sent {
            let receiver = s.leg_at(addr);
            assert_eq!(s.open_rtp(receiver, &srtp).unwrap(), plain);
        }
    }
}

/// Leg 1's video, its sequence number wrapped, through `s.worker`:
/// `count` packets, each receiver's copies opened by its client; returns,
/// per receiving leg, the SRTP index of every copy it got, in order.
fn wrapped_video(s: &mut Scenario, count: usize, got: &mut HashMap<u64, Vec<u64>>) {
    for _ in 0..count {
        let (plain, sent) = s.send_rtp(1, video_ssrc(1), VIDEO);
        for (addr, srtp) in sent {
            let receiver = s.leg_at(addr);
            let mut buf = srtp.clone();
            let (n, index) = s
                .client(receiver)
                .recv
                .unprotect_rtp_indexed(&mut buf, srtp.len())
                .expect("every copy decrypts");
            assert_eq!(&buf[..n], &plain[..]);
            got.entry(receiver).or_default().push(index);
        }
    }
}

/// Item 7 meets item 3 of #12: a worker made again after a panic (as
/// `net/worker.rs` does: a fresh handler from the factory) with its
/// predecessor's journal goes on with a stream whose sequence number
/// wrapped, and every receiver gets indices strictly above all it had.
#[test]
fn a_restarted_worker_takes_a_wrapped_stream_up_without_reusing_an_index() {
    let mut s = Scenario::new();
    let journal = Arc::new(crate::srtp::IndexJournal::default());
    let fresh = |counters: &Arc<WorkerCounters>, journal: &Arc<crate::srtp::IndexJournal>| {
        RelayWorker::new(AnyGcm::default(), Arc::clone(counters)).with_journal(Arc::clone(journal))
    };
    s.worker = fresh(&s.counters, &journal);
    s.latch_all();
    s.client(1).seq = 0xffd0;
    let mut got = HashMap::new();
    wrapped_video(&mut s, 100, &mut got);
    for receiver in [2, 3] {
        assert_eq!(s.client(receiver).recv.received_roc(video_ssrc(1)), Some(1));
    }
    let before: HashMap<u64, usize> = got.iter().map(|(leg, v)| (*leg, v.len())).collect();

    // The panic: the worker's state is gone, its journal is not.
    s.worker = fresh(&s.counters, &journal);
    let lost_before = s.counts().dropped(Drop::IndexRefused);
    wrapped_video(&mut s, 200, &mut got);
    for receiver in [2, 3] {
        let indices = &got[&receiver];
        let after = indices.len() - before[&receiver];
        assert!(
            after >= 200 - crate::srtp::RESERVE_AHEAD as usize,
            "leg {receiver}: {after} of 200 after the restart"
        );
        assert!(
            indices.windows(2).all(|w| w[0] < w[1]),
            "leg {receiver}: indices not strictly increasing"
        );
        assert_eq!(indices.last().map(|i| i >> 16), Some(1), "ROC 1 goes on");
    }
    assert_eq!(s.counts().dropped(Drop::AuthFailed), 0);
    // What the reservation skipped toward each receiver, at most.
    let skipped = s.counts().dropped(Drop::IndexRefused) - lost_before;
    assert!(skipped <= 2 * crate::srtp::RESERVE_AHEAD, "{skipped}");
}

/// Without its predecessor's journal (as for a stream that moved to
/// another worker) a fresh worker refuses a wrapped stream: it would
/// guess ROC 0, and protect toward receivers at indices used before.
#[test]
fn without_the_journal_a_wrapped_stream_is_refused_after_a_restart() {
    let mut s = Scenario::new();
    s.latch_all();
    s.client(1).seq = 0xffd0;
    let mut got = HashMap::new();
    wrapped_video(&mut s, 100, &mut got);
    s.worker = RelayWorker::new(AnyGcm::default(), Arc::clone(&s.counters));
    let failed = s.counts().dropped(Drop::AuthFailed);
    let (_, sent) = s.send_rtp(1, video_ssrc(1), VIDEO);
    assert!(sent.is_empty());
    assert_eq!(s.counts().dropped(Drop::AuthFailed), failed + 1);
}

/// A restarted worker's journal forgets the legs that left while it was
/// being made again, and a leg's sweep forgets its records.
#[test]
fn the_journal_forgets_departed_legs() {
    let mut s = Scenario::new();
    let journal = Arc::new(crate::srtp::IndexJournal::default());
    s.worker = RelayWorker::new(AnyGcm::default(), Arc::clone(&s.counters))
        .with_journal(Arc::clone(&journal));
    s.latch_all();
    for leg in 1..=6 {
        let _ = s.send_rtp(leg, audio_ssrc(leg), AUDIO);
    }
    // Six legs, inbound and outbound sessions each.
    assert_eq!(journal.keys(), 12);
    remove_leg(&mut s.snapshot, 6);
    s.worker = RelayWorker::new(AnyGcm::default(), Arc::clone(&s.counters))
        .with_journal(Arc::clone(&journal));
    let _ = s.send_rtp(1, audio_ssrc(1), AUDIO);
    assert_eq!(journal.keys(), 10);
    remove_leg(&mut s.snapshot, 5);
    let _ = s.send_rtp(1, audio_ssrc(1), AUDIO);
    assert_eq!(journal.keys(), 8);
}
