//! What a receiver can take (`receive` on admission, later a WHEP offer's
//! codecs) and the decision it drives: forward a video stream as it is,
//! or give the receiver a rendition of it.

use crate::rtp::PayloadType;
use crate::video::VideoCodec;

/// The video a receiver asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPrefs {
    /// The codecs it decodes, most preferred first, each with the payload
    /// type it expects.
    pub codecs: Vec<CodecChoice>,
    /// The tallest picture it wants.
    pub max_height: Option<u32>,
    /// The most video bitrate it takes, kbit/s.
    pub max_kbps: Option<u32>,
}

/// One codec a receiver decodes, with its payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodecChoice {
    /// The codec.
    pub codec: VideoCodec,
    /// The payload type it expects for it.
    pub payload_type: PayloadType,
}

/// What a source stream looks like to the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceVideo {
    /// Its codec.
    pub codec: VideoCodec,
    /// Its picture height, once known (from the first key frame).
    pub height: Option<u32>,
    /// Its bitrate as published (kbit/s), when known.
    pub kbps: Option<u32>,
}

/// A rendition: the key one transcode is shared by. Every receiver whose
/// preferences yield the same spec for the same source gets the same
/// stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RenditionSpec {
    /// The codec written.
    pub codec: VideoCodec,
    /// The payload type written.
    pub payload_type: PayloadType,
    /// The height limit (the source's aspect ratio is kept).
    pub max_height: Option<u32>,
    /// The bitrate cap, kbit/s.
    pub max_kbps: u32,
}

/// The bitrate of a rendition whose receiver named no cap: enough for
/// 720p30 in real-time settings.
pub const DEFAULT_RENDITION_KBPS: u32 = 2500;

/// What a receiver gets of one source stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The publisher's own packets (the stream already fits), with the
    /// payload type rewritten to this one where it differs.
    Forward(PayloadType),
    /// A rendition.
    Rendition(RenditionSpec),
}

/// Why a `receive` request is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefsError {
    /// No codec listed.
    #[error("receive.video.codecs must name at least one codec")]
    NoCodecs,
    /// A codec sluice does not transcode to.
    #[error("receive.video.codecs: unknown codec {0:?}; use \"VP8\" or \"H264\"")]
    UnknownCodec(String),
    /// A payload type outside 0..=127.
    #[error("receive.video.codecs: payload_type {0} is not in 0..=127")]
    BadPayloadType(u16),
    /// Two codecs share a payload type, or one is listed twice.
    #[error("receive.video.codecs: {0} is listed twice (codec or payload type)")]
    Duplicate(String),
    /// A limit out of range.
    #[error("receive.video.{name} = {value} is out of range; use {range}")]
    OutOfRange {
        /// The field.
        name: &'static str,
        /// The value given.
        value: u32,
        /// The accepted range.
        range: &'static str,
    },
}

impl VideoPrefs {
    /// Checks and builds the preferences from the request's fields.
    pub fn new(
        codecs: &[(String, u16)],
        max_height: Option<u32>,
        max_kbps: Option<u32>,
    ) -> Result<Self, PrefsError> {
        if codecs.is_empty() {
            return Err(PrefsError::NoCodecs);
        }
        let mut out: Vec<CodecChoice> = Vec::with_capacity(codecs.len());
        for (name, pt) in codecs {
            let codec = VideoCodec::from_name(name)
                .ok_or_else(|| PrefsError::UnknownCodec(name.clone()))?;
            let payload_type = u8::try_from(*pt)
                .ok()
                .and_then(PayloadType::new)
                .ok_or(PrefsError::BadPayloadType(*pt))?;
            if out.iter().any(|c| c.codec == codec) {
                return Err(PrefsError::Duplicate(codec.name().to_owned()));
            }
            if out.iter().any(|c| c.payload_type == payload_type) {
                return Err(PrefsError::Duplicate(format!("payload_type {pt}")));
            }
            out.push(CodecChoice {
                codec,
                payload_type,
            });
        }
        if let Some(h) = max_height
            && !(90..=4320).contains(&h)
        {
            return Err(PrefsError::OutOfRange {
                name: "max_height",
                value: h,
                range: "90 to 4320",
            });
        }
        if let Some(k) = max_kbps
            && !(50..=50_000).contains(&k)
        {
            return Err(PrefsError::OutOfRange {
                name: "max_kbps",
                value: k,
                range: "50 to 50000",
            });
        }
        Ok(Self {
            codecs: out,
            max_height,
            max_kbps,
        })
    }

