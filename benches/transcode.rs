//! Dial-in transcoding costs, one 20 ms frame per iteration: G.711 by table
//! and through FFmpeg's pcm codecs, Opus encode (at the dial-in settings and
//! at the complexities around them) and decode, 8 ↔ 48 kHz resampling, and a
//! whole `CallBridge::tick` with three meeting speakers (levels known) and
//! one caller frame pushed; then the split the media pool runs: one
//! `CallerUplink` tick (talking, and silent with suppression), one
//! `MeetingMix` tick (three speakers, and three silent ones sending DTX),
//! whole meetings of K dial-in calls sharing a mix, and a meeting
//! speaker's way to a G.711 caller (FFmpeg at 48 kHz then libswresample,
//! against libopus straight at 8 kHz), and what one round of a 10-caller
//! meeting's packets costs to receive: on a leg per call, or on one
//! receive leg for the meeting.
//!
//! Run: `cargo bench --bench transcode` (full), `cargo test --benches`
//! (smoke). Calls per core = 20 ms / the time per call and tick;
//! bench/README.md records the table.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::media::tone::Sine;
use sluice::media::{
    CallBridge, CallerCodec, CallerEncoder, CallerUplink, Downsampler, FRAME_8K, FRAME_48K,
    FfmpegG711, G711, MeetingMix, NarrowbandDecoder, NarrowbandEncoder, OPUS_RATE, OpusBandwidth,
    OpusDecoder, OpusEncoder, OpusSettings, UplinkSettings, Upsampler,
};

/// 20 ms of a tone at 8 kHz.
fn tone_8k(freq: f32) -> [i16; FRAME_8K] {
    let mut pcm = [0i16; FRAME_8K];
    Sine::new(freq, 8000, 12_000.0).fill(&mut pcm);
    pcm
}

/// `frames` 20 ms frames of a tone at 48 kHz.
fn tone_48k(freq: f32, frames: usize) -> Vec<[i16; FRAME_48K]> {
    let mut sine = Sine::new(freq, OPUS_RATE, 10_000.0);
    (0..frames)
        .map(|_| {
            let mut f = [0i16; FRAME_48K];
            sine.fill(&mut f);
            f
        })
        .collect()
}

/// `frames` Opus packets of a wideband talker at `freq`.
fn talker(freq: f32, frames: usize) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::with_settings(OpusSettings {
        bandwidth: OpusBandwidth::Wide,
        complexity: 5,
        ..OpusSettings::DIAL_IN
    })
    .expect("libopus encoder");
    tone_48k(freq, frames)
        .iter()
        .map(|f| enc.encode(f).expect("encodes").to_vec())
        .collect()
}

fn g711(c: &mut Criterion) {
    let mut group = c.benchmark_group("g711");
    group.throughput(Throughput::Elements(1));
    let pcm = tone_8k(440.0);
    let mut codes = [0u8; FRAME_8K];
    G711::Mu.encode(&pcm, &mut codes);
    let mut out_codes = [0u8; FRAME_8K];
    let mut out_pcm = [0i16; FRAME_8K];
    for law in [G711::Mu, G711::A] {
        group.bench_function(
            BenchmarkId::new("table_encode_160", format!("{law:?}")),
            |b| {
                b.iter(|| law.encode(black_box(&pcm), &mut out_codes));
            },
        );
        group.bench_function(
            BenchmarkId::new("table_decode_160", format!("{law:?}")),
            |b| {
                b.iter(|| law.decode(black_box(&codes), &mut out_pcm));
            },
        );
    }
    let mut ffmpeg = FfmpegG711::new(G711::Mu, FRAME_8K).expect("pcm_mulaw");
    group.bench_function(BenchmarkId::new("ffmpeg_encode_160", "Mu"), |b| {
        b.iter(|| {
            ffmpeg
                .encode(black_box(&pcm), &mut out_codes)
                .expect("encodes")
        });
    });
    group.bench_function(BenchmarkId::new("ffmpeg_decode_160", "Mu"), |b| {
        b.iter(|| {
            ffmpeg
                .decode(black_box(&codes), &mut out_pcm)
                .expect("decodes")
        });
    });
    group.finish();
}

