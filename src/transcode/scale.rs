//! [`Scaler`]: libswscale from the decoder's pictures to the rendition's
//! size and pixel format, rebuilt when the source changes size, and the
//! rendition size rule ([`rendition_size`]).

use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame;
use ffmpeg_next::software::scaling::{Context, Flags};

use super::error::TranscodeError;

/// The size of a rendition of a `width`x`height` source no taller than
/// `max_height`: the aspect ratio kept, both sides even (4:2:0), never
/// larger than the source.
#[must_use]
pub fn rendition_size(width: u32, height: u32, max_height: Option<u32>) -> (u32, u32) {
    let even = |v: u32| (v & !1).max(2);
    let target = max_height.map_or(height, |m| m.min(height));
    if target == height || height == 0 {
        return (even(width), even(height));
    }
    let w = (u64::from(width) * u64::from(target) + u64::from(height) / 2) / u64::from(height);
    (even(w as u32), even(target))
}

/// A scaler into pictures of a fixed size and format.
pub struct Scaler {
    context: Option<Context>,
    source: (Pixel, u32, u32),
    to: (Pixel, u32, u32),
}

impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaler")
            .field("source", &self.source)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

impl Scaler {
    /// A scaler to `width`x`height` in `format`.
    #[must_use]
    pub const fn new(format: Pixel, width: u32, height: u32) -> Self {
        Self {
            context: None,
            source: (Pixel::None, 0, 0),
            to: (format, width, height),
        }
    }

    /// Scales `input` into `output` (which has the target size and format).
    pub fn run(
        &mut self,
        input: &frame::Video,
        output: &mut frame::Video,
    ) -> Result<(), TranscodeError> {
        let source = (input.format(), input.width(), input.height());
        let (format, w, h) = self.to;
        let err = |source| TranscodeError::Scale {
            from_w: input.width(),
            from_h: input.height(),
            to_w: w,
            to_h: h,
            source,
        };
        if self.context.is_none() || self.source != source {
            // Bilinear: the cost/quality point real-time downscaling uses
            // (FFmpeg's own default for -vf scale is bicubic; at 2:1 the
            // difference is below a dB of PSNR and bilinear is cheaper).
            self.context = Some(
                Context::get(source.0, source.1, source.2, format, w, h, Flags::BILINEAR)
                    .map_err(err)?,
            );
            self.source = source;
        }
        // Set just above.
        let Some(context) = self.context.as_mut() else {
            return Ok(());
        };
        context.run(input, output).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::rendition_size;

    #[test]
    fn sizes_keep_the_aspect_ratio_and_stay_even() {
        assert_eq!(rendition_size(1280, 720, Some(360)), (640, 360));
        assert_eq!(rendition_size(1280, 720, None), (1280, 720));
        assert_eq!(rendition_size(640, 360, Some(720)), (640, 360));
        assert_eq!(rendition_size(1920, 1080, Some(241)), (428, 240));
        assert_eq!(rendition_size(321, 241, None), (320, 240));
        assert_eq!(rendition_size(0, 0, Some(360)), (2, 2));
    }
}
