//! A source's picture height, read from one RTP payload of a key frame
//! (DESIGN.md, "Transcoding": a receiver that takes the source's codec
//! but wants it smaller gets a scaled rendition only once the relay knows
//! the source is too tall).
//!
//! - VP8 (RFC 6386 §9.1, behind the RFC 7741 descriptor): a key frame's
//!   first partition starts with the 3-byte frame tag, the start code
//!   `9d 01 2a`, then 14-bit width and height (2 bits of scale each).
//! - H.264 (ITU-T H.264 §7.3.2.1.1): the sequence parameter set, carried
//!   as a single NAL unit or inside a STAP-A (RFC 6184 §5.6, §5.7.1),
//!   parsed with a bounded exp-Golomb bit reader that drops emulation
//!   prevention bytes (§7.4.1); the height is the coded height less the
//!   frame cropping.
//!
//! Bounded and panic-free on any input: the reader stops at the end of the
//! NAL unit (or at [`MAX_SPS_BYTES`]), every loop has a fixed bound, and
//! out-of-range values are refused. Fuzzed by
//! `fuzz/fuzz_targets/video_dimensions.rs`.

use super::VideoCodec;
use super::vp8::Vp8Descriptor;

/// The most of an SPS NAL unit read: real ones are a few dozen bytes.
pub const MAX_SPS_BYTES: usize = 256;
/// The tallest picture believed (H.264 level 6.2 allows 8192×4320).
const MAX_HEIGHT: u32 = 8192;

const NAL_SPS: u8 = 7;
const STAP_A: u8 = 24;

/// The picture height `payload` (one RTP payload of `codec`) declares,
/// when it starts a VP8 key frame or carries an H.264 SPS.
#[must_use]
pub fn picture_height(codec: VideoCodec, payload: &[u8]) -> Option<u32> {
    match codec {
        VideoCodec::Vp8 => vp8_height(payload),
        VideoCodec::H264 => h264_height(payload),
    }
}

fn vp8_height(payload: &[u8]) -> Option<u32> {
    let d = Vp8Descriptor::parse(payload).ok()?;
    if !d.starts_frame() {
        return None;
    }
    let vp8 = payload.get(d.len..)?;
    let frame: &[u8; 10] = vp8.get(..10)?.try_into().ok()?;
    // P bit 0: a key frame; then the start code.
    if frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let height = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    (height > 0).then_some(height)
}

fn h264_height(payload: &[u8]) -> Option<u32> {
    let &header = payload.first()?;
    match header & 0x1f {
        NAL_SPS => sps_height(payload),
        STAP_A => {
            let mut rest = payload.get(1..)?;
            // At most as many units as fit: each takes 3 bytes at least.
            while let [hi, lo, tail @ ..] = rest {
                let size = usize::from(u16::from_be_bytes([*hi, *lo]));
                let nal = tail.get(..size)?;
                if nal.first().is_some_and(|h| h & 0x1f == NAL_SPS) {
                    return sps_height(nal);
                }
                rest = tail.get(size..)?;
            }
            None
        }
        _ => None,
    }
}

