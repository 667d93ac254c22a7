//! Thread scheduling priority: the data plane first. Every thread that is
//! not a packet worker and can burn CPU in a burst (the control API's
//! thread that admits and publishes snapshots, the WebRTC handshake
//! thread, the SIP signalling threads, the cluster cascade) enters
//! [`Background`] at its start, so a storm of joins or DTLS handshakes
//! waits for a core the packet workers leave idle instead of delaying an
//! established stream's packet by a time slice. The packet workers go the
//! other way, into [`WorkerClass`] (`SCHED_FIFO` at the lowest real-time
//! priority by default): a lower class for the others is not enough on
//! its own, because the fair scheduler may judge a woken worker not yet
//! eligible and leave it waiting behind them (see [`WorkerClass`]). The
//! dial-in media threads and the transcoders keep normal priority: they
//! carry media, but are CPU-bound, and in a real-time class would starve
//! their core. So does the cluster heartbeat, on purpose: it is light,
//! and a late one would make the cluster count the node as gone.
//!
//! Linux schedules threads, not processes: `setpriority(PRIO_PROCESS, 0)`
//! and `sched_setscheduler(0)` change the calling thread only, and a
//! thread it spawns later inherits its class. Lowering never needs a
//! privilege; a failure is logged once by the thread and it runs on at
//! normal priority.
//!
//! The default, `batch` (`SCHED_BATCH` at nice 19), was measured against
//! the other classes (bench/README.md, #9 and #12, "the data plane
//! first"): `normal` and `nice-10` let a burst of handshakes add
//! milliseconds to an established stream's p99; `nice-19` had outliers of
//! 1–1.6 ms; `batch` stayed at or under 0.37 ms in the burst (0.96 ms once
//! in the storm) and `idle` (`SCHED_IDLE`) at or under 0.43 ms. `idle` was
//! the default at first and was given up: beside a CPU-bound process at
//! normal priority (an `ffmpeg` publisher in `tests/transcode_meeting.rs`),
//! with the background threads in `idle` a transcoder's first key frame
//! request never reached its publisher in 2 of 3 runs, while
//! `batch`, `nice-19` and `normal` passed every run. An idle-class thread
//! runs only when no normal thread wants its core, so on a box with other
//! work its delays have no useful bound; `batch` keeps weight 15 against
//! the workers' 1,024 (about 1.4 % of a contended core), never preempts a
//! worker when it wakes, and is still served. `[policy] max_worker_busy`
//! (default 0.85) refuses new participants before the workers fill the
//! cores, and that refusal is answered by the same low-priority control
//! thread. `idle` remains for a box that runs nothing else.

// setpriority(2) and sched_setscheduler(2) are libc calls; nix wraps
// neither for one thread.
#![allow(unsafe_code)]

use std::io;

use serde::Deserialize;

/// How the threads that are not packet workers are scheduled
/// (`[media] background`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Background {
    /// The workers' own priority (nice 0, `SCHED_OTHER`): no preference.
    #[serde(rename = "normal")]
    Normal,
    /// Nice 10: a tenth of a worker's weight.
    #[serde(rename = "nice-10")]
    Nice10,
    /// Nice 19: the lowest nice value, 1/70 of a worker's weight.
    #[serde(rename = "nice-19")]
    Nice19,
    /// `SCHED_BATCH` at nice 19: as `nice-19`, and its own wake-ups never
    /// preempt a running thread (the default, see the module doc).
    #[default]
    #[serde(rename = "batch")]
    Batch,
    /// `SCHED_IDLE`: runs when no normal thread wants the core, and is
    /// preempted at once when one does; weight 3, so a core kept busy by
    /// normal threads leaves it almost nothing.
    #[serde(rename = "idle")]
    Idle,
}

impl Background {
    /// Every value, in the config's spelling.
    pub const ALL: [Self; 5] = [
        Self::Normal,
        Self::Nice10,
        Self::Nice19,
        Self::Batch,
        Self::Idle,
    ];