fn opus(c: &mut Criterion) {
    let mut group = c.benchmark_group("opus");
    group.throughput(Throughput::Elements(1));
    // The caller's audio as the bridge encodes it: 8 kHz content at 48 kHz.
    let mut up = Upsampler::new().expect("swr");
    let frames: Vec<Vec<i16>> = (0..50)
        .map(|_| up.process(&tone_8k(440.0)).expect("resamples").to_vec())
        .collect();
    let mut sine = Sine::new(440.0, 8000, 12_000.0);
    let frames_8k: Vec<Vec<i16>> = (0..50)
        .map(|_| {
            let mut f = vec![0i16; FRAME_8K];
            sine.fill(&mut f);
            f
        })
        .collect();
    let dial_in = |complexity: u8, input_rate: u32| OpusSettings {
        complexity,
        input_rate,
        ..OpusSettings::DIAL_IN
    };
    let settings = [
        ("dial_in", OpusSettings::DIAL_IN),
        ("c0_nb_48k_in", dial_in(0, OPUS_RATE)),
        ("c1_nb_48k_in", dial_in(1, OPUS_RATE)),
        ("c2_nb_48k_in", dial_in(2, OPUS_RATE)),
        ("c3_nb_48k_in", dial_in(3, OPUS_RATE)),
        ("c5_nb_48k_in", dial_in(5, OPUS_RATE)),
        ("c10_nb_48k_in", dial_in(10, OPUS_RATE)),
        ("c0_nb_8k_in", dial_in(0, 8000)),
        ("c3_nb_8k_in", dial_in(3, 8000)),
        ("c5_nb_8k_in", dial_in(5, 8000)),
        (
            "c3_fb_48k_in",
            OpusSettings {
                bandwidth: OpusBandwidth::Full,
                ..dial_in(3, OPUS_RATE)
            },
        ),
        (
            "c5_wb_32k_48k_in",
            OpusSettings {
                bitrate_bps: 32_000,
                bandwidth: OpusBandwidth::Wide,
                ..dial_in(5, OPUS_RATE)
            },
        ),
    ];
    for (name, s) in settings {
        let mut enc = OpusEncoder::with_settings(s).expect("libopus encoder");
        let input = if s.input_rate == 8000 {
            &frames_8k
        } else {
            &frames
        };
        let mut i = 0;
        group.bench_function(BenchmarkId::new("encode_20ms", name), |b| {
            b.iter(|| {
                i = (i + 1) % input.len();
                enc.encode(black_box(&input[i])).expect("encodes").len()
            });
        });
    }
    // The uplink's encoder since #17: libopus called directly, fed the
    // caller's 8 kHz samples (no upsampler), the dial-in settings.
    let mut enc = NarrowbandEncoder::new(OpusSettings::DIAL_IN).expect("libopus at 8 kHz");
    let mut i = 0;
    group.bench_function(
        BenchmarkId::new("encode_20ms", "dial_in_libopus_8k_in"),
        |b| {
            b.iter(|| {
                i = (i + 1) % frames_8k.len();
                enc.encode(black_box(&frames_8k[i])).expect("encodes").len()
            });
        },
    );
    for (name, packets) in [
        ("wb_talker", talker(700.0, 50)),
        ("nb_dial_in", {
            let mut enc = OpusEncoder::with_settings(OpusSettings::DIAL_IN).expect("enc");
            frames
                .iter()
                .map(|f| enc.encode(f).expect("enc").to_vec())
                .collect()
        }),
    ] {
        let mut dec = OpusDecoder::new().expect("libopus decoder");
        let mut i = 0;
        group.bench_function(BenchmarkId::new("decode_20ms", name), |b| {
            b.iter(|| {
                i = (i + 1) % packets.len();
                dec.decode(black_box(&packets[i])).expect("decodes").len()
            });
        });
    }
    // What a meeting mix does per speaker for a G.711 caller: FFmpeg's
    // libopus at 48 kHz then libswresample to 8 kHz (the old path), or
    // libopus straight at 8 kHz. Packets of a browser-like fullband
    // talker (32 kbit/s, complexity 5) and of the wideband one above.
    for (name, packets) in [
        ("fb_talker", fullband_talker(1000.0, 50)),
        ("wb_talker", talker(700.0, 50)),
    ] {
        let mut dec = OpusDecoder::new().expect("libopus decoder");
        let mut down = Downsampler::new().expect("swr");
        let mut i = 0;
        group.bench_function(BenchmarkId::new("to_8k_ffmpeg_48k_then_swr", name), |b| {
            b.iter(|| {
                i = (i + 1) % packets.len();
                let pcm = dec.decode(black_box(&packets[i])).expect("decodes");
                down.process(pcm).expect("resamples").len()
            });
        });
        let mut dec = NarrowbandDecoder::new().expect("libopus at 8 kHz");
        group.bench_function(BenchmarkId::new("to_8k_libopus_8k", name), |b| {
            b.iter(|| {
                i = (i + 1) % packets.len();
                dec.decode(black_box(&packets[i])).expect("decodes").len()
            });
        });
    }
    group.finish();
}

