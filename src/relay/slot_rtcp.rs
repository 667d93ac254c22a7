//! What a WHEP viewer gets of a publisher's RTCP (RFC 3550 §6.4.1, §6.5):
//! its sender reports and SDES rewritten like its RTP (`slot_rewrite.rs`),
//! so the browser maps the slot's RTP timestamps to wall-clock time (lip
//! sync within a slot) under the slot's own SSRC and CNAME.
//!
//! - SR about a stream that fills one of the viewer's slots: its sender
//!   SSRC becomes the slot's, its RTP timestamp moves by the slot's
//!   `ts_offset` (so the NTP↔RTP pair matches the rewritten packets), the
//!   NTP time and the packet and octet counts stay. Its report blocks
//!   and profile extensions are dropped: they are about streams the
//!   publisher receives, which the viewer knows under other SSRCs or not
//!   at all. An SR about a stream that fills no slot of the viewer is
//!   not sent to it.
//! - SDES: one chunk per chunk about a stream that fills a slot, naming
//!   the slot's SSRC with the CNAME the WHEP answer declared for it
//!   ([`SLOT_CNAME`]); the publisher's own CNAME and other items are not
//!   passed on (a slot's CNAME must not change when its source does).
//! - Anything else (BYE above all: a publisher leaving must not end a
//!   slot's track, which goes on with the next publisher) is not sent.
//!
//! Only a stream of the leg that sent the report counts (`owns`): an SR
//! naming another publisher's SSRC is not passed on as that slot's.
//!
//! The output is written into the caller's buffer (the SRTCP packet being
//! built), no allocation; input is bounds-checked and anything malformed
//! is dropped, never a panic (`fuzz/fuzz_targets/slot_rtcp.rs`).

use sluice_webrtc::sdp::SLOT_CNAME;

use super::SlotMap;

const SR: u8 = 200;
const SDES: u8 = 202;
/// An SR without report blocks: header, sender SSRC, sender info.
const SR_LEN: usize = 28;
/// SDES item type of a CNAME.
const CNAME: u8 = 1;

