//! Writing header extension blocks for the builder: RFC 3550 §5.3.1
//! blocks holding RFC 8285 one-byte (§4.2) or two-byte (§4.3) elements,
//! zero-padded to 32 bits.

use crate::rtp::error::RtpError;
use crate::rtp::extension::{ExtensionForm, ONE_BYTE_PROFILE, TWO_BYTE_PROFILE};
use crate::rtp::wire::Writer;

/// The forms the builder writes elements in (appbits always 0).
const ONE_BYTE: ExtensionForm = ExtensionForm::OneByte;
const TWO_BYTE: ExtensionForm = ExtensionForm::TwoByte { appbits: 0 };

/// What the RTP builder puts in the header extension.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ExtensionSpec<'a> {
    OneByte(&'a [(u8, &'a [u8])]),
    TwoByte(&'a [(u8, &'a [u8])]),
    Raw { profile: u16, data: &'a [u8] },
}

impl ExtensionSpec<'_> {
    /// Bytes of extension data (after the 4-byte extension header),
    /// padded to 32 bits, after checking every element fits its form.
    pub(crate) fn data_len(&self) -> Result<usize, RtpError> {
        let len = match *self {
            Self::Raw { data, .. } => {
                if data.len() % 4 != 0 {
                    return Err(RtpError::BadExtensionBlockLength { len: data.len() });
                }
                data.len()
            }
            Self::OneByte(elements) => elements.iter().try_fold(0usize, |sum, &(id, data)| {
                if !(1..=14).contains(&id) {
                    return Err(RtpError::BadExtensionId { id, form: ONE_BYTE });
                }
                if !(1..=16).contains(&data.len()) {
                    let len = data.len();
                    return Err(RtpError::BadExtensionLength {
                        id,
                        len,
                        form: ONE_BYTE,
                    });
                }
                Ok(sum.saturating_add(1 + data.len()))
            })?,
            Self::TwoByte(elements) => elements.iter().try_fold(0usize, |sum, &(id, data)| {
                if id == 0 {
                    return Err(RtpError::BadExtensionId { id, form: TWO_BYTE });
                }
                if data.len() > 255 {
                    let len = data.len();
                    return Err(RtpError::BadExtensionLength {
                        id,
                        len,
                        form: TWO_BYTE,
                    });
                }
                Ok(sum.saturating_add(2 + data.len()))
            })?,
        };
        match len.checked_next_multiple_of(4) {
            Some(padded) if padded / 4 <= usize::from(u16::MAX) => Ok(padded),
            _ => Err(RtpError::BadExtensionBlockLength { len }),
        }
    }

    /// Writes the extension header and data, zero-padded to 32 bits.
    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), RtpError> {
        let len = self.data_len()?;
        let words =
            u16::try_from(len / 4).map_err(|_| RtpError::BadExtensionBlockLength { len })?;
        let start = w.pos();
        match *self {
            Self::Raw { profile, data } => {
                w.put_u16(profile);
                w.put_u16(words);
                w.put(data);
            }
            Self::OneByte(elements) => {
                w.put_u16(ONE_BYTE_PROFILE);
                w.put_u16(words);
                for &(id, data) in elements {
                    // data_len checked 1..=16 bytes, so len - 1 fits 4 bits.
                    w.put_u8((id << 4) | (data.len() - 1) as u8);
                    w.put(data);
                }
            }
            Self::TwoByte(elements) => {
                w.put_u16(TWO_BYTE_PROFILE);
                w.put_u16(words);
                for &(id, data) in elements {
                    w.put_u8(id);
                    // data_len checked at most 255 bytes.
                    w.put_u8(data.len() as u8);
                    w.put(data);
                }
            }
        }
        let written = w.pos() - start;
        w.put_zeros((4 + len).saturating_sub(written));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_rejects_what_the_form_cannot_carry() {
        let cases: [(ExtensionSpec<'_>, RtpError); 6] = [
            (
                ExtensionSpec::OneByte(&[(0, &[1])]),
                RtpError::BadExtensionId {
                    id: 0,
                    form: ONE_BYTE,
                },
            ),
            (
                ExtensionSpec::OneByte(&[(15, &[1])]),
                RtpError::BadExtensionId {
                    id: 15,
                    form: ONE_BYTE,
                },
            ),
            (
                ExtensionSpec::OneByte(&[(1, &[])]),
                RtpError::BadExtensionLength {
                    id: 1,
                    len: 0,
                    form: ONE_BYTE,
                },
            ),
            (
                ExtensionSpec::OneByte(&[(1, &[0; 17])]),
                RtpError::BadExtensionLength {
                    id: 1,
                    len: 17,
                    form: ONE_BYTE,
                },
            ),
            (
                ExtensionSpec::TwoByte(&[(0, &[])]),
                RtpError::BadExtensionId {
                    id: 0,
                    form: TWO_BYTE,
                },
            ),
            (
                ExtensionSpec::TwoByte(&[(9, &[0; 256])]),
                RtpError::BadExtensionLength {
                    id: 9,
                    len: 256,
                    form: TWO_BYTE,
                },
            ),
        ];
        for (spec, err) in cases {
            assert_eq!(spec.data_len(), Err(err));
        }
        let raw = ExtensionSpec::Raw {
            profile: 1,
            data: &[0; 3],
        };
        assert_eq!(
            raw.data_len(),
            Err(RtpError::BadExtensionBlockLength { len: 3 })
        );
        let huge = [0u8; 4 * 65536];
        let raw = ExtensionSpec::Raw {
            profile: 1,
            data: &huge,
        };
        assert_eq!(
            raw.data_len(),
            Err(RtpError::BadExtensionBlockLength { len: huge.len() })
        );
    }

    #[test]
    fn spec_writes_padded_elements() {
        let mut out = [0xffu8; 12];
        let mut w = Writer::new(&mut out);
        ExtensionSpec::OneByte(&[(1, &[0xaa]), (2, &[0xbb, 0xcc])])
            .write(&mut w)
            .unwrap();
        assert_eq!(w.finish(), Ok(12));
        assert_eq!(
            out,
            [0xbe, 0xde, 0, 2, 0x10, 0xaa, 0x21, 0xbb, 0xcc, 0, 0, 0]
        );
    }
}