/// `frames` Opus packets of a fullband talker as a browser sends them
/// (32 kbit/s VBR, complexity 5), the dial-in benchmark's web speakers.
fn fullband_talker(freq: f32, frames: usize) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::with_settings(OpusSettings {
        bitrate_bps: 32_000,
        bandwidth: OpusBandwidth::Full,
        complexity: 5,
        ..OpusSettings::DIAL_IN
    })
    .expect("libopus encoder");
    tone_48k(freq, frames)
        .iter()
        .map(|f| enc.encode(f).expect("encodes").to_vec())
        .collect()
}

fn resample(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample");
    group.throughput(Throughput::Elements(1));
    let pcm8 = tone_8k(440.0);
    let pcm48 = tone_48k(1000.0, 1).remove(0);
    let mut up = Upsampler::new().expect("swr");
    group.bench_function("up_160_to_960", |b| {
        b.iter(|| up.process(black_box(&pcm8)).expect("resamples").len());
    });
    let mut down = Downsampler::new().expect("swr");
    group.bench_function("down_960_to_160", |b| {
        b.iter(|| down.process(black_box(&pcm48)).expect("resamples").len());
    });
    group.finish();
}

fn bridge(c: &mut Criterion) {
    let mut group = c.benchmark_group("bridge");
    group.throughput(Throughput::Elements(1));
    let speakers: Vec<(u32, Vec<Vec<u8>>, u8)> = [(500.0, 20u8), (700.0, 25), (1100.0, 30)]
        .iter()
        .enumerate()
        .map(|(i, &(f, level))| (i as u32 + 1, talker(f, 50), level))
        .collect();
    let mut caller = [0u8; FRAME_8K];
    G711::Mu.encode(&tone_8k(440.0), &mut caller);
    let mut bridge = CallBridge::with_settings(G711::Mu, OpusSettings::DIAL_IN).expect("bridge");
    let mut i = 0;
    group.bench_function("tick_3_speakers_levels_known", |b| {
        b.iter(|| {
            i = (i + 1) % 50;
            for (ssrc, packets, level) in &speakers {
                bridge.push_meeting(*ssrc, &packets[i], Some(*level));
            }
            bridge.push_caller(black_box(&caller));
            let frame = bridge.tick().expect("ticks");
            frame.to_meeting.len() + frame.to_caller.len()
        });
    });
    group.finish();
}

