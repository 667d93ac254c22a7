//! [`Session`]: one libsrtp `srtp_t` with a single wildcard-SSRC policy.

use std::ffi::{c_int, c_ulong, c_void};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

use crate::error::{LibSrtpError, Status, check};
use crate::ffi;
use crate::profile::{Direction, Profile};

/// Room `protect` needs past the RTP packet: `SRTP_MAX_TRAILER_LEN` (144).
///
/// libsrtp 2.5 actually writes only the tag (no MKI is configured here), but
/// its header makes the full trailer the caller's obligation, so we check for
/// it.
pub const RTP_TRAILER_ROOM: usize = ffi::SRTP_MAX_TRAILER_LEN;

/// Room `protect_rtcp` needs past the RTCP packet: `SRTP_MAX_TRAILER_LEN + 4`
/// (148), the extra 4 being the E‖SRTCP-index word.
pub const RTCP_TRAILER_ROOM: usize = ffi::SRTP_MAX_TRAILER_LEN + 4;

/// Largest master key‖salt of any [`Profile`] (AEAD_AES_256_GCM: 32 + 12).
const MAX_KEY_AND_SALT: usize = 44;

/// One of the four in-place packet functions, which share a signature.
type PacketFn =
    unsafe extern "C" fn(ffi::srtp_t, *mut c_void, *mut c_int) -> ffi::srtp_err_status_t;

/// Runs `srtp_init` exactly once per process; every later call sees its result.
///
/// `OnceLock` is `std::sync::Once` plus a slot for the status.
fn init_library() -> Result<(), LibSrtpError> {
    static INIT: OnceLock<ffi::srtp_err_status_t> = OnceLock::new();
    // SAFETY: srtp_init takes no arguments and OnceLock runs it once, before
    // any srtp_create (which calls init_library first).
    let status = *INIT.get_or_init(|| unsafe { ffi::srtp_init() });
    check("srtp_init", status)
}

/// One libsrtp session (`srtp_t`) with one wildcard policy: every SSRC seen
/// in one [`Direction`] shares the master key, each getting its own stream
/// state (ROC, replay window) on its first packet.
///
/// Packets are processed in place in caller-owned buffers and this wrapper
/// allocates nothing per packet (libsrtp clones stream state on a new SSRC's
/// first packet, and the NSS GCM backend may allocate inside its calls).
///
/// Rules libsrtp imposes, checked here where it can be:
/// - the buffer must start 4-byte aligned ([`LibSrtpError::Misaligned`]);
/// - for protect, `buf.len() >= len + RTP_TRAILER_ROOM` (or
///   `RTCP_TRAILER_ROOM`) even though only the tag is written;
/// - an outbound session refuses to protect the same RTP index twice
///   (`replay_fail`), so benchmarks must advance the sequence number and
///   refill the plaintext each iteration.
///
/// `Send` but not `Sync`: a context has no thread affinity, but libsrtp does
/// no locking, so calls must not overlap.
///
/// ```compile_fail
/// fn assert_sync<T: Sync>() {}
/// assert_sync::<sluice_libsrtp::Session>();
/// ```
#[derive(Debug)]
pub struct Session {
    ctx: NonNull<ffi::srtp_ctx_t>,
    profile: Profile,
    direction: Direction,
}

// SAFETY: the srtp_ctx_t is owned by this Session alone and libsrtp keeps no
// thread-local state for it, so moving it to another thread is fine. It is
// not Sync (NonNull is !Sync and we add nothing): libsrtp mutates contexts
// without locks.
unsafe impl Send for Session {}

impl Session {
    /// Creates a session for `profile` in `direction`.
    ///
    /// `master_key_and_salt` is the master key followed by the master salt,
    /// as in an SDES `inline:` key (RFC 4568 §6.1), exactly
    /// [`Profile::master_key_and_salt_len`] octets. `replay_window` is the
    /// SRTP replay window in packets: 0 for libsrtp's default of 128, else
    /// 64..=32767 (libsrtp rejects other values with `bad_param`). SRTCP
    /// always uses libsrtp's fixed 128-packet window.
    pub fn new(
        profile: Profile,
        direction: Direction,
        master_key_and_salt: &[u8],
        replay_window: u64,
    ) -> Result<Self, LibSrtpError> {
        let expected = profile.master_key_and_salt_len();
        if master_key_and_salt.len() != expected {
            return Err(LibSrtpError::BadKeyLength {
                expected,
                got: master_key_and_salt.len(),
            });
        }
        init_library()?;

        // The policy's key is `unsigned char *`; libsrtp memcpys it into its
        // KDF during srtp_create (srtp.c: srtp_stream_init_keys) and keeps no
        // pointer, so a local copy that outlives the call is all it needs.
        let mut key = [0u8; MAX_KEY_AND_SALT];
        key[..expected].copy_from_slice(master_key_and_salt);

        let (set_rtp, set_rtcp) = profile.policy_setters();
        let mut rtp = ffi::srtp_crypto_policy_t::default();
        let mut rtcp = ffi::srtp_crypto_policy_t::default();
        // SAFETY: each setter only writes the fields of the exclusively
        // borrowed struct it is given.
        unsafe {
            set_rtp(&mut rtp);
            set_rtcp(&mut rtcp);
        }

        let policy = ffi::srtp_policy_t {
            ssrc: ffi::srtp_ssrc_t {
                type_: direction.ssrc_type(),
                value: 0,
            },
            rtp,
            rtcp,
            key: key.as_mut_ptr(),
            keys: ptr::null_mut(),
            num_master_keys: 0,
            deprecated_ekt: ptr::null_mut(),
            // libsrtp rejects any window >= 0x8000; clamping there keeps that
            // answer and makes the cast lossless for any width of c_ulong.
            window_size: replay_window.min(0x8000) as c_ulong,
            allow_repeat_tx: 0,
            enc_xtn_hdr: ptr::null_mut(),
            enc_xtn_hdr_count: 0,
            next: ptr::null_mut(),
        };

        let mut ctx: ffi::srtp_t = ptr::null_mut();
        // SAFETY: `policy` is a fully initialised single-element list (next
        // is null) whose key points at `key`, live until after the call;
        // srtp_init has succeeded. On failure libsrtp frees what it allocated
        // and leaves `ctx` null.
        let status = unsafe { ffi::srtp_create(&mut ctx, &policy) };
        check("srtp_create", status)?;
        let ctx = NonNull::new(ctx).ok_or(LibSrtpError::Status {
            call: "srtp_create",
            status: Status::Fail,
        })?;
        Ok(Self {
            ctx,
            profile,
            direction,
        })
    }

