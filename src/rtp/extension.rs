//! RTP header extensions: the block of RFC 3550 §5.3.1 and the one-byte and
//! two-byte element forms of RFC 8285 §4.2 and §4.3 (same profile values as
//! RFC 5285). Blocks with any other profile are opaque: no elements.

use super::error::RtpError;

/// The "defined by profile" value of the one-byte form (RFC 8285 §4.2).
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// The two-byte form's profile with zero "appbits" (RFC 8285 §4.3); the
/// low 4 bits may carry application bits (0x1000..=0x100F).
pub const TWO_BYTE_PROFILE: u16 = 0x1000;

/// How the elements inside a header extension block are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtensionForm {
    /// Profile 0xBEDE: one byte of id (4 bits) and length - 1 (4 bits).
    OneByte,
    /// Profile 0x100X: a byte of id and a byte of length; `appbits` is X.
    TwoByte { appbits: u8 },
    /// Any other profile: the block is not made of RFC 8285 elements.
    Opaque,
}

/// A header extension block: the profile value and the data after the
/// 4-byte extension header (a whole number of 32-bit words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionBlock<'a> {
    profile: u16,
    data: &'a [u8],
}

impl<'a> ExtensionBlock<'a> {
    /// A block with this profile value and data (the bytes after the length
    /// field). Parsing a packet makes these; this is for callers that hold
    /// extension bytes of their own.
    #[must_use]
    pub const fn new(profile: u16, data: &'a [u8]) -> Self {
        Self { profile, data }
    }

    /// The 16-bit "defined by profile" value.
    #[must_use]
    pub const fn profile(&self) -> u16 {
        self.profile
    }

    /// The extension data, without the 4-byte extension header.
    #[must_use]
    pub const fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Which element layout the profile value announces.
    #[must_use]
    pub const fn form(&self) -> ExtensionForm {
        match self.profile {
            ONE_BYTE_PROFILE => ExtensionForm::OneByte,
            p if p & 0xfff0 == TWO_BYTE_PROFILE => ExtensionForm::TwoByte {
                appbits: (p & 0x000f) as u8,
            },
            _ => ExtensionForm::Opaque,
        }
    }

    /// The elements of a one-byte or two-byte block; nothing for an opaque
    /// one. A malformed element yields one error and ends the iteration.
    #[must_use]
    pub const fn elements(&self) -> ExtensionElements<'a> {
        ExtensionElements {
            form: self.form(),
            data: self.data,
            pos: 0,
        }
    }
}

/// One RFC 8285 extension element: its local id and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionElement<'a> {
    pub id: u8,
    pub data: &'a [u8],
}

/// Iterator over the elements of an [`ExtensionBlock`], skipping padding.
#[derive(Debug, Clone)]
pub struct ExtensionElements<'a> {
    form: ExtensionForm,
    data: &'a [u8],
    pos: usize,
}

impl<'a> ExtensionElements<'a> {
    fn stop(&mut self) {
        self.data = &[];
        self.pos = 0;
    }

    /// The element of `len` data bytes after a `head`-byte header at `pos`.
    fn take(&mut self, id: u8, head: usize, len: usize) -> Result<ExtensionElement<'a>, RtpError> {
        let offset = self.pos;
        let rest = self.data.get(offset..).unwrap_or_default();
        match rest.get(head..head + len) {
            Some(data) => {
                self.pos = offset + head + len;
                Ok(ExtensionElement { id, data })
            }
            None => {
                self.stop();
                Err(RtpError::ExtensionElementTruncated {
                    offset,
                    needed: head + len,
                    available: rest.len(),
                })
            }
        }
    }
}

impl<'a> Iterator for ExtensionElements<'a> {
    type Item = Result<ExtensionElement<'a>, RtpError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.data.get(self.pos..)?;
            let (&first, after) = rest.split_first()?;
            if first == 0 && self.form != ExtensionForm::Opaque {
                // A padding byte, in both forms (RFC 8285 §4.2, §4.3).
                self.pos += 1;
                continue;
            }
            return match self.form {
                ExtensionForm::Opaque => None,
                ExtensionForm::OneByte => {
                    let id = first >> 4;
                    if id == 15 || id == 0 {
                        // ID 15 is reserved: stop here and keep what came
                        // before (RFC 8285 §4.2). ID 0 is only for padding,
                        // whose byte is all zero (handled above); a nonzero
                        // length with it is no element either, so stop the
                        // same way rather than yield an invalid id.
                        self.stop();
                        return None;
                    }
                    Some(self.take(id, 1, usize::from(first & 0x0f) + 1))
                }
                ExtensionForm::TwoByte { .. } => match after.first() {
                    Some(&len) => Some(self.take(first, 2, usize::from(len))),
                    None => {
                        let offset = self.pos;
                        self.stop();
                        Some(Err(RtpError::ExtensionElementTruncated {
                            offset,
                            needed: 2,
                            available: 1,
                        }))
                    }
                },
            };
        }
    }
}

