//! [`Rendition`]: one transcode, source RTP in, rendition RTP out:
//! jitter buffer → decoder → scaler → encoder → packetizer. The
//! transcoder participant runs one per (source, [`RenditionSpec`]) on its
//! media threads and shares its packets with every receiver of the spec.
//!
//! Driven like the other sans-IO machines, with the caller's `now`:
//! [`Rendition::handle_rtp`] with each source packet (decrypted),
//! [`Rendition::handle_keyframe_request`] for a receiver's PLI/FIR,
//! [`Rendition::handle_remb`] for a receiver's bandwidth estimate, then
//! drain [`Rendition::poll_output`]; call [`Rendition::handle_timeout`] at
//! [`Rendition::poll_timeout`]. Outputs are the rendition's RTP payloads
//! and what to ask the publisher (a key frame, lost packets): receivers'
//! key frame requests are answered here ([`KeyframeLimiter`]), never
//! forwarded. The codec work happens inside `handle_rtp`; the time it
//! takes is measured for the metrics only. What decides whether a frame
//! is encoded at all is how long after its arrival it is handled
//! ([`Rendition::handle_rtp_arrived`], [`Shedding`]): past capacity a
//! rendition skips late frames and, far behind for a second, resyncs to
//! the next key frame, instead of falling behind without bound.

use std::time::{Duration, Instant};

use super::decoder::VideoDecoder;
use super::encoder::{EncoderSettings, VideoEncoder};
use super::error::TranscodeError;
use super::keyframes::{KEYFRAME_INTERVAL, KeyframeLimiter};
use super::prefs::RenditionSpec;
use super::profile::EncoderKind;
use super::scale::{Scaler, rendition_size};
use super::shedding::{FrameFate, Shedding};
use crate::rtp::SeqNum;
use crate::video::{
    Frame, H264Depacketizer, H264Packetizer, JitterBuffer, JitterConfig, JitterOutput, VideoCodec,
    Vp8Depacketizer, Vp8Packetizer,
};

/// RTP payload size of the rendition: an Ethernet MTU less IP, UDP, RTP
/// (with room for a few header extensions) and the SRTP tag.
pub const RENDITION_MTU: usize = 1160;

/// A REMB estimate must differ this much (fraction) from the current
/// bitrate before the encoder is reopened at the new one.
const REMB_HYSTERESIS: f64 = 0.15;
/// At most one bitrate change per this long (each costs a key frame).
const REMB_MIN_GAP: Duration = Duration::from_secs(2);
/// The least bitrate REMB may push a rendition down to.
const MIN_KBPS: u32 = 50;

/// Counters of one rendition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenditionStats {
    /// Source frames the jitter buffer completed.
    pub frames_in: u64,
    /// Frames encoded and packetized.
    pub frames_out: u64,
    /// Source frames lost: broken in transit or undecodable, or dropped
    /// while resyncing to a key frame after falling far behind.
    pub frames_dropped: u64,
    /// Source frames decoded but not encoded: already late (real-time
    /// shedding, [`Shedding`](super::Shedding)); the rendition skips them.
    pub frames_late: u64,
    /// Total decode time, ns.
    pub decode_ns: u64,
    /// Total scale + encode time, ns.
    pub encode_ns: u64,
    /// Key frames sent.
    pub keyframes_sent: u64,
    /// Receiver key frame requests absorbed by the rate limit.
    pub keyframe_requests_absorbed: u64,
    /// Key frame requests sent to the publisher.
    pub upstream_keyframe_requests: u64,
    /// Encoder reopenings for a REMB bitrate change.
    pub bitrate_changes: u64,
}