    /// What this receiver gets of `source`: the stream itself when it
    /// takes the codec and the source is within its limits (an unknown
    /// height or bitrate counts as within), a rendition otherwise, in its
    /// most preferred codec.
    #[must_use]
    pub fn delivery(&self, source: SourceVideo) -> Delivery {
        let fits_height = match (self.max_height, source.height) {
            (Some(max), Some(h)) => h <= max,
            _ => true,
        };
        let fits_rate = match (self.max_kbps, source.kbps) {
            (Some(max), Some(k)) => k <= max,
            _ => true,
        };
        let same = self.codecs.iter().find(|c| c.codec == source.codec);
        if let Some(choice) = same
            && fits_height
            && fits_rate
        {
            return Delivery::Forward(choice.payload_type);
        }
        // A size or rate limit alone keeps the source's codec, when taken.
        let choice = same.copied().unwrap_or(self.codecs[0]); // new() refuses an empty list
        Delivery::Rendition(RenditionSpec {
            codec: choice.codec,
            payload_type: choice.payload_type,
            max_height: self.max_height,
            max_kbps: self.max_kbps.unwrap_or(DEFAULT_RENDITION_KBPS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(v: u8) -> PayloadType {
        PayloadType::new(v).unwrap()
    }

    fn prefs(
        codecs: &[(&str, u16)],
        h: Option<u32>,
        k: Option<u32>,
    ) -> Result<VideoPrefs, PrefsError> {
        let codecs: Vec<(String, u16)> =
            codecs.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect();
        VideoPrefs::new(&codecs, h, k)
    }

    #[test]
    fn a_stream_that_fits_is_forwarded() {
        let h264_any = prefs(&[("H264", 102)], None, None).unwrap();
        let source = SourceVideo {
            codec: VideoCodec::H264,
            height: Some(720),
            kbps: Some(1500),
        };
        assert_eq!(h264_any.delivery(source), Delivery::Forward(pt(102)));
        let both = prefs(&[("vp8", 96), ("h264", 102)], Some(720), Some(2000)).unwrap();
        assert_eq!(both.delivery(source), Delivery::Forward(pt(102)));
    }

    #[test]
    fn another_codec_or_a_smaller_size_gets_a_rendition() {
        let vp8_360 = prefs(&[("VP8", 96)], Some(360), None).unwrap();
        let source = SourceVideo {
            codec: VideoCodec::H264,
            height: Some(720),
            kbps: None,
        };
        let spec = RenditionSpec {
            codec: VideoCodec::Vp8,
            payload_type: pt(96),
            max_height: Some(360),
            max_kbps: DEFAULT_RENDITION_KBPS,
        };
        assert_eq!(vp8_360.delivery(source), Delivery::Rendition(spec));
        // Two receivers with the same wishes share one spec.
        let again = prefs(&[("VP8", 96)], Some(360), None).unwrap();
        assert_eq!(again.delivery(source), vp8_360.delivery(source));
        // Same codec, too tall: a rendition in the same codec.
        let h264_360 = prefs(&[("VP8", 96), ("H264", 100)], Some(360), Some(800)).unwrap();
        assert_eq!(
            h264_360.delivery(source),
            Delivery::Rendition(RenditionSpec {
                codec: VideoCodec::H264,
                payload_type: pt(100),
                max_height: Some(360),
                max_kbps: 800,
            })
        );
        // Too fast.
        let slow = prefs(&[("H264", 100)], None, Some(500)).unwrap();
        let fast = SourceVideo {
            kbps: Some(2000),
            ..source
        };
        assert!(matches!(slow.delivery(fast), Delivery::Rendition(_)));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(prefs(&[], None, None), Err(PrefsError::NoCodecs));
        assert_eq!(
            prefs(&[("AV1", 96)], None, None),
            Err(PrefsError::UnknownCodec("AV1".to_owned()))
        );
        assert_eq!(
            prefs(&[("VP8", 128)], None, None),
            Err(PrefsError::BadPayloadType(128))
        );
        assert!(matches!(
            prefs(&[("VP8", 96), ("vp8", 97)], None, None),
            Err(PrefsError::Duplicate(_))
        ));
        assert!(matches!(
            prefs(&[("VP8", 96), ("H264", 96)], None, None),
            Err(PrefsError::Duplicate(_))
        ));
        assert!(matches!(
            prefs(&[("VP8", 96)], Some(10), None),
            Err(PrefsError::OutOfRange {
                name: "max_height",
                ..
            })
        ));
        let e = prefs(&[("VP8", 96)], None, Some(0))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "receive.video.max_kbps = 0 is out of range; use 50 to 50000"
        );
    }
}
