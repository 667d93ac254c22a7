//! Builds a STUN message into the caller's buffer (RFC 8489 §5, §14).

use std::net::SocketAddr;

use hmac::Mac;

use super::message::{feed_with_length, integrity_mac};
use super::{
    Class, FINGERPRINT_XOR, HEADER_LEN, INTEGRITY_LEN, MAGIC_COOKIE, StunError, attr, message_type,
};

/// Writes one STUN message: [`MessageWriter::new`] the header, then
/// attributes, then optionally [`MessageWriter::integrity`] and
/// [`MessageWriter::fingerprint`], in that order, then
/// [`MessageWriter::finish`] for the length. The header's length field is
/// kept current after every step, so integrity and fingerprint cover
/// exactly what RFC 8489 says they cover.
#[derive(Debug)]
pub struct MessageWriter<'a> {
    out: &'a mut [u8],
    len: usize,
    error: Option<StunError>,
}

impl<'a> MessageWriter<'a> {
    /// Starts a message of `class` and `method` with `transaction_id`.
    pub fn new(out: &'a mut [u8], class: Class, method: u16, transaction_id: [u8; 12]) -> Self {
        let mut writer = Self {
            out,
            len: 0,
            error: None,
        };
        if writer.out.len() < HEADER_LEN {
            writer.error = Some(StunError::BufferTooSmall);
            return writer;
        }
        writer.out[..2].copy_from_slice(&message_type(class, method).to_be_bytes());
        writer.out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        writer.out[8..20].copy_from_slice(&transaction_id);
        writer.len = HEADER_LEN;
        writer.set_length();
        writer
    }

    /// Continues a message of `len` bytes already in `out` (tests patch
    /// bytes between steps).
    #[cfg(test)]
    pub(crate) fn resume(out: &'a mut [u8], len: usize) -> Self {
        Self {
            out,
            len,
            error: None,
        }
    }

    /// Appends an attribute, zero-padded to four bytes.
    pub fn attribute(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let padded = value.len().div_ceil(4) * 4;
        let Ok(value_len) = u16::try_from(value.len()) else {
            self.error = Some(StunError::BufferTooSmall);
            return self;
        };
        if self.error.is_some() || self.len + 4 + padded > self.out.len() {
            self.error.get_or_insert(StunError::BufferTooSmall);
            return self;
        }
        let at = self.len;
        self.out[at..at + 2].copy_from_slice(&kind.to_be_bytes());
        self.out[at + 2..at + 4].copy_from_slice(&value_len.to_be_bytes());
        self.out[at + 4..at + 4 + value.len()].copy_from_slice(value);
        self.out[at + 4 + value.len()..at + 4 + padded].fill(0);
        self.len += 4 + padded;
        self.set_length();
        self
    }

    /// Appends XOR-MAPPED-ADDRESS for `addr` (RFC 8489 §14.2).
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> &mut Self {
        let cookie = MAGIC_COOKIE.to_be_bytes();
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let mut value = [0u8; 20];
        value[2..4].copy_from_slice(&port.to_be_bytes());
        let len = match addr {
            SocketAddr::V4(v4) => {
                value[1] = 0x01;
                for (i, b) in v4.ip().octets().iter().enumerate() {
                    value[4 + i] = b ^ cookie[i];
                }
                8
            }
            SocketAddr::V6(v6) => {
                value[1] = 0x02;
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&cookie);
                if self.error.is_none() {
                    mask[4..].copy_from_slice(&self.out[8..20]);
                }
                for (i, b) in v6.ip().octets().iter().enumerate() {
                    value[4 + i] = b ^ mask[i];
                }
                20
            }
        };
        self.attribute(attr::XOR_MAPPED_ADDRESS, &value[..len])
    }

    /// Appends MESSAGE-INTEGRITY under `key` (short-term: the password).
    pub fn integrity(&mut self, key: &[u8]) -> &mut Self {
        let at = self.len;
        self.attribute(attr::MESSAGE_INTEGRITY, &[0; INTEGRITY_LEN]);
        if self.error.is_none() {
            let mut mac = integrity_mac(key);
            feed_with_length(&mut mac, self.out, at, self.len);
            let tag = mac.finalize().into_bytes();
            self.out[at + 4..at + 4 + INTEGRITY_LEN].copy_from_slice(&tag);
        }
        self
    }

    /// Appends FINGERPRINT; it must be the last attribute.
    pub fn fingerprint(&mut self) -> &mut Self {
        let at = self.len;
        self.attribute(attr::FINGERPRINT, &[0; 4]);
        if self.error.is_none() {
            let crc = crc32fast::hash(&self.out[..at]) ^ FINGERPRINT_XOR;
            self.out[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        }
        self
    }

    /// The message's total length, or why it could not be written.
    pub fn finish(&mut self) -> Result<usize, StunError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.len),
        }
    }

    fn set_length(&mut self) {
        // The attribute checks above keep len ≤ out.len(); a message past
        // 64 KiB cannot be framed and is refused.
        match u16::try_from(self.len - HEADER_LEN) {
            Ok(body) => self.out[2..4].copy_from_slice(&body.to_be_bytes()),
            Err(_) => self.error = Some(StunError::BufferTooSmall),
        }
    }
}
