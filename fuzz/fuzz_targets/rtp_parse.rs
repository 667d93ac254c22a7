//! Parses arbitrary bytes as RTP (header view, whole packet, every header
//! extension element), and rebuilds every packet that parses with
//! `RtpBuilder` to check the builder writes back the same fields.

#![no_main]

use core::num::NonZeroU8;

use libfuzzer_sys::fuzz_target;
use sluice::rtp::{ExtensionForm, RtpBuilder, RtpHeader, RtpPacket};

fuzz_target!(|data: &[u8]| {
    let header = RtpHeader::parse(data);
    if let Ok(h) = &header {
        assert!(h.header_len() <= data.len());
        assert_eq!(h.as_bytes(), &data[..h.header_len()]);
        assert_eq!(h.csrcs().len(), usize::from(data[0] & 0x0f));
        if let Some(ext) = h.extension_block() {
            for element in ext.elements() {
                if let Ok(e) = element {
                    assert!(e.data.len() <= ext.data().len());
                }
            }
        }
    }
    let Ok(p) = RtpPacket::parse(data) else {
        return;
    };
    let h = *p.header();
    assert_eq!(header, Ok(h));
    assert_eq!(
        h.header_len() + p.payload().len() + p.padding_len(),
        data.len()
    );

    let mut builder = RtpBuilder::new(h.payload_type(), h.sequence(), h.timestamp(), h.ssrc())
        .marker(h.marker())
        .csrcs(h.csrcs());
    if let Some(ext) = h.extension_block() {
        builder = builder.raw_extension(ext.profile(), ext.data());
    }
    if let Some(count) = u8::try_from(p.padding_len()).ok().and_then(NonZeroU8::new) {
        builder = builder.padding(count);
    }
    let mut out = vec![0u8; data.len()];
    let n = builder
        .write(p.payload(), &mut out)
        .expect("a parsed packet rebuilds");
    assert_eq!(n, data.len());
    let re = RtpPacket::parse(&out[..n]).expect("a rebuilt packet parses");
    let rh = re.header();
    assert_eq!(rh.version(), h.version());
    assert_eq!(rh.padding(), h.padding());
    assert_eq!(rh.extension(), h.extension());
    assert_eq!(rh.marker(), h.marker());
    assert_eq!(rh.payload_type(), h.payload_type());
    assert_eq!(rh.sequence(), h.sequence());
    assert_eq!(rh.timestamp(), h.timestamp());
    assert_eq!(rh.ssrc(), h.ssrc());
    assert!(rh.csrcs().eq(h.csrcs()));
    assert_eq!(rh.extension_block(), h.extension_block());
    assert_eq!(rh.as_bytes(), h.as_bytes());
    assert_eq!(re.payload(), p.payload());
    assert_eq!(re.padding_len(), p.padding_len());

    // Re-encode well-formed RFC 8285 elements with the element builders.
    let Some(ext) = h.extension_block() else {
        return;
    };
    let Ok(elements) = ext
        .elements()
        .map(|e| e.map(|e| (e.id, e.data)))
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    let builder = match ext.form() {
        ExtensionForm::OneByte => builder.one_byte_extensions(&elements),
        ExtensionForm::TwoByte { appbits: 0 } => builder.two_byte_extensions(&elements),
        _ => return,
    };
    let mut out = vec![
        0u8;
        builder
            .header_len()
            .expect("parsed elements fit their form")
            + 256
    ];
    let n = builder.write(&[], &mut out).expect("room was reserved");
    let re = RtpPacket::parse(&out[..n]).expect("a rebuilt packet parses");
    let block = re.header().extension_block().expect("X bit set");
    let again: Vec<_> = block
        .elements()
        .map(|e| e.map(|e| (e.id, e.data)))
        .collect();
    assert_eq!(again, elements.into_iter().map(Ok).collect::<Vec<_>>());
});
