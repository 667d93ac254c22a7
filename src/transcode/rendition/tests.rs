//! Renditions end to end in-process, on simulated time: a live H.264 or
//! VP8 publisher (FFmpeg's encoders, honouring key frame requests) feeds
//! RTP into a [`Rendition`]; a receiver depacketizes, decodes and
//! compares what it got with the scaled source (PSNR of the luma).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame;

use super::*;
use crate::rtp::PayloadType;
use crate::transcode::prefs::DEFAULT_RENDITION_KBPS;

const FRAME: Duration = Duration::from_millis(33);
const TICKS: u32 = 3000; // 90 kHz / 30 fps

pub(crate) struct SentPacket {
    pub(crate) seq: SeqNum,
    pub(crate) ts: u32,
    pub(crate) marker: bool,
    pub(crate) payload: Vec<u8>,
}

/// A publisher: a moving test picture, encoded and packetized.
pub(crate) struct Publisher {
    encoder: VideoEncoder,
    vp8: Vp8Packetizer,
    h264: H264Packetizer,
    seq: SeqNum,
    frame: u32,
    /// The source picture's luma scaled to the rendition size, by RTP
    /// timestamp: the reference for PSNR.
    reference: HashMap<u32, Vec<u8>>,
    reference_size: (u32, u32),
    to_reference: Scaler,
    scratch: frame::Video,
}

impl Publisher {
    pub(crate) fn new(kind: EncoderKind, w: u32, h: u32, reference_size: (u32, u32)) -> Self {
        let encoder = VideoEncoder::open(EncoderSettings::new(kind, w, h, 800)).unwrap();
        Self {
            encoder,
            vp8: Vp8Packetizer::new(0),
            h264: H264Packetizer::default(),
            seq: SeqNum(65000),
            frame: 0,
            reference: HashMap::new(),
            reference_size,
            to_reference: Scaler::new(Pixel::YUV420P, reference_size.0, reference_size.1),
            scratch: frame::Video::new(Pixel::YUV420P, reference_size.0, reference_size.1),
        }
    }

    /// Draws frame `n`: diagonal bands moving right and a bright square
    /// moving down, smooth chroma.
    fn draw(picture: &mut frame::Video, n: u32) {
        let (w, h) = (picture.width() as usize, picture.height() as usize);
        let stride = picture.stride(0);
        let y = picture.data_mut(0);
        for row in 0..h {
            for col in 0..w {
                let band = ((col + row / 2 + 4 * n as usize) / 8 % 32) as u8 * 6;
                let in_square = (row + 3 * n as usize) % h < h / 4 && col > w / 3 && col < w / 2;
                y[row * stride + col] = if in_square { 235 } else { 40 + band };
            }
        }
        for plane in 1..3 {
            let stride = picture.stride(plane);
            let data = picture.data_mut(plane);
            for row in 0..h / 2 {
                for col in 0..w / 2 {
                    data[row * stride + col] = (96 + plane * 32 + col / 8) as u8;
                }
            }
        }
    }

    /// The next frame's packets (a key frame when `key`).
    pub(crate) fn next(&mut self, key: bool) -> Vec<SentPacket> {
        let n = self.frame;
        self.frame += 1;
        let ts = n.wrapping_mul(TICKS).wrapping_add(0xffff_0000); // wraps early on
        let picture = self.encoder.frame_mut().unwrap();
        Self::draw(picture, n);
        self.to_reference.run(picture, &mut self.scratch).unwrap();
        let (rw, rh) = self.reference_size;
        let stride = self.scratch.stride(0);
        let luma: Vec<u8> = (0..rh as usize)
            .flat_map(|r| self.scratch.data(0)[r * stride..r * stride + rw as usize].to_vec())
            .collect();
        self.reference.insert(ts, luma);
        let mut out = Vec::new();
        let (vp8, h264, seq) = (&mut self.vp8, &mut self.h264, &mut self.seq);
        let codec = self.encoder.settings().kind.codec();
        self.encoder
            .encode(i64::from(ts), key, |e| {
                let mut push = |pl: &[u8], marker: bool| {
                    out.push(SentPacket {
                        seq: *seq,
                        ts,
                        marker,
                        payload: pl.to_vec(),
                    });
                    *seq = seq.wrapping_add(1);
                };
                match codec {
                    VideoCodec::Vp8 => vp8.packetize(e.data, 1200, &mut push).unwrap(),
                    VideoCodec::H264 => h264.packetize(e.data, 1200, &mut push).unwrap(),
                };
            })
            .unwrap();
        out
    }
}

