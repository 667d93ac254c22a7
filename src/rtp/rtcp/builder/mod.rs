//! RTCP builders: each describes one packet with public fields and writes
//! it, common header included (RFC 3550 §6.4.1), to the start of a caller
//! buffer, returning the bytes written. To build a compound packet, write
//! one after another into the rest of the buffer. On error the buffer may
//! hold a partial packet.

mod bye;
mod feedback;
mod report;

pub use bye::ByeBuilder;
pub use feedback::{FirBuilder, NackBuilder, PliBuilder, RembBuilder};
pub use report::{ReceiverReportBuilder, SenderReportBuilder};

use super::RtcpError;
use crate::rtp::wire::Writer;

/// Most entries a 5-bit count field holds.
const MAX_COUNT: usize = 31;

/// The 5-bit count field for `n` entries.
fn count_field(n: usize) -> Result<u8, RtcpError> {
    match u8::try_from(n) {
        Ok(count) if n <= MAX_COUNT => Ok(count),
        _ => Err(RtcpError::TooManyEntries {
            max: MAX_COUNT,
            got: n,
        }),
    }
}

/// Writes a common header (no padding) for a body of `body_len` bytes,
/// which the caller keeps to a multiple of 4.
fn put_header(
    w: &mut Writer<'_>,
    count: u8,
    packet_type: u8,
    body_len: usize,
) -> Result<(), RtcpError> {
    // The length field is the packet's 32-bit words minus one: the body's.
    let words = u16::try_from(body_len / 4).map_err(|_| RtcpError::TooLong {
        len: body_len.saturating_add(4),
    })?;
    w.put_u8(0x80 | (count & 0x1f));
    w.put_u8(packet_type);
    w.put_u16(words);
    Ok(())
}

fn finish(w: Writer<'_>) -> Result<usize, RtcpError> {
    w.finish()
        .map_err(|(needed, got)| RtcpError::BufferTooSmall { needed, got })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_field_is_five_bits() {
        assert_eq!(count_field(0), Ok(0));
        assert_eq!(count_field(31), Ok(31));
        assert_eq!(
            count_field(32),
            Err(RtcpError::TooManyEntries { max: 31, got: 32 })
        );
        assert_eq!(
            count_field(300),
            Err(RtcpError::TooManyEntries { max: 31, got: 300 })
        );
    }

    #[test]
    fn header_length_field() {
        let mut out = [0u8; 4];
        let mut w = Writer::new(&mut out);
        put_header(&mut w, 1, 201, 28).unwrap();
        assert_eq!(finish(w), Ok(4));
        assert_eq!(out, [0x81, 201, 0, 7]);
        let mut w = Writer::new(&mut []);
        assert_eq!(
            put_header(&mut w, 0, 205, 4 * 65536),
            Err(RtcpError::TooLong { len: 4 * 65536 + 4 })
        );
        assert!(put_header(&mut w, 0, 205, 4 * 65535).is_ok());
        assert_eq!(
            finish(w),
            Err(RtcpError::BufferTooSmall { needed: 4, got: 0 })
        );
    }
}