impl core::iter::FusedIterator for ExtensionElements<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(block: ExtensionBlock<'_>) -> Vec<Result<ExtensionElement<'_>, RtpError>> {
        block.elements().collect()
    }

    fn el(id: u8, data: &[u8]) -> Result<ExtensionElement<'_>, RtpError> {
        Ok(ExtensionElement { id, data })
    }

    #[test]
    fn one_byte_elements_and_padding() {
        // id 1 L=0 (1 byte), padding, id 2 L=1 (2 bytes), id 3 L=3 (4 bytes),
        // then padding to the word boundary.
        let data = [0x10, 0xaa, 0x00, 0x21, 0xbb, 0xcc, 0x33, 1, 2, 3, 4, 0x00];
        let block = ExtensionBlock::new(0xBEDE, &data);
        assert_eq!(block.form(), ExtensionForm::OneByte);
        assert_eq!(
            collect(block),
            [el(1, &[0xaa]), el(2, &[0xbb, 0xcc]), el(3, &[1, 2, 3, 4])]
        );
    }

    #[test]
    fn one_byte_id_15_stops_parsing() {
        let data = [0x10, 0xaa, 0xf0, 0x20, 0xbb, 0, 0, 0];
        assert_eq!(
            collect(ExtensionBlock::new(0xBEDE, &data)),
            [el(1, &[0xaa])]
        );
    }

    #[test]
    fn one_byte_id_0_with_a_length_stops_parsing() {
        // Found by fuzzing (rtp_parse): 0x0b has ID 0 and L=11. It used to
        // come out as an element with the invalid id 0.
        let data = [0x10, 0xaa, 0x0b, 0x10, 0x30, 0x32, 0x00, 0x01];
        assert_eq!(
            collect(ExtensionBlock::new(0xBEDE, &data)),
            [el(1, &[0xaa])]
        );
    }

    #[test]
    fn one_byte_overrun_yields_one_error() {
        // id 2 with L=3 claims 4 bytes; only 2 remain.
        let data = [0x10, 0xaa, 0x23, 1, 2, 0, 0, 0];
        let got = collect(ExtensionBlock::new(0xBEDE, &data[..5]));
        assert_eq!(
            got,
            [
                el(1, &[0xaa]),
                Err(RtpError::ExtensionElementTruncated {
                    offset: 2,
                    needed: 5,
                    available: 3
                })
            ]
        );
    }

    #[test]
    fn two_byte_elements() {
        // appbits 5; id 1 with 0 bytes, padding, id 200 with 3 bytes.
        let data = [0x01, 0x00, 0x00, 200, 3, 7, 8, 9];
        let block = ExtensionBlock::new(0x1005, &data);
        assert_eq!(block.form(), ExtensionForm::TwoByte { appbits: 5 });
        assert_eq!(collect(block), [el(1, &[]), el(200, &[7, 8, 9])]);
    }

    #[test]
    fn two_byte_truncated() {
        let trailing_id = [0x01, 0x00, 0x00, 0x07];
        assert_eq!(
            collect(ExtensionBlock::new(0x1000, &trailing_id)),
            [
                el(1, &[]),
                Err(RtpError::ExtensionElementTruncated {
                    offset: 3,
                    needed: 2,
                    available: 1
                })
            ]
        );
        let long = [0x09, 0x04, 1, 2];
        assert_eq!(
            collect(ExtensionBlock::new(0x1000, &long)),
            [Err(RtpError::ExtensionElementTruncated {
                offset: 0,
                needed: 6,
                available: 4
            })]
        );
    }

    #[test]
    fn other_profiles_are_opaque() {
        let data = [0x10, 0xaa, 0, 0];
        for profile in [0x0000, 0xBEDF, 0x1010, 0xffff] {
            let block = ExtensionBlock::new(profile, &data);
            assert_eq!(block.form(), ExtensionForm::Opaque);
            assert_eq!(block.elements().next(), None);
            assert_eq!(block.data(), &data);
        }
    }
}