/// A bit reader over an RBSP: the NAL unit's bytes less emulation
/// prevention (`00 00 03` reads as `00 00`).
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
    bit: u8,
    zeros: u8,
    current: u8,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data: data
                .get(..data.len().min(MAX_SPS_BYTES))
                .unwrap_or_default(),
            at: 0,
            bit: 8,
            zeros: 0,
            current: 0,
        }
    }

    fn bit(&mut self) -> Option<u32> {
        if self.bit == 8 {
            let mut byte = *self.data.get(self.at)?;
            self.at += 1;
            if self.zeros >= 2 && byte == 3 {
                byte = *self.data.get(self.at)?;
                self.at += 1;
                self.zeros = 0;
            }
            self.zeros = if byte == 0 { self.zeros + 1 } else { 0 };
            self.current = byte;
            self.bit = 0;
        }
        let b = (self.current >> (7 - self.bit)) & 1;
        self.bit += 1;
        Some(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some(acc << 1 | self.bit()?))
    }

    /// ue(v): at most 31 leading zeros (values below 2^32 - 1).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }

    /// se(v).
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Skips one scaling_list() of `size` entries (§7.3.2.1.1.1).
fn skip_scaling_list(r: &mut Bits<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            if !(-128..=127).contains(&delta) {
                return None;
            }
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// The cropped picture height an SPS NAL unit (header byte included)
/// declares.
fn sps_height(nal: &[u8]) -> Option<u32> {
    let mut r = Bits::new(nal.get(1..)?);
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, reserved, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = r.ue()?;
        if chroma_format > 3 {
            return None;
        }
        if chroma_format == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    r.ue()?; // pic_width_in_mbs_minus1
    let map_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let coded = map_units.checked_mul(16)?.checked_mul(2 - frame_mbs_only)?;
    let mut height = coded;
    if r.bit()? == 1 {
        r.ue()?; // frame_crop_left_offset
        r.ue()?; // frame_crop_right_offset
        let top = r.ue()?;
        let bottom = r.ue()?;
        // SubHeightC: 2 for 4:2:0, else 1; no chroma: 1 (§7.4.2.1.1).
        let sub_height = if chroma_format == 1 { 2 } else { 1 };
        let unit = sub_height * (2 - frame_mbs_only);
        let crop = top.checked_add(bottom)?.checked_mul(unit)?;
        height = coded.checked_sub(crop)?;
    }
    (1..=MAX_HEIGHT).contains(&height).then_some(height)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SPS of libx264 (FFmpeg 5.1, testsrc2) at 1280×720, High
    /// profile, level 3.1; 720 is 46 macroblock rows (736) less 8 rows of cropping.
    const SPS_720P: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    /// Baseline 640×480 (no cropping: 30 rows exactly).
    const SPS_480P: [u8; 24] = [
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x3d, 0xb0, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01,
        0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
    ];
    /// Main 640×360: 23 rows (368) less 8 of cropping.
    const SPS_360P: [u8; 24] = [
        0x67, 0x4d, 0x40, 0x1e, 0xec, 0xa0, 0x50, 0x17, 0xfc, 0xb8, 0x08, 0x80, 0x00, 0x00, 0x03,
        0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8b, 0x16, 0xcb,
    ];

    #[test]
    fn an_h264_sps_gives_the_cropped_height_alone_or_in_a_stap_a() {
        assert_eq!(picture_height(VideoCodec::H264, &SPS_720P), Some(720));
        assert_eq!(picture_height(VideoCodec::H264, &SPS_480P), Some(480));
        assert_eq!(picture_height(VideoCodec::H264, &SPS_360P), Some(360));
        let mut stap = vec![0x78];
        let pps = [0x68, 0xeb, 0xe3, 0xcb];
        for nal in [&pps[..], &SPS_720P[..]] {
            stap.extend(u16::try_from(nal.len()).unwrap().to_be_bytes());
            stap.extend_from_slice(nal);
        }
        assert_eq!(picture_height(VideoCodec::H264, &stap), Some(720));
        // An IDR slice or a PPS says nothing.
        assert_eq!(picture_height(VideoCodec::H264, &[0x65, 0x88, 0x84]), None);
        assert_eq!(picture_height(VideoCodec::H264, &pps), None);
    }

    #[test]
    fn a_vp8_key_frame_gives_its_height_and_other_frames_nothing() {
        // Descriptor (S=1, PID 0), frame tag (key), start code, 640×360.
        let mut key = vec![0x10, 0x50, 0x2a, 0x01, 0x9d, 0x01, 0x2a];
        key.extend(640u16.to_le_bytes());
        key.extend(360u16.to_le_bytes());
        key.extend([0u8; 8]);
        assert_eq!(picture_height(VideoCodec::Vp8, &key), Some(360));
        // With an extended descriptor and a 15-bit picture id.
        let mut ext = vec![0x90, 0x80, 0x81, 0x23];
        ext.extend_from_slice(&key[1..]);
        assert_eq!(picture_height(VideoCodec::Vp8, &ext), Some(360));
        let mut inter = key.clone();
        inter[1] |= 0x01;
        assert_eq!(picture_height(VideoCodec::Vp8, &inter), None);
        let mut later = key.clone();
        later[0] = 0x00; // not the start of a frame
        assert_eq!(picture_height(VideoCodec::Vp8, &later), None);
    }

    #[test]
    fn truncated_and_garbage_input_never_panics() {
        for n in 0..SPS_720P.len() {
            let _ = picture_height(VideoCodec::H264, &SPS_720P[..n]);
        }
        let mut state = 0x1234_5678u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let mut sps = bytes.clone();
            if let Some(b) = sps.first_mut() {
                *b = 0x67;
            }
            let _ = picture_height(VideoCodec::H264, &sps);
            let _ = picture_height(VideoCodec::H264, &bytes);
            let _ = picture_height(VideoCodec::Vp8, &bytes);
        }
        // All zeros: ue(v) with no end.
        assert_eq!(
            picture_height(VideoCodec::H264, &[0x67, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }
}