/// What the rendition asks of its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenditionOutput<'a> {
    /// A payload of the rendition stream, to send to every receiver of it.
    Rtp(RenditionPacket<'a>),
    /// Ask the publisher for a key frame (PLI on the source SSRC).
    RequestKeyframe,
    /// Ask the publisher to resend these source packets (generic NACK).
    Nack(&'a [SeqNum]),
}

/// One rendition RTP packet, short of its SSRC and payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenditionPacket<'a> {
    /// Its sequence number (the rendition's own numbering).
    pub seq: SeqNum,
    /// Its RTP timestamp: the source frame's, so the rendition keeps the
    /// publisher's clock.
    pub timestamp: u32,
    /// The marker bit: last packet of a frame.
    pub marker: bool,
    /// Whether it belongs to a key frame.
    pub keyframe: bool,
    /// The payload.
    pub payload: &'a [u8],
}

enum Jitter {
    Vp8(JitterBuffer<Vp8Depacketizer>),
    H264(JitterBuffer<H264Depacketizer>),
}

impl std::fmt::Debug for Jitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Vp8(_) => "Jitter(VP8)",
            Self::H264(_) => "Jitter(H264)",
        })
    }
}

impl Jitter {
    fn handle_packet(&mut self, now: Instant, seq: SeqNum, ts: u32, marker: bool, payload: &[u8]) {
        match self {
            Self::Vp8(j) => j.handle_packet(now, seq, ts, marker, payload),
            Self::H264(j) => j.handle_packet(now, seq, ts, marker, payload),
        }
    }

    fn poll_output(&mut self, now: Instant) -> Option<JitterOutput<'_>> {
        match self {
            Self::Vp8(j) => j.poll_output(now),
            Self::H264(j) => j.poll_output(now),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Self::Vp8(j) => j.poll_timeout(),
            Self::H264(j) => j.poll_timeout(),
        }
    }

    fn resync(&mut self) {
        match self {
            Self::Vp8(j) => j.resync(),
            Self::H264(j) => j.resync(),
        }
    }

    fn dropped(&self) -> u64 {
        match self {
            Self::Vp8(j) => j.stats().frames_dropped,
            Self::H264(j) => j.stats().frames_dropped,
        }
    }
}

#[derive(Debug)]
enum Packetizer {
    Vp8(Vp8Packetizer),
    H264(H264Packetizer),
}

/// Where one queued packet lies in the arena.
#[derive(Debug, Clone, Copy)]
struct Queued {
    start: usize,
    end: usize,
    seq: SeqNum,
    timestamp: u32,
    marker: bool,
    keyframe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    RequestKeyframe,
    Nack,
}

/// One running transcode.
#[derive(Debug)]
pub struct Rendition {
    spec: RenditionSpec,
    kind: EncoderKind,
    jitter: Jitter,
    decoder: VideoDecoder,
    scaler: Option<Scaler>,
    encoder: Option<VideoEncoder>,
    packetizer: Packetizer,
    keyframes: KeyframeLimiter,
    shedding: Shedding,
    bitrate_kbps: u32,
    pending_kbps: Option<u32>,
    last_bitrate_change: Option<Instant>,
    started: bool,
    clock: ExtendedClock,
    next_seq: SeqNum,
    arena: Vec<u8>,
    queue: Vec<Queued>,
    next_out: usize,
    controls: Vec<Control>,
    nack: Vec<SeqNum>,
    stats: RenditionStats,
}

