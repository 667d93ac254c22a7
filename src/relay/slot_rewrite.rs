//! The header rewrites of WHEP receive slots (DESIGN.md, "WebRTC"): a
//! publisher's packet on its way to a viewer's slot leaves under the
//! slot's SSRC, with its sequence number and timestamp moved by the
//! slot's offsets, and with the slot's mid in its MID extension (RFC 8843
//! §15, the one-byte form of RFC 8285), so the browser demuxes it into the
//! slot's track and sees one continuous stream across switches; and the
//! viewer's feedback (NACK, PLI), which names the slot's SSRC and
//! numbers, reaches the publisher under the publisher's own.
//!
//! Both work on the plaintext in place, before protection, and never
//! touch the payload: in an E2EE meeting the SFrame ciphertext passes
//! byte for byte. Both are bounds-checked on bytes that came from the
//! network and do nothing on what they cannot read.
//!
//! The offsets are the control plane's, computed once per switch
//! (`sluice_webrtc::slots::switch_offsets`): here they are two wrapping
//! additions per packet, no state, no lookup.
//!
//! The SRTP index toward the viewer ([`claim_index`]): the slot's SSRC is
//! protected under the viewer's one key by whichever worker receives the
//! slot's current source (streams are steered to workers by SSRC,
//! `net/steer.rs`), so a switch to a publisher steered elsewhere moves
//! the slot's stream to a worker whose send window for it is fresh, or
//! stale. Left to itself that worker would start at rollover counter 0
//! once the slot's numbers have wrapped (the browser cannot decrypt it)
//! and could seal an index the other worker used (an AES-GCM nonce
//! reused under the viewer's key); a worker restarted after a panic
//! would too. So each slot has a [`SharedSendIndex`] in its
//! [`SlotMap`](super::SlotMap), kept by the control plane for the
//! session's life, and every copy's index is claimed against it before
//! it is protected: the rollover counter continues from the highest
//! index any worker used, and an index is never sealed twice (a late
//! packet of the worker that lost the slot is dropped instead). Why not
//! a rollover counter computed by the control plane at each switch: it
//! would only be as exact as the old source's last position the feed
//! reported, and the old worker may still send a burst under the old
//! offsets before it loads the new snapshot; the shared record is exact
//! and closes that race, for one relaxed load per copy and one
//! uncontended compare-and-swap per block of
//! [`CLAIM_AHEAD`](crate::srtp::CLAIM_AHEAD) copies of the slot's stream.

use std::sync::Arc;

use super::legs::SlotIdx;
use super::{LegId, RoutingSnapshot, SlotEntry, SlotMap};
use crate::crypto::AeadBackend;
use crate::srtp::{SharedSendIndex, SrtpError, SrtpSession};

/// A worker's WHEP slot maps by receiving leg slot, each as it was in
/// the snapshot generation it was looked up in: the fan-out looks a
/// viewer's map up once per snapshot, not once per copy.
#[derive(Debug, Default)]
pub(crate) struct SlotMapCache {
    by_slot: Vec<Option<CachedMap>>,
}

#[derive(Debug)]
struct CachedMap {
    generation: u64,
    leg: LegId,
    map: Option<Arc<SlotMap>>,
}

impl SlotMapCache {
    /// The slot map of `leg` (in worker slot `slot`) in `snapshot`, if it
    /// has one.
    #[inline]
    pub(crate) fn get(
        &mut self,
        slot: SlotIdx,
        leg: LegId,
        snapshot: &RoutingSnapshot,
    ) -> Option<&SlotMap> {
        if self.by_slot.len() <= slot {
            // Once per new slot index (the worker's leg table grew).
            self.by_slot.resize_with(slot + 1, || None);
        }
        let cached = self.by_slot.get_mut(slot)?;
        let fresh = cached
            .as_ref()
            .is_some_and(|c| c.generation == snapshot.generation && c.leg == leg);
        if !fresh {
            *cached = Some(CachedMap {
                generation: snapshot.generation,
                leg,
                map: snapshot.slot_maps.get(&leg).cloned(),
            });
        }
        cached.as_ref()?.map.as_deref()
    }
}

