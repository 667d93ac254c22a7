//! The jitter buffer on simulated time, with VP8 frames cut by the
//! packetizer: reordering, duplicates, NACK, loss, key frame resync.

use std::time::{Duration, Instant};

use super::*;
use crate::video::{Vp8Depacketizer, Vp8Packetizer};

struct Sent {
    seq: u16,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
}

/// `frames` VP8 frames of `packets_per_frame` packets each; every
/// `key_every`th frame (from the first) is a key frame.
fn stream(frames: usize, packets_per_frame: usize, key_every: usize, first_seq: u16) -> Vec<Sent> {
    let mut p = Vp8Packetizer::new(0);
    let mut out = Vec::new();
    let mut seq = first_seq;
    for f in 0..frames {
        let key = f % key_every == 0;
        let mut frame = vec![f as u8 | 1; 100 * packets_per_frame];
        frame[0] = if key { 0x10 } else { 0x11 };
        p.packetize(&frame, 104, |pl, marker| {
            out.push(Sent {
                seq,
                ts: 3000 * f as u32,
                marker,
                payload: pl.to_vec(),
            });
            seq = seq.wrapping_add(1);
        })
        .unwrap();
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Frame(u32, bool),
    Nack(Vec<u16>),
    Key,
}

fn drain(jb: &mut JitterBuffer<Vp8Depacketizer>, now: Instant) -> Vec<Got> {
    let mut got = Vec::new();
    while let Some(out) = jb.poll_output(now) {
        got.push(match out {
            JitterOutput::Frame(f) => Got::Frame(f.timestamp, f.keyframe),
            JitterOutput::Nack(seqs) => Got::Nack(seqs.iter().map(|s| s.0).collect()),
            JitterOutput::KeyframeNeeded => Got::Key,
        });
        assert!(got.len() < 10_000, "poll_output must settle");
    }
    got
}

fn feed(jb: &mut JitterBuffer<Vp8Depacketizer>, now: Instant, p: &Sent) -> Vec<Got> {
    jb.handle_packet(now, SeqNum(p.seq), p.ts, p.marker, &p.payload);
    drain(jb, now)
}

fn frames(got: &[Got]) -> Vec<u32> {
    got.iter()
        .filter_map(|g| match g {
            Got::Frame(ts, _) => Some(*ts),
            _ => None,
        })
        .collect()
}

#[test]
fn in_order_frames_come_out_whole() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::<Vp8Depacketizer>::new(JitterConfig::default());
    let mut got = Vec::new();
    for p in &stream(5, 3, 100, 65530) {
        got.extend(feed(&mut jb, t0, p));
    }
    assert_eq!(
        got,
        [
            Got::Frame(0, true),
            Got::Frame(3000, false),
            Got::Frame(6000, false),
            Got::Frame(9000, false),
            Got::Frame(12000, false)
        ]
    );
    assert_eq!(jb.stats().frames, 5);
    assert_eq!(jb.poll_timeout(), None);
}

#[test]
fn frame_data_is_the_reassembled_frame() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::<Vp8Depacketizer>::new(JitterConfig::default());
    let sent = stream(1, 4, 1, 7);
    for p in &sent[..3] {
        jb.handle_packet(t0, SeqNum(p.seq), p.ts, p.marker, &p.payload);
        assert!(jb.poll_output(t0).is_none());
    }
    let p = &sent[3];
    jb.handle_packet(t0, SeqNum(p.seq), p.ts, p.marker, &p.payload);
    let Some(JitterOutput::Frame(f)) = jb.poll_output(t0) else {
        panic!("a frame");
    };
    assert_eq!(f.data.len(), 400);
    assert_eq!(f.data[0], 0x10);
}

#[test]
fn reordering_and_duplicates_are_repaired() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::<Vp8Depacketizer>::new(JitterConfig::default());
    let sent = stream(4, 3, 100, 0);
    let order = [0, 2, 2, 1, 3, 5, 5, 4, 6, 8, 7, 9, 11, 10, 0, 4];
    let mut got = Vec::new();
    for (i, &k) in order.iter().enumerate() {
        got.extend(feed(
            &mut jb,
            t0 + Duration::from_millis(i as u64),
            &sent[k],
        ));
    }
    assert_eq!(frames(&got), [0, 3000, 6000, 9000]);
    assert!(
        got.iter()
            .all(|g| matches!(g, Got::Frame(..) | Got::Nack(_)))
    );
    let stats = jb.stats();
    assert_eq!(stats.packets_duplicate, 2);
    assert_eq!(stats.packets_late, 2);
    assert_eq!(stats.losses, 0);
}

