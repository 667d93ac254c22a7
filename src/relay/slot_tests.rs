//! Scenario tests of WHEP receive slots across packet workers: a
//! snapshot built by hand (publishers on legs 1 and 2, a WHEP viewer on
//! leg 3 with one video slot), each publisher's packets handed to its own
//! [`RelayWorker`] as SSRC steering does, and the viewer's side played by
//! the crate's own SRTP session under the viewer's key. Deterministic, no
//! sockets.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Instant;

use sluice_webrtc::slots::{SWITCH_SEQ_GAP, SlotKind, StreamPoint, switch_offsets};

use super::*;
use crate::crypto::AnyGcm;
use crate::metrics::{Drop, WorkerCounters};
use crate::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
use crate::srtp::{MasterKey, SharedSendIndex, SrtpProfile, SrtpSession};

const MEETING: MeetingIdx = MeetingIdx(1);
const VIEWER: u64 = 3;
/// The viewer's video slot, declared in its WHEP answer.
const SLOT_SSRC: u32 = 0x5107_0001;

fn key(leg: u64, direction: u8) -> MasterKey {
    let material: Vec<u8> = (0..44u8)
        .map(|i| (leg as u8).wrapping_mul(37) ^ direction.wrapping_mul(89) ^ i)
        .collect();
    MasterKey::new(SrtpProfile::AeadAes256Gcm, &material).unwrap()
}

fn addr(leg: u64) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, leg as u8], 41_000 + leg as u16))
}

fn video(leg: u64) -> u32 {
    0x1000 * leg as u32 + 2
}

/// Legs 1 and 2 publish video, leg 3 receives only; everyone latched.
fn snapshot() -> RoutingSnapshot {
    let mut snapshot = RoutingSnapshot::default();
    for leg in 1..=3 {
        let route = Arc::new(LegRoute {
            id: LegId(leg),
            meeting: MEETING,
            mode: MeetingMode::E2ee,
            client_to_relay: key(leg, 0),
            relay_to_client: key(leg, 1),
            latch: Arc::new(Latch::default()),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        });
        route.latch.set(addr(leg));
        snapshot.insert_leg(route);
        if leg != VIEWER {
            let stream = StreamRoute {
                ssrc: video(leg),
                leg: LegId(leg),
                kind: MediaKind::Video,
                payload_type: 96,
                highest_index: Arc::new(AtomicU64::new(0)),
            };
            snapshot.streams.insert(video(leg), Arc::new(stream));
        }
    }
    snapshot
        .meetings
        .insert(MEETING, Arc::new(vec![LegId(1), LegId(2), LegId(3)]));
    snapshot
}

/// Publishes `snapshot` again with the viewer's slot carrying `source`
/// under `seq_offset`, with the slot's one shared send index.
fn fill_slot(
    snapshot: &mut RoutingSnapshot,
    index: &Arc<SharedSendIndex>,
    source: u32,
    (seq_offset, ts_offset): (u16, u32),
) {
    let entry = SlotEntry {
        source,
        ssrc: SLOT_SSRC,
        mid: [0; 8],
        mid_len: 0,
        source_mid_ext: 0,
        mid_ext: 0,
        seq_offset,
        ts_offset,
    };
    let map = SlotMap {
        entries: vec![entry],
        indices: vec![(SLOT_SSRC, Arc::clone(index))],
    };
    snapshot.slot_maps.insert(LegId(VIEWER), Arc::new(map));
    snapshot.slot_sources.insert(SLOT_SSRC, source);
    snapshot.slot_seq_offsets.insert(SLOT_SSRC, seq_offset);
    snapshot.generation += 1;
}

/// A publisher's end: its SRTP session and where its stream stands.
struct Publisher {
    leg: u64,
    send: SrtpSession<AnyGcm>,
    seq: u16,
}

impl Publisher {
    fn new(leg: u64, seq: u16) -> Self {
        Self {
            leg,
            send: SrtpSession::new(AnyGcm::default(), &key(leg, 0)).unwrap(),
            seq,
        }
    }

    /// Its next SRTP packet.
    fn next(&mut self) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let mut buf = vec![0u8; 2048];
        let len = RtpBuilder::new(
            PayloadType::new(96).unwrap(),
            SeqNum(self.seq),
            u32::from(self.seq) * 3000,
            Ssrc(video(self.leg)),
        )
        .write(&[self.leg as u8; 300], &mut buf)
        .unwrap();
        let n = self.send.protect_rtp(&mut buf, len).unwrap();
        buf.truncate(n);
        buf
    }
}

/// A packet worker as the media port runs it, with its counters.
struct Worker {
    worker: RelayWorker<AnyGcm>,
    counters: Arc<WorkerCounters>,
    out: Transmits,
}

impl Worker {
    fn new() -> Self {
        let counters = Arc::new(WorkerCounters::default());
        Self {
            worker: RelayWorker::new(AnyGcm::default(), Arc::clone(&counters)),
            counters,
            out: Transmits::default(),
        }
    }

