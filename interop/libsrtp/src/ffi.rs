//! Hand-written declarations mirroring `/usr/include/srtp2/srtp.h` (libsrtp 2.5).
//!
//! Only what [`crate::Session`] needs. Names and field order follow the C
//! header exactly so the two can be read side by side; the layout test at the
//! bottom pins sizes and offsets measured from the real header.
//!
//! C enums are declared as plain integer aliases with constants, not Rust
//! enums: a value the library returns that we did not list must not be
//! undefined behaviour.

// The C names are kept verbatim so this file diffs cleanly against srtp.h.
#![allow(non_camel_case_types)]

use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::marker::{PhantomData, PhantomPinned};

/// `srtp_err_status_t`; see [`crate::Status`] for the non-zero values.
pub(crate) type srtp_err_status_t = c_int;
pub(crate) const SRTP_ERR_STATUS_OK: srtp_err_status_t = 0;

pub(crate) type srtp_cipher_type_id_t = u32;
pub(crate) type srtp_auth_type_id_t = u32;

/// `srtp_sec_serv_t`.
pub(crate) type srtp_sec_serv_t = c_uint;

/// `srtp_ssrc_type_t`.
pub(crate) type srtp_ssrc_type_t = c_uint;
pub(crate) const SSRC_ANY_INBOUND: srtp_ssrc_type_t = 2;
pub(crate) const SSRC_ANY_OUTBOUND: srtp_ssrc_type_t = 3;