#[test]
fn a_hole_is_nacked_once_and_filled_by_the_resend() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::<Vp8Depacketizer>::new(JitterConfig::default());
    let sent = stream(3, 3, 100, 100);
    let mut got = Vec::new();
    for p in sent.iter().filter(|p| p.seq != 104) {
        got.extend(feed(&mut jb, t0, p));
    }
    assert_eq!(got, [Got::Frame(0, true), Got::Nack(vec![104])]);
    assert_eq!(jb.poll_timeout(), Some(t0 + Duration::from_millis(80)));
    // The resend comes in time.
    let later = t0 + Duration::from_millis(30);
    assert!(drain(&mut jb, later).is_empty(), "NACKed once");
    let got = feed(&mut jb, later, &sent[4]);
    assert_eq!(got, [Got::Frame(3000, false), Got::Frame(6000, false)]);
    assert_eq!(jb.stats().losses, 0);
}

#[test]
fn unrepaired_loss_waits_for_the_next_keyframe() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::<Vp8Depacketizer>::new(JitterConfig::default());
    // Key frames at frames 0 and 6.
    let sent = stream(9, 2, 6, 0);
    let mut got = Vec::new();
    let mut now = t0;
    for p in sent.iter().filter(|p| p.seq != 5) {
        now += Duration::from_millis(10);
        got.extend(feed(&mut jb, now, p));
        if p.seq == 9 {
            // The hole outlived max_wait: loss, and a key frame request.
            now += Duration::from_millis(100);
            got.extend(drain(&mut jb, now));
            assert!(jb.waiting_for_keyframe());
        }
    }
    assert_eq!(frames(&got), [0, 3000, 18000, 21000, 24000]);
    assert_eq!(got.iter().filter(|g| **g == Got::Key).count(), 1);
    assert!(got.contains(&Got::Frame(18000, true)));
    let stats = jb.stats();
    assert_eq!(stats.losses, 1);
    assert_eq!(stats.keyframe_requests, 1);
    assert!(stats.frames_dropped >= 3, "{stats:?}");
    assert!(!jb.waiting_for_keyframe());
}

#[test]
fn keyframe_requests_repeat_while_none_comes() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::<Vp8Depacketizer>::new(JitterConfig::default());
    // Join mid-stream: frames 1.. of a stream whose only key frame is 0.
    let sent = stream(40, 1, 1000, 0);
    let mut keys = 0;
    for (i, p) in sent.iter().enumerate().skip(1) {
        let now = t0 + Duration::from_millis(33 * i as u64);
        keys += feed(&mut jb, now, p)
            .iter()
            .filter(|g| **g == Got::Key)
            .count();
    }
    // 1.3 s waiting, one request at once and one per 500 ms after.
    assert_eq!(keys, 3);
    assert_eq!(jb.stats().frames, 0);
    assert!(jb.poll_timeout().is_some());
}

#[test]
fn a_jump_beyond_capacity_is_loss() {
    let t0 = Instant::now();
    let config = JitterConfig {
        capacity: 16,
        ..JitterConfig::default()
    };
    let mut jb = JitterBuffer::<Vp8Depacketizer>::new(config);
    let sent = stream(30, 1, 20, 0);
    let mut got = feed(&mut jb, t0, &sent[0]);
    got.extend(feed(&mut jb, t0, &sent[1]));
    // Packets 2..=19 never come; 20 is a key frame.
    got.extend(feed(&mut jb, t0, &sent[20]));
    assert_eq!(frames(&got), [0, 3000, 60000]);
    assert_eq!(jb.stats().losses, 1);
}

#[test]
fn a_missing_marker_ends_the_frame_at_the_next_timestamp() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::<Vp8Depacketizer>::new(JitterConfig::default());
    let mut sent = stream(3, 2, 100, 0);
    sent[1].marker = false;
    let mut got = Vec::new();
    for p in &sent {
        got.extend(feed(&mut jb, t0, p));
    }
    assert_eq!(frames(&got), [0, 3000, 6000]);
}

#[test]
fn garbage_payloads_never_panic_and_resync() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::<Vp8Depacketizer>::new(JitterConfig::default());
    let sent = stream(2, 1, 1, 0);
    feed(&mut jb, t0, &sent[0]);
    // A broken frame (descriptor says "not a start") after a good one.
    jb.handle_packet(t0, SeqNum(1), 3000, true, &[0x00, 0x01]);
    let got = drain(&mut jb, t0);
    assert_eq!(got, [Got::Key]);
    assert_eq!(jb.stats().frames_dropped, 1);
    for (i, junk) in [&[][..], &[0xff], &[0x90, 0xff, 0xff]].iter().enumerate() {
        jb.handle_packet(t0, SeqNum(2 + i as u16), 1, true, junk);
        drain(&mut jb, t0);
    }
    let mut p = sent[1].payload.clone();
    p[4] = 0x10; // a key frame
    jb.handle_packet(t0, SeqNum(9), 27000, true, &p);
    assert_eq!(frames(&drain(&mut jb, t0)), [27000]);
}
