//! [`RtpBuilder`]: writes an RTP packet (RFC 3550 §5.1) into the caller's
//! buffer: fixed header, CSRC list, an optional header extension (RFC 3550
//! §5.3.1 with RFC 8285 one-byte or two-byte elements) and optional padding.

use core::num::NonZeroU8;

mod extension;
#[cfg(test)]
mod round_trip;

use crate::rtp::error::RtpError;
use crate::rtp::header::FIXED_HEADER_LEN;
use crate::rtp::types::{PayloadType, SeqNum, Ssrc};
use crate::rtp::wire::Writer;
use extension::ExtensionSpec;

/// Most CSRCs the 4-bit CC field can count.
pub const MAX_CSRCS: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Padding {
    None,
    ToMultipleOf(NonZeroU8),
    Exactly(NonZeroU8),
}

/// Describes one RTP packet; [`RtpBuilder::write`] lays it out. Fields are
/// checked when writing, so the setters chain without `?`.
#[derive(Debug, Clone, Copy)]
pub struct RtpBuilder<'a> {
    marker: bool,
    payload_type: PayloadType,
    sequence: SeqNum,
    timestamp: u32,
    ssrc: Ssrc,
    csrcs: [Ssrc; MAX_CSRCS],
    csrc_count: usize,
    extension: Option<ExtensionSpec<'a>>,
    padding: Padding,
}

impl<'a> RtpBuilder<'a> {
    /// A packet with no marker, CSRCs, extension or padding.
    #[must_use]
    pub const fn new(
        payload_type: PayloadType,
        sequence: SeqNum,
        timestamp: u32,
        ssrc: Ssrc,
    ) -> Self {
        Self {
            marker: false,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrcs: [Ssrc(0); MAX_CSRCS],
            csrc_count: 0,
            extension: None,
            padding: Padding::None,
        }
    }

    #[must_use]
    pub const fn marker(mut self, marker: bool) -> Self {
        self.marker = marker;
        self
    }

    #[must_use]
    pub const fn payload_type(mut self, payload_type: PayloadType) -> Self {
        self.payload_type = payload_type;
        self
    }

    #[must_use]
    pub const fn sequence(mut self, sequence: SeqNum) -> Self {
        self.sequence = sequence;
        self
    }

    #[must_use]
    pub const fn timestamp(mut self, timestamp: u32) -> Self {
        self.timestamp = timestamp;
        self
    }

    #[must_use]
    pub const fn ssrc(mut self, ssrc: Ssrc) -> Self {
        self.ssrc = ssrc;
        self
    }

    /// Sets the CSRC list. More than [`MAX_CSRCS`] makes `write` fail with
    /// [`RtpError::TooManyCsrcs`].
    #[must_use]
    pub fn csrcs(mut self, csrcs: impl IntoIterator<Item = Ssrc>) -> Self {
        self.csrc_count = 0;
        for csrc in csrcs {
            if let Some(slot) = self.csrcs.get_mut(self.csrc_count) {
                *slot = csrc;
            }
            self.csrc_count += 1;
        }
        self
    }