    /// The config's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Nice10 => "nice-10",
            Self::Nice19 => "nice-19",
            Self::Batch => "batch",
            Self::Idle => "idle",
        }
    }

    /// Puts the calling thread in this class; on failure logs one warning
    /// naming `thread` and leaves it at normal priority.
    pub fn enter(self, thread: &str) {
        if let Err(e) = self.apply() {
            tracing::warn!(
                "the {thread} thread keeps normal priority ({} refused: {e})",
                self.name()
            );
        }
    }

    /// Puts the calling thread in this class.
    pub fn apply(self) -> io::Result<()> {
        match self {
            Self::Normal => Ok(()),
            Self::Nice10 => lower_this_thread(10),
            Self::Nice19 => lower_this_thread(19),
            Self::Batch => {
                lower_this_thread(19)?;
                set_policy(libc::SCHED_BATCH)
            }
            Self::Idle => set_policy(libc::SCHED_IDLE),
        }
    }
}

/// How the packet workers are scheduled (`[media] worker_class`).
///
/// `realtime` (the default) puts each worker in `SCHED_FIFO` at priority
/// 1, the lowest real-time priority, with `SCHED_RESET_ON_FORK` (a thread
/// it spawns starts at normal priority). Measured in bench/README.md (#9,
/// "the packet worker in `SCHED_FIFO`"): under EEVDF a worker woken by a
/// packet is not always *eligible* to preempt the thread on its core, even
/// one of weight 15 or `SCHED_IDLE`, and then waits until that thread
/// blocks. In `perf sched` traces of the handshake burst, 172 of the 226
/// worker wake-ups that waited over 50 µs behind the handshake thread
/// waited for it to sleep, for up to 0.55 ms. A real-time worker is picked
/// before every fair thread the moment it is woken. It still blocks
/// between batches, so it takes only the CPU its packets need. The
/// kernel's real-time throttling (`sched_rt_runtime_us`, 95 % by default)
/// and its fair server keep the core's other threads served even if a
/// worker never blocks. Entering it needs `CAP_SYS_NICE` or an
/// `RLIMIT_RTPRIO` of at least 1 (the systemd unit sets `LimitRTPRIO=1`);
/// without either the workers log it once and run at normal priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum WorkerClass {
    /// `SCHED_FIFO` at priority 1, reset on fork.
    #[default]
    #[serde(rename = "realtime")]
    Realtime,
    /// `SCHED_OTHER` at the process's nice value, as every other thread.
    #[serde(rename = "normal")]
    Normal,
}

/// The real-time priority of a `realtime` worker: the lowest, so every
/// real-time thread the system already has (threaded interrupts at 50,
/// the kernel's own) keeps precedence.
pub const WORKER_RT_PRIORITY: libc::c_int = 1;

impl WorkerClass {
    /// Every value, in the config's spelling.
    pub const ALL: [Self; 2] = [Self::Realtime, Self::Normal];

    /// The config's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Realtime => "realtime",
            Self::Normal => "normal",
        }
    }

    /// Puts the calling worker thread in this class. A refusal is logged
    /// once per process (not once per worker) and the worker runs on at
    /// normal priority.
    pub fn enter(self) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if let Err(e) = self.apply()
            && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "packet workers keep normal priority: {} refused ({e}); grant CAP_SYS_NICE \
                 or LimitRTPRIO=1, or set [media] worker_class = \"normal\"",
                self.name()
            );
        }
    }

    /// Puts the calling thread in this class.
    pub fn apply(self) -> io::Result<()> {
        match self {
            Self::Normal => Ok(()),
            Self::Realtime => set_scheduler(
                libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK,
                WORKER_RT_PRIORITY,
            ),
        }
    }
}