/// RTP header extension profile of the one-byte form (RFC 8285 §4.2).
const ONE_BYTE_PROFILE: u16 = 0xBEDE;

/// Rewrites the plaintext RTP packet `rtp` for `slot`: its SSRC, its
/// sequence number and timestamp (plus the slot's offsets), and the value
/// of its MID extension element when the slot's mid has the same length
/// (the element is then renumbered to the viewer's id). Input shorter
/// than an RTP header is left alone.
#[inline]
pub fn rewrite_header(rtp: &mut [u8], slot: &SlotEntry) {
    let Some(fixed) = rtp.get_mut(..12) else {
        return;
    };
    let seq = u16::from_be_bytes([fixed[2], fixed[3]]).wrapping_add(slot.seq_offset);
    let ts =
        u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]).wrapping_add(slot.ts_offset);
    fixed[2..4].copy_from_slice(&seq.to_be_bytes());
    fixed[4..8].copy_from_slice(&ts.to_be_bytes());
    fixed[8..12].copy_from_slice(&slot.ssrc.to_be_bytes());
    if slot.source_mid_ext == 0 || slot.mid_ext == 0 {
        return;
    }
    rewrite_mid(rtp, slot);
}

/// Claims, on `session` (the viewer's outbound session on this worker),
/// the SRTP index of the copy of the plaintext `rtp` (in its publisher's
/// numbering) that `slot` is about to carry, against the slot's shared
/// send index `shared` (module doc), and records it as used. On `Ok`,
/// rewrite the copy and protect it at that index next
/// ([`BatchItem::with_claimed_index`](crate::srtp::BatchItem::with_claimed_index));
/// on `Err`, drop it. A slot without a shared index is never sent to
/// (fail closed), nor is a packet too short for a header.
#[inline]
pub(crate) fn claim_index<B: AeadBackend>(
    session: &mut SrtpSession<B>,
    rtp: &[u8],
    slot: &SlotEntry,
    shared: Option<&SharedSendIndex>,
) -> Result<u64, SrtpError> {
    let shared = shared.ok_or(SrtpError::IndexReused)?;
    let seq = match rtp.get(2..4) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]).wrapping_add(slot.seq_offset),
        _ => {
            return Err(SrtpError::TooShort {
                needed: 12,
                got: rtp.len(),
            });
        }
    };
    session.claim_shared_index(slot.ssrc, seq, shared)
}

fn rewrite_mid(rtp: &mut [u8], slot: &SlotEntry) -> Option<()> {
    let first = *rtp.first()?;
    if first & 0x10 == 0 {
        return None;
    }
    let ext = 12 + 4 * usize::from(first & 0x0f);
    let profile = u16::from_be_bytes([*rtp.get(ext)?, *rtp.get(ext + 1)?]);
    let words = usize::from(u16::from_be_bytes([*rtp.get(ext + 2)?, *rtp.get(ext + 3)?]));
    if profile != ONE_BYTE_PROFILE {
        return None;
    }
    let (start, end) = (ext + 4, ext + 4 + 4 * words);
    let mid_len = usize::from(slot.mid_len);
    let mut at = start;
    while at < end {
        let b = *rtp.get(at)?;
        if b == 0 {
            at += 1;
            continue;
        }
        let (id, len) = (b >> 4, usize::from(b & 0x0f) + 1);
        if id == 15 {
            return None;
        }
        if id == slot.source_mid_ext {
            if len == mid_len && at + 1 + len <= end {
                let value = rtp.get_mut(at + 1..at + 1 + len)?;
                value.copy_from_slice(slot.mid.get(..len)?);
                *rtp.get_mut(at)? = (slot.mid_ext << 4) | (b & 0x0f);
            }
            return Some(());
        }
        at += 1 + len;
    }
    None
}

