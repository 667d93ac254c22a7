//! Source description packets (SDES, PT 202, RFC 3550 §6.5): chunks of
//! items, each chunk ended by null octets up to a 32-bit boundary.

use super::{RtcpError, SOURCE_DESCRIPTION};
use crate::rtp::types::Ssrc;
use crate::rtp::wire::Reader;

/// An SDES packet. Every chunk and item was bounds-checked when it was
/// parsed, so the iterators below yield plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdes<'a> {
    count: u8,
    body: &'a [u8],
}

/// One chunk: a source and its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: Ssrc,
    items: &'a [u8],
}

/// One SDES item: its type (see the associated constants) and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    pub item_type: u8,
    pub value: &'a [u8],
}

impl SdesItem<'_> {
    pub const CNAME: u8 = 1;
    pub const NAME: u8 = 2;
    pub const EMAIL: u8 = 3;
    pub const PHONE: u8 = 4;
    pub const LOC: u8 = 5;
    pub const TOOL: u8 = 6;
    pub const NOTE: u8 = 7;
    pub const PRIV: u8 = 8;
}

/// Splits the chunk at the start of `buf` from what follows it, or says
/// how many bytes of `buf` it needed.
fn split_chunk(buf: &[u8]) -> Result<(SdesChunk<'_>, &[u8]), usize> {
    let mut r = Reader::new(buf);
    let ssrc = Ssrc(r.u32().ok_or(4usize)?);
    let items_start = buf.len() - r.rest().len();
    loop {
        let at = buf.len() - r.rest().len();
        let item_type = r.u8().ok_or(at + 1)?;
        if item_type == 0 {
            // The null item ends the list; more nulls pad to 32 bits.
            let end = (at + 1).next_multiple_of(4);
            let items = buf.get(items_start..at).ok_or(at)?;
            let rest = buf.get(end..).ok_or(end)?;
            return Ok((SdesChunk { ssrc, items }, rest));
        }
        let len = usize::from(r.u8().ok_or(at + 2)?);
        r.bytes(len).ok_or(at + 2 + len)?;
    }
}

impl<'a> Sdes<'a> {
    /// Reads an SDES body (after the common header) of `count` chunks.
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let mut rest = body;
        for _ in 0..count {
            let offset = body.len() - rest.len();
            rest = match split_chunk(rest) {
                Ok((_, rest)) => rest,
                Err(needed) => {
                    return Err(RtcpError::BodyTooShort {
                        packet_type: SOURCE_DESCRIPTION,
                        needed: offset + needed,
                        got: body.len(),
                    });
                }
            };
        }
        Ok(Self { count, body })
    }

    #[must_use]
    pub fn chunks(&self) -> SdesChunks<'a> {
        SdesChunks {
            rest: self.body,
            remaining: self.count,
        }
    }
}

/// Iterator over the chunks of an [`Sdes`].
#[derive(Debug, Clone)]
pub struct SdesChunks<'a> {
    rest: &'a [u8],
    remaining: u8,
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = SdesChunk<'a>;

    fn next(&mut self) -> Option<SdesChunk<'a>> {
        self.remaining = self.remaining.checked_sub(1)?;
        // Sdes::parse checked every chunk; on a miss just end.
        let (chunk, rest) = split_chunk(self.rest).ok()?;
        self.rest = rest;
        Some(chunk)
    }
}

impl<'a> SdesChunk<'a> {
    #[must_use]
    pub fn items(&self) -> SdesItems<'a> {
        SdesItems {
            reader: Reader::new(self.items),
        }
    }

    /// The value of the chunk's first CNAME item.
    #[must_use]
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items()
            .find(|i| i.item_type == SdesItem::CNAME)
            .map(|i| i.value)
    }
}

/// Iterator over the items of an [`SdesChunk`].
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = SdesItem<'a>;

    fn next(&mut self) -> Option<SdesItem<'a>> {
        let item_type = self.reader.u8()?;
        let len = self.reader.u8()?;
        let value = self.reader.bytes(usize::from(len))?;
        Some(SdesItem { item_type, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(chunk: &SdesChunk<'_>) -> Vec<(u8, Vec<u8>)> {
        chunk
            .items()
            .map(|i| (i.item_type, i.value.to_vec()))
            .collect()
    }

    #[test]
    fn two_chunks() {
        let body = [
            0x00, 0x00, 0x00, 0x01, // SSRC 1
            0x01, 0x03, b'a', b'b', b'c', // CNAME "abc"
            0x06, 0x02, b'g', b's', // TOOL "gs"
            0x00, 0x00, 0x00, // end of list, padded to 16 bytes
            0x00, 0x00, 0x00, 0x02, // CSRC 2
            0x00, 0x00, 0x00, 0x00, // no items: one null and 3 padding
        ];
        let sdes = Sdes::parse(2, &body).unwrap();
        let chunks: Vec<_> = sdes.chunks().collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].ssrc, Ssrc(1));
        assert_eq!(
            items(&chunks[0]),
            [(1, b"abc".to_vec()), (6, b"gs".to_vec())]
        );
        assert_eq!(chunks[0].cname(), Some(&b"abc"[..]));
        assert_eq!(chunks[1].ssrc, Ssrc(2));
        assert_eq!(items(&chunks[1]), []);
        assert_eq!(chunks[1].cname(), None);
    }

    #[test]
    fn terminator_on_the_word_boundary() {
        // SSRC, CNAME of 2 bytes ends at 8; the null at 8 pads to 12.
        let body = [0, 0, 0, 7, 1, 2, b'h', b'i', 0, 0, 0, 0];
        let sdes = Sdes::parse(1, &body).unwrap();
        let chunk = sdes.chunks().next().unwrap();
        assert_eq!(items(&chunk), [(1, b"hi".to_vec())]);
        // Without the padding after the null octet the chunk is short.
        assert_eq!(
            Sdes::parse(1, &body[..9]),
            Err(RtcpError::BodyTooShort {
                packet_type: 202,
                needed: 12,
                got: 9
            })
        );
    }

    #[test]
    fn malformed_chunks() {
        let short = |needed, got| RtcpError::BodyTooShort {
            packet_type: 202,
            needed,
            got,
        };
        // No room for the SSRC.
        assert_eq!(Sdes::parse(1, &[0, 0]), Err(short(4, 2)));
        // Item length runs past the body.
        assert_eq!(
            Sdes::parse(1, &[0, 0, 0, 1, 1, 9, b'a', b'b']),
            Err(short(15, 8))
        );
        // Item type with no length byte.
        assert_eq!(Sdes::parse(1, &[0, 0, 0, 1, 1]), Err(short(6, 5)));
        // No terminating null.
        assert_eq!(
            Sdes::parse(1, &[0, 0, 0, 1, 1, 2, b'a', b'b']),
            Err(short(9, 8))
        );
        // Count says two chunks, body holds one.
        assert_eq!(Sdes::parse(2, &[0, 0, 0, 1, 0, 0, 0, 0]), Err(short(12, 8)));
        // Zero chunks is fine.
        assert_eq!(Sdes::parse(0, &[]).unwrap().chunks().count(), 0);
    }
}
