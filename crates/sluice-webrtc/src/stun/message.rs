//! A received STUN message as a view over the datagram (RFC 8489 §5, §14).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{
    Class, FINGERPRINT_XOR, HEADER_LEN, INTEGRITY_LEN, MAGIC_COOKIE, StunError, attr, method_of,
};

/// A parsed STUN message borrowing the datagram. [`StunMessage::parse`]
/// checks the framing (header, attribute lengths, FINGERPRINT when
/// present); MESSAGE-INTEGRITY is checked on demand by
/// [`StunMessage::verify_integrity`], because only the caller knows the key.
#[derive(Debug, Clone, Copy)]
pub struct StunMessage<'a> {
    bytes: &'a [u8],
    class: Class,
    method: u16,
    /// Offset of the MESSAGE-INTEGRITY attribute header, if any.
    integrity_at: Option<usize>,
}

impl<'a> StunMessage<'a> {
    /// Parses `datagram` as one STUN message. Never panics; every failure
    /// is a [`StunError`].
    pub fn parse(datagram: &'a [u8]) -> Result<Self, StunError> {
        if datagram.len() < HEADER_LEN {
            return Err(StunError::BadLength);
        }
        let message_type = u16::from_be_bytes([datagram[0], datagram[1]]);
        if message_type & 0xC000 != 0 {
            return Err(StunError::NotStun);
        }
        let cookie = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
        if cookie != MAGIC_COOKIE {
            return Err(StunError::NotStun);
        }
        let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
        if length % 4 != 0 || HEADER_LEN + length != datagram.len() {
            return Err(StunError::BadLength);
        }
        let mut message = Self {
            bytes: datagram,
            class: Class::from_type(message_type),
            method: method_of(message_type),
            integrity_at: None,
        };
        // Walk the attributes once: framing, where MESSAGE-INTEGRITY sits,
        // and FINGERPRINT (which must be last, RFC 8489 §14.7).
        let mut at = HEADER_LEN;
        while at < datagram.len() {
            let (kind, value_len) = attribute_header(datagram, at)?;
            let padded = value_len.div_ceil(4) * 4;
            let end = at + 4 + padded;
            if end > datagram.len() {
                return Err(StunError::BadAttribute);
            }
            match kind {
                attr::MESSAGE_INTEGRITY if message.integrity_at.is_none() => {
                    if value_len != INTEGRITY_LEN {
                        return Err(StunError::BadAttribute);
                    }
                    message.integrity_at = Some(at);
                }
                attr::FINGERPRINT => {
                    if value_len != 4 || end != datagram.len() {
                        return Err(StunError::BadFingerprint);
                    }
                    let expected = crc32fast::hash(&datagram[..at]) ^ FINGERPRINT_XOR;
                    let got = u32::from_be_bytes([
                        datagram[at + 4],
                        datagram[at + 5],
                        datagram[at + 6],
                        datagram[at + 7],
                    ]);
                    if got != expected {
                        return Err(StunError::BadFingerprint);
                    }
                }
                _ => {}
            }
            at = end;
        }
        Ok(message)
    }

    /// The message class.
    pub fn class(&self) -> Class {
        self.class
    }

    /// The method (`METHOD_BINDING` for ICE).
    pub fn method(&self) -> u16 {
        self.method
    }

    /// The 96-bit transaction id.
    pub fn transaction_id(&self) -> [u8; 12] {
        let mut id = [0; 12];
        id.copy_from_slice(&self.bytes[8..20]);
        id
    }

    /// Whether a FINGERPRINT attribute is present (and, by `parse`, right).
    pub fn has_fingerprint(&self) -> bool {
        self.attributes().any(|(kind, _)| kind == attr::FINGERPRINT)
    }

