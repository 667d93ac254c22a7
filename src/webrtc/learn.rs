//! First-packet SSRC learning for WHIP (RFC 8843 §9.2, RFC 9725): an
//! offer need not announce its SSRCs (`a=ssrc` is optional, and Firefox
//! and munged Chrome offers leave it out), so a stream of a WHIP session
//! can first be seen as RTP with an SSRC no route has. Such a packet,
//! once it authenticated under the session's own SRTP key (the registry
//! checks that before asking here), is mapped to its m-line:
//!
//! 1. by its MID header extension (RFC 8843 §15): the element whose id is
//!    the one the offer's `a=extmap` gave `urn:ietf:params:rtp-hdrext:
//!    sdes:mid`, naming one of the session's m-lines;
//! 2. failing a MID, by payload type, when exactly one m-line uses it.
//!
//! Either way the packet's payload type must be the m-line's codec as
//! answered: a retransmission (RTX), FEC or padding probe carries its own
//! payload type and the MID of the media it repairs, and must never
//! become a stream of its own. An m-line that already has a stream
//! (announced or learned) takes no other: one stream per m-line, as
//! DESIGN.md allows a WHIP session one audio and one video track.
//!
//! Sans-IO: bytes in, a decision out; tested at the bottom.

use crate::relay::MediaKind;
use crate::rtp::RtpHeader;

/// One sending m-line of a WHIP offer, as learning needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedLine {
    /// `a=mid`.
    pub mid: String,
    /// The MID extension's id in this session's packets (0: none).
    pub mid_ext: u8,
    /// Audio or video.
    pub kind: MediaKind,
    /// The answered codec's name, as streams are declared (`opus`, `VP8`, `H264`).
    pub codec: &'static str,
    /// The answered codec's payload type.
    pub payload_type: u8,
    /// Whether the m-line has its stream already.
    pub taken: bool,
}

/// Why a packet taught nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unlearned {
    /// Not a parseable RTP header.
    #[error("not an RTP header")]
    Malformed,
    /// Its MID names no m-line of the session.
    #[error("its MID names no m-line of the session")]
    UnknownMid,
    /// No MID, and no single m-line uses its payload type.
    #[error("no MID, and its payload type is on no m-line or on several")]
    NoLine,
    /// The m-line's codec has another payload type (RTX, FEC, padding).
    #[error("its payload type is not its m-line's codec (a repair stream)")]
    NotMedia,
    /// The m-line has its stream already.
    #[error("its m-line has a stream already")]
    Taken,
}

/// The m-line (index into `lines`) the RTP packet `rtp` (plaintext
/// header) belongs to.
pub fn line_of(lines: &[PublishedLine], rtp: &[u8]) -> Result<usize, Unlearned> {
    let header = RtpHeader::parse(rtp).map_err(|_| Unlearned::Malformed)?;
    let pt = header.payload_type().get();
    let at = match mid_of(lines, &header) {
        Some(mid) => lines
            .iter()
            .position(|l| l.mid.as_bytes() == mid)
            .ok_or(Unlearned::UnknownMid)?,
        None => {
            let mut by_pt = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.payload_type == pt);
            match (by_pt.next(), by_pt.next()) {
                (Some((at, _)), None) => at,
                _ => return Err(Unlearned::NoLine),
            }
        }
    };
    let line = &lines[at];
    if line.payload_type != pt {
        return Err(Unlearned::NotMedia);
    }
    if line.taken {
        return Err(Unlearned::Taken);
    }
    Ok(at)
}

/// The MID element's value, under any of the session's MID extension ids
/// (one per BUNDLE group in practice).
fn mid_of<'a>(lines: &[PublishedLine], header: &RtpHeader<'a>) -> Option<&'a [u8]> {
    let block = header.extension_block()?;
    block
        .elements()
        .map_while(Result::ok)
        .find(|e| e.id != 0 && lines.iter().any(|l| l.mid_ext == e.id))
        .map(|e| e.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<PublishedLine> {
        let line = |mid: &str, kind, codec, payload_type| PublishedLine {
            mid: mid.to_owned(),
            mid_ext: 4,
            kind,
            codec,
            payload_type,
            taken: false,
        };
        vec![
            line("0", MediaKind::Audio, "opus", 111),
            line("1", MediaKind::Video, "VP8", 96),
        ]
    }

    /// An RTP header with payload type `pt`, SSRC `ssrc` and, when given,
    /// a one-byte extension block holding the MID under id 4 (after an
    /// audio-level element under id 1, as Chrome orders them).
    fn rtp(pt: u8, ssrc: u32, mid: Option<&str>) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 9];
        p.extend_from_slice(&ssrc.to_be_bytes());
        if let Some(mid) = mid {
            p[0] |= 0x10;
            let mut elements = vec![0x10, 0x7f];
            elements.push((4 << 4) | (mid.len() as u8 - 1));
            elements.extend_from_slice(mid.as_bytes());
            while !elements.len().is_multiple_of(4) {
                elements.push(0);
            }
            p.extend_from_slice(&[0xBE, 0xDE]);
            p.extend_from_slice(&((elements.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(&elements);
        }
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn the_mid_extension_names_the_m_line() {
        let lines = lines();
        assert_eq!(line_of(&lines, &rtp(111, 7, Some("0"))), Ok(0));
        assert_eq!(line_of(&lines, &rtp(96, 8, Some("1"))), Ok(1));
        assert_eq!(
            line_of(&lines, &rtp(96, 8, Some("9"))),
            Err(Unlearned::UnknownMid)
        );
    }

    /// Chrome's RTX and padding probes carry the video m-line's MID under
    /// their own payload type: never a stream.
    #[test]
    fn a_repair_stream_under_the_media_mid_is_not_learned() {
        assert_eq!(
            line_of(&lines(), &rtp(97, 9, Some("1"))),
            Err(Unlearned::NotMedia)
        );
        // Audio's payload type under video's MID: refused too.
        assert_eq!(
            line_of(&lines(), &rtp(111, 9, Some("1"))),
            Err(Unlearned::NotMedia)
        );
    }

    #[test]
    fn without_a_mid_an_unambiguous_payload_type_decides() {
        let mut lines = lines();
        assert_eq!(line_of(&lines, &rtp(96, 5, None)), Ok(1));
        assert_eq!(line_of(&lines, &rtp(97, 5, None)), Err(Unlearned::NoLine));
        lines[0].payload_type = 96;
        assert_eq!(line_of(&lines, &rtp(96, 5, None)), Err(Unlearned::NoLine));
        // A MID still decides where the payload type cannot.
        assert_eq!(line_of(&lines, &rtp(96, 5, Some("0"))), Ok(0));
    }

    #[test]
    fn a_taken_m_line_and_garbage_teach_nothing() {
        let mut lines = lines();
        lines[1].taken = true;
        assert_eq!(
            line_of(&lines, &rtp(96, 8, Some("1"))),
            Err(Unlearned::Taken)
        );
        assert_eq!(line_of(&lines, &[0x80, 96]), Err(Unlearned::Malformed));
        assert_eq!(line_of(&lines, &[]), Err(Unlearned::Malformed));
    }
}