    /// The profile this session was created with.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The direction this session was created with.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Protects the RTP packet in `buf[..len]` in place and returns the SRTP
    /// length (`len + profile.rtp_tag_len()`).
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, LibSrtpError> {
        self.in_place(
            "srtp_protect",
            ffi::srtp_protect,
            buf,
            len,
            RTP_TRAILER_ROOM,
        )
    }

    /// Verifies and decrypts the SRTP packet in `buf[..len]` in place and
    /// returns the RTP length.
    pub fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, LibSrtpError> {
        self.in_place("srtp_unprotect", ffi::srtp_unprotect, buf, len, 0)
    }

    /// Protects the RTCP compound packet in `buf[..len]` in place and returns
    /// the SRTCP length (`len + 4 + profile.rtcp_tag_len()`).
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, LibSrtpError> {
        self.in_place(
            "srtp_protect_rtcp",
            ffi::srtp_protect_rtcp,
            buf,
            len,
            RTCP_TRAILER_ROOM,
        )
    }

    /// Verifies and decrypts the SRTCP packet in `buf[..len]` in place and
    /// returns the RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, LibSrtpError> {
        self.in_place("srtp_unprotect_rtcp", ffi::srtp_unprotect_rtcp, buf, len, 0)
    }

    /// Sets the rollover counter libsrtp will assume for `ssrc`'s next packet.
    ///
    /// libsrtp 2.5 semantics: the stream must already exist (a wildcard
    /// session creates it on the first packet of that SSRC), else
    /// `bad_param`; the value is only *pending*, so [`Session::roc`] still
    /// reports the old ROC until a packet has been processed; and a pending
    /// ROC of 0 means "none", so `set_roc(ssrc, 0)` does nothing.
    pub fn set_roc(&mut self, ssrc: u32, roc: u32) -> Result<(), LibSrtpError> {
        // SAFETY: ctx is live (owned by self); libsrtp takes the SSRC in host
        // order and converts it itself.
        let status = unsafe { ffi::srtp_set_stream_roc(self.ctx.as_ptr(), ssrc, roc) };
        check("srtp_set_stream_roc", status)
    }

    /// The rollover counter of `ssrc`'s stream (`bad_param` if libsrtp has
    /// not seen that SSRC yet).
    pub fn roc(&self, ssrc: u32) -> Result<u32, LibSrtpError> {
        let mut roc = 0;
        // SAFETY: ctx is live; srtp_get_stream_roc only reads the context
        // (Session is !Sync, so nothing mutates it concurrently) and writes
        // the u32 behind the valid `&mut roc`.
        let status = unsafe { ffi::srtp_get_stream_roc(self.ctx.as_ptr(), ssrc, &mut roc) };
        check("srtp_get_stream_roc", status)?;
        Ok(roc)
    }

    /// Checks `buf` against libsrtp's documented preconditions, runs `f` on
    /// `buf[..len]` and returns the new length.
    fn in_place(
        &mut self,
        call: &'static str,
        f: PacketFn,
        buf: &mut [u8],
        len: usize,
        trailer_room: usize,
    ) -> Result<usize, LibSrtpError> {
        let needed = len
            .checked_add(trailer_room)
            .ok_or(LibSrtpError::PacketTooLong { len })?;
        if buf.len() < needed {
            return Err(LibSrtpError::BufferTooSmall {
                needed,
                got: buf.len(),
            });
        }
        if c_int::try_from(needed).is_err() {
            return Err(LibSrtpError::PacketTooLong { len });
        }
        // `needed` fits c_int and len <= needed.
        let mut c_len = c_int::try_from(len).map_err(|_| LibSrtpError::PacketTooLong { len })?;
        if !buf.as_ptr().addr().is_multiple_of(4) {
            return Err(LibSrtpError::Misaligned);
        }

        // SAFETY: ctx is live and exclusively borrowed through &mut self.
        // `buf` is writable for len + trailer_room octets (checked above),
        // which is all the header lets f write, and 4-byte aligned as the
        // header requires. libsrtp validates the packet contents itself.
        let status = unsafe { f(self.ctx.as_ptr(), buf.as_mut_ptr().cast(), &mut c_len) };
        check(call, status)?;

        // On success libsrtp sets a length within what it was allowed to
        // touch; anything else is a libsrtp bug that already wrote out of
        // bounds, so stop rather than carry on.
        let new_len = usize::try_from(c_len).ok().filter(|&n| n <= needed);
        Ok(new_len.expect("libsrtp returned a packet length outside the buffer"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: ctx came from a successful srtp_create and is deallocated
        // exactly once, here. A failure status leaves nothing to recover.
        let _ = unsafe { ffi::srtp_dealloc(self.ctx.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Session>();
    }

    #[test]
    fn init_is_idempotent() {
        for _ in 0..3 {
            init_library().unwrap();
        }
    }
}
