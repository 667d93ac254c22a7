//! Audio levels in RFC 6464's scale: -dBov, 0 the loudest (overload), 127
//! silence. Read from the client-to-mixer audio level header extension, or
//! measured from decoded samples in the same scale.

use crate::rtp::{ExtensionForm, RtpPacket};

/// The quietest level: digital silence.
pub const SILENCE_DBOV: u8 = 127;

/// The audio level (0..=127, -dBov) in `packet`'s RFC 6464 header
/// extension with local `id` (one-byte form, RFC 8285 §4.2), ignoring the
/// voice activity bit; `None` when the packet carries no such element or it
/// is malformed.
#[must_use]
pub fn audio_level(packet: &RtpPacket<'_>, id: u8) -> Option<u8> {
    audio_level_and_voice(packet, id).map(|(level, _)| level)
}

/// The audio level and the voice activity flag (the V bit) of `packet`'s
/// RFC 6464 element with local `id`.
#[must_use]
pub fn audio_level_and_voice(packet: &RtpPacket<'_>, id: u8) -> Option<(u8, bool)> {
    let block = packet.header().extension_block()?;
    if block.form() != ExtensionForm::OneByte {
        return None;
    }
    let element = block
        .elements()
        .map_while(Result::ok)
        .find(|e| e.id == id)?;
    let &byte = element.data.first()?;
    Some((byte & 0x7f, byte & 0x80 != 0))
}

/// The element's one data byte for `level` (clamped to 127) and `voice`.
#[must_use]
pub const fn level_byte(level: u8, voice: bool) -> u8 {
    let level = if level > SILENCE_DBOV {
        SILENCE_DBOV
    } else {
        level
    };
    level | if voice { 0x80 } else { 0 }
}

/// The level of `pcm` in -dBov (0 = a full-scale square wave, a
/// full-scale sine is 3; 127 = silence), from its mean square, as RFC 6464
/// §3 asks and WebRTC computes it.
#[must_use]
pub fn energy_dbov(pcm: &[i16]) -> u8 {
    if pcm.is_empty() {
        return SILENCE_DBOV;
    }
    let sum: u64 = pcm
        .iter()
        .map(|&s| {
            let s = i64::from(s);
            (s * s).cast_unsigned()
        })
        .sum();
    if sum == 0 {
        return SILENCE_DBOV;
    }
    let mean = sum as f64 / pcm.len() as f64;
    let db = -10.0 * (mean / (32768.0 * 32768.0)).log10();
    db.round().clamp(0.0, f64::from(SILENCE_DBOV)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::Sine;
    use crate::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};

    #[test]
    fn reads_the_one_byte_element() {
        let mut buf = [0u8; 64];
        let n = RtpBuilder::new(PayloadType::new(111).unwrap(), SeqNum(1), 960, Ssrc(0x1234))
            .one_byte_extensions(&[(3, &[0x21][..]), (1, &[0x80 | 42][..])])
            .write(&[1, 2, 3], &mut buf)
            .unwrap();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(audio_level(&p, 1), Some(42));
        assert_eq!(audio_level_and_voice(&p, 1), Some((42, true)));
        assert_eq!(audio_level(&p, 3), Some(0x21));
        assert_eq!(audio_level(&p, 2), None);
        let n = RtpBuilder::new(PayloadType::new(111).unwrap(), SeqNum(1), 960, Ssrc(0x1234))
            .write(&[1], &mut buf)
            .unwrap();
        assert_eq!(audio_level(&RtpPacket::parse(&buf[..n]).unwrap(), 1), None);
        assert_eq!(level_byte(200, false), 127);
        assert_eq!(level_byte(10, true), 0x8a);
    }

    #[test]
    fn energy_scale() {
        assert_eq!(energy_dbov(&[0; 960]), 127);
        assert_eq!(energy_dbov(&[]), 127);
        assert_eq!(energy_dbov(&[i16::MIN; 160]), 0);
        let mut pcm = [0i16; 960];
        Sine::new(1000.0, 48_000, 32767.0).fill(&mut pcm);
        assert_eq!(energy_dbov(&pcm), 3);
        Sine::new(1000.0, 48_000, 3277.0).fill(&mut pcm);
        assert_eq!(energy_dbov(&pcm), 23);
        assert_eq!(energy_dbov(&[1; 960]), 90);
    }
}
