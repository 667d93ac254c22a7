//! Round trips: every form the builder writes (CSRCs, one-byte, two-byte
//! and raw header extensions, padding) parses back to the same fields.

use core::num::NonZeroU8;

use crate::rtp::extension::ExtensionElement;
use crate::rtp::packet::RtpPacket;
use crate::rtp::{PayloadType, RtpBuilder, RtpError, SeqNum, Ssrc};

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
fn round_trip_csrcs() {
    let csrcs = [Ssrc(7), Ssrc(8), Ssrc(u32::MAX)];
    let b = base()
        .csrcs(csrcs)
        .sequence(SeqNum(5))
        .timestamp(9)
        .ssrc(Ssrc(1));
    assert_eq!(b.header_len(), Ok(24));
    let mut out = [0u8; 64];
    let n = b.payload_type(pt(0)).write(b"abc", &mut out).unwrap();
    let p = RtpPacket::parse(&out[..n]).unwrap();
    let h = p.header();
    assert!(h.csrcs().eq(csrcs));
    assert_eq!(
        (h.sequence(), h.timestamp(), h.ssrc()),
        (SeqNum(5), 9, Ssrc(1))
    );
    assert_eq!(h.payload_type(), pt(0));
    assert!(!h.marker() && !h.padding() && !h.extension());
    assert_eq!(p.payload(), b"abc");
}

#[test]
fn round_trip_one_byte_extension() {
    let elements: [(u8, &[u8]); 2] = [(1, &[0x42]), (14, &[9; 16])];
    let b = base().one_byte_extensions(&elements);
    // 1+1 + 1+16 = 19 bytes, padded to 20, plus the 4-byte ext header.
    assert_eq!(b.header_len(), Ok(12 + 4 + 20));
    let mut out = [0u8; 64];
    let n = b.write(&[1, 2, 3], &mut out).unwrap();
    let p = RtpPacket::parse(&out[..n]).unwrap();
    let ext = p.header().extension_block().unwrap();
    assert_eq!(ext.profile(), 0xBEDE);
    let got: Vec<_> = ext.elements().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        got,
        [
            ExtensionElement {
                id: 1,
                data: &[0x42]
            },
            ExtensionElement {
                id: 14,
                data: &[9; 16]
            }
        ]
    );
    assert_eq!(p.payload(), &[1, 2, 3]);
}

#[test]
fn round_trip_two_byte_extension() {
    let big = [7u8; 255];
    let elements: [(u8, &[u8]); 3] = [(1, &[]), (255, &big), (16, &[1, 2])];
    let mut out = [0u8; 400];
    let n = base()
        .two_byte_extensions(&elements)
        .write(&[], &mut out)
        .unwrap();
    let p = RtpPacket::parse(&out[..n]).unwrap();
    let ext = p.header().extension_block().unwrap();
    assert_eq!(ext.profile(), 0x1000);
    let got: Vec<_> = ext.elements().map(|e| e.map(|e| (e.id, e.data))).collect();
    assert_eq!(
        got,
        [Ok((1, &[][..])), Ok((255, &big[..])), Ok((16, &[1, 2][..]))]
    );
    assert!(p.payload().is_empty());
}

#[test]
fn round_trip_raw_extension() {
    let data = [1, 2, 3, 4, 5, 6, 7, 8];
    let mut out = [0u8; 64];
    let n = base()
        .raw_extension(0xabcd, &data)
        .write(&[], &mut out)
        .unwrap();
    let ext = RtpPacket::parse(&out[..n])
        .unwrap()
        .header()
        .extension_block()
        .unwrap();
    assert_eq!((ext.profile(), ext.data()), (0xabcd, &data[..]));
}

#[test]
fn round_trip_padding() {
    let mut out = [0u8; 64];
    // 12 + 5 = 17 bytes, padded to 20.
    let n = base()
        .pad_to_multiple_of(nz(4))
        .write(&[1; 5], &mut out)
        .unwrap();
    assert_eq!(n, 20);
    assert_eq!(out[17..20], [0, 0, 3]);
    let p = RtpPacket::parse(&out[..n]).unwrap();
    assert!(p.header().padding());
    assert_eq!((p.payload(), p.padding_len()), (&[1; 5][..], 3));
    // Already aligned: no padding, no P bit.
    let n = base()
        .pad_to_multiple_of(nz(4))
        .write(&[1; 4], &mut out)
        .unwrap();
    assert_eq!(n, 16);
    assert!(!RtpPacket::parse(&out[..n]).unwrap().header().padding());
    // Exact padding.
    let n = base()
        .padding(nz(255))
        .write(&[1], &mut out[..])
        .unwrap_err();
    assert_eq!(
        n,
        RtpError::BufferTooSmall {
            needed: 12 + 1 + 255,
            got: 64
        }
    );
    let mut big = [0u8; 300];
    let n = base().padding(nz(255)).write(&[1], &mut big).unwrap();
    let p = RtpPacket::parse(&big[..n]).unwrap();
    assert_eq!((p.payload(), p.padding_len()), (&[1][..], 255));
}

/// Found by fuzzing (rtp_parse): a one-byte extension whose first byte has
/// ID 0 and a nonzero length. Parsing yielded an element with id 0, which
/// the builder (rightly) refused to write back.
#[test]
fn fuzz_one_byte_id_0_elements_rebuild() {
    let crash = [
        0x90, 0x60, 0x03, 0xe8, 0x00, 0x01, 0x5f, 0x90, 0x12, 0x34, 0x56, 0x78, // header, X=1
        0xbe, 0xde, 0x00, 0x06, // one-byte form, 6 words
        0x0b, 0x10, 0x30, 0x32, 0x00, 0x01, 0x02, 0xef, 0x09, 0x09, 0x09, 0x09, //
        0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, 0x09, //
        0x00, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41,
        0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41,
    ];
    let p = RtpPacket::parse(&crash).unwrap();
    let h = p.header();
    let ext = h.extension_block().unwrap();
    let elements: Vec<(u8, &[u8])> = ext
        .elements()
        .map(|e| e.map(|e| (e.id, e.data)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(elements.iter().all(|&(id, _)| (1..=14).contains(&id)));
    let b = RtpBuilder::new(h.payload_type(), h.sequence(), h.timestamp(), h.ssrc())
        .one_byte_extensions(&elements);
    let mut out = [0u8; 128];
    let n = b.write(p.payload(), &mut out).unwrap();
    let re = RtpPacket::parse(&out[..n]).unwrap();
    assert_eq!(re.payload(), p.payload());
}
