//! CPU pinning for `--cpu-pin`: the generator's threads on some cores,
//! the relay's on others, so neither steals the other's cycles.

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

fn set_of(cores: &[usize]) -> Result<CpuSet, String> {
    let mut set = CpuSet::new();
    for &core in cores {
        set.set(core).map_err(|e| format!("core {core}: {e}"))?;
    }
    Ok(set)
}

/// Pins the calling thread to `cores` (nothing if empty).
pub fn pin_current_thread(cores: &[usize]) -> Result<(), String> {
    if cores.is_empty() {
        return Ok(());
    }
    sched_setaffinity(Pid::from_raw(0), &set_of(cores)?)
        .map_err(|e| format!("pinning a generator thread: {e}"))
}

/// Pins every thread of process `pid` to `cores`.
pub fn pin_process(pid: u32, cores: &[usize]) -> Result<(), String> {
    let set = set_of(cores)?;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("listing threads of {pid}: {e}"))?;
    for task in tasks.flatten() {
        if let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        {
            sched_setaffinity(Pid::from_raw(tid), &set)
                .map_err(|e| format!("pinning thread {tid} of {pid}: {e}"))?;
        }
    }
    Ok(())
}

/// Splits the machine's cores for `--cpu-pin`: the generator gets the
/// first half (at least one), the relay the rest (at least one).
pub fn split_cores() -> (Vec<usize>, Vec<usize>) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n < 2 {
        return (vec![0], vec![0]);
    }
    let generator = n / 2;
    ((0..generator).collect(), (generator..n).collect())
}
