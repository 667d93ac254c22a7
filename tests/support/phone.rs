//! A meeting's web participant that talks and listens (a tone published
//! as Opus, what it hears decoded), and the phone side of a wideband
//! codec: shared by the dial-in and dial-out tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::crypto::AnyGcm;
use sluice::media::tone::Sine;
use sluice::media::{
    G722Decoder, G722Encoder, OpusBandwidth, OpusDecoder, OpusEncoder, OpusSettings,
};
use sluice::srtp::{MasterKey, SrtpSession};

use super::{Endpoint, http};

/// A web participant of `meeting` publishing one Opus audio stream `ssrc`.
pub fn web_participant(api: SocketAddr, meeting: &str, ssrc: u32) -> Endpoint {
    let admitted = http(
        api,
        "POST",
        &format!("/v1/meetings/{meeting}/participants"),
        Some(&json!({"name": "web"})),
        None,
    );
    assert_eq!(admitted.status, 201, "{}", admitted.text);
    let web = Endpoint::from_admission(&admitted.json());
    let stream = http(
        api,
        "POST",
        &format!("/v1/meetings/{meeting}/participants/{}/streams", web.id),
        Some(&json!({"ssrc": ssrc, "kind": "audio", "codec": "opus", "payload_type": 111})),
        None,
    );
    assert_eq!(stream.status, 201, "{}", stream.text);
    web
}

/// A web participant of `meeting` publishing a `freq` tone as fullband
/// Opus (FFmpeg's libopus, not the bridge's) on `ssrc` until `stop`, and
/// decoding what it receives at 48 kHz.
pub fn web_tone(
    api: SocketAddr,
    meeting: &str,
    ssrc: u32,
    freq: f32,
    stop: &Arc<AtomicBool>,
) -> (thread::JoinHandle<()>, thread::JoinHandle<Vec<i16>>) {
    let mut web = web_participant(api, meeting, ssrc);
    let receiver = web.socket.try_clone().expect("clone socket");
    let mut recv_session = std::mem::replace(
        &mut web.recv,
        SrtpSession::new(
            AnyGcm::default(),
            &MasterKey::new(web.profile, &web.relay_to_client).expect("key"),
        )
        .expect("session"),
    );
    let stop_rx = Arc::clone(stop);
    let heard = thread::spawn(move || {
        let mut decoder = OpusDecoder::new().expect("opus decoder");
        let mut pcm = Vec::new();
        let mut buf = [0u8; 2048];
        while !stop_rx.load(Ordering::Relaxed) {
            let Ok((n, _)) = receiver.recv_from(&mut buf) else {
                continue;
            };
            if super::is_rtcp(&buf[..n]) {
                continue;
            }
            let Ok(len) = recv_session.unprotect_rtp(&mut buf, n) else {
                continue;
            };
            let packet = sluice::rtp::RtpPacket::parse(&buf[..len]).expect("rtp");
            if let Ok(samples) = decoder.decode(packet.payload()) {
                pcm.extend_from_slice(samples);
            }
        }
        pcm
    });
    let stop_tx = Arc::clone(stop);
    let publisher = thread::spawn(move || {
        let mut encoder = OpusEncoder::with_settings(OpusSettings {
            bitrate_bps: 48_000,
            complexity: 5,
            bandwidth: OpusBandwidth::Full,
            ..OpusSettings::DIAL_IN
        })
        .expect("opus encoder");
        let mut sine = Sine::new(freq, 48_000, 8000.0);
        let mut frame = [0i16; 960];
        let start = Instant::now();
        let mut seq = 1u16;
        // Bounded: at most 30 s, whatever `stop` says.
        while !stop_tx.load(Ordering::Relaxed) && seq < 1500 {
            sine.fill(&mut frame);
            let opus = encoder.encode(&frame).expect("encode").to_vec();
            web.send_rtp(ssrc, seq, &opus);
            seq = seq.wrapping_add(1);
            let due = start + Duration::from_millis(20 * u64::from(seq - 1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
    });
    (publisher, heard)
}

/// The phone side of a wideband codec: what the phone (the test) encodes
/// its tone with and decodes what it hears with, independently of the
/// bridge's own codec path where it can (FFmpeg's libopus for Opus).
pub enum PhoneCodec {
    Opus(OpusEncoder, OpusDecoder),
    G722(G722Encoder, G722Decoder),
}

impl PhoneCodec {
    pub fn rate(&self) -> u32 {
        match self {
            Self::Opus(..) => 48_000,
            Self::G722(..) => 16_000,
        }
    }

    pub fn pt(&self) -> u8 {
        match self {
            Self::Opus(..) => 111,
            Self::G722(..) => 9,
        }
    }

    pub fn rtp_step(&self) -> u32 {
        match self {
            Self::Opus(..) => 960,
            Self::G722(..) => 160,
        }
    }

    pub fn encode(&mut self, pcm: &[i16]) -> Vec<u8> {
        match self {
            Self::Opus(e, _) => e.encode(pcm).expect("opus encode").to_vec(),
            Self::G722(e, _) => {
                let mut out = [0u8; 160];
                e.encode(pcm, &mut out).expect("g722 encode");
                out.to_vec()
            }
        }
    }

    pub fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        match self {
            Self::Opus(_, d) => d.decode(payload).expect("opus decode").to_vec(),
            Self::G722(_, d) => {
                let mut out = vec![0i16; payload.len() * 2];
                let n = d.decode(payload, &mut out).expect("g722 decode");
                out.truncate(n);
                out
            }
        }
    }
}