impl Rendition {
    /// A transcode of a `source` stream into `spec`, encoding with `kind`
    /// (the probe's choice for the spec's codec); the encoder opens at the
    /// first decoded picture, when the source's size is known. The source's
    /// first packet makes it ask the publisher for a key frame.
    pub fn new(
        source: VideoCodec,
        spec: RenditionSpec,
        kind: EncoderKind,
        first_seq: SeqNum,
    ) -> Result<Self, TranscodeError> {
        if kind.codec() != spec.codec {
            return Err(TranscodeError::InvalidSetting {
                name: "encoder for the rendition's codec",
                value: 0,
            });
        }
        let config = JitterConfig::default();
        let jitter = match source {
            VideoCodec::Vp8 => Jitter::Vp8(JitterBuffer::new(config)),
            VideoCodec::H264 => Jitter::H264(JitterBuffer::new(config)),
        };
        let packetizer = match spec.codec {
            VideoCodec::Vp8 => Packetizer::Vp8(Vp8Packetizer::new(first_seq.0)),
            VideoCodec::H264 => Packetizer::H264(H264Packetizer::default()),
        };
        Ok(Self {
            spec,
            kind,
            jitter,
            decoder: VideoDecoder::open(source)?,
            scaler: None,
            encoder: None,
            packetizer,
            keyframes: KeyframeLimiter::new(KEYFRAME_INTERVAL),
            shedding: Shedding::default(),
            bitrate_kbps: spec.max_kbps,
            pending_kbps: None,
            last_bitrate_change: None,
            started: false,
            clock: ExtendedClock::default(),
            next_seq: first_seq,
            arena: Vec::new(),
            queue: Vec::new(),
            next_out: 0,
            controls: Vec::new(),
            nack: Vec::new(),
            stats: RenditionStats::default(),
        })
    }

    /// The spec it makes.
    #[must_use]
    pub const fn spec(&self) -> RenditionSpec {
        self.spec
    }

    /// The encoder it uses.
    #[must_use]
    pub const fn encoder_kind(&self) -> EncoderKind {
        self.kind
    }

    /// The bitrate it encodes at now, kbit/s (the spec's cap, or lower by REMB).
    #[must_use]
    pub const fn bitrate_kbps(&self) -> u32 {
        self.bitrate_kbps
    }

    /// Its counters.
    #[must_use]
    pub fn stats(&self) -> RenditionStats {
        RenditionStats {
            frames_dropped: self.stats.frames_dropped + self.jitter.dropped(),
            keyframe_requests_absorbed: self.keyframes.absorbed(),
            ..self.stats
        }
    }

    /// The output size once the source's is known.
    #[must_use]
    pub fn size(&self) -> Option<(u32, u32)> {
        self.encoder
            .as_ref()
            .map(|e| (e.settings().width, e.settings().height))
    }

    fn clear_consumed(&mut self) {
        if self.next_out >= self.queue.len() {
            self.queue.clear();
            self.arena.clear();
            self.next_out = 0;
        }
    }

