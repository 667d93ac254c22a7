//! CPU and memory of a process, from `/proc/PID/stat` (utime + stime) and
//! `/proc/PID/status` (VmRSS), sampled once a second while the load runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat` times: `USER_HZ`, which the
/// kernel fixes at 100 in its ABI on every architecture Linux ships for.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// What the sampler saw of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcessFigures {
    /// Mean CPU over the load, in % of one core (200 = two cores busy).
    pub cpu_mean_pct: f64,
    /// Highest one-second CPU sample, % of one core.
    pub cpu_max_pct: f64,
    /// Highest resident set size seen, bytes.
    pub rss_max_bytes: u64,
    /// CPU seconds (utime + stime) over the whole sampled window.
    pub cpu_seconds: f64,
    /// The part of `cpu_seconds` in the kernel (stime): system calls and
    /// the softirq work charged to the process.
    pub cpu_system_seconds: f64,
}

/// utime + stime of `pid`, in ticks.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    parse_user_system(stat).map(|(u, s)| u + s)
}

/// stime of `pid`, in ticks.
pub fn system_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_user_system(&stat).map(|(_, s)| s)
}

fn parse_user_system(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) may hold spaces; fields after ")" are
    // plain. utime and stime are fields 14 and 15, i.e. 12th and 13th after.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// VmRSS of `pid`, bytes.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss(&status)
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A thread sampling one process each second until stopped.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ProcessFigures>,
}

impl Sampler {
    /// Starts sampling `pid` (`"self"` for this process).
    pub fn start(pid: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let began = Instant::now();
            let first = cpu_ticks(&pid).unwrap_or(0);
            let first_system = system_ticks(&pid).unwrap_or(0);
            let mut last_system = first_system;
            let mut figures = ProcessFigures::default();
            let (mut last_ticks, mut last_at) = (first, began);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let now = Instant::now();
                if now.duration_since(last_at) < Duration::from_secs(1)
                    && !flag.load(Ordering::Relaxed)
                {
                    continue;
                }
                let Some(ticks) = cpu_ticks(&pid) else { break };
                last_system = system_ticks(&pid).unwrap_or(last_system);
                let secs = now.duration_since(last_at).as_secs_f64();
                let pct = (ticks - last_ticks) as f64 / TICKS_PER_SECOND / secs * 100.0;
                figures.cpu_max_pct = figures.cpu_max_pct.max(pct);
                figures.rss_max_bytes = figures.rss_max_bytes.max(rss_bytes(&pid).unwrap_or(0));
                (last_ticks, last_at) = (ticks, now);
            }
            let secs = last_at.duration_since(began).as_secs_f64();
            figures.cpu_seconds = (last_ticks - first) as f64 / TICKS_PER_SECOND;
            figures.cpu_system_seconds =
                last_system.saturating_sub(first_system) as f64 / TICKS_PER_SECOND;
            if secs > 0.0 {
                figures.cpu_mean_pct =
                    (last_ticks - first) as f64 / TICKS_PER_SECOND / secs * 100.0;
            }
            figures
        });
        Self { stop, thread }
    }

    /// Stops and returns what was seen.
    pub fn finish(self) -> ProcessFigures {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat =
            "4242 (sluice worker) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        let status = "Name:\tsluice\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(parse_rss(status), Some(12345 * 1024));
        assert!(cpu_ticks("self").is_some());
        assert!(rss_bytes("self").unwrap_or(0) > 0);
    }
}
