//! SRTCP on an [`SrtpSession`]: RFC 3711 §3.4 (AES-CM: encrypt after the
//! first 8 bytes, append E‖index, then the HMAC tag over all of it) and
//! RFC 7714 §9 (GCM: AAD is the first 8 bytes and E‖index, the tag sits
//! between the ciphertext and E‖index; §9.2 also allows E=0, tag only).
//!
//! sluice always sends with E=1 (encrypted); it accepts both on receipt.

use super::SrtpError;
use super::profile::SRTCP_INDEX_LEN;
use super::session::{SrtpSession, replay_error};
use super::transform::{Transform, gcm_rtcp_nonce};
use crate::crypto::{AeadBackend, GCM_TAG_LEN, OpenJob, SealJob};

/// Bytes of RTCP header that stay in the clear: V/P/RC/PT/length and SSRC.
const RTCP_CLEAR: usize = 8;
/// The E flag in the E‖index word.
const E_FLAG: u32 = 0x8000_0000;
/// SRTCP indices are 31 bits.
const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;

impl<B: AeadBackend> SrtpSession<B> {
    /// Protects the RTCP compound packet in `buf[..len]` in place, appending
    /// E‖index and the tag; returns the SRTCP packet's length. The SRTCP
    /// index comes from this session's per-SSRC counter.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let ssrc = rtcp_ssrc(buf, len)?;
        let next = self.send_rtcp.entry(ssrc)?;
        let index = *next;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        let out = self.protect_rtcp_at(buf, len, index)?;
        // The entry exists: it was made above and nothing removed it since.
        *self.send_rtcp.entry(ssrc)? = index + 1;
        Ok(out)
    }

    /// As [`Self::protect_rtcp`], with the SRTCP index chosen by the caller.
    ///
    /// For senders that share one key across threads (the relay's workers
    /// all send SRTCP to a leg under its one relay→client key): the caller
    /// must never pass the same index twice for one key, e.g. by drawing
    /// indices from one shared atomic counter.
    pub fn protect_rtcp_at(
        &mut self,
        buf: &mut [u8],
        len: usize,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let ssrc = rtcp_ssrc(buf, len)?;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        let tag_len = self.profile.rtcp_tag_len();
        let out_len = len + tag_len + SRTCP_INDEX_LEN;
        if buf.len() < out_len {
            return Err(SrtpError::BufferTooSmall {
                needed: out_len,
                got: buf.len(),
            });
        }
        let trailer = (E_FLAG | index).to_be_bytes();

        match &self.rtcp {
            Transform::Gcm { key, salt } => {
                let mut aad = [0u8; RTCP_CLEAR + SRTCP_INDEX_LEN];
                aad[..RTCP_CLEAR].copy_from_slice(&buf[..RTCP_CLEAR]);
                aad[RTCP_CLEAR..].copy_from_slice(&trailer);
                let (data, tail) = buf[RTCP_CLEAR..].split_at_mut(len - RTCP_CLEAR);
                let (tag, rest) = tail.split_at_mut(GCM_TAG_LEN);
                rest[..SRTCP_INDEX_LEN].copy_from_slice(&trailer);
                let tag: &mut [u8; GCM_TAG_LEN] = tag
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("split at GCM_TAG_LEN"));
                self.backend.seal_batch(&mut [SealJob {
                    key,
                    nonce: gcm_rtcp_nonce(salt, ssrc, index),
                    aad: &aad,
                    data,
                    tag,
                }]);
            }
            Transform::Cm(cm) => {
                cm.apply_keystream(ssrc, u64::from(index), &mut buf[RTCP_CLEAR..len]);
                buf[len..len + SRTCP_INDEX_LEN].copy_from_slice(&trailer);
                let (authenticated, tag) = buf.split_at_mut(len + SRTCP_INDEX_LEN);
                cm.tag(&[authenticated], &mut tag[..tag_len]);
            }
        }
        Ok(out_len)
    }

    /// Verifies and (when E=1) decrypts the SRTCP packet in `buf[..len]` in
    /// place; returns the RTCP compound packet's length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        self.unprotect_rtcp_indexed(buf, len).map(|(n, _)| n)
    }

    /// As [`Self::unprotect_rtcp`], also returning the packet's SRTCP index.
    pub fn unprotect_rtcp_indexed(
        &mut self,
        buf: &mut [u8],
        len: usize,
    ) -> Result<(usize, u32), SrtpError> {
        let ssrc = rtcp_ssrc(buf, len)?;
        let tag_len = self.profile.rtcp_tag_len();
        let needed = RTCP_CLEAR + tag_len + SRTCP_INDEX_LEN;
        if len < needed {
            return Err(SrtpError::TooShort { needed, got: len });
        }
        let rtcp_len = len - tag_len - SRTCP_INDEX_LEN;
        // GCM puts E‖index last; AES-CM puts it before the tag.
        let trailer_at = if self.profile.is_aead() {
            len - SRTCP_INDEX_LEN
        } else {
            rtcp_len
        };
        let mut trailer = [0u8; SRTCP_INDEX_LEN];
        trailer.copy_from_slice(&buf[trailer_at..trailer_at + SRTCP_INDEX_LEN]);
        let word = u32::from_be_bytes(trailer);
        let (encrypted, index) = (word & E_FLAG != 0, word & MAX_SRTCP_INDEX);
        let window = self.recv_rtcp.get(ssrc).copied().unwrap_or_default();
        window.check(u64::from(index)).map_err(replay_error)?;

        let authentic = match &self.rtcp {
            Transform::Gcm { key, salt } => {
                let mut tag = [0u8; GCM_TAG_LEN];
                tag.copy_from_slice(&buf[rtcp_len..rtcp_len + GCM_TAG_LEN]);
                let mut job_aad = [0u8; RTCP_CLEAR + SRTCP_INDEX_LEN];
                let (aad, data): (&[u8], &mut [u8]) = if encrypted {
                    job_aad[..RTCP_CLEAR].copy_from_slice(&buf[..RTCP_CLEAR]);
                    job_aad[RTCP_CLEAR..].copy_from_slice(&trailer);
                    (&job_aad, &mut buf[RTCP_CLEAR..rtcp_len])
                } else {
                    // E=0: the whole RTCP packet and E‖index are AAD. Move
                    // E‖index over the tag (already copied out) so the AAD
                    // is one contiguous slice.
                    buf[rtcp_len..rtcp_len + SRTCP_INDEX_LEN].copy_from_slice(&trailer);
                    (&buf[..rtcp_len + SRTCP_INDEX_LEN], &mut [])
                };
                let mut job = [OpenJob {
                    key,
                    nonce: gcm_rtcp_nonce(salt, ssrc, index),
                    aad,
                    data,
                    tag: &tag,
                    authentic: false,
                }];
                self.backend.open_batch(&mut job);
                job[0].authentic
            }
            Transform::Cm(cm) => {
                let tag_at = rtcp_len + SRTCP_INDEX_LEN;
                let ok = cm.verify(&[&buf[..tag_at]], &buf[tag_at..len]);
                if ok && encrypted {
                    cm.apply_keystream(ssrc, u64::from(index), &mut buf[RTCP_CLEAR..rtcp_len]);
                }
                ok
            }
        };
        if !authentic {
            return Err(SrtpError::AuthFailed);
        }
        self.recv_rtcp.entry(ssrc)?.accept(u64::from(index));
        Ok((rtcp_len, index))
    }
}

/// The sender SSRC of the first RTCP packet, after checking the header.
fn rtcp_ssrc(buf: &[u8], len: usize) -> Result<u32, SrtpError> {
    let packet = buf.get(..len).ok_or(SrtpError::BufferTooSmall {
        needed: len,
        got: buf.len(),
    })?;
    match packet {
        [first, _, _, _, a, b, c, d, ..] if first >> 6 == 2 => {
            Ok(u32::from_be_bytes([*a, *b, *c, *d]))
        }
        _ => Err(SrtpError::BadRtcpHeader),
    }
}