    /// Takes one source RTP packet (decrypted) and transcodes every frame
    /// it completes. Errors from the codecs on network input are handled
    /// here (a broken frame means waiting for a key frame); the result is
    /// only an error when the encoder itself fails.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        seq: SeqNum,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), TranscodeError> {
        self.handle_rtp_arrived(now, now, seq, timestamp, marker, payload)
    }

    /// [`Self::handle_rtp`] for a packet handled at `now` that arrived at
    /// `arrived` (it waited in the socket buffer): a frame it completes
    /// that is already late is decoded but not encoded, and far behind for
    /// a second the rendition drops input until the next key frame
    /// ([`Shedding`]).
    pub fn handle_rtp_arrived(
        &mut self,
        now: Instant,
        arrived: Instant,
        seq: SeqNum,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), TranscodeError> {
        self.clear_consumed();
        if !self.started {
            // The start's one request goes with the source's first packet,
            // not when the transcode starts: the relay sending the source
            // here shows that the snapshot it routes by holds this leg, so
            // the request is routed to the publisher. Sent earlier it can
            // reach a worker that does not know the leg yet and is dropped
            // there (`unknown_ssrc`), while the first key frame then makes
            // any later request look needless.
            self.started = true;
            self.push_control(Control::RequestKeyframe);
        }
        self.jitter
            .handle_packet(now, seq, timestamp, marker, payload);
        self.drain_jitter(now, arrived)
    }

    /// Time passed with no packet: lets the jitter buffer give up on holes
    /// and repeat key frame requests.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), TranscodeError> {
        self.clear_consumed();
        self.drain_jitter(now, now)
    }

    /// When to call [`Self::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.jitter.poll_timeout()
    }

    /// A receiver asked for a key frame (PLI or FIR). Answered with the
    /// next encoded frame, at most one per second; never passed upstream.
    pub fn handle_keyframe_request(&mut self, now: Instant) {
        self.keyframes.handle_request(now);
    }

    /// A receiver's REMB (draft-alvestrand-rmcat-remb): the rendition's
    /// bitrate follows the estimate, never above the spec's cap; the owner
    /// passes the minimum over the rendition's receivers. A change of more
    /// than 15% reopens the encoder at the next frame (a key frame), at
    /// most once per 2 s.
    pub fn handle_remb(&mut self, bitrate_bps: u64) {
        let kbps = u32::try_from(bitrate_bps / 1000)
            .unwrap_or(u32::MAX)
            .clamp(MIN_KBPS, self.spec.max_kbps);
        let current = f64::from(self.bitrate_kbps);
        self.pending_kbps =
            ((f64::from(kbps) - current).abs() / current >= REMB_HYSTERESIS).then_some(kbps);
    }

    /// Decodes and encodes every frame the jitter buffer completes; they
    /// were completed by a packet that arrived at `arrived`.
    fn drain_jitter(&mut self, now: Instant, arrived: Instant) -> Result<(), TranscodeError> {
        loop {
            let frame = match self.jitter.poll_output(now) {
                None => return Ok(()),
                Some(JitterOutput::KeyframeNeeded) => {
                    self.push_control(Control::RequestKeyframe);
                    continue;
                }
                Some(JitterOutput::Nack(seqs)) => {
                    self.nack.clear();
                    self.nack.extend_from_slice(seqs);
                    self.controls.push(Control::Nack);
                    continue;
                }
                Some(JitterOutput::Frame(Frame {
                    timestamp,
                    keyframe,
                    data,
                })) => (timestamp, keyframe, data),
            };
            let (timestamp, keyframe, data) = frame;
            self.stats.frames_in += 1;
            let pts = self.clock.extend(timestamp);
            // Past capacity the transcode stays current: a late frame is
            // decoded (the next refer to it) but not encoded; one far
            // behind drops input until the next key frame.
            let fate = self.shedding.handle_frame(now, arrived, keyframe);
            if fate == FrameFate::Resync {
                self.stats.frames_dropped += 1;
                self.jitter.resync();
                continue;
            }
            let decode_start = Instant::now();
            let decoded = self.decoder.decode(data, pts).map(|p| p.is_some());
            self.stats.decode_ns += elapsed_ns(decode_start);
            match decoded {
                Ok(true) if fate == FrameFate::DecodeOnly => self.stats.frames_late += 1,
                Ok(true) => self.encode_picture(now, pts)?,
                Ok(false) => {}
                Err(_) => {
                    // A corrupt frame from the network: drop until the
                    // next key frame, and ask for one.
                    self.stats.frames_dropped += 1;
                    self.jitter.resync();
                }
            }
        }
    }

    fn push_control(&mut self, control: Control) {
        if control == Control::RequestKeyframe {
            self.stats.upstream_keyframe_requests += 1;
        }
        self.controls.push(control);
    }

    fn open_encoder(&mut self, width: u32, height: u32) -> Result<(), TranscodeError> {
        let (w, h) = rendition_size(width, height, self.spec.max_height);
        let encoder = VideoEncoder::open(EncoderSettings::new(self.kind, w, h, self.bitrate_kbps))?;
        self.scaler = Some(Scaler::new(encoder.format(), w, h));
        self.encoder = Some(encoder);
        Ok(())
    }

    fn encode_picture(&mut self, now: Instant, pts: i64) -> Result<(), TranscodeError> {
        let start = Instant::now();
        let (src_w, src_h) = {
            // decode returned Some: the decoder holds a picture.
            let picture = self.decoder.picture();
            (picture.width(), picture.height())
        };
        let expected = rendition_size(src_w, src_h, self.spec.max_height);
        let mut reopen = self.size() != Some(expected);
        if let Some(kbps) = self.pending_kbps
            && self
                .last_bitrate_change
                .is_none_or(|at| now >= at + REMB_MIN_GAP)
        {
            self.pending_kbps = None;
            self.bitrate_kbps = kbps;
            self.last_bitrate_change = Some(now);
            self.stats.bitrate_changes += 1;
            reopen = true;
        }
        if reopen {
            self.open_encoder(src_w, src_h)?;
        }
        let (Some(encoder), Some(scaler)) = (self.encoder.as_mut(), self.scaler.as_mut()) else {
            return Ok(()); // opened just above
        };
        // A new encoder starts with a key frame; receivers' requests
        // beyond that are rate-limited.
        let force = self.keyframes.poll_force(now) || reopen;
        scaler.run(self.decoder.picture(), encoder.frame_mut()?)?;
        let (arena, queue, packetizer) = (&mut self.arena, &mut self.queue, &mut self.packetizer);
        let next_seq = &mut self.next_seq;
        let mut sent_key = false;
        let mut frames = 0;
        encoder.encode(pts, force, |encoded| {
            frames += 1;
            sent_key |= encoded.keyframe;
            let timestamp = encoded.pts as u32; // the low 32 bits: RTP's clock
            let mut push = |payload: &[u8], marker: bool| {
                let start = arena.len();
                arena.extend_from_slice(payload);
                queue.push(Queued {
                    start,
                    end: arena.len(),
                    seq: *next_seq,
                    timestamp,
                    marker,
                    keyframe: encoded.keyframe,
                });
                *next_seq = next_seq.wrapping_add(1);
            };
            // An empty or oversized frame is an encoder quirk, not ours to
            // crash on: it is skipped.
            let _ = match packetizer {
                Packetizer::Vp8(p) => p.packetize(encoded.data, RENDITION_MTU, &mut push),
                Packetizer::H264(p) => p.packetize(encoded.data, RENDITION_MTU, &mut push),
            };
        })?;
        self.stats.frames_out += frames;
        if sent_key {
            self.stats.keyframes_sent += 1;
            self.keyframes.note_keyframe(now);
        }
        self.stats.encode_ns += elapsed_ns(start);
        Ok(())
    }

    /// The next thing to send: control messages to the publisher first,
    /// then the rendition's packets in order.
    pub fn poll_output(&mut self) -> Option<RenditionOutput<'_>> {
        if let Some(control) = self.controls.first().copied() {
            self.controls.remove(0);
            return Some(match control {
                Control::RequestKeyframe => RenditionOutput::RequestKeyframe,
                Control::Nack => RenditionOutput::Nack(&self.nack),
            });
        }
        let q = *self.queue.get(self.next_out)?;
        self.next_out += 1;
        Some(RenditionOutput::Rtp(RenditionPacket {
            seq: q.seq,
            timestamp: q.timestamp,
            marker: q.marker,
            keyframe: q.keyframe,
            payload: &self.arena[q.start..q.end],
        }))
    }
}

/// Source RTP timestamps wrap at 2^32; the encoder's pts must not. The
/// frames come out of the jitter buffer in order, so each is at most 2^31
/// ahead of the last.
#[derive(Debug, Default)]
struct ExtendedClock {
    last: Option<u32>,
    high: i64,
}

impl ExtendedClock {
    fn extend(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last {
            let ahead = ts.wrapping_sub(last);
            if ahead < 0x8000_0000 && ts < last {
                self.high += 1 << 32;
            } else if ahead >= 0x8000_0000 && ts > last && self.high > 0 {
                // Older than the last, from before the wrap.
                return self.high - (1 << 32) + i64::from(ts);
            }
        }
        if self
            .last
            .is_none_or(|last| ts.wrapping_sub(last) < 0x8000_0000)
        {
            self.last = Some(ts);
        }
        self.high + i64::from(ts)
    }
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
pub(crate) mod tests;
