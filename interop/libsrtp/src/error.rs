//! Errors: libsrtp's `srtp_err_status_t` as [`Status`], and the checks this
//! wrapper makes before handing a buffer to C as [`LibSrtpError`].

use std::fmt;

use crate::ffi;

/// Why a [`crate::Session`] call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LibSrtpError {
    /// A libsrtp function returned a non-ok status.
    #[error("{call} returned {status}")]
    Status {
        /// The C function, e.g. `"srtp_unprotect"`.
        call: &'static str,
        /// What it returned.
        status: Status,
    },
    /// The master key‖salt string has the wrong length for the profile.
    #[error("master key and salt must be {expected} octets, got {got}")]
    BadKeyLength {
        /// `Profile::master_key_and_salt_len()`.
        expected: usize,
        /// The length passed in.
        got: usize,
    },
    /// The buffer cannot hold the packet, or (for protect) the packet plus
    /// the trailer room libsrtp's header says it may write.
    #[error("buffer is {got} octets, needs {needed}")]
    BufferTooSmall {
        /// Packet length plus the room libsrtp may write past it.
        needed: usize,
        /// `buf.len()`.
        got: usize,
    },
    /// The buffer does not start on a 4-byte boundary; libsrtp reads packets
    /// through `uint32_t *` and its header requires that alignment.
    #[error("packet buffer is not 4-byte aligned, which libsrtp requires")]
    Misaligned,
    /// The packet (plus trailer room) does not fit libsrtp's `int` length.
    #[error("packet length {len} is too large for libsrtp")]
    PacketTooLong {
        /// The length passed in.
        len: usize,
    },
}