/// A receiver of the rendition: jitter buffer, decoder, PSNR.
struct Receiver {
    jitter: ReceiverJitter,
    decoder: VideoDecoder,
    frames: u32,
    keyframes: Vec<u32>,
    psnr: Vec<f64>,
    sizes: Vec<(u32, u32)>,
}

enum ReceiverJitter {
    Vp8(JitterBuffer<Vp8Depacketizer>),
    H264(JitterBuffer<H264Depacketizer>),
}

impl Receiver {
    fn new(codec: VideoCodec) -> Self {
        let config = JitterConfig::default();
        Self {
            jitter: match codec {
                VideoCodec::Vp8 => ReceiverJitter::Vp8(JitterBuffer::new(config)),
                VideoCodec::H264 => ReceiverJitter::H264(JitterBuffer::new(config)),
            },
            decoder: VideoDecoder::open(codec).unwrap(),
            frames: 0,
            keyframes: Vec::new(),
            psnr: Vec::new(),
            sizes: Vec::new(),
        }
    }

    fn take(&mut self, now: Instant, p: &RenditionPacket<'_>, reference: &HashMap<u32, Vec<u8>>) {
        let mut frames: Vec<(u32, bool, Vec<u8>)> = Vec::new();
        macro_rules! drain {
            ($j:expr) => {{
                $j.handle_packet(now, p.seq, p.timestamp, p.marker, p.payload);
                while let Some(out) = $j.poll_output(now) {
                    if let JitterOutput::Frame(f) = out {
                        frames.push((f.timestamp, f.keyframe, f.data.to_vec()));
                    }
                }
            }};
        }
        match &mut self.jitter {
            ReceiverJitter::Vp8(j) => drain!(j),
            ReceiverJitter::H264(j) => drain!(j),
        }
        for (ts, key, data) in frames {
            let Some(picture) = self.decoder.decode(&data, i64::from(ts)).unwrap() else {
                continue;
            };
            self.frames += 1;
            if key {
                self.keyframes.push(ts);
            }
            let (w, h) = (picture.width(), picture.height());
            self.sizes.push((w, h));
            if let Some(reference) = reference.get(&ts) {
                let stride = picture.stride(0);
                let mut err = 0f64;
                for r in 0..h as usize {
                    for c in 0..w as usize {
                        let d = f64::from(picture.data(0)[r * stride + c])
                            - f64::from(reference[r * w as usize + c]);
                        err += d * d;
                    }
                }
                let mse = err / f64::from(w * h);
                self.psnr
                    .push(10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10());
            }
        }
    }
}

struct Run {
    rendition: Rendition,
    publisher: Publisher,
    receiver: Receiver,
    t0: Instant,
    upstream_requests: u32,
    rtp_keyframe_timestamps: Vec<u32>,
    /// How far behind its frame's time the rendition handles the frame
    /// (a transcode past its CPU).
    lag: Duration,
}

impl Run {
    fn new(source: EncoderKind, src: (u32, u32), spec: RenditionSpec, out: EncoderKind) -> Self {
        let size = rendition_size(src.0, src.1, spec.max_height);
        Self {
            rendition: Rendition::new(source.codec(), spec, out, SeqNum(1)).unwrap(),
            publisher: Publisher::new(source, src.0, src.1, size),
            receiver: Receiver::new(spec.codec),
            t0: Instant::now(),
            upstream_requests: 0,
            rtp_keyframe_timestamps: Vec::new(),
            lag: Duration::ZERO,
        }
    }

    fn now(&self, frame: u32) -> Instant {
        self.t0 + FRAME * frame
    }

    /// Sends one publisher frame (losing the packets `lose` picks) and
    /// drains the rendition; a key frame request makes the publisher's
    /// next frame a key frame, as a PLI would.
    fn step(&mut self, key: bool, mut lose: impl FnMut(SeqNum) -> bool) -> bool {
        let frame = self.publisher.frame;
        let arrived = self.now(frame);
        let now = arrived + self.lag;
        let packets = self.publisher.next(key);
        for p in packets.iter().filter(|p| !lose(p.seq)) {
            self.rendition
                .handle_rtp_arrived(now, arrived, p.seq, p.ts, p.marker, &p.payload)
                .unwrap();
        }
        self.rendition.handle_timeout(now).unwrap();
        let mut want_key = false;
        while let Some(out) = self.rendition.poll_output() {
            match out {
                RenditionOutput::RequestKeyframe => {
                    self.upstream_requests += 1;
                    want_key = true;
                }
                RenditionOutput::Nack(_) => {}
                RenditionOutput::Rtp(p) => {
                    if p.keyframe && p.marker {
                        self.rtp_keyframe_timestamps.push(p.timestamp);
                    }
                    self.receiver.take(now, &p, &self.publisher.reference);
                }
            }
        }
        want_key
    }
}