    /// Every attribute as `(type, value)`, in order, up to and including
    /// MESSAGE-INTEGRITY and FINGERPRINT. Attributes after
    /// MESSAGE-INTEGRITY other than FINGERPRINT are skipped, as RFC 8489
    /// §14.5 says a receiver must ignore them.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            bytes: self.bytes,
            at: HEADER_LEN,
            integrity_at: self.integrity_at,
        }
    }

    /// The first attribute of `kind`.
    pub fn attribute(&self, kind: u16) -> Option<&'a [u8]> {
        self.attributes().find(|(k, _)| *k == kind).map(|(_, v)| v)
    }

    /// USERNAME, as bytes.
    pub fn username(&self) -> Option<&'a [u8]> {
        self.attribute(attr::USERNAME)
    }

    /// PRIORITY, when present and well formed.
    pub fn priority(&self) -> Option<u32> {
        let v = self.attribute(attr::PRIORITY)?;
        Some(u32::from_be_bytes(v.try_into().ok()?))
    }

    /// Whether USE-CANDIDATE is present.
    pub fn use_candidate(&self) -> bool {
        self.attribute(attr::USE_CANDIDATE).is_some()
    }

    /// Whether the sender says it is the controlling agent.
    pub fn ice_controlling(&self) -> bool {
        self.attribute(attr::ICE_CONTROLLING).is_some()
    }

    /// XOR-MAPPED-ADDRESS, decoded (RFC 8489 §14.2).
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        let v = self.attribute(attr::XOR_MAPPED_ADDRESS)?;
        if v.len() < 4 {
            return None;
        }
        let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
        let cookie = MAGIC_COOKIE.to_be_bytes();
        match (v[1], v.len()) {
            (0x01, 8) => {
                let mut ip = [0; 4];
                for (i, b) in ip.iter_mut().enumerate() {
                    *b = v[4 + i] ^ cookie[i];
                }
                Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
            }
            (0x02, 20) => {
                let mut ip = [0; 16];
                for (i, b) in ip.iter_mut().enumerate() {
                    let mask = if i < 4 {
                        cookie[i]
                    } else {
                        self.bytes[8 + i - 4]
                    };
                    *b = v[4 + i] ^ mask;
                }
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
            }
            _ => None,
        }
    }

    /// Checks MESSAGE-INTEGRITY under `key` (for ICE, the receiving agent's
    /// password, RFC 8445 §7.2.2), in constant time.
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), StunError> {
        let at = self.integrity_at.ok_or(StunError::NoIntegrity)?;
        let got = &self.bytes[at + 4..at + 4 + INTEGRITY_LEN];
        let mut mac = integrity_mac(key);
        feed_with_length(&mut mac, self.bytes, at, at + 4 + INTEGRITY_LEN);
        mac.verify_slice(got).map_err(|_| StunError::BadIntegrity)
    }
}

/// Iterator over a message's attributes; see [`StunMessage::attributes`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    at: usize,
    integrity_at: Option<usize>,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while self.at < self.bytes.len() {
            // `parse` checked every header and length; an error here cannot
            // happen, and ends the iteration if it did.
            let (kind, len) = attribute_header(self.bytes, self.at).ok()?;
            let start = self.at + 4;
            let value = self.bytes.get(start..start + len)?;
            let past_integrity = self.integrity_at.is_some_and(|mi| self.at > mi);
            self.at = start + len.div_ceil(4) * 4;
            if past_integrity && kind != attr::FINGERPRINT {
                continue;
            }
            return Some((kind, value));
        }
        None
    }
}

/// Type and value length of the attribute at `at`.
fn attribute_header(bytes: &[u8], at: usize) -> Result<(u16, usize), StunError> {
    let h = bytes.get(at..at + 4).ok_or(StunError::BadAttribute)?;
    Ok((
        u16::from_be_bytes([h[0], h[1]]),
        usize::from(u16::from_be_bytes([h[2], h[3]])),
    ))
}

pub(super) fn integrity_mac(key: &[u8]) -> Hmac<Sha1> {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// Feeds `bytes[..upto]` to `mac` with the header's length field set as if
/// the message ended at `end` (RFC 8489 §14.5).
pub(super) fn feed_with_length(mac: &mut Hmac<Sha1>, bytes: &[u8], upto: usize, end: usize) {
    let adjusted = u16::try_from(end - HEADER_LEN).unwrap_or(u16::MAX);
    mac.update(&bytes[..2]);
    mac.update(&adjusted.to_be_bytes());
    mac.update(&bytes[4..upto]);
}
