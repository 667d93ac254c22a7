//! The source clip both sides transcode: 720p30 made in-process with
//! sluice's own encoder (libx264 `veryfast`/`zerolatency` or libvpx
//! `realtime`, 2.5 Mbit/s, a key frame every second, a moving picture),
//! kept as RTP payloads (what the bench's publishers replay) and as a file
//! (what `ffmpeg -re` reads: Annex B or IVF), long enough for a whole
//! step (it never loops).

use sluice::transcode::{EncoderKind, EncoderSettings, TranscodeError, VideoEncoder};
use sluice::video::{H264Packetizer, PacketizeError, Vp8Packetizer};

use super::Case;

/// The clip's picture.
pub const WIDTH: u32 = 1280;
/// The clip's picture.
pub const HEIGHT: u32 = 720;
/// Frames per second.
pub const FPS: u32 = 30;
/// RTP ticks (90 kHz) per frame.
pub const TICKS_PER_FRAME: u32 = 90_000 / FPS;
/// The clip's bitrate, kbit/s (a 720p camera).
pub const KBPS: u32 = 2500;
/// Frames between key frames: one a second, so a transcode that starts
/// (and asks for one, which a replayed clip cannot answer) gets one soon.
pub const GOP: u32 = FPS;
/// Payload bytes per RTP packet the publishers send.
pub const MTU: usize = 1200;

/// One encoded frame as RTP payloads, the marker on the last.
#[derive(Debug, Clone)]
pub struct ClipFrame {
    /// Each packet's payload and marker bit.
    pub packets: Vec<(Vec<u8>, bool)>,
}

/// The clip, both ways.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Its frames in order; frame 0 is a key frame, and so is every
    /// [`GOP`]-th, so it loops cleanly.
    pub frames: Vec<ClipFrame>,
    /// The same bitstream as a file ffmpeg reads.
    pub file: Vec<u8>,
    /// ffmpeg's name of the file's format (`h264` or `ivf`).
    pub format: &'static str,
}

/// Why the clip could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// The encoder failed.
    #[error("making the 720p clip: {0}")]
    Codec(#[from] TranscodeError),
    /// The packetizer refused a frame.
    #[error("packetizing the 720p clip: {0}")]
    Packetize(#[from] PacketizeError),
}

/// Encodes `frames` frames (a multiple of [`GOP`] loops cleanly) in
/// `case`'s source codec.
pub fn make(case: Case, frames: u32) -> Result<Clip, ClipError> {
    let kind = case.encoder();
    let mut settings = EncoderSettings::new(kind, WIDTH, HEIGHT, KBPS);
    settings.gop_frames = GOP;
    let mut enc = VideoEncoder::open(settings)?;
    let mut h264 = H264Packetizer::default();
    let mut vp8 = Vp8Packetizer::new(0);
    let mut clip = Clip {
        frames: Vec::with_capacity(frames as usize),
        file: Vec::new(),
        format: if kind == EncoderKind::Libvpx {
            "ivf"
        } else {
            "h264"
        },
    };
    if clip.format == "ivf" {
        clip.file.extend_from_slice(&ivf_header(frames));
    }
    // A moving diagonal ramp with a bright square crossing it, moving
    // chroma: enough motion that every frame costs the encoder real work.
    let luma: Vec<u8> = (0..WIDTH as usize + 256)
        .map(|i| (16 + (i % 256) * 3 / 4) as u8)
        .collect();
    let chroma: Vec<u8> = (0..WIDTH as usize / 2 + 200)
        .map(|i| (i % 200 + 28) as u8)
        .collect();
    let mut failed = None;
    for n in 0..frames {
        {
            // Painted in place, a row at a time from the ramps (cheap even
            // in a debug build); the picture's type is ffmpeg-next's.
            let picture = enc.frame_mut()?;
            let (w, h, k) = (WIDTH as usize, HEIGHT as usize, n as usize);
            let stride = picture.stride(0);
            let y = picture.data_mut(0);
            // The square's columns: c with (c + 7k) mod w < 220.
            let first = (w - (7 * k) % w) % w;
            for row in 0..h {
                let line = &mut y[row * stride..row * stride + w];
                let off = (2 * row + 6 * k) % 256;
                line.copy_from_slice(&luma[off..off + w]);
                if (row + 5 * k) % h < 160 {
                    for i in 0..220 {
                        line[(first + i) % w] = 230;
                    }
                }
            }
            for plane in 1..3 {
                let stride = picture.stride(plane);
                let data = picture.data_mut(plane);
                for row in 0..h / 2 {
                    let off = (row + plane * 40 + k) % 200;
                    data[row * stride..row * stride + w / 2]
                        .copy_from_slice(&chroma[off..off + w / 2]);
                }
            }
        }
        let mut frame = ClipFrame {
            packets: Vec::new(),
        };
        enc.encode(i64::from(n * TICKS_PER_FRAME), n % GOP == 0, |e| {
            if clip.format == "ivf" {
                let size = u32::try_from(e.data.len()).unwrap_or(u32::MAX);
                clip.file.extend_from_slice(&size.to_le_bytes());
                clip.file.extend_from_slice(&u64::from(n).to_le_bytes());
            }
            clip.file.extend_from_slice(e.data);
            let mut emit = |payload: &[u8], marker: bool| {
                frame.packets.push((payload.to_vec(), marker));
            };
            let packed = if kind == EncoderKind::Libvpx {
                vp8.packetize(e.data, MTU, &mut emit)
            } else {
                h264.packetize(e.data, MTU, &mut emit)
            };
            if let Err(e) = packed {
                failed = Some(e);
            }
        })?;
        if let Some(e) = failed.take() {
            return Err(e.into());
        }
        clip.frames.push(frame);
    }
    Ok(clip)
}

/// An IVF file header (32 bytes): VP8, 1280x720, a 1/30 s time base.
fn ivf_header(frames: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(32);
    h.extend_from_slice(b"DKIF");
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&32u16.to_le_bytes());
    h.extend_from_slice(b"VP80");
    h.extend_from_slice(&(WIDTH as u16).to_le_bytes());
    h.extend_from_slice(&(HEIGHT as u16).to_le_bytes());
    h.extend_from_slice(&FPS.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&frames.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}