fn spec(codec: VideoCodec, pt: u8, max_height: Option<u32>) -> RenditionSpec {
    RenditionSpec {
        codec,
        payload_type: PayloadType::new(pt).unwrap(),
        max_height,
        max_kbps: DEFAULT_RENDITION_KBPS,
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// PSNR threshold for luma against the scaled source: two lossy
/// generations (the publisher's encode at 800 kbit/s, the rendition's)
/// of this synthetic picture measure 33-40 dB; 30 dB is where blocking
/// becomes plainly visible, and a wrong frame, a misplaced plane or a
/// wrong size measures under 15 dB.
const MIN_PSNR_DB: f64 = 30.0;

#[test]
fn h264_720p_becomes_vp8_at_360p() {
    let mut run = Run::new(
        EncoderKind::Libx264,
        (640, 360),
        spec(VideoCodec::Vp8, 96, Some(180)),
        EncoderKind::Libvpx,
    );
    let mut key = true;
    for _ in 0..60 {
        key = run.step(key, |_| false);
    }
    let r = &run.receiver;
    assert!(r.frames >= 54, "{} of 60 frames", r.frames);
    assert!(
        r.sizes.iter().all(|s| *s == (320, 180)),
        "{:?}",
        &r.sizes[..3]
    );
    let psnr = mean(&r.psnr);
    assert!(psnr > MIN_PSNR_DB, "PSNR {psnr:.1} dB");
    assert_eq!(
        r.psnr.len() as u32,
        r.frames,
        "every frame matched its source"
    );
    let stats = run.rendition.stats();
    assert_eq!(stats.frames_in, 60);
    assert_eq!(stats.frames_out, 60);
    assert_eq!(run.upstream_requests, 1, "one key frame request, at start");
    assert_eq!(stats.upstream_keyframe_requests, 1);
    assert!(stats.decode_ns > 0 && stats.encode_ns > 0);
    assert_eq!(run.rendition.size(), Some((320, 180)));
}

#[test]
fn vp8_becomes_h264_at_full_size() {
    let mut run = Run::new(
        EncoderKind::Libvpx,
        (320, 240),
        spec(VideoCodec::H264, 102, None),
        EncoderKind::Libx264,
    );
    let mut key = true;
    for _ in 0..30 {
        key = run.step(key, |_| false);
    }
    let r = &run.receiver;
    assert!(r.frames >= 27, "{} of 30 frames", r.frames);
    assert!(r.sizes.iter().all(|s| *s == (320, 240)));
    let psnr = mean(&r.psnr);
    assert!(psnr > MIN_PSNR_DB, "PSNR {psnr:.1} dB");
}

#[test]
fn receiver_keyframe_requests_are_answered_here_at_most_once_a_second() {
    let mut run = Run::new(
        EncoderKind::Libx264,
        (320, 240),
        spec(VideoCodec::Vp8, 96, Some(120)),
        EncoderKind::Libvpx,
    );
    let mut key = true;
    for _ in 0..40 {
        key = run.step(key, |_| false);
    }
    let keys_before = run.rendition.stats().keyframes_sent;
    assert_eq!(keys_before, 1, "the first frame only");
    // A PLI just before frame 40 (1.3 s after the start's key frame): the
    // very next rendition frame is a key frame, at most 33 ms later on the
    // simulated clock (well inside 200 ms).
    let asked = run.now(40) - Duration::from_millis(10);
    run.rendition.handle_keyframe_request(asked);
    run.step(false, |_| false);
    let ts40 = 40u32.wrapping_mul(TICKS).wrapping_add(0xffff_0000);
    assert_eq!(run.rtp_keyframe_timestamps.last(), Some(&ts40));
    assert!(run.now(40) - asked <= Duration::from_millis(200));
    // Ten more PLIs within the next second: no more key frames.
    for i in 0..10 {
        let now = run.now(41 + 2 * i);
        run.rendition.handle_keyframe_request(now);
        run.step(false, |_| false);
        run.step(false, |_| false);
    }
    let stats = run.rendition.stats();
    assert_eq!(stats.keyframes_sent, keys_before + 1);
    assert_eq!(stats.keyframe_requests_absorbed, 10);
    // None reached the publisher: the only upstream request is the start's.
    assert_eq!(run.upstream_requests, 1);
    assert!(run.receiver.keyframes.len() == 2);
}

#[test]
fn publisher_loss_asks_for_a_keyframe_and_the_rendition_recovers() {
    let mut run = Run::new(
        EncoderKind::Libx264,
        (640, 360),
        spec(VideoCodec::Vp8, 96, Some(180)),
        EncoderKind::Libvpx,
    );
    // 5% loss, from a fixed-seed xorshift, on frames 10..70.
    let mut state = 0x2545_f491_u32;
    let mut lost = 0;
    let mut key = true;
    let mut out_before_clean = 0;
    for f in 0..100 {
        let lossy = (10..70).contains(&f);
        key = run.step(key, |_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let drop = lossy && state.is_multiple_of(20);
            lost += u32::from(drop);
            drop
        });
        if f == 79 {
            out_before_clean = run.rendition.stats().frames_out;
        }
    }
    assert!(lost >= 3, "the loss pattern lost {lost} packets");
    let stats = run.rendition.stats();
    assert!(run.upstream_requests >= 2, "asked the publisher after loss");
    assert!(stats.frames_dropped > 0);
    // Within 10 frames of the loss stopping, every frame comes through.
    assert_eq!(stats.frames_out - out_before_clean, 20, "{stats:?}");
    assert!(
        run.receiver.frames >= 90 - stats.frames_dropped as u32,
        "{stats:?}"
    );
    let psnr = mean(&run.receiver.psnr);
    assert!(
        psnr > MIN_PSNR_DB,
        "PSNR {psnr:.1} dB: no corrupt frame was passed on"
    );
}

#[test]
fn past_capacity_late_frames_are_skipped_and_far_behind_it_resyncs_to_a_keyframe() {
    let mut run = Run::new(
        EncoderKind::Libvpx,
        (640, 360),
        spec(VideoCodec::Vp8, 100, Some(180)),
        EncoderKind::Libvpx,
    );
    let mut key = true;
    let mut requests_before = 0;
    let mut late_before_resync = 0;
    for f in 0..120u32 {
        // Frames 30..60 handled ever later, 25 ms more each (the thread
        // falling behind); from 60 caught up again.
        run.lag = match f {
            30..60 => Duration::from_millis(25) * (f - 29),
            _ => Duration::ZERO,
        };
        if f == 30 {
            requests_before = run.upstream_requests;
        }
        key = run.step(key, |_| false);
        if f == 49 {
            late_before_resync = run.rendition.stats().frames_late;
        }
    }
    let stats = run.rendition.stats();
    // 125 ms behind from frame 34: decoded, not encoded; still late a
    // second later (frame 52, 575 ms behind): dropped until a key frame,
    // which was asked for (this publisher answers at its next frame; then
    // decoded only, one resync a second at most).
    assert!(late_before_resync >= 10, "{stats:?}");
    assert!(stats.frames_dropped >= 1, "{stats:?}");
    assert!(
        run.upstream_requests > requests_before,
        "a PLI after the resync"
    );
    assert_eq!(stats.frames_in, 120, "{stats:?}");
    assert!(
        stats.frames_out + stats.frames_late + stats.frames_dropped >= 120,
        "{stats:?}"
    );
    // Caught up: every frame from the key frame after frame 60 is encoded
    // again, and what the receiver decodes is the right picture.
    assert!(stats.frames_out >= 60, "{stats:?}");
    let psnr = mean(&run.receiver.psnr);
    assert!(psnr > MIN_PSNR_DB, "PSNR {psnr:.1} dB");
}

#[test]
fn remb_lowers_the_bitrate_within_the_cap() {
    let mut run = Run::new(
        EncoderKind::Libx264,
        (320, 240),
        spec(VideoCodec::H264, 102, None),
        EncoderKind::Libx264,
    );
    let mut key = true;
    for _ in 0..5 {
        key = run.step(key, |_| false);
    }
    run.rendition.handle_remb(300_000);
    key = run.step(key, |_| false);
    assert_eq!(run.rendition.bitrate_kbps(), 300);
    // Above the cap is held at the cap; small changes are ignored.
    run.rendition.handle_remb(320_000);
    for _ in 0..70 {
        key = run.step(key, |_| false);
    }
    assert_eq!(run.rendition.bitrate_kbps(), 300);
    run.rendition.handle_remb(100_000_000);
    run.step(key, |_| false);
    assert_eq!(run.rendition.bitrate_kbps(), DEFAULT_RENDITION_KBPS);
    assert_eq!(run.rendition.stats().bitrate_changes, 2);
    assert!(run.receiver.frames >= 70);
}