    /// A header extension of one-byte elements (profile 0xBEDE): ids
    /// 1..=14, 1..=16 bytes of data each.
    #[must_use]
    pub const fn one_byte_extensions(mut self, elements: &'a [(u8, &'a [u8])]) -> Self {
        self.extension = Some(ExtensionSpec::OneByte(elements));
        self
    }

    /// A header extension of two-byte elements (profile 0x1000, appbits
    /// 0): ids 1..=255, 0..=255 bytes of data each.
    #[must_use]
    pub const fn two_byte_extensions(mut self, elements: &'a [(u8, &'a [u8])]) -> Self {
        self.extension = Some(ExtensionSpec::TwoByte(elements));
        self
    }

    /// A header extension copied as is, e.g. from a parsed packet's
    /// [`super::ExtensionBlock`]: `data` must be whole 32-bit words.
    #[must_use]
    pub const fn raw_extension(mut self, profile: u16, data: &'a [u8]) -> Self {
        self.extension = Some(ExtensionSpec::Raw { profile, data });
        self
    }

    /// Pads the packet to a multiple of `multiple` bytes (RFC 3550 §5.1),
    /// e.g. for a block cipher; the P bit is set only when padding is
    /// needed.
    #[must_use]
    pub const fn pad_to_multiple_of(mut self, multiple: NonZeroU8) -> Self {
        self.padding = Padding::ToMultipleOf(multiple);
        self
    }

    /// Ends the packet with exactly `count` padding bytes (the last holds
    /// the count) and sets the P bit.
    #[must_use]
    pub const fn padding(mut self, count: NonZeroU8) -> Self {
        self.padding = Padding::Exactly(count);
        self
    }

    fn csrc_list(&self) -> Result<&[Ssrc], RtpError> {
        self.csrcs
            .get(..self.csrc_count)
            .ok_or(RtpError::TooManyCsrcs(self.csrc_count))
    }

    /// Bytes from the start of the packet to the payload, after checking
    /// the CSRC list and extension elements.
    pub fn header_len(&self) -> Result<usize, RtpError> {
        let csrcs = self.csrc_list()?;
        let ext = match &self.extension {
            Some(spec) => 4 + spec.data_len()?,
            None => 0,
        };
        Ok(FIXED_HEADER_LEN + 4 * csrcs.len() + ext)
    }

    fn padding_len(&self, unpadded: usize) -> usize {
        match self.padding {
            Padding::None => 0,
            Padding::Exactly(count) => usize::from(count.get()),
            Padding::ToMultipleOf(m) => unpadded.next_multiple_of(usize::from(m.get())) - unpadded,
        }
    }

    /// Writes the packet carrying `payload` to the start of `out` and
    /// returns its length. On error `out` may hold a partial packet.
    pub fn write(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, RtpError> {
        let csrcs = self.csrc_list()?;
        let unpadded = self.header_len()?.saturating_add(payload.len());
        let padding = self.padding_len(unpadded);

        let mut w = Writer::new(out);
        // csrc_list checked at most 15, so the count fits CC's 4 bits.
        let mut first = 0x80 | csrcs.len() as u8;
        if padding > 0 {
            first |= 0x20;
        }
        if self.extension.is_some() {
            first |= 0x10;
        }
        w.put_u8(first);
        w.put_u8((u8::from(self.marker) << 7) | self.payload_type.get());
        w.put_u16(self.sequence.0);
        w.put_u32(self.timestamp);
        w.put_u32(self.ssrc.0);
        for csrc in csrcs {
            w.put_u32(csrc.0);
        }
        if let Some(spec) = &self.extension {
            spec.write(&mut w)?;
        }
        w.put(payload);
        if padding > 0 {
            w.put_zeros(padding - 1);
            // padding_len is at most 255: a NonZeroU8, or below a u8 multiple.
            w.put_u8(padding as u8);
        }
        w.finish()
            .map_err(|(needed, got)| RtpError::BufferTooSmall { needed, got })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(v: u8) -> PayloadType {
        PayloadType::new(v).unwrap()
    }

    fn base() -> RtpBuilder<'static> {
        RtpBuilder::new(pt(111), SeqNum(0xfffe), 48_000, Ssrc(0x0102_0304))
    }

    fn nz(v: u8) -> NonZeroU8 {
        NonZeroU8::new(v).unwrap()
    }

    #[test]
    fn writes_known_bytes() {
        let mut out = [0u8; 16];
        let n = base().marker(true).write(&[0xde, 0xad], &mut out).unwrap();
        assert_eq!(
            out[..n],
            [
                0x80, 0xef, 0xff, 0xfe, 0, 0, 0xbb, 0x80, 1, 2, 3, 4, 0xde, 0xad
            ]
        );
    }

    #[test]
    fn writes_exact_padding() {
        let mut out = [0u8; 16];
        let n = base().padding(nz(3)).write(&[9], &mut out).unwrap();
        assert_eq!(
            out[..n],
            [
                0xa0, 0x6f, 0xff, 0xfe, 0, 0, 0xbb, 0x80, 1, 2, 3, 4, 9, 0, 0, 3
            ]
        );
    }

    #[test]
    fn buffer_too_small() {
        let mut out = [0u8; 13];
        assert_eq!(
            base().write(&[1, 2], &mut out),
            Err(RtpError::BufferTooSmall {
                needed: 14,
                got: 13
            })
        );
        assert_eq!(
            base().write(&[], &mut []),
            Err(RtpError::BufferTooSmall { needed: 12, got: 0 })
        );
    }

    #[test]
    fn builder_errors() {
        let mut out = [0u8; 200];
        let sixteen = (0..16).map(Ssrc);
        assert_eq!(
            base().csrcs(sixteen).write(&[], &mut out),
            Err(RtpError::TooManyCsrcs(16))
        );
        assert_eq!(base().csrcs((0..15).map(Ssrc)).header_len(), Ok(72));
        let bad: [(u8, &[u8]); 1] = [(15, &[1])];
        assert_eq!(
            base().one_byte_extensions(&bad).write(&[], &mut out),
            Err(RtpError::BadExtensionId {
                id: 15,
                form: crate::rtp::ExtensionForm::OneByte
            })
        );
        assert_eq!(
            base().raw_extension(1, &[1, 2]).header_len(),
            Err(RtpError::BadExtensionBlockLength { len: 2 })
        );
    }
}
