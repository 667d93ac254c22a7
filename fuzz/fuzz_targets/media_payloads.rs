//! Feeds arbitrary bytes to everything in `sluice::media` that takes
//! network input: the RFC 4733 parser and detector, G.711 payloads of any
//! length, and Opus payloads (with and without a level) through a whole
//! `CallBridge` tick, which decodes them with FFmpeg's libopus; and the
//! daemon's shared path: a `MeetingMix` fed every packet twice (two calls'
//! legs, deduplicated by sequence number) and a `CallerUplink` with
//! silence suppression; and the wideband callers' path: a 48 kHz
//! `MeetingMix`, and uplinks fed the bytes as a caller's Opus and G.722.
//!
//! Input layout: byte 0 picks the split; the rest is cut into payloads at
//! `0xFF 0x00` markers so the fuzzer can build several packets.

#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use sluice::media::dtmf::{self, DtmfDetector};
use sluice::media::{
    CallBridge, CallerCodec, CallerUplink, G711, MeetingMix, OpusSettings, UplinkSettings,
};

thread_local! {
    // Opening codecs costs far more than one run; reuse a bridge and let
    // state carry over between inputs, as it would in a long call.
    static BRIDGE: RefCell<CallBridge> = RefCell::new(
        CallBridge::with_settings(G711::Mu, OpusSettings::DIAL_IN).expect("FFmpeg has libopus"),
    );
    static SHARED: RefCell<(MeetingMix, CallerUplink)> = RefCell::new({
        let mut mix = MeetingMix::new();
        mix.add_caller(1);
        mix.add_caller(2);
        (
            mix,
            CallerUplink::new(G711::A, UplinkSettings::DIAL_IN).expect("FFmpeg has libopus"),
        )
    });
    static WIDE: RefCell<(MeetingMix, [CallerUplink; 2])> = RefCell::new({
        let mut mix = MeetingMix::with_rate(48_000);
        mix.add_caller(1);
        let uplink = |codec| CallerUplink::for_codec(codec, UplinkSettings::DIAL_IN)
            .expect("libopus and FFmpeg's g722");
        (mix, [uplink(CallerCodec::Opus), uplink(CallerCodec::G722)])
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mut detector = DtmfDetector::new();
    let payloads: Vec<&[u8]> = rest.split(|&b| b == 0xFF).collect();
    for (i, p) in payloads.iter().enumerate() {
        if let Ok(e) = dtmf::parse(p) {
            assert_eq!(
                dtmf::parse(&e.to_bytes().expect("a parsed digit encodes")),
                Ok(e)
            );
        }
        let ts = u32::from(control) * (i as u32 / 3);
        let _ = detector.handle_packet(ts, i % 4 == 0, p);
    }
    BRIDGE.with(|bridge| {
        let mut bridge = bridge.borrow_mut();
        for (i, p) in payloads.iter().enumerate() {
            let ssrc = u32::from(control & 7) + i as u32 % 5;
            let level = (control & 0x80 != 0).then(|| p.first().copied().unwrap_or(0));
            bridge.push_meeting(ssrc, p, level);
            if control & 0x40 != 0 {
                bridge.push_caller(p);
            }
        }
        let frame = bridge.tick().expect("a tick never fails on bad input");
        assert_eq!(frame.to_caller.len(), 160);
        assert!(!frame.to_meeting.is_empty());
        assert!(frame.to_meeting_level <= 127);
    });
    SHARED.with(|shared| {
        let (mix, uplink) = &mut *shared.borrow_mut();
        for (i, p) in payloads.iter().enumerate() {
            let ssrc = u32::from(control & 3) + i as u32 % 3;
            let seq = u16::from_be_bytes([control, p.first().copied().unwrap_or(0)]);
            let level = (control & 0x20 != 0).then(|| p.last().copied().unwrap_or(0));
            // The same packet from two calls' legs: the second is a copy.
            mix.push(ssrc, seq, p, level);
            mix.push(ssrc, seq, p, level);
            uplink.push(p);
        }
        mix.tick().expect("a mix tick never fails on bad input");
        for own in [None, Some(1), Some(2)] {
            assert_eq!(mix.to_caller(G711::A, own).len(), 160);
        }
        let up = uplink
            .tick()
            .expect("an uplink tick never fails on bad input");
        assert!(up.level <= 127);
        if let Some(opus) = up.to_meeting {
            assert!(!opus.is_empty());
        }
    });
    WIDE.with(|wide| {
        let (mix, uplinks) = &mut *wide.borrow_mut();
        for (i, p) in payloads.iter().enumerate() {
            let seq = u16::from_be_bytes([control, i as u8]);
            mix.push(1 + i as u32 % 2, seq, p, None);
            for uplink in uplinks.iter_mut() {
                uplink.push(p);
            }
        }
        mix.tick().expect("a mix tick never fails on bad input");
        assert_eq!(mix.to_caller_pcm(Some(1)).len(), 960);
        assert_eq!(mix.to_caller_pcm(None).len(), 960);
        for uplink in uplinks.iter_mut() {
            let up = uplink
                .tick()
                .expect("an uplink tick never fails on bad input");
            assert!(up.level <= 127);
        }
    });
});
