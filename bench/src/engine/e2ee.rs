//! The end-to-end layer of E2EE meetings, standing in for SFrame
//! (RFC 9605): inside the SRTP payload, a clear 12-byte nonce (stream id ‖
//! sequence) then the payload header and filler sealed with AES-128-GCM
//! under a per-meeting key that only the endpoints hold. The relay
//! forwards it byte for byte; the receiver opens it, so a relay that
//! altered an E2EE payload shows up as decrypt failures.

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Bytes the layer adds: nonce and tag.
pub const OVERHEAD: usize = NONCE_LEN + 16;

/// A meeting's end-to-end key.
#[derive(Debug)]
pub struct E2eeKey(LessSafeKey);

impl E2eeKey {
    /// The key from 16 bytes of material.
    pub fn new(material: &[u8; 16]) -> Self {
        // AES-128 takes exactly 16 bytes, which the type guarantees.
        Self(LessSafeKey::new(
            UnboundKey::new(&AES_128_GCM, material).expect("16-byte AES-128 key"),
        ))
    }

    /// Seals `payload[NONCE_LEN..len - 16]` in place: writes the nonce
    /// (from `stream`, `sequence`) before it and the tag after it. `false`
    /// if `len` cannot hold the overhead.
    pub fn seal(&self, payload: &mut [u8], len: usize, stream: u32, sequence: u64) -> bool {
        if len < OVERHEAD || payload.len() < len {
            return false;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&stream.to_be_bytes());
        nonce[4..].copy_from_slice(&sequence.to_be_bytes());
        payload[..NONCE_LEN].copy_from_slice(&nonce);
        let (body, tag_out) = payload[NONCE_LEN..len].split_at_mut(len - OVERHEAD);
        match self.0.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            body,
        ) {
            Ok(tag) => {
                tag_out.copy_from_slice(tag.as_ref());
                true
            }
            Err(_) => false,
        }
    }

    /// Opens a sealed payload in place; the plaintext, or `None` if it does
    /// not authenticate.
    pub fn open<'a>(&self, payload: &'a mut [u8]) -> Option<&'a [u8]> {
        if payload.len() < OVERHEAD {
            return None;
        }
        let (nonce, sealed) = payload.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self.0.open_in_place(nonce, Aad::empty(), sealed).ok()?;
        Some(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let key = E2eeKey::new(&[7; 16]);
        let mut buf = [0u8; 80];
        buf[NONCE_LEN..NONCE_LEN + 5].copy_from_slice(b"hello");
        assert!(key.seal(&mut buf, 80, 3, 9));
        let mut copy = buf;
        assert_eq!(&key.open(&mut copy).expect("opens")[..5], b"hello");
        buf[20] ^= 1;
        assert!(key.open(&mut buf).is_none());
        assert!(E2eeKey::new(&[8; 16]).open(&mut copy).is_none());
        assert!(!key.seal(&mut buf, OVERHEAD - 1, 0, 0));
    }
}
