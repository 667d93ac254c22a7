//! Video rendition cost against the `ffmpeg` CLI doing the same transcode
//! with the same encoder settings, one process per stream.
//!
//! A 720p30 H.264 clip (libx264 veryfast/zerolatency, no B-frames, 2 s
//! GOP, 2.5 Mbit/s, a moving test picture) is made in-process and kept
//! both as RTP payloads and as an Annex B file. Then, measured as CPU
//! time (getrusage) on one thread:
//! - sluice: a [`Rendition`] (jitter buffer, decode, bilinear scale to
//!   360p, encode, packetize) fed every packet;
//! - ffmpeg: `ffmpeg -threads 1 -i clip.h264 -vf scale=640:360:flags=bilinear`
//!   with the encoder options of the same `hw/encoders` profile, to null.
//!
//! Streams per core = 1 / (CPU seconds per second of video); the ratio is
//! sluice's over ffmpeg's. Also the rendition's latency per frame, wall
//! clock: from the source frame's last packet in to the rendition's last
//! packet of that frame out, less the scale + encode time (the encoder's
//! own); the rest is the jitter buffer, depacketizing, decoding and
//! packetizing that the rendition adds. Run: `cargo bench --bench rendition` (300
//! frames per case); `cargo test --benches` runs a 20-frame smoke pass.

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use sluice::rtp::{PayloadType, SeqNum};
use sluice::transcode::{
    DEFAULT_RENDITION_KBPS, EncoderKind, EncoderSettings, Rendition, RenditionOutput,
    RenditionSpec, VideoEncoder,
};
use sluice::video::{H264Packetizer, VideoCodec};

struct Clip {
    packets: Vec<(u16, u32, bool, Vec<u8>)>,
    annex_b: Vec<u8>,
    frames: u32,
}

fn make_clip(frames: u32) -> Clip {
    let mut enc = VideoEncoder::open(EncoderSettings::new(EncoderKind::Libx264, 1280, 720, 2500))
        .expect("libx264 opens");
    let mut pack = H264Packetizer::default();
    let mut packets = Vec::new();
    let mut annex_b = Vec::new();
    let mut seq = 0u16;
    for n in 0..frames {
        let picture = enc.frame_mut().expect("frame");
        let (w, h) = (1280usize, 720usize);
        let stride = picture.stride(0);
        let y = picture.data_mut(0);
        for row in 0..h {
            for col in 0..w {
                let moving = (col + 2 * row + 6 * n as usize) % 256;
                let square = (row + 5 * n as usize) % h < 160 && (col + 7 * n as usize) % w < 220;
                y[row * stride + col] = if square {
                    230
                } else {
                    (16 + moving * 3 / 4) as u8
                };
            }
        }
        for plane in 1..3 {
            let stride = picture.stride(plane);
            let data = picture.data_mut(plane);
            for row in 0..h / 2 {
                for col in 0..w / 2 {
                    data[row * stride + col] =
                        ((col + row + plane * 40 + n as usize) % 200 + 28) as u8;
                }
            }
        }
        let ts = n * 3000;
        enc.encode(i64::from(ts), n == 0, |e| {
            annex_b.extend_from_slice(e.data);
            pack.packetize(e.data, 1200, |pl, marker| {
                packets.push((seq, ts, marker, pl.to_vec()));
                seq = seq.wrapping_add(1);
            })
            .expect("packetize");
        })
        .expect("encode");
    }
    Clip {
        packets,
        annex_b,
        frames,
    }
}

/// CPU time used so far by this process (`who = RUSAGE_SELF`) or its
/// waited-for children (`RUSAGE_CHILDREN`).
fn cpu(who: libc::c_int) -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    #[allow(unsafe_code)] // one libc call, see the SAFETY note
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// What one run of a rendition over the clip measured.
struct Measured {
    cpu: Duration,
    /// Per frame: from the source frame's last packet in to the
    /// rendition's last packet of it out, wall clock.
    latency: Vec<Duration>,
    /// Per frame: the scale + encode share of that (the encoder's own).
    encode: Vec<Duration>,
    /// Frames whose rendition came out after a later source packet.
    delayed: u64,
}