    /// Hands it `datagram` from `from`; what it sent the viewer.
    fn deliver(
        &mut self,
        snapshot: &RoutingSnapshot,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Vec<Vec<u8>> {
        let mut buf = datagram.to_vec();
        buf.resize(2048, 0);
        self.out.clear();
        self.worker
            .handle_datagram(snapshot, from, &mut buf, datagram.len(), &mut self.out);
        self.out
            .iter()
            .filter(|t| t.dest == addr(VIEWER))
            .map(|t| t.data.to_vec())
            .collect()
    }
}

/// The browser's end of the viewer's leg: decrypts everything under the
/// viewer's key and remembers every index it was sent.
struct Viewer {
    recv: SrtpSession<AnyGcm>,
    indices: Vec<u64>,
}

impl Viewer {
    fn new() -> Self {
        Self {
            recv: SrtpSession::new(AnyGcm::default(), &key(VIEWER, 1)).unwrap(),
            indices: Vec::new(),
        }
    }

    /// Opens what a worker sent it; the plaintext's (seq, SSRC).
    fn open(&mut self, sent: &[Vec<u8>]) -> Vec<(u16, u32)> {
        sent.iter()
            .map(|srtp| {
                let mut buf = srtp.clone();
                let (n, index) = self
                    .recv
                    .unprotect_rtp_indexed(&mut buf, srtp.len())
                    .expect("the viewer decrypts every packet it is sent");
                self.indices.push(index);
                let header = crate::rtp::RtpHeader::parse(&buf[..n]).unwrap();
                (header.sequence().0, header.ssrc().0)
            })
            .collect()
    }

