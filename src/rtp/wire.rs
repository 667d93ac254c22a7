//! Big-endian reads and a bounds-checked writer shared by the RTP and RTCP
//! code (network byte order, RFC 3550 §4). Nothing here can panic: reads
//! past the end return `None`, writes past the end are counted, not made.

/// The big-endian `u16` at `at`, if `buf` holds it.
pub(crate) fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    buf.get(at..)?.first_chunk().map(|b| u16::from_be_bytes(*b))
}

/// The big-endian `u32` at `at`, if `buf` holds it.
pub(crate) fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..)?.first_chunk().map(|b| u32::from_be_bytes(*b))
}

/// Reads big-endian fields front to back; every read is `None` once the
/// bytes run out, so a view checks its length once and reads with `?`.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<&'a [u8; N]> {
        let (head, rest) = self.rest.split_first_chunk()?;
        self.rest = rest;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|b| b[0])
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(|b| u32::from_be_bytes(*b))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(|b| u64::from_be_bytes(*b))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }

    /// What has not been read yet.
    pub(crate) const fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

/// Writes sequentially into a caller buffer. Writes that do not fit are
/// skipped but still advance the position, so after writing a whole packet
/// [`Writer::finish`] knows exactly how many bytes the packet needed.
/// Running it over an empty buffer measures a packet without writing it.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut [u8]) -> Self {
        Self { out, pos: 0 }
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self
            .out
            .get_mut(self.pos..)
            .and_then(|rest| rest.get_mut(..bytes.len()))
        {
            dst.copy_from_slice(bytes);
        }
        self.pos = self.pos.saturating_add(bytes.len());
    }

    pub(crate) fn put_u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    pub(crate) fn put_u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    pub(crate) fn put_u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    pub(crate) fn put_zeros(&mut self, n: usize) {
        for _ in 0..n {
            self.put_u8(0);
        }
    }

    /// Bytes written (or that would have been) so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// `Ok(len)` when everything fit, else `Err((needed, got))`.
    pub(crate) fn finish(self) -> Result<usize, (usize, usize)> {
        if self.pos <= self.out.len() {
            Ok(self.pos)
        } else {
            Err((self.pos, self.out.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stay_in_bounds() {
        let b = [0x12, 0x34, 0x56, 0x78, 0x9a];
        assert_eq!(read_u16(&b, 0), Some(0x1234));
        assert_eq!(read_u16(&b, 3), Some(0x789a));
        assert_eq!(read_u16(&b, 4), None);
        assert_eq!(read_u16(&b, usize::MAX), None);
        assert_eq!(read_u32(&b, 1), Some(0x3456_789a));
        assert_eq!(read_u32(&b, 2), None);
        assert_eq!(read_u32(&b, usize::MAX), None);
    }

    #[test]
    fn reader_stops_at_the_end() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let mut r = Reader::new(&b);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u32(), Some(0x0203_0405));
        assert_eq!(r.u64(), None);
        assert_eq!(r.bytes(2), Some(&[6, 7][..]));
        assert_eq!(r.array::<2>(), Some(&[8, 9]));
        assert_eq!(r.bytes(6), None);
        assert_eq!(r.rest(), &[10, 11, 12]);
    }

    #[test]
    fn writer_counts_past_the_end() {
        let mut out = [0u8; 3];
        let mut w = Writer::new(&mut out);
        w.put_u16(0xabcd);
        w.put_u16(0x1122);
        w.put_u8(7);
        assert_eq!(w.pos(), 5);
        assert_eq!(w.finish(), Err((5, 3)));
        assert_eq!(out, [0xab, 0xcd, 0]);

        let mut out = [0xffu8; 6];
        let mut w = Writer::new(&mut out);
        w.put_u32(0x0102_0304);
        w.put_zeros(2);
        assert_eq!(w.finish(), Ok(6));
        assert_eq!(out, [1, 2, 3, 4, 0, 0]);
    }
}