fn sluice_cpu(clip: &Clip, kind: EncoderKind) -> Measured {
    let spec = RenditionSpec {
        codec: kind.codec(),
        payload_type: PayloadType::new(96).expect("96 fits"),
        max_height: Some(360),
        max_kbps: DEFAULT_RENDITION_KBPS,
    };
    let mut r = Rendition::new(VideoCodec::H264, spec, kind, SeqNum(0)).expect("rendition");
    let t0 = std::time::Instant::now();
    let start = cpu(libc::RUSAGE_SELF);
    let mut bytes = 0usize;
    let (mut latency, mut encode, mut delayed) = (Vec::new(), Vec::new(), 0);
    let mut waiting: Option<std::time::Instant> = None;
    for (i, (seq, ts, marker, payload)) in clip.packets.iter().enumerate() {
        // Simulated arrival: the clip's own timeline (no waiting).
        let now =
            t0 + Duration::from_micros(u64::from(*ts) * 100 / 9) + Duration::from_nanos(i as u64);
        let before = r.stats().encode_ns;
        let t_in = std::time::Instant::now();
        if *marker {
            if waiting.is_some() {
                delayed += 1;
            }
            waiting = Some(t_in);
        }
        r.handle_rtp(now, SeqNum(*seq), *ts, *marker, payload)
            .expect("transcode");
        while let Some(out) = r.poll_output() {
            if let RenditionOutput::Rtp(p) = out {
                bytes += p.payload.len();
                if p.marker
                    && let Some(since) = waiting.take()
                {
                    latency.push(since.elapsed());
                    encode.push(Duration::from_nanos(r_encode_ns(&r) - before));
                }
            }
        }
    }
    let used = cpu(libc::RUSAGE_SELF) - start;
    assert_eq!(
        r.stats().frames_out,
        u64::from(clip.frames),
        "every frame transcoded"
    );
    assert!(bytes > 0);
    Measured {
        cpu: used,
        latency,
        encode,
        delayed,
    }
}

fn ffmpeg_cpu(clip_path: &std::path::Path, kind: EncoderKind) -> Option<Duration> {
    let profile = kind.profile();
    let kbps = DEFAULT_RENDITION_KBPS;
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-threads",
        "1",
        "-f",
        "h264",
        "-i",
    ])
    .arg(clip_path)
    .args([
        "-vf",
        "scale=640:360:flags=bilinear",
        "-c:v",
        kind.name(),
        "-threads",
        "1",
    ])
    .args(["-b:v", &format!("{kbps}k"), "-maxrate", &format!("{kbps}k")])
    .args([
        "-minrate",
        &format!("{kbps}k"),
        "-bufsize",
        &format!("{}k", kbps / 2),
    ])
    .args(["-g", "60", "-bf", "0", "-pix_fmt", &profile.pixel_format]);
    for (k, v) in &profile.options {
        cmd.arg(format!("-{k}")).arg(v);
    }
    cmd.args(["-f", "null", "-"]);
    let start = cpu(libc::RUSAGE_CHILDREN);
    let status = cmd.status().ok()?;
    status.success().then(|| cpu(libc::RUSAGE_CHILDREN) - start)
}

fn r_encode_ns(r: &Rendition) -> u64 {
    r.stats().encode_ns
}

/// The median of `v`, sorted in place.
fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let frames = if full { 300 } else { 20 };
    let clip = make_clip(frames);
    let dir = std::env::temp_dir().join(format!("sluice-rendition-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("clip.h264");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&clip.annex_b))
        .expect("write clip");
    let seconds = f64::from(frames) / 30.0;
    println!("720p30 H.264 -> 360p, {frames} frames, CPU time on one thread:");
    for kind in [EncoderKind::Libvpx, EncoderKind::Libx264] {
        let mut measured = sluice_cpu(&clip, kind);
        let ours = measured.cpu;
        let added: Vec<Duration> = measured
            .latency
            .iter()
            .zip(&measured.encode)
            .map(|(l, e)| l.saturating_sub(*e))
            .collect();
        let mut added_sorted = added.clone();
        let p95 = {
            added_sorted.sort_unstable();
            added_sorted
                .get(added_sorted.len() * 95 / 100)
                .copied()
                .unwrap_or_default()
        };
        println!(
            "  {:<8} latency: median {:.2} ms in to out, of which encoder {:.2} ms; added beyond the encoder median {:.2} ms, p95 {:.2} ms ({:.2} / {:.2} frame times at 30 fps); {} frames held past the next one",
            kind.name(),
            median(&mut measured.latency).as_secs_f64() * 1e3,
            median(&mut measured.encode).as_secs_f64() * 1e3,
            median(&mut added_sorted.clone()).as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3,
            median(&mut added_sorted).as_secs_f64() * 30.0,
            p95.as_secs_f64() * 30.0,
            measured.delayed,
        );
        let per_core = |cpu: Duration| seconds / cpu.as_secs_f64();
        match ffmpeg_cpu(&path, kind) {
            Some(theirs) => println!(
                "  {:<8} sluice {:6.2} ms/frame ({:5.1} streams/core)  ffmpeg {:6.2} ms/frame ({:5.1} streams/core)  ratio {:.2}x",
                kind.name(),
                ours.as_secs_f64() * 1e3 / f64::from(frames),
                per_core(ours),
                theirs.as_secs_f64() * 1e3 / f64::from(frames),
                per_core(theirs),
                per_core(ours) / per_core(theirs),
            ),
            None => println!(
                "  {:<8} sluice {:6.2} ms/frame ({:5.1} streams/core)  ffmpeg CLI not run (missing or failed)",
                kind.name(),
                ours.as_secs_f64() * 1e3 / f64::from(frames),
                per_core(ours),
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