impl LibSrtpError {
    /// The libsrtp status, if libsrtp itself refused.
    pub const fn status(&self) -> Option<Status> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A non-ok `srtp_err_status_t` (values from `srtp2/srtp.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// 1, `srtp_err_status_fail`: unspecified failure.
    Fail,
    /// 2, `srtp_err_status_bad_param`: unsupported parameter; also a packet
    /// shorter than its RTP/RTCP header, an unknown SSRC for the ROC calls,
    /// and a replay window outside 64..0x8000.
    BadParam,
    /// 3, `srtp_err_status_alloc_fail`.
    AllocFail,
    /// 4, `srtp_err_status_dealloc_fail`.
    DeallocFail,
    /// 5, `srtp_err_status_init_fail`.
    InitFail,
    /// 6, `srtp_err_status_terminus`.
    Terminus,
    /// 7, `srtp_err_status_auth_fail`: tag check failed.
    AuthFail,
    /// 8, `srtp_err_status_cipher_fail`.
    CipherFail,
    /// 9, `srtp_err_status_replay_fail`: index already seen (inside window).
    ReplayFail,
    /// 10, `srtp_err_status_replay_old`: index behind the replay window.
    ReplayOld,
    /// 11, `srtp_err_status_algo_fail`.
    AlgoFail,
    /// 12, `srtp_err_status_no_such_op`.
    NoSuchOp,
    /// 13, `srtp_err_status_no_ctx`.
    NoCtx,
    /// 14, `srtp_err_status_cant_check`.
    CantCheck,
    /// 15, `srtp_err_status_key_expired`.
    KeyExpired,
    /// 16, `srtp_err_status_socket_err`.
    SocketErr,
    /// 17, `srtp_err_status_signal_err`.
    SignalErr,
    /// 18, `srtp_err_status_nonce_bad`.
    NonceBad,
    /// 19, `srtp_err_status_read_fail`.
    ReadFail,
    /// 20, `srtp_err_status_write_fail`.
    WriteFail,
    /// 21, `srtp_err_status_parse_err`.
    ParseErr,
    /// 22, `srtp_err_status_encode_err`.
    EncodeErr,
    /// 23, `srtp_err_status_semaphore_err`.
    SemaphoreErr,
    /// 24, `srtp_err_status_pfkey_err`.
    PfkeyErr,
    /// 25, `srtp_err_status_bad_mki`.
    BadMki,
    /// 26, `srtp_err_status_pkt_idx_old`: after `set_roc`, the packet's
    /// ROC‖SEQ is more than 2^15 behind the stream.
    PktIdxOld,
    /// 27, `srtp_err_status_pkt_idx_adv`.
    PktIdxAdv,
    /// A value this header version does not define.
    Other(i32),
}

impl Status {
    /// The variants in `srtp_err_status_t` order: `KNOWN[i]` has code `i + 1`.
    const KNOWN: [Self; 27] = [
        Self::Fail,
        Self::BadParam,
        Self::AllocFail,
        Self::DeallocFail,
        Self::InitFail,
        Self::Terminus,
        Self::AuthFail,
        Self::CipherFail,
        Self::ReplayFail,
        Self::ReplayOld,
        Self::AlgoFail,
        Self::NoSuchOp,
        Self::NoCtx,
        Self::CantCheck,
        Self::KeyExpired,
        Self::SocketErr,
        Self::SignalErr,
        Self::NonceBad,
        Self::ReadFail,
        Self::WriteFail,
        Self::ParseErr,
        Self::EncodeErr,
        Self::SemaphoreErr,
        Self::PfkeyErr,
        Self::BadMki,
        Self::PktIdxOld,
        Self::PktIdxAdv,
    ];

    /// Maps a non-ok status code; `0` (ok) becomes `Other(0)`.
    pub fn from_code(code: i32) -> Self {
        usize::try_from(code)
            .ok()
            .and_then(|c| c.checked_sub(1))
            .and_then(|i| Self::KNOWN.get(i).copied())
            .unwrap_or(Self::Other(code))
    }

    /// The numeric `srtp_err_status_t` value.
    pub fn code(self) -> i32 {
        match self {
            Self::Other(code) => code,
            known => {
                let index = Self::KNOWN.iter().position(|&s| s == known);
                // Every variant but Other is listed in KNOWN, and 27 fits i32.
                index.and_then(|i| i32::try_from(i + 1).ok()).unwrap()
            }
        }
    }

    /// The packet failed authentication (`auth_fail`).
    pub const fn is_auth_fail(self) -> bool {
        matches!(self, Self::AuthFail)
    }

    /// The replay check refused the packet: a duplicate inside the window
    /// (`replay_fail`) or an index behind it (`replay_old`).
    pub const fn is_replay(self) -> bool {
        matches!(self, Self::ReplayFail | Self::ReplayOld)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Fail => "fail",
            Self::BadParam => "bad_param",
            Self::AllocFail => "alloc_fail",
            Self::DeallocFail => "dealloc_fail",
            Self::InitFail => "init_fail",
            Self::Terminus => "terminus",
            Self::AuthFail => "auth_fail",
            Self::CipherFail => "cipher_fail",
            Self::ReplayFail => "replay_fail",
            Self::ReplayOld => "replay_old",
            Self::AlgoFail => "algo_fail",
            Self::NoSuchOp => "no_such_op",
            Self::NoCtx => "no_ctx",
            Self::CantCheck => "cant_check",
            Self::KeyExpired => "key_expired",
            Self::SocketErr => "socket_err",
            Self::SignalErr => "signal_err",
            Self::NonceBad => "nonce_bad",
            Self::ReadFail => "read_fail",
            Self::WriteFail => "write_fail",
            Self::ParseErr => "parse_err",
            Self::EncodeErr => "encode_err",
            Self::SemaphoreErr => "semaphore_err",
            Self::PfkeyErr => "pfkey_err",
            Self::BadMki => "bad_mki",
            Self::PktIdxOld => "pkt_idx_old",
            Self::PktIdxAdv => "pkt_idx_adv",
            Self::Other(_) => "unknown",
        };
        // The C enumerator name, so it can be grepped for in libsrtp.
        write!(f, "srtp_err_status_{name} ({})", self.code())
    }
}

/// Turns a libsrtp return value into a `Result`.
pub(crate) fn check(
    call: &'static str,
    status: ffi::srtp_err_status_t,
) -> Result<(), LibSrtpError> {
    if status == ffi::SRTP_ERR_STATUS_OK {
        Ok(())
    } else {
        Err(LibSrtpError::Status {
            call,
            status: Status::from_code(status),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_the_header() {
        for code in 1..=27 {
            assert_eq!(Status::from_code(code).code(), code);
            assert!(!matches!(Status::from_code(code), Status::Other(_)));
        }
        // Spot checks against srtp.h's explicit values.
        assert_eq!(Status::from_code(7), Status::AuthFail);
        assert_eq!(Status::from_code(9), Status::ReplayFail);
        assert_eq!(Status::from_code(10), Status::ReplayOld);
        assert_eq!(Status::from_code(27), Status::PktIdxAdv);
        assert_eq!(Status::from_code(28), Status::Other(28));
        assert_eq!(Status::from_code(-1), Status::Other(-1));
        assert_eq!(Status::from_code(0), Status::Other(0));
    }

    #[test]
    fn display_names_the_c_enumerator() {
        assert_eq!(
            Status::AuthFail.to_string(),
            "srtp_err_status_auth_fail (7)"
        );
        let err = check("srtp_unprotect", 9).unwrap_err();
        assert_eq!(
            err.to_string(),
            "srtp_unprotect returned srtp_err_status_replay_fail (9)"
        );
    }
}