/// `frames` G.711 µ-law frames of a caller's tone.
fn caller_frames(freq: f32, frames: usize) -> Vec<[u8; FRAME_8K]> {
    let mut sine = Sine::new(freq, 8000, 12_000.0);
    (0..frames)
        .map(|_| {
            let mut pcm = [0i16; FRAME_8K];
            sine.fill(&mut pcm);
            let mut g711 = [0u8; FRAME_8K];
            G711::Mu.encode(&pcm, &mut g711);
            g711
        })
        .collect()
}

/// The three web speakers every meeting below has: (ssrc, packets, level).
fn web_speakers() -> Vec<(u32, Vec<Vec<u8>>, u8)> {
    [(500.0, 20u8), (700.0, 25), (1100.0, 30)]
        .iter()
        .enumerate()
        .map(|(i, &(f, level))| (i as u32 + 1, talker(f, 50), level))
        .collect()
}

fn uplink(c: &mut Criterion) {
    let mut group = c.benchmark_group("uplink");
    group.throughput(Throughput::Elements(1));
    let talking = caller_frames(440.0, 50);
    let mut up = CallerUplink::new(G711::Mu, UplinkSettings::DIAL_IN).expect("uplink");
    let mut i = 0;
    group.bench_function("tick_talking", |b| {
        b.iter(|| {
            i = (i + 1) % talking.len();
            up.push(black_box(&talking[i]));
            up.tick().expect("ticks").to_meeting.map_or(0, <[u8]>::len)
        });
    });
    // µ-law silence: past the hangover, one keep-alive encode in 20 ticks
    // (the warm-up runs thousands of ticks, so the mean includes them).
    let mut up = CallerUplink::new(G711::Mu, UplinkSettings::DIAL_IN).expect("uplink");
    let silence = [0xFFu8; FRAME_8K];
    group.bench_function("tick_silent_suppressed", |b| {
        b.iter(|| {
            up.push(black_box(&silence));
            up.tick().expect("ticks").to_meeting.map_or(0, <[u8]>::len)
        });
    });
    group.finish();
}

fn meeting_mix(c: &mut Criterion) {
    let mut group = c.benchmark_group("mix");
    group.throughput(Throughput::Elements(1));
    let speakers = web_speakers();
    let mut mix = MeetingMix::new();
    mix.add_caller(0x100);
    let mut i = 0;
    let mut seq = 0u16;
    group.bench_function("tick_3_speakers_levels_known", |b| {
        b.iter(|| {
            i = (i + 1) % 50;
            seq = seq.wrapping_add(1);
            for (ssrc, packets, level) in &speakers {
                mix.push(*ssrc, seq, &packets[i], Some(*level));
            }
            mix.tick().expect("ticks");
            mix.to_caller(G711::Mu, Some(0x100))[0]
        });
    });
    // Three web participants present but silent: their DTX packets (one
    // TOC byte, RFC 7587 §3.1.3) carry level 127, so nothing is decoded.
    let mut mix = MeetingMix::new();
    mix.add_caller(0x100);
    let dtx = [0x08u8];
    group.bench_function("tick_3_silent_dtx", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            for ssrc in 1..=3 {
                mix.push(ssrc, seq, black_box(&dtx), Some(127));
            }
            mix.tick().expect("ticks");
            mix.to_caller(G711::Mu, Some(0x100))[0]
        });
    });
    group.finish();
}

/// One dial-in call of a benchmarked meeting.
struct Caller {
    ssrc: u32,
    uplink: CallerUplink,
    frames: Vec<[u8; FRAME_8K]>,
    /// What the caller sent last tick (it reaches the others' legs now).
    sent: Option<(u16, Vec<u8>, u8)>,
    seq: u16,
}

