//! [`VideoDecoder`]: FFmpeg's native H.264 or VP8 decoder for one source
//! stream, single-threaded and low-delay (one frame in, one picture out).

use ffmpeg_next::codec::{self, decoder};
use ffmpeg_next::{Packet, frame};

use super::error::TranscodeError;
use crate::video::VideoCodec;

/// A decoder for one source stream.
pub struct VideoDecoder {
    decoder: decoder::Video,
    name: &'static str,
    picture: frame::Video,
}

impl std::fmt::Debug for VideoDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoDecoder")
            .field("codec", &self.name)
            .finish_non_exhaustive()
    }
}

impl VideoDecoder {
    /// Opens FFmpeg's decoder for `codec`.
    pub fn open(codec: VideoCodec) -> Result<Self, TranscodeError> {
        super::init();
        let name = match codec {
            VideoCodec::H264 => "h264",
            VideoCodec::Vp8 => "vp8",
        };
        let found = decoder::find_by_name(name).ok_or(TranscodeError::CodecMissing {
            name,
            kind: "decoder",
        })?;
        let open_err = |source| TranscodeError::CodecOpen {
            name,
            kind: "decoder",
            source,
        };
        let mut ctx = codec::Context::new_with_codec(found);
        // Frame threading would hold frames back; one thread per stream,
        // streams spread over the media threads.
        ctx.set_threading(codec::threading::Config::count(1));
        ctx.set_flags(codec::Flags::LOW_DELAY);
        let decoder = ctx.decoder().video().map_err(open_err)?;
        Ok(Self {
            decoder,
            name,
            picture: frame::Video::empty(),
        })
    }

    /// The last picture [`Self::decode`] returned.
    #[must_use]
    pub const fn picture(&self) -> &frame::Video {
        &self.picture
    }

    /// Decodes one whole frame (Annex B access unit or VP8 frame) with
    /// RTP timestamp `pts`; the picture, when the decoder gave one.
    pub fn decode(
        &mut self,
        data: &[u8],
        pts: i64,
    ) -> Result<Option<&frame::Video>, TranscodeError> {
        let err = |source| TranscodeError::Decode {
            name: self.name,
            source,
        };
        // One copy per frame (not per packet): the decoder may keep a
        // reference to the packet's buffer, so it gets its own.
        let mut packet = Packet::copy(data);
        packet.set_pts(Some(pts));
        self.decoder.send_packet(&packet).map_err(err)?;
        match self.decoder.receive_frame(&mut self.picture) {
            Ok(()) => Ok(Some(&self.picture)),
            Err(ffmpeg_next::Error::Other { errno }) if errno == libc::EAGAIN => Ok(None),
            Err(e) => Err(err(e)),
        }
    }
}
