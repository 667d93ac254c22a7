//! Payload-type rewriting to each receiver's numbering (DESIGN.md,
//! "Transcoding"): a receiver that named its payload types (an SDES leg's
//! `receive.video.codecs[].payload_type`, a WHEP leg's negotiated ones)
//! gets every forwarded copy, the publisher's own packets and renditions
//! alike, under its own payload type for that codec.
//!
//! The control plane works out, per receiving leg, which source SSRCs
//! need another payload type ([`PtMap`], in the snapshot); the fan-out
//! looks the receiver's map up once per copy and rewrites one header byte
//! of the copy before it is protected. Nothing is allocated per packet and
//! the payload is never read, so it holds in E2EE meetings too (the
//! payload type is in the RTP header, outside SFrame).

/// One receiving leg's payload types by source SSRC, for the sources whose
/// payload type differs from the receiver's: sorted by SSRC, so a lookup
/// is a binary search over a handful of entries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PtMap {
    entries: Vec<(u32, u8)>,
}

impl PtMap {
    /// The map of `entries` (source SSRC, the receiver's payload type);
    /// payload types above 127 are dropped, and of two entries for one
    /// SSRC the first is kept.
    pub fn new(entries: impl IntoIterator<Item = (u32, u8)>) -> Self {
        let mut entries: Vec<(u32, u8)> = entries.into_iter().filter(|(_, pt)| *pt < 128).collect();
        entries.sort_by_key(|(ssrc, _)| *ssrc);
        entries.dedup_by_key(|(ssrc, _)| *ssrc);
        Self { entries }
    }

    /// Whether no source needs a rewrite.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The payload type the receiver wants for packets of `source`, when
    /// it differs from the source's own.
    #[inline]
    pub fn payload_type_of(&self, source: u32) -> Option<u8> {
        self.entries
            .binary_search_by_key(&source, |(ssrc, _)| *ssrc)
            .ok()
            .and_then(|at| self.entries.get(at))
            .map(|(_, pt)| *pt)
    }
}

/// Writes payload type `pt` (7 bits) into the plaintext RTP header `rtp`,
/// keeping the marker bit; does nothing to a packet too short to have one.
#[inline]
pub(crate) fn set_payload_type(rtp: &mut [u8], pt: u8) {
    if let Some(b) = rtp.get_mut(1) {
        *b = (*b & 0x80) | (pt & 0x7f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_type_changes_and_the_marker_stays() {
        let mut p = [0x80, 0x80 | 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xaa];
        set_payload_type(&mut p, 120);
        assert_eq!(p[1], 0x80 | 120);
        assert_eq!(p[12], 0xaa, "the payload is untouched");
        let mut q = [0x80, 96];
        set_payload_type(&mut q, 100);
        assert_eq!(q[1], 100);
        set_payload_type(&mut [0x80], 100);
        set_payload_type(&mut [], 100);
    }

    #[test]
    fn lookups_find_the_source_and_only_it() {
        let map = PtMap::new([(30, 120), (10, 100), (20, 200), (10, 101)]);
        assert_eq!(map.payload_type_of(10), Some(100));
        assert_eq!(map.payload_type_of(30), Some(120));
        assert_eq!(map.payload_type_of(20), None, "not a payload type");
        assert_eq!(map.payload_type_of(40), None);
        assert!(PtMap::new([]).is_empty());
    }
}