/// `SRTP_MAX_TRAILER_LEN`: the header says `srtp_protect` may write this many
/// octets after the RTP packet, and `srtp_protect_rtcp` this plus 4.
pub(crate) const SRTP_MAX_TRAILER_LEN: usize = 16 + 128;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct srtp_crypto_policy_t {
    pub(crate) cipher_type: srtp_cipher_type_id_t,
    pub(crate) cipher_key_len: c_int,
    pub(crate) auth_type: srtp_auth_type_id_t,
    pub(crate) auth_key_len: c_int,
    pub(crate) auth_tag_len: c_int,
    pub(crate) sec_serv: srtp_sec_serv_t,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct srtp_ssrc_t {
    pub(crate) type_: srtp_ssrc_type_t,
    pub(crate) value: c_uint,
}

#[repr(C)]
#[derive(Debug)]
pub(crate) struct srtp_master_key_t {
    pub(crate) key: *mut u8,
    pub(crate) mki_id: *mut u8,
    pub(crate) mki_size: c_uint,
}

#[repr(C)]
#[derive(Debug)]
pub(crate) struct srtp_policy_t {
    pub(crate) ssrc: srtp_ssrc_t,
    pub(crate) rtp: srtp_crypto_policy_t,
    pub(crate) rtcp: srtp_crypto_policy_t,
    pub(crate) key: *mut u8,
    pub(crate) keys: *mut *mut srtp_master_key_t,
    pub(crate) num_master_keys: c_ulong,
    pub(crate) deprecated_ekt: *mut c_void,
    pub(crate) window_size: c_ulong,
    pub(crate) allow_repeat_tx: c_int,
    pub(crate) enc_xtn_hdr: *mut c_int,
    pub(crate) enc_xtn_hdr_count: c_int,
    pub(crate) next: *mut Self, // struct srtp_policy_t *next
}

/// Opaque `srtp_ctx_t`; only ever handled behind a pointer.
#[repr(C)]
pub(crate) struct srtp_ctx_t {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

pub(crate) type srtp_t = *mut srtp_ctx_t;

// Linking: build.rs emits `rustc-link-lib=srtp2` from pkg-config.
unsafe extern "C" {
    pub(crate) fn srtp_init() -> srtp_err_status_t;
    pub(crate) fn srtp_create(
        session: *mut srtp_t,
        policy: *const srtp_policy_t,
    ) -> srtp_err_status_t;
    pub(crate) fn srtp_dealloc(s: srtp_t) -> srtp_err_status_t;

    pub(crate) fn srtp_protect(
        ctx: srtp_t,
        rtp_hdr: *mut c_void,
        len_ptr: *mut c_int,
    ) -> srtp_err_status_t;
    pub(crate) fn srtp_unprotect(
        ctx: srtp_t,
        srtp_hdr: *mut c_void,
        len_ptr: *mut c_int,
    ) -> srtp_err_status_t;
    pub(crate) fn srtp_protect_rtcp(
        ctx: srtp_t,
        rtcp_hdr: *mut c_void,
        pkt_octet_len: *mut c_int,
    ) -> srtp_err_status_t;
    pub(crate) fn srtp_unprotect_rtcp(
        ctx: srtp_t,
        srtcp_hdr: *mut c_void,
        pkt_octet_len: *mut c_int,
    ) -> srtp_err_status_t;

    pub(crate) fn srtp_set_stream_roc(session: srtp_t, ssrc: u32, roc: u32) -> srtp_err_status_t;
    pub(crate) fn srtp_get_stream_roc(
        session: srtp_t,
        ssrc: u32,
        roc: *mut u32,
    ) -> srtp_err_status_t;

    pub(crate) fn srtp_crypto_policy_set_aes_gcm_256_16_auth(p: *mut srtp_crypto_policy_t);
    pub(crate) fn srtp_crypto_policy_set_aes_gcm_128_16_auth(p: *mut srtp_crypto_policy_t);
    /// AES_CM_128_HMAC_SHA1_80 (the header's `..._aes_cm_128_hmac_sha1_80`
    /// is a macro for this function).
    pub(crate) fn srtp_crypto_policy_set_rtp_default(p: *mut srtp_crypto_policy_t);
    pub(crate) fn srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(p: *mut srtp_crypto_policy_t);
    pub(crate) fn srtp_crypto_policy_set_rtcp_default(p: *mut srtp_crypto_policy_t);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    // The numbers below were printed by a throwaway C program compiled
    // against /usr/include/srtp2/srtp.h (libsrtp2-dev 2.5.0-3, x86_64 gcc):
    // `printf("%zu", sizeof(srtp_policy_t))`, `offsetof(srtp_policy_t, f)`
    // for each field, and the same for the nested structs. They hold for
    // any LP64 target; a 32-bit target would need its own numbers.

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn policy_layout_matches_c_header() {
        assert_eq!(size_of::<srtp_policy_t>(), 128);
        assert_eq!(align_of::<srtp_policy_t>(), 8);
        assert_eq!(offset_of!(srtp_policy_t, ssrc), 0);
        assert_eq!(offset_of!(srtp_policy_t, rtp), 8);
        assert_eq!(offset_of!(srtp_policy_t, rtcp), 32);
        assert_eq!(offset_of!(srtp_policy_t, key), 56);
        assert_eq!(offset_of!(srtp_policy_t, keys), 64);
        assert_eq!(offset_of!(srtp_policy_t, num_master_keys), 72);
        assert_eq!(offset_of!(srtp_policy_t, deprecated_ekt), 80);
        assert_eq!(offset_of!(srtp_policy_t, window_size), 88);
        assert_eq!(offset_of!(srtp_policy_t, allow_repeat_tx), 96);
        assert_eq!(offset_of!(srtp_policy_t, enc_xtn_hdr), 104);
        assert_eq!(offset_of!(srtp_policy_t, enc_xtn_hdr_count), 112);
        assert_eq!(offset_of!(srtp_policy_t, next), 120);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn nested_struct_layouts_match_c_header() {
        assert_eq!(size_of::<srtp_crypto_policy_t>(), 24);
        assert_eq!(align_of::<srtp_crypto_policy_t>(), 4);
        assert_eq!(offset_of!(srtp_crypto_policy_t, cipher_type), 0);
        assert_eq!(offset_of!(srtp_crypto_policy_t, cipher_key_len), 4);
        assert_eq!(offset_of!(srtp_crypto_policy_t, auth_type), 8);
        assert_eq!(offset_of!(srtp_crypto_policy_t, auth_key_len), 12);
        assert_eq!(offset_of!(srtp_crypto_policy_t, auth_tag_len), 16);
        assert_eq!(offset_of!(srtp_crypto_policy_t, sec_serv), 20);

        assert_eq!(size_of::<srtp_ssrc_t>(), 8);
        assert_eq!(offset_of!(srtp_ssrc_t, type_), 0);
        assert_eq!(offset_of!(srtp_ssrc_t, value), 4);

        assert_eq!(size_of::<srtp_master_key_t>(), 24);
        assert_eq!(offset_of!(srtp_master_key_t, key), 0);
        assert_eq!(offset_of!(srtp_master_key_t, mki_id), 8);
        assert_eq!(offset_of!(srtp_master_key_t, mki_size), 16);

        // Every C enum in the header is int-sized.
        assert_eq!(size_of::<srtp_err_status_t>(), 4);
        assert_eq!(size_of::<srtp_ssrc_type_t>(), 4);
        assert_eq!(size_of::<srtp_sec_serv_t>(), 4);
    }

    fn policy_from(set: unsafe extern "C" fn(*mut srtp_crypto_policy_t)) -> srtp_crypto_policy_t {
        let mut p = srtp_crypto_policy_t::default();
        // SAFETY: the setter only writes the six fields of the valid,
        // exclusively borrowed struct behind `p`; it needs no srtp_init.
        unsafe { set(&mut p) };
        p
    }

    #[test]
    fn rtcp_default_is_the_80_bit_policy() {
        // libsrtp's srtp_crypto_policy_set_from_profile_for_rtcp() gives both
        // AES_CM_128_HMAC_SHA1_80 and _32 the 80-bit policy for SRTCP
        // (RFC 3711 §7.5); we use rtcp_default for that, which must be it.
        assert_eq!(
            policy_from(srtp_crypto_policy_set_rtcp_default),
            policy_from(srtp_crypto_policy_set_rtp_default)
        );
    }
}