/// Writes into `out` what the viewer whose slots are `map` gets of the
/// plaintext RTCP packet `part` (one packet of a compound, from a leg
/// that publishes the SSRCs for which `owns` holds); returns its length
/// (0: nothing, including when `out` is too small).
pub fn rtcp_for_viewer(
    part: &[u8],
    map: &SlotMap,
    owns: impl Fn(u32) -> bool,
    out: &mut [u8],
) -> usize {
    let Some(&[first, packet_type, hi, lo]) = part.get(..4) else {
        return 0;
    };
    if first >> 6 != 2 {
        return 0;
    }
    let declared = (usize::from(u16::from_be_bytes([hi, lo])) + 1) * 4;
    let Some(part) = part.get(..declared) else {
        return 0;
    };
    let written = match packet_type {
        SR => sender_report(part, map, &owns, out),
        SDES => sdes(part, first & 0x1f, map, &owns, out),
        _ => None,
    };
    written.unwrap_or(0)
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn sender_report(
    part: &[u8],
    map: &SlotMap,
    owns: &impl Fn(u32) -> bool,
    out: &mut [u8],
) -> Option<usize> {
    let info = part.get(..SR_LEN)?;
    let sender = be32(info, 4)?;
    if !owns(sender) {
        return None;
    }
    let slot = map.slot_of(sender)?;
    let rtp_ts = be32(info, 16)?.wrapping_add(slot.ts_offset);
    let into = out.get_mut(..SR_LEN)?;
    // V=2, no padding, no report blocks; 7 words, length 6.
    into[..4].copy_from_slice(&[0x80, SR, 0, 6]);
    into[4..8].copy_from_slice(&slot.ssrc.to_be_bytes());
    into[8..16].copy_from_slice(&info[8..16]);
    into[16..20].copy_from_slice(&rtp_ts.to_be_bytes());
    into[20..28].copy_from_slice(&info[20..28]);
    Some(SR_LEN)
}

/// One output chunk: SSRC, the CNAME item, the end item, padded to a word.
fn chunk_len() -> usize {
    (4 + 2 + SLOT_CNAME.len() + 1).next_multiple_of(4)
}

fn sdes(
    part: &[u8],
    count: u8,
    map: &SlotMap,
    owns: &impl Fn(u32) -> bool,
    out: &mut [u8],
) -> Option<usize> {
    let cname = SLOT_CNAME.as_bytes();
    let cname_len = u8::try_from(cname.len()).ok()?;
    let mut at = 4;
    let mut len = 4;
    let mut chunks = 0u8;
    for _ in 0..count {
        let ssrc = be32(part, at)?;
        at += 4;
        // Items up to the end item, then padding to the next word.
        loop {
            match *part.get(at)? {
                0 => {
                    at = (at + 1).next_multiple_of(4);
                    break;
                }
                _ => at += 2 + usize::from(*part.get(at + 1)?),
            }
        }
        if at > part.len() {
            return None;
        }
        let Some(slot) = map.slot_of(ssrc).filter(|_| owns(ssrc)) else {
            continue;
        };
        let into = out.get_mut(len..len + chunk_len())?;
        into.fill(0);
        into[..4].copy_from_slice(&slot.ssrc.to_be_bytes());
        into[4] = CNAME;
        into[5] = cname_len;
        into[6..6 + cname.len()].copy_from_slice(cname);
        len += chunk_len();
        chunks += 1;
    }
    if chunks == 0 {
        return None;
    }
    let words = u16::try_from(len / 4 - 1).ok()?;
    let head = out.get_mut(..4)?;
    head[0] = 0x80 | chunks;
    head[1] = SDES;
    head[2..4].copy_from_slice(&words.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::relay::SlotEntry;
    use crate::rtp::{RtcpCompound, RtcpPacket};

    const ANN_AUDIO: u32 = 0xA1;
    const ANN_VIDEO: u32 = 0xA2;
    const SLOT: u32 = 0x5107;

    /// The viewer's one slot carries ann's video, its timestamps moved by
    /// 1,000,000.
    fn map() -> SlotMap {
        SlotMap {
            entries: vec![SlotEntry {
                source: ANN_VIDEO,
                ssrc: SLOT,
                mid: [0; 8],
                mid_len: 0,
                source_mid_ext: 0,
                mid_ext: 0,
                seq_offset: 77,
                ts_offset: 1_000_000,
            }],
            indices: vec![(SLOT, Arc::default())],
        }
    }

    fn ann(ssrc: u32) -> bool {
        ssrc == ANN_AUDIO || ssrc == ANN_VIDEO
    }

    /// An SR from `ssrc` at NTP 0x11..., RTP ts `ts`, with one report block.
    fn sr(ssrc: u32, ts: u32) -> Vec<u8> {
        let mut p = vec![0x81, 200, 0, 12];
        p.extend(ssrc.to_be_bytes());
        p.extend([0x11; 8]);
        p.extend(ts.to_be_bytes());
        p.extend(42u32.to_be_bytes());
        p.extend(4200u32.to_be_bytes());
        p.extend([0xEE; 24]);
        p
    }

    /// An SDES with a chunk per SSRC: a 16-byte CNAME and a NAME.
    fn sdes_of(ssrcs: &[u32]) -> Vec<u8> {
        let mut body = Vec::new();
        for ssrc in ssrcs {
            body.extend(ssrc.to_be_bytes());
            body.extend([1, 16]);
            body.extend(b"0123456789abcdef");
            body.extend([2, 3]);
            body.extend(b"ann");
            body.push(0);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut p = vec![0x80 | ssrcs.len() as u8, 202];
        p.extend(((body.len() / 4) as u16).to_be_bytes());
        p.extend(body);
        p
    }

    fn rewrite(part: &[u8]) -> Vec<u8> {
        let mut out = [0u8; 512];
        let n = rtcp_for_viewer(part, &map(), ann, &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn an_sr_of_a_slots_source_names_the_slot_and_its_timestamp() {
        let out = rewrite(&sr(ANN_VIDEO, 5_000));
        let mut want = vec![0x80, 200, 0, 6];
        want.extend(SLOT.to_be_bytes());
        want.extend([0x11; 8]);
        want.extend(1_005_000u32.to_be_bytes());
        want.extend(42u32.to_be_bytes());
        want.extend(4200u32.to_be_bytes());
        assert_eq!(out, want, "report blocks dropped, the rest kept");
        // It is an SR a parser takes, with no report blocks.
        let parsed: Vec<_> = RtcpCompound::new(&out).collect();
        assert!(matches!(parsed[..], [Ok(RtcpPacket::SenderReport(_))]));
        // Wrapping.
        let out = rewrite(&sr(ANN_VIDEO, u32::MAX));
        assert_eq!(out[16..20], 999_999u32.to_be_bytes());
    }

    #[test]
    fn an_sr_of_a_stream_in_no_slot_or_of_someone_else_is_not_sent() {
        assert!(rewrite(&sr(ANN_AUDIO, 1)).is_empty(), "fills no slot");
        let mut out = [0u8; 64];
        let not_hers = |_| false;
        assert_eq!(
            rtcp_for_viewer(&sr(ANN_VIDEO, 1), &map(), not_hers, &mut out),
            0
        );
        // BYE (and anything else) is never passed on.
        let bye = [0x81, 203, 0, 1, 0, 0, 0, ANN_VIDEO as u8];
        assert!(rewrite(&bye).is_empty());
    }

    #[test]
    fn sdes_keeps_the_slots_chunks_under_the_declared_cname() {
        let out = rewrite(&sdes_of(&[ANN_AUDIO, ANN_VIDEO]));
        let mut want = vec![0x81, 202, 0, 4];
        want.extend(SLOT.to_be_bytes());
        want.extend([1, 6]);
        want.extend(SLOT_CNAME.as_bytes());
        want.extend([0, 0, 0, 0]);
        assert_eq!(out, want);
        let parsed: Vec<_> = RtcpCompound::new(&out).collect();
        assert!(
            matches!(parsed[..], [Ok(RtcpPacket::Sdes(_))]),
            "{parsed:?}"
        );
        assert!(rewrite(&sdes_of(&[ANN_AUDIO])).is_empty());
    }

    #[test]
    fn malformed_input_or_a_short_buffer_never_panics_and_yields_nothing() {
        let parts = [sr(ANN_VIDEO, 9), sdes_of(&[ANN_VIDEO, ANN_AUDIO])];
        for part in &parts {
            for n in 0..part.len() {
                // Truncated: its length field claims more than is there.
                assert!(rewrite(&part[..n]).is_empty(), "{n}");
            }
            let full = rewrite(part).len();
            assert!(full > 0);
            for n in 0..full {
                let mut out = vec![0u8; n];
                assert_eq!(rtcp_for_viewer(part, &map(), ann, &mut out), 0, "room {n}");
            }
            // Every byte flipped, one at a time.
            for i in 0..part.len() {
                let mut bad = part.clone();
                bad[i] ^= 0xFF;
                let _ = rewrite(&bad);
            }
        }
        // An SDES whose chunk count exceeds its chunks, or whose item runs
        // past its end.
        let mut many = sdes_of(&[ANN_VIDEO]);
        many[0] = 0x9F;
        assert!(rewrite(&many).is_empty());
        let mut long = sdes_of(&[ANN_VIDEO]);
        long[9] = 200;
        assert!(rewrite(&long).is_empty());
        // A version other than 2.
        let mut v1 = sr(ANN_VIDEO, 9);
        v1[0] = 0x41;
        assert!(rewrite(&v1).is_empty());
    }
}
