//! Thread scheduling priority: a background thread of the media port (the
//! WebRTC handshake thread) gives the core to the packet workers whenever
//! both want it, so a storm of DTLS handshakes, each a few hundred
//! microseconds of ECDSA and ECDHE, never keeps an established stream's
//! packet waiting for a time slice.

// setpriority(2) is a libc call; nothing std or nix wraps sets one
// thread's nice value.
#![allow(unsafe_code)]

use std::io;

/// Lowers the calling thread's priority to `nice` (0 normal, 19 lowest).
/// On Linux the nice value is per thread: `PRIO_PROCESS` with `who` 0
/// names the calling thread only.
pub fn lower_this_thread(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority takes plain integers and touches no memory of
    // ours; `who` 0 is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_its_own_priority_and_only_its_own() {
        let before = nice();
        std::thread::spawn(|| {
            lower_this_thread(19).unwrap();
            assert_eq!(nice(), 19);
        })
        .join()
        .unwrap();
        assert_eq!(nice(), before, "the spawning thread keeps its priority");
    }

    /// The calling thread's nice value.
    fn nice() -> i32 {
        // SAFETY: getpriority takes plain integers and touches no memory
        // of ours (-1 is a valid result, and the calls above cannot fail).
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }
}