    /// Every index it was sent, which must be distinct.
    fn distinct(&self) -> BTreeSet<u64> {
        let set: BTreeSet<u64> = self.indices.iter().copied().collect();
        assert_eq!(set.len(), self.indices.len(), "an index was used twice");
        set
    }
}

/// The control plane's offsets for a switch to `to` (whose last packet
/// was `to_last`) of a slot whose last packet went out as `slot_last`.
fn offsets(slot_last: u16, to_last: u16) -> (u16, u32) {
    let now = Instant::now();
    let point = |seq: u16| StreamPoint {
        seq,
        timestamp: u32::from(seq) * 3000,
        at: now,
    };
    switch_offsets(SlotKind::Video, Some(point(slot_last)), point(to_last), now)
}

/// The defect this guards against (issue #9): a slot whose numbers
/// wrapped switches to a publisher steered to another worker, whose
/// context toward the viewer has never sent the slot's SSRC. Its index
/// must continue the slot's rollover counter (the browser decrypts it),
/// the old worker's late packets under the old offsets must not reuse an
/// index the new worker sealed (a GCM nonce under the viewer's key), and
/// a worker restarted with fresh contexts continues likewise.
#[test]
fn a_slot_switching_workers_after_a_wrap_continues_its_index_and_never_reuses_one() {
    let mut snapshot = snapshot();
    let index = Arc::new(SharedSendIndex::new());
    let (mut ann, mut bob) = (Publisher::new(1, 65_480), Publisher::new(2, 999));
    let (mut w1, mut w2) = (Worker::new(), Worker::new());
    let mut viewer = Viewer::new();

    // Ann fills the slot (her own numbering) and wraps it: ROC 1.
    fill_slot(&mut snapshot, &index, video(1), (0, 0));
    for _ in 0..120 {
        let got = viewer.open(&w1.deliver(&snapshot, addr(1), &ann.next()));
        assert_eq!(got, [(ann.seq, SLOT_SSRC)]);
    }
    // Bob publishes meanwhile; his packets reach worker 2 only.
    for _ in 0..5 {
        assert!(w2.deliver(&snapshot, addr(2), &bob.next()).is_empty());
    }
    let last = *viewer.indices.last().unwrap();
    assert_eq!(last >> 16, 1, "the slot wrapped: {last:#x}");

    // The switch to bob; worker 1 has not loaded the new snapshot yet.
    let old = snapshot.clone();
    let slot_last = ann.seq;
    fill_slot(&mut snapshot, &index, video(2), offsets(slot_last, bob.seq));
    for _ in 0..3 {
        // Ann's last packets under the old offsets, before bob's first.
        viewer.open(&w1.deliver(&old, addr(1), &ann.next()));
    }
    let mut bob_first = None;
    for _ in 0..10 {
        let got = viewer.open(&w2.deliver(&snapshot, addr(2), &bob.next()));
        assert_eq!(got.len(), 1, "bob's packets reach the viewer");
        bob_first.get_or_insert(got[0].0);
    }
    assert_eq!(bob_first, Some(slot_last.wrapping_add(SWITCH_SEQ_GAP)));
    let first_of_bob = viewer.indices[viewer.indices.len() - 10];
    assert_eq!(
        first_of_bob,
        last + u64::from(SWITCH_SEQ_GAP),
        "worker 2 continues the slot's rollover counter"
    );
    // A burst of ann's packets still under the old offsets: their numbers
    // run into bob's, so worker 1 must drop them rather than reseal.
    let before = w1.counters.snapshot().dropped(Drop::IndexRefused);
    for _ in 0..20 {
        viewer.open(&w1.deliver(&old, addr(1), &ann.next()));
    }
    let refused = w1.counters.snapshot().dropped(Drop::IndexRefused) - before;
    assert!(refused >= 10, "{refused} of ann's late packets refused");
    let mut slot_last = 0;
    for _ in 0..30 {
        let got = viewer.open(&w2.deliver(&snapshot, addr(2), &bob.next()));
        assert_eq!(got.len(), 1);
        slot_last = got[0].0;
    }

    // Back to ann on worker 1, whose context is stale (it lost the slot).
    fill_slot(&mut snapshot, &index, video(1), offsets(slot_last, ann.seq));
    for _ in 0..30 {
        let got = viewer.open(&w1.deliver(&snapshot, addr(1), &ann.next()));
        assert_eq!(got.len(), 1);
        slot_last = got[0].0;
    }
    // And to bob on worker 2 restarted after a panic: fresh contexts.
    let mut w3 = Worker::new();
    fill_slot(&mut snapshot, &index, video(2), offsets(slot_last, bob.seq));
    for _ in 0..30 {
        assert_eq!(
            viewer
                .open(&w3.deliver(&snapshot, addr(2), &bob.next()))
                .len(),
            1
        );
    }
    let distinct = viewer.distinct();
    assert!(distinct.range(first_of_bob..).all(|&i| i >> 16 == 1));
    let increasing = viewer.indices.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(increasing, 0, "the viewer's indices only grow");
    assert_eq!(w2.counters.snapshot().dropped(Drop::Other), 0);
    assert_eq!(w3.counters.snapshot().dropped(Drop::Other), 0);
}

/// An SR of `ssrc` (RTP timestamp `ts`, one report block), an SDES with
/// its CNAME, and a BYE: one compound as a publisher sends it.
fn report(ssrc: u32, ts: u32) -> Vec<u8> {
    let mut c = vec![0x81, 200, 0, 12];
    c.extend(ssrc.to_be_bytes());
    c.extend([0x22; 8]);
    c.extend(ts.to_be_bytes());
    c.extend([0, 0, 0, 9, 0, 0, 0x10, 0]);
    c.extend(video(VIEWER).to_be_bytes());
    c.extend([0x33; 20]);
    c.extend([0x81, 202, 0, 3]);
    c.extend(ssrc.to_be_bytes());
    c.extend([1, 5]);
    c.extend(b"ann@x");
    c.push(0);
    c.extend([0x81, 203, 0, 1]);
    c.extend(ssrc.to_be_bytes());
    c
}

#[test]
fn a_viewer_gets_the_sr_and_sdes_of_its_slots_sources_rewritten_and_nothing_else() {
    let mut snapshot = snapshot();
    let index = Arc::new(SharedSendIndex::new());
    fill_slot(&mut snapshot, &index, video(1), (5, 7_000));
    let mut w1 = Worker::new();
    let (mut ann, mut bob) = (Publisher::new(1, 10), Publisher::new(2, 10));
    let mut viewer = Viewer::new();
    let srtcp = |p: &mut Publisher, compound: &[u8]| {
        let mut buf = compound.to_vec();
        buf.resize(compound.len() + 64, 0);
        let n = p.send.protect_rtcp(&mut buf, compound.len()).unwrap();
        buf.truncate(n);
        buf
    };

    let sent = w1.deliver(
        &snapshot,
        addr(1),
        &srtcp(&mut ann, &report(video(1), 90_000)),
    );
    assert_eq!(sent.len(), 1, "one SRTCP packet to the viewer");
    let mut buf = sent[0].clone();
    let n = viewer.recv.unprotect_rtcp(&mut buf, sent[0].len()).unwrap();
    let mut want = vec![0x80, 200, 0, 6];
    want.extend(SLOT_SSRC.to_be_bytes());
    want.extend([0x22; 8]);
    want.extend(97_000u32.to_be_bytes());
    want.extend([0, 0, 0, 9, 0, 0, 0x10, 0]);
    want.extend([0x81, 202, 0, 4]);
    want.extend(SLOT_SSRC.to_be_bytes());
    want.extend([1, 6]);
    want.extend(sluice_webrtc::sdp::SLOT_CNAME.as_bytes());
    want.extend([0; 4]);
    assert_eq!(
        buf[..n],
        want,
        "the slot's SR and SDES, no report block, no BYE"
    );

    // Bob fills no slot of the viewer: nothing of his reaches it; a
    // participant without slots gets his report as he sent it.
    let mut w2 = Worker::new();
    let compound = report(video(2), 1);
    assert!(
        w2.deliver(&snapshot, addr(2), &srtcp(&mut bob, &compound))
            .is_empty()
    );
    let to_ann: Vec<_> = w2.out.iter().filter(|t| t.dest == addr(1)).collect();
    assert_eq!(to_ann.len(), 1);
    let mut ann_recv = SrtpSession::new(AnyGcm::default(), &key(1, 1)).unwrap();
    let mut got = to_ann[0].data.to_vec();
    let n = ann_recv
        .unprotect_rtcp(&mut got, to_ann[0].data.len())
        .unwrap();
    assert_eq!(got[..n], compound);
}