/// Lowers the calling thread's priority to `nice` (0 normal, 19 lowest);
/// a thread already at `nice` or lower is left as it is (raising would
/// need a privilege). On Linux the nice value is per thread:
/// `PRIO_PROCESS` with `who` 0 names the calling thread only.
pub fn lower_this_thread(nice: i32) -> io::Result<()> {
    if this_thread_nice()? >= nice {
        return Ok(());
    }
    // SAFETY: setpriority takes plain integers and touches no memory of
    // ours; `who` 0 is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling thread's nice value.
fn this_thread_nice() -> io::Result<i32> {
    // getpriority returns -1 both as a nice value and as an error: errno,
    // cleared first, tells them apart.
    nix::errno::Errno::clear();
    // SAFETY: getpriority takes plain integers and touches no memory of
    // ours; `who` 0 is the calling thread.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    match nix::errno::Errno::last_raw() {
        0 => Ok(nice),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Moves the calling thread to scheduling `policy` (a non-real-time one:
/// its static priority is 0); the nice value is kept.
fn set_policy(policy: libc::c_int) -> io::Result<()> {
    set_scheduler(policy, 0)
}

/// Moves the calling thread to scheduling `policy` at static `priority`
/// (0 for the non-real-time policies).
fn set_scheduler(policy: libc::c_int, priority: libc::c_int) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param that outlives the call, which
    // only reads it; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
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
        let before = (nice(), policy());
        std::thread::spawn(|| {
            lower_this_thread(19).unwrap();
            assert_eq!(nice(), 19);
        })
        .join()
        .unwrap();
        assert_eq!(
            (nice(), policy()),
            before,
            "the spawning thread keeps its priority"
        );
    }

    #[test]
    fn each_class_is_entered_without_privilege_and_inherited_by_the_threads_it_spawns() {
        let before = (nice(), policy());
        let cases = [
            (Background::Normal, nice(), libc::SCHED_OTHER),
            (Background::Nice10, 10.max(nice()), libc::SCHED_OTHER),
            (Background::Nice19, 19, libc::SCHED_OTHER),
            (Background::Batch, 19, libc::SCHED_BATCH),
            (Background::Idle, nice(), libc::SCHED_IDLE),
        ];
        for (class, want_nice, want_policy) in cases {
            let (own, child) = std::thread::spawn(move || {
                class.apply().unwrap();
                let own = (nice(), policy());
                let child = std::thread::spawn(|| (nice(), policy())).join().unwrap();
                (own, child)
            })
            .join()
            .unwrap();
            assert_eq!(own.1, want_policy, "{}", class.name());
            if class != Background::Idle {
                // SCHED_IDLE ignores the nice value.
                assert_eq!(own.0, want_nice, "{}", class.name());
            }
            assert_eq!(child, own, "{}: a spawned thread inherits", class.name());
        }
        assert_eq!((nice(), policy()), before, "the test thread is untouched");
    }

    #[test]
    fn a_realtime_worker_is_fifo_and_its_children_are_not_or_it_is_refused_untouched() {
        let before = (nice(), policy());
        let (outcome, own, child) = std::thread::spawn(|| {
            let outcome = WorkerClass::Realtime.apply();
            let own = (policy(), rt_priority());
            let child = std::thread::spawn(|| (policy(), rt_priority()))
                .join()
                .unwrap();
            (outcome, own, child)
        })
        .join()
        .unwrap();
        match outcome {
            Ok(()) => {
                assert_eq!(
                    own,
                    (
                        libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK,
                        WORKER_RT_PRIORITY
                    )
                );
                assert_eq!(
                    child,
                    (libc::SCHED_OTHER, 0),
                    "a thread a worker spawns starts at normal priority"
                );
            }
            Err(e) => {
                // Without CAP_SYS_NICE or RLIMIT_RTPRIO: refused, and the
                // thread is left as it was.
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
                assert_eq!(own, (before.1, 0));
            }
        }
        assert_eq!(WorkerClass::Normal.apply().ok(), Some(()));
        assert_eq!((nice(), policy()), before, "the test thread is untouched");
    }

    #[test]
    fn the_config_spells_every_worker_class_by_its_name() {
        assert_eq!(WorkerClass::default(), WorkerClass::Realtime);
        for class in WorkerClass::ALL {
            let text: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
                serde::de::IntoDeserializer::into_deserializer(class.name());
            assert_eq!(WorkerClass::deserialize(text).unwrap(), class);
        }
    }

    #[test]
    fn the_config_spells_every_class_by_its_name() {
        for class in Background::ALL {
            let text: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
                serde::de::IntoDeserializer::into_deserializer(class.name());
            let parsed = Background::deserialize(text).unwrap();
            assert_eq!(parsed, class);
        }
    }

    fn nice() -> i32 {
        this_thread_nice().unwrap()
    }

    /// The calling thread's real-time priority (0 outside the real-time
    /// policies).
    fn rt_priority() -> libc::c_int {
        let mut param = libc::sched_param { sched_priority: -1 };
        // SAFETY: `param` is a valid sched_param that outlives the call,
        // which writes it; pid 0 is the calling thread.
        let rc = unsafe { libc::sched_getparam(0, &mut param) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        param.sched_priority
    }

    /// The calling thread's scheduling policy.
    fn policy() -> libc::c_int {
        // SAFETY: sched_getscheduler takes a plain integer; pid 0 is the
        // calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }
}