/// One 20 ms tick of a meeting: the web speakers' packets and the callers'
/// last packets arrive on every other call's leg, the mix ticks once,
/// each call ticks its uplink and takes its G.711 frame.
fn meeting_tick(
    mix: &mut MeetingMix,
    web: &[(u32, Vec<Vec<u8>>, u8)],
    callers: &mut [Caller],
    i: usize,
    seq: u16,
) -> usize {
    let legs = callers.len();
    for (ssrc, packets, level) in web {
        for _ in 0..legs {
            mix.push(*ssrc, seq, &packets[i % packets.len()], Some(*level));
        }
    }
    for caller in callers.iter() {
        if let Some((seq, packet, level)) = &caller.sent {
            // Every leg but the caller's own.
            for _ in 1..legs {
                mix.push(caller.ssrc, *seq, packet, Some(*level));
            }
        }
    }
    mix.tick().expect("ticks");
    let mut bytes = 0;
    for caller in callers.iter_mut() {
        caller.uplink.push(&caller.frames[i % caller.frames.len()]);
        let frame = caller.uplink.tick().expect("ticks");
        caller.sent = frame.to_meeting.map(|p| {
            caller.seq = caller.seq.wrapping_add(1);
            (caller.seq, p.to_vec(), frame.level)
        });
        bytes += usize::from(mix.to_caller(G711::Mu, Some(caller.ssrc))[0]);
    }
    bytes
}

fn meeting(c: &mut Criterion) {
    let mut group = c.benchmark_group("meeting");
    let web = web_speakers();
    let silent = vec![[0xFFu8; FRAME_8K]];
    for (name, calls, talking) in [
        ("1_call_talking", 1, 1),
        ("1_call_silent", 1, 0),
        ("10_calls_all_talking", 10, 10),
        ("10_calls_1_talking_9_silent", 10, 1),
    ] {
        // Per element: one call's 20 ms.
        group.throughput(Throughput::Elements(calls as u64));
        let mut mix = MeetingMix::new();
        let mut callers: Vec<Caller> = (0..calls)
            .map(|k| {
                let ssrc = 0x100 + k as u32;
                mix.add_caller(ssrc);
                Caller {
                    ssrc,
                    uplink: CallerUplink::new(G711::Mu, UplinkSettings::DIAL_IN).expect("uplink"),
                    frames: if k < talking {
                        caller_frames(300.0 + 110.0 * k as f32, 50)
                    } else {
                        silent.clone()
                    },
                    sent: None,
                    seq: 0,
                }
            })
            .collect();
        let mut i = 0;
        let mut seq = 0u16;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                seq = seq.wrapping_add(1);
                meeting_tick(&mut mix, &web, &mut callers, i, seq)
            });
        });
    }
    group.finish();
}

/// One caller alone with the three web speakers, in each codec the bridge
/// takes: its 20 ms both ways (the mix at the codec's rate, the uplink from
/// the codec's payload to Opus, the downlink to the codec). G.711 is the
/// 8 kHz table path; G.722 runs at 16 kHz through FFmpeg; Opus at 48 kHz.
fn caller_codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("caller_codec");
    group.throughput(Throughput::Elements(1));
    let web = web_speakers();
    for (name, codec) in [
        ("pcmu_8k", CallerCodec::G711(G711::Mu)),
        ("g722_16k", CallerCodec::G722),
        ("opus_48k", CallerCodec::Opus),
    ] {
        // The caller's talking, in its codec.
        let mut enc = CallerEncoder::new(codec, OpusSettings::DIAL_IN).expect("encoder");
        let mut sine = Sine::new(440.0, codec.rate(), 8000.0);
        let mut pcm = vec![0i16; codec.frame_samples()];
        let frames: Vec<Vec<u8>> = (0..50)
            .map(|_| {
                sine.fill(&mut pcm);
                enc.encode(&pcm).expect("encodes").to_vec()
            })
            .collect();
        let mut mix = MeetingMix::with_rate(codec.rate());
        mix.add_caller(0x100);
        let mut uplink = CallerUplink::for_codec(codec, UplinkSettings::DIAL_IN).expect("uplink");
        let mut downlink = CallerEncoder::new(codec, OpusSettings::DIAL_IN).expect("encoder");
        let mut i = 0;
        let mut seq = 0u16;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % 50;
                seq = seq.wrapping_add(1);
                for (ssrc, packets, level) in &web {
                    mix.push(*ssrc, seq, &packets[i], Some(*level));
                }
                mix.tick().expect("ticks");
                uplink.push(black_box(&frames[i]));
                let up = uplink
                    .tick()
                    .expect("ticks")
                    .to_meeting
                    .map_or(0, <[u8]>::len);
                let down = match codec.law() {
                    Some(law) => usize::from(mix.to_caller(law, Some(0x100))[0]),
                    None => downlink
                        .encode(mix.to_caller_pcm(Some(0x100)))
                        .expect("encodes")
                        .len(),
                };
                up + down
            });
        });
    }
    group.finish();
}

