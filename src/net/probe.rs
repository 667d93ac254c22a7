//! Whether this process may use io_uring, found by trying it (STYLE.md
//! §14): the answer depends on the kernel version, the
//! `kernel.io_uring_disabled` sysctl and any seccomp or container policy,
//! none of which the build can know.

use std::io;

use io_uring::{IoUring, Probe, opcode};

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// Why io_uring cannot be used; its `Display` is a sentence for `sluice hw`
/// and the start-up log line.
#[derive(Debug, thiserror::Error)]
pub enum IoUringUnavailable {
    /// `kernel.io_uring_disabled = 2`.
    #[error("io_uring is disabled by the sysctl kernel.io_uring_disabled = 2")]
    DisabledBySysctl,
    /// `kernel.io_uring_disabled = 1` and this process is neither in
    /// `kernel.io_uring_group` nor privileged.
    #[error(
        "io_uring is restricted by the sysctl kernel.io_uring_disabled = 1 to members of \
         kernel.io_uring_group, and this process is not one"
    )]
    RestrictedToGroup,
    /// `io_uring_setup` failed with EPERM although the sysctl allows it.
    #[error(
        "io_uring_setup was refused with EPERM: a seccomp filter or the container runtime's \
         policy forbids io_uring"
    )]
    Denied,
    /// `io_uring_setup` failed with ENOSYS.
    #[error(
        "the kernel does not implement io_uring (ENOSYS): it is older than Linux 5.1, was built \
         without CONFIG_IO_URING, or a seccomp filter hides it"
    )]
    NotImplemented,
    /// The kernel's io_uring lacks something the workers need.
    #[error("the kernel's io_uring lacks {what}, which sluice needs (Linux 5.11 or newer)")]
    MissingFeature {
        /// The missing feature or operation.
        what: &'static str,
    },
    /// Setting up a ring failed for another reason (e.g. ENOMEM under a
    /// small `RLIMIT_MEMLOCK` on kernels before 5.12).
    #[error("io_uring could not be set up: {source}")]
    Setup {
        /// The error from `io_uring_setup` or `io_uring_register`.
        #[source]
        source: io::Error,
    },
}

/// Tries io_uring the way the workers use it: creates a small ring, checks
/// for timed waits (`IORING_FEAT_EXT_ARG`) and the operations the workers
/// submit. `Ok` means [`super::IoBackend::IoUring`] can run.
pub fn probe_io_uring() -> Result<(), IoUringUnavailable> {
    let sysctl = std::fs::read_to_string(SYSCTL)
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok());
    if sysctl == Some(2) {
        return Err(IoUringUnavailable::DisabledBySysctl);
    }
    let ring = IoUring::new(4).map_err(|e| classify_setup_error(sysctl, e))?;
    check_features(&ring)
}

/// What a failed ring setup means, given the sysctl value (if readable).
pub(crate) fn classify_setup_error(sysctl: Option<u8>, error: io::Error) -> IoUringUnavailable {
    match error.raw_os_error() {
        Some(libc::EPERM) if sysctl == Some(1) => IoUringUnavailable::RestrictedToGroup,
        Some(libc::EPERM) if sysctl == Some(2) => IoUringUnavailable::DisabledBySysctl,
        Some(libc::EPERM) => IoUringUnavailable::Denied,
        Some(libc::ENOSYS) => IoUringUnavailable::NotImplemented,
        _ => IoUringUnavailable::Setup { source: error },
    }
}

/// Checks a created ring for everything the workers use.
pub(crate) fn check_features(ring: &IoUring) -> Result<(), IoUringUnavailable> {
    if !ring.params().is_feature_ext_arg() {
        return Err(IoUringUnavailable::MissingFeature {
            what: "IORING_FEAT_EXT_ARG (waiting with a timeout)",
        });
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|source| IoUringUnavailable::Setup { source })?;
    for (code, what) in [
        (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
        (opcode::SendMsg::CODE, "IORING_OP_SENDMSG"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(IoUringUnavailable::MissingFeature { what });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_uring_is_available_on_this_machine() {
        // The development and CI machines run Linux 6.x with
        // kernel.io_uring_disabled = 0; a failure here prints why not.
        if let Err(e) = probe_io_uring() {
            panic!("io_uring should be usable here: {e}");
        }
    }

    #[test]
    fn setup_errors_are_told_apart_by_errno_and_sysctl() {
        let eperm = || io::Error::from_raw_os_error(libc::EPERM);
        assert!(matches!(
            classify_setup_error(Some(1), eperm()),
            IoUringUnavailable::RestrictedToGroup
        ));
        assert!(matches!(
            classify_setup_error(Some(0), eperm()),
            IoUringUnavailable::Denied
        ));
        assert!(matches!(
            classify_setup_error(None, io::Error::from_raw_os_error(libc::ENOSYS)),
            IoUringUnavailable::NotImplemented
        ));
        let other = classify_setup_error(Some(0), io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(
            other
                .to_string()
                .starts_with("io_uring could not be set up")
        );
        assert!(
            IoUringUnavailable::DisabledBySysctl
                .to_string()
                .contains("kernel.io_uring_disabled = 2")
        );
    }
}
