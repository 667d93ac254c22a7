//! RFC 5769 test vectors, round trips through the writer, and malformed input.

use std::net::SocketAddr;

use super::*;

/// RFC 5769 §2.1: a Binding request with SOFTWARE, PRIORITY,
/// ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY and FINGERPRINT.
const REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
];

/// RFC 5769 §2.2: the IPv4 response (192.0.2.1:32853).
const RESPONSE_V4: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
];

/// RFC 5769 §2.3: the IPv6 response (2001:db8:1234:5678:11:2233:4455:6677, 32853).
const RESPONSE_V6: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
];

const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const TXID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

#[test]
fn rfc5769_request_parses_and_verifies() {
    let m = StunMessage::parse(&REQUEST).unwrap();
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.method(), METHOD_BINDING);
    assert_eq!(m.transaction_id(), TXID);
    assert_eq!(m.username(), Some(&b"evtj:h6vY"[..]));
    assert_eq!(m.priority(), Some(0x6e00_01ff));
    assert!(!m.ice_controlling());
    assert!(!m.use_candidate());
    assert!(m.has_fingerprint());
    assert_eq!(m.attribute(attr::SOFTWARE), Some(&b"STUN test client"[..]));
    m.verify_integrity(PASSWORD).unwrap();
    assert_eq!(
        m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"),
        Err(StunError::BadIntegrity)
    );
}

#[test]
fn rfc5769_responses_decode_their_mapped_address() {
    let v4 = StunMessage::parse(&RESPONSE_V4).unwrap();
    assert_eq!(v4.class(), Class::Success);
    v4.verify_integrity(PASSWORD).unwrap();
    assert_eq!(
        v4.xor_mapped_address(),
        Some("192.0.2.1:32853".parse().unwrap())
    );
    let v6 = StunMessage::parse(&RESPONSE_V6).unwrap();
    v6.verify_integrity(PASSWORD).unwrap();
    assert_eq!(
        v6.xor_mapped_address(),
        Some(
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap()
        )
    );
}

/// The writer reproduces the RFC's bytes exactly, integrity and CRC
/// included. The RFC pads SOFTWARE with a space where the writer pads with
/// zero (both allowed), so the test patches that one padding byte before
/// integrity is computed.
#[test]
fn writer_reproduces_rfc5769_responses() {
    for (expected, addr) in [
        (&RESPONSE_V4[..], "192.0.2.1:32853"),
        (
            &RESPONSE_V6[..],
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ),
    ] {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut out = [0u8; 128];
        let head = MessageWriter::new(&mut out, Class::Success, METHOD_BINDING, TXID)
            .attribute(attr::SOFTWARE, b"test vector")
            .xor_mapped_address(addr)
            .finish()
            .unwrap();
        out[35] = 0x20;
        let len = MessageWriter::resume(&mut out, head)
            .integrity(PASSWORD)
            .fingerprint()
            .finish()
            .unwrap();
        assert_eq!(&out[..len], expected);
    }
}

#[test]
fn a_written_binding_request_round_trips() {
    let mut out = [0u8; 256];
    let len = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, TXID)
        .attribute(attr::USERNAME, b"relay:peer")
        .attribute(attr::PRIORITY, &0x7e7f_00ffu32.to_be_bytes())
        .attribute(attr::ICE_CONTROLLING, &[1; 8])
        .attribute(attr::USE_CANDIDATE, &[])
        .integrity(b"secret")
        .fingerprint()
        .finish()
        .unwrap();
    let m = StunMessage::parse(&out[..len]).unwrap();
    assert_eq!(m.username(), Some(&b"relay:peer"[..]));
    assert_eq!(m.priority(), Some(0x7e7f_00ff));
    assert!(m.use_candidate());
    assert!(m.ice_controlling());
    m.verify_integrity(b"secret").unwrap();
    assert_eq!(m.verify_integrity(b"Secret"), Err(StunError::BadIntegrity));
}

#[test]
fn any_flipped_bit_fails_fingerprint_or_integrity() {
    // Bytes 100 and 101 are FINGERPRINT's type: flipped, it becomes an
    // unknown attribute after MESSAGE-INTEGRITY, which RFC 8489 §14.5 says
    // to ignore, and the integrity still holds. Every other bit matters.
    for i in (0..REQUEST.len()).filter(|i| !(100..102).contains(i)) {
        for bit in 0..8 {
            let mut bad = REQUEST;
            bad[i] ^= 1 << bit;
            let ok = StunMessage::parse(&bad)
                .and_then(|m| m.verify_integrity(PASSWORD))
                .is_ok();
            assert!(!ok, "byte {i} bit {bit} flipped still verifies");
        }
    }
}

#[test]
fn malformed_framing_is_refused() {
    assert_eq!(StunMessage::parse(&[]).unwrap_err(), StunError::BadLength);
    assert_eq!(
        StunMessage::parse(&REQUEST[..19]).unwrap_err(),
        StunError::BadLength
    );
    assert_eq!(
        StunMessage::parse(&REQUEST[..104]).unwrap_err(),
        StunError::BadLength
    );
    let mut no_cookie = REQUEST;
    no_cookie[4] = 0;
    assert_eq!(
        StunMessage::parse(&no_cookie).unwrap_err(),
        StunError::NotStun
    );
    let mut top_bits = REQUEST;
    top_bits[0] = 0x40;
    assert_eq!(
        StunMessage::parse(&top_bits).unwrap_err(),
        StunError::NotStun
    );
    // An attribute claiming more bytes than the message holds.
    let mut long_attr = REQUEST;
    long_attr[23] = 0xff;
    assert_eq!(
        StunMessage::parse(&long_attr).unwrap_err(),
        StunError::BadAttribute
    );
    // No integrity at all.
    let mut out = [0u8; 64];
    let len = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, TXID)
        .finish()
        .unwrap();
    let bare = StunMessage::parse(&out[..len]).unwrap();
    assert_eq!(bare.verify_integrity(b"x"), Err(StunError::NoIntegrity));
}

#[test]
fn attributes_after_integrity_other_than_fingerprint_are_ignored() {
    let mut out = [0u8; 128];
    let len = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, TXID)
        .integrity(b"k")
        .attribute(attr::USE_CANDIDATE, &[])
        .finish()
        .unwrap();
    let m = StunMessage::parse(&out[..len]).unwrap();
    m.verify_integrity(b"k").unwrap();
    assert!(
        !m.use_candidate(),
        "an unauthenticated USE-CANDIDATE counts"
    );
}

#[test]
fn writer_refuses_a_buffer_too_small() {
    let mut out = [0u8; 30];
    let r = MessageWriter::new(&mut out, Class::Success, METHOD_BINDING, TXID)
        .xor_mapped_address("[::1]:9".parse().unwrap())
        .finish();
    assert_eq!(r, Err(StunError::BufferTooSmall));
    let mut tiny = [0u8; 4];
    let r = MessageWriter::new(&mut tiny, Class::Success, METHOD_BINDING, TXID).finish();
    assert_eq!(r, Err(StunError::BufferTooSmall));
}