/// One round of a 10-caller meeting's packets as the bridge receives
/// them (three web speakers and one talking caller, RFC 6464 levels in a
/// one-byte extension): decrypted, parsed and their level read on every
/// receive leg. `10_calls_a_leg_each`: each call's leg gets its own copy
/// of every packet but its caller's own (the bridge before #17 item 4),
/// 39 copies; `10_calls_one_leg`: the meeting's one receive leg gets each
/// packet once, 4. The relay's protection is set-up, not timed.
fn receive_legs(c: &mut Criterion) {
    use sluice::crypto::AnyGcm;
    use sluice::media::level;
    use sluice::rtp::{PayloadType, RtpBuilder, RtpPacket, SeqNum, Ssrc};
    use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};

    const TALKER: u32 = 0xca11_0000;
    let payloads = talker(700.0, 50);
    let mut group = c.benchmark_group("receive_legs");
    for (name, legs) in [("10_calls_a_leg_each", 10u8), ("10_calls_one_leg", 1)] {
        let keys: Vec<MasterKey> = (0..legs)
            .map(|i| MasterKey::new(SrtpProfile::AeadAes256Gcm, &[i + 1; 44]).expect("key"))
            .collect();
        let session = |k: &MasterKey| SrtpSession::new(AnyGcm::default(), k).expect("session");
        let mut relay: Vec<_> = keys.iter().map(session).collect();
        let mut bridge: Vec<_> = keys.iter().map(session).collect();
        let mut seq = 0u16;
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    seq = seq.wrapping_add(1);
                    let payload = &payloads[usize::from(seq) % payloads.len()];
                    let mut copies = Vec::new();
                    for (leg, relay) in relay.iter_mut().enumerate() {
                        for ssrc in [1, 2, 3, TALKER] {
                            // Leg 0 is the talker's own when each call has one.
                            if legs > 1 && leg == 0 && ssrc == TALKER {
                                continue;
                            }
                            let mut buf = vec![0u8; 1500];
                            let ext = [0x80 | 30];
                            let len = RtpBuilder::new(
                                PayloadType::new(111).expect("dynamic"),
                                SeqNum(seq),
                                u32::from(seq) * 960,
                                Ssrc(ssrc),
                            )
                            .one_byte_extensions(&[(1, &ext[..])])
                            .write(payload, &mut buf)
                            .expect("fits");
                            let len = relay.protect_rtp(&mut buf, len).expect("protects");
                            buf.truncate(len);
                            copies.push((leg, buf));
                        }
                    }
                    copies
                },
                |copies| {
                    let mut heard = 0u32;
                    for (leg, buf) in copies.iter_mut() {
                        let n = buf.len();
                        let len = bridge[*leg].unprotect_rtp(buf, n).expect("authentic");
                        let packet = RtpPacket::parse(&buf[..len]).expect("rtp");
                        let level = level::audio_level_and_voice(&packet, 1);
                        heard += u32::from(level.map_or(0, |(dbov, _)| dbov))
                            + u32::from(packet.header().sequence().0 & 1)
                            + packet.payload().len() as u32;
                    }
                    black_box(heard)
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = g711, opus, resample, bridge, uplink, meeting_mix, meeting, caller_codecs, receive_legs
}
criterion_main!(benches);