/// In a plaintext RTCP compound going to a publisher, replaces every
/// transport or payload-specific feedback packet's media SSRC that names
/// a slot with the SSRC of the publisher stream the slot carries, and in
/// a generic NACK (RFC 4585 §6.2.1) every lost packet id with the
/// publisher's own number (the slot's offset taken off; the bitmask is
/// relative and stays).
pub fn feedback_to_sources(compound: &mut [u8], snapshot: &RoutingSnapshot) {
    let mut at = 0;
    while let Some(head) = compound.get(at..at + 4) {
        let (pt, fmt) = (head[1], head[0] & 0x1f);
        let len = (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1) * 4;
        let Some(packet) = compound.get_mut(at..at + len) else {
            return;
        };
        if matches!(pt, 205 | 206)
            && let Some(media) = packet.get_mut(8..12)
        {
            let ssrc = u32::from_be_bytes([media[0], media[1], media[2], media[3]]);
            if let Some(source) = snapshot.slot_sources.get(&ssrc) {
                media.copy_from_slice(&source.to_be_bytes());
                let nack = pt == 205 && fmt == 1;
                if let (true, Some(&offset)) = (nack, snapshot.slot_seq_offsets.get(&ssrc)) {
                    for fci in packet.get_mut(12..).unwrap_or_default().chunks_exact_mut(4) {
                        let pid = u16::from_be_bytes([fci[0], fci[1]]).wrapping_sub(offset);
                        fci[..2].copy_from_slice(&pid.to_be_bytes());
                    }
                }
            }
        }
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(mid: &[u8]) -> SlotEntry {
        let mut m = [0u8; 8];
        m[..mid.len()].copy_from_slice(mid);
        SlotEntry {
            source: 0x1111_1111,
            ssrc: 0x2222_2222,
            mid: m,
            mid_len: u8::try_from(mid.len()).unwrap(),
            source_mid_ext: 4,
            mid_ext: 9,
            seq_offset: 0,
            ts_offset: 0,
        }
    }

    /// RTP with a one-byte extension block: audio level (id 1, 1 byte),
    /// padding, MID (id 4, "1"), then the payload.
    fn packet() -> Vec<u8> {
        let mut p = vec![0x90, 111, 0, 7, 0, 0, 0, 9, 0x11, 0x11, 0x11, 0x11];
        p.extend([0xBE, 0xDE, 0, 2, 0x10, 0x55, 0x00, 0x40, b'1', 0, 0, 0]);
        p.extend(b"payload");
        p
    }

    #[test]
    fn the_ssrc_and_mid_are_rewritten_and_nothing_else() {
        let mut p = packet();
        rewrite_header(&mut p, &slot(b"3"));
        let mut want = packet();
        want[8..12].copy_from_slice(&[0x22; 4]);
        want[19] = 0x90;
        want[20] = b'3';
        assert_eq!(p, want);
    }

    #[test]
    fn the_offsets_move_the_sequence_number_and_timestamp_wrapping() {
        let mut p = packet();
        let entry = SlotEntry {
            seq_offset: 0xFFFA,
            ts_offset: 0xFFFF_FFF0,
            ..slot(b"3")
        };
        rewrite_header(&mut p, &entry);
        // seq 7 + 0xFFFA wraps to 1; ts 9 - 16 wraps.
        assert_eq!(p[2..4], [0, 1]);
        assert_eq!(p[4..8], 0xFFFF_FFF9u32.to_be_bytes());
        assert_eq!(p[8..12], [0x22; 4]);
        assert_eq!(&p[24..], b"payload", "the payload is never touched");
    }

    #[test]
    fn a_nack_for_a_slot_names_the_publishers_numbers() {
        let mut snapshot = RoutingSnapshot::default();
        snapshot.slot_sources.insert(0x2222_2222, 0x1111_1111);
        snapshot.slot_seq_offsets.insert(0x2222_2222, 100);
        // NACK (FMT 1) with two FCIs: PID 105 / BLP 0x0003, PID 2 / BLP 0.
        let mut c = vec![0x81, 205, 0, 4, 0, 0, 0, 1, 0x22, 0x22, 0x22, 0x22];
        c.extend([0, 105, 0, 3, 0, 2, 0, 0]);
        feedback_to_sources(&mut c, &snapshot);
        assert_eq!(c[8..12], [0x11; 4]);
        assert_eq!(c[12..16], [0, 5, 0, 3]);
        assert_eq!(c[16..18], 2u16.wrapping_sub(100).to_be_bytes());
        assert_eq!(c[18..20], [0, 0]);
    }

    #[test]
    fn a_mid_of_another_length_is_left_and_short_input_never_panics() {
        let mut p = packet();
        rewrite_header(&mut p, &slot(b"12"));
        assert_eq!(p[19..21], [0x40, b'1']);
        assert_eq!(p[8..12], [0x22; 4]);
        for n in 0..packet().len() {
            let mut p = packet();
            p.truncate(n);
            rewrite_header(&mut p, &slot(b"3"));
            // A claimed extension length past the end.
            let mut q = packet();
            q[15] = 200;
            q.truncate(n.max(16));
            rewrite_header(&mut q, &slot(b"3"));
        }
    }

    #[test]
    fn the_slot_map_cache_follows_every_new_snapshot_and_leg() {
        let mut snapshot = RoutingSnapshot {
            generation: 7,
            ..RoutingSnapshot::default()
        };
        let map = |source: u32| {
            Arc::new(SlotMap {
                entries: vec![SlotEntry {
                    source,
                    ..slot(b"1")
                }],
                indices: Vec::new(),
            })
        };
        snapshot.slot_maps.insert(LegId(1), map(10));
        let mut cache = SlotMapCache::default();
        let source = |cache: &mut SlotMapCache, slot, leg, snapshot: &RoutingSnapshot| {
            cache
                .get(slot, LegId(leg), snapshot)
                .map(|m| m.entries[0].source)
        };
        assert_eq!(source(&mut cache, 3, 1, &snapshot), Some(10));
        assert_eq!(source(&mut cache, 0, 2, &snapshot), None, "no map");
        // A switch publishes a new snapshot: the new map is used.
        snapshot.slot_maps.insert(LegId(1), map(20));
        snapshot.generation += 1;
        assert_eq!(source(&mut cache, 3, 1, &snapshot), Some(20));
        // The worker slot now holds another leg (in the same generation
        // only in a test): that leg's map.
        snapshot.slot_maps.insert(LegId(2), map(30));
        assert_eq!(source(&mut cache, 3, 2, &snapshot), Some(30));
        // Within a generation a slot's map is looked up once: the cached
        // one stays.
        snapshot.slot_maps.insert(LegId(2), map(40));
        assert_eq!(source(&mut cache, 3, 2, &snapshot), Some(30), "cached");
    }

    #[test]
    fn feedback_naming_a_slot_names_its_publisher() {
        let mut snapshot = RoutingSnapshot::default();
        snapshot.slot_sources.insert(0x2222_2222, 0x1111_1111);
        // RR (sender only), then a PLI for the slot, then a PLI for another SSRC.
        let mut c = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        c.extend([0x81, 206, 0, 2, 0, 0, 0, 1, 0x22, 0x22, 0x22, 0x22]);
        c.extend([0x81, 206, 0, 2, 0, 0, 0, 1, 0x33, 0x33, 0x33, 0x33]);
        feedback_to_sources(&mut c, &snapshot);
        assert_eq!(c[16..20], [0x11; 4]);
        assert_eq!(c[28..32], [0x33; 4]);
        for n in 0..c.len() {
            feedback_to_sources(&mut c.clone()[..n], &snapshot);
        }
    }
}
