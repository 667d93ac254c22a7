//! Arbitrary bytes as VP8 (RFC 7741) and H.264 (RFC 6184) RTP payloads:
//! each depacketizer takes the input cut into packets, and a jitter buffer
//! per codec takes them as a stream (sequence numbers, timestamps and
//! marker bits from the input too, on a simulated clock). Nothing may
//! panic, frames stay within the size limit, and whatever depacketizes
//! re-packetizes and depacketizes back to the same frame.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sluice::rtp::SeqNum;
use sluice::video::{
    AnnexBNals, Depacketizer, H264Depacketizer, H264Packetizer, JitterBuffer, JitterConfig,
    JitterOutput, MAX_FRAME_BYTES, Vp8Depacketizer, Vp8Descriptor, Vp8Packetizer,
};

/// Cuts `data` into packets: each starts with a length byte.
fn packets(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        let n = usize::from(len).min(tail.len());
        let (packet, after) = tail.split_at(n);
        rest = after;
        Some(packet)
    })
}

fn assemble<D: Depacketizer + Default>(data: &[u8]) -> Option<(Vec<u8>, bool)> {
    let mut d = D::default();
    let mut out = Vec::new();
    d.begin_frame();
    for p in packets(data) {
        let _ = D::starts_keyframe(p);
        d.append(p, &mut out).ok()?;
        assert!(out.len() <= MAX_FRAME_BYTES);
    }
    let key = d.end_frame().ok()?;
    Some((out, key))
}

fn stream<D: Depacketizer + Default>(data: &[u8]) {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::<D>::new(JitterConfig {
        capacity: 64,
        ..JitterConfig::default()
    });
    for (i, p) in packets(data).enumerate() {
        let [a, b, c, payload @ ..] = p else { continue };
        let now = t0 + Duration::from_millis(u64::from(*c) * i as u64);
        jb.handle_packet(
            now,
            SeqNum(u16::from_be_bytes([*a, *b])),
            u32::from(*c >> 1),
            c & 1 == 1,
            payload,
        );
        let mut n = 0;
        while let Some(out) = jb.poll_output(now) {
            if let JitterOutput::Frame(f) = out {
                assert!(f.data.len() <= MAX_FRAME_BYTES);
            }
            n += 1;
            assert!(n < 100_000, "poll_output settles");
        }
        let _ = jb.poll_timeout();
    }
}

fuzz_target!(|data: &[u8]| {
    for p in packets(data) {
        if let Ok(d) = Vp8Descriptor::parse(p) {
            assert!(d.len < p.len());
        }
    }
    if let Some((frame, _)) = assemble::<Vp8Depacketizer>(data) {
        if !frame.is_empty() {
            let mut payloads = Vec::new();
            Vp8Packetizer::new(0)
                .packetize(&frame, 64, |pl, _| payloads.push(pl.to_vec()))
                .unwrap();
            let mut d = Vp8Depacketizer::default();
            let mut again = Vec::new();
            d.begin_frame();
            for pl in &payloads {
                d.append(pl, &mut again).unwrap();
            }
            assert_eq!(again, frame);
        }
    }
    if let Some((au, _)) = assemble::<H264Depacketizer>(data) {
        // Garbage NAL units may hold start codes of their own (real ones
        // are emulation-prevented), so the round trip is checked on the
        // NAL units the Annex B stream splits into, when every one of
        // them is a unit packetization mode 1 carries.
        let nals: Vec<&[u8]> = AnnexBNals::new(&au).collect();
        let valid = nals
            .iter()
            .all(|n| n[0] & 0x80 == 0 && (1..=23).contains(&(n[0] & 0x1f)));
        let mut payloads = Vec::new();
        let packed = H264Packetizer::default()
            .packetize(&au, 64, |pl, _| payloads.push(pl.to_vec()))
            .is_ok();
        if valid && packed {
            let mut d = H264Depacketizer::default();
            let mut again = Vec::new();
            d.begin_frame();
            for pl in &payloads {
                d.append(pl, &mut again).unwrap();
            }
            let key = nals.iter().any(|n| n[0] & 0x1f == 5);
            assert_eq!(d.end_frame(), Ok(key));
            let b: Vec<&[u8]> = AnnexBNals::new(&again).collect();
            assert_eq!(nals, b);
        }
    }
    stream::<Vp8Depacketizer>(data);
    stream::<H264Depacketizer>(data);
});
