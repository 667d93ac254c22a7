//! What a long benchmark says while it runs, on stderr: one line as each
//! step starts (step k of n, the offered load, how the last step went,
//! the time left) and one as it finishes (pass or fail, the figures that
//! decided it). On a terminal a live bar shows the running step; in a
//! file or a pipe (CI, `tee`, nohup) a heartbeat line every
//! [`HEARTBEAT`] stands in for it. `--quiet` silences all of it; the
//! report on stdout and in the output folder is unchanged.
//!
//! The time left is an estimate: the steps still possible (a capacity
//! search may stop early, so "n" is an upper bound and the estimate
//! errs long) times the mean wall time of the steps done so far, or the
//! caller's guess before the first one.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a step that is still running prints a line off a terminal.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// Where the lines go.
enum Sink {
    /// stderr, with a live bar when it is a terminal.
    Stderr(Option<ProgressBar>),
    /// Nowhere (`--quiet`).
    Quiet,
    /// A buffer, for tests.
    Buffer(Vec<String>),
}

/// Progress of one sequence of steps (one target's search, one `run`).
pub struct StepLog {
    prefix: String,
    sink: Sink,
    total: usize,
    exact: bool,
    done: usize,
    spent: Duration,
    guess: Duration,
    last: Option<String>,
    step_started: Option<Instant>,
    heartbeat_at: Option<Instant>,
    started: Instant,
}

impl std::fmt::Debug for StepLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepLog")
            .field("prefix", &self.prefix)
            .field("done", &self.done)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// `1h02m`, `4m05s`, `12s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The estimated time for `remaining` steps, each taking `per_step`.
pub fn time_left(remaining: usize, per_step: Duration) -> Duration {
    per_step.saturating_mul(u32::try_from(remaining).unwrap_or(u32::MAX))
}

impl StepLog {
    /// Progress lines prefixed `prefix` (e.g. `capacity sluice`) for at
    /// most `total` steps (`exact`: exactly that many), each guessed to take
    /// `guess` until one has run; silent when `quiet`.
    pub fn new(prefix: &str, total: usize, exact: bool, guess: Duration, quiet: bool) -> Self {
        let sink = if quiet {
            Sink::Quiet
        } else {
            Sink::Stderr(std::io::stderr().is_terminal().then(|| {
                let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>24} [{bar:30}] {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_prefix(prefix.to_owned());
                bar
            }))
        };
        Self::with_sink(prefix, total, exact, guess, sink)
    }

    /// A log that keeps its lines (see [`StepLog::lines`]), for tests.
    pub fn buffered(prefix: &str, total: usize, exact: bool, guess: Duration) -> Self {
        Self::with_sink(prefix, total, exact, guess, Sink::Buffer(Vec::new()))
    }

    fn with_sink(prefix: &str, total: usize, exact: bool, guess: Duration, sink: Sink) -> Self {
        Self {
            prefix: prefix.to_owned(),
            sink,
            total: total.max(1),
            exact,
            done: 0,
            spent: Duration::ZERO,
            guess,
            last: None,
            step_started: None,
            heartbeat_at: None,
            started: Instant::now(),
        }
    }

    /// The lines written so far (a buffered log only).
    pub fn lines(&self) -> &[String] {
        match &self.sink {
            Sink::Buffer(lines) => lines,
            _ => &[],
        }
    }

    /// Lowers the step count once fewer steps are possible (a search that
    /// found its first failure has only its bisections left).
    pub fn at_most(&mut self, total: usize) {
        self.total = total.max(self.done).min(self.total).max(1);
    }

    fn emit(&mut self, line: String) {
        match &mut self.sink {
            Sink::Quiet => {}
            Sink::Buffer(lines) => lines.push(line),
            Sink::Stderr(Some(bar)) => bar.println(line),
            Sink::Stderr(None) => eprintln!("{line}"),
        }
    }

    fn of(&self) -> String {
        if self.exact {
            format!("{} of {}", self.done + 1, self.total)
        } else {
            format!("{} of at most {}", self.done + 1, self.total)
        }
    }

    fn per_step(&self) -> Duration {
        if self.done == 0 {
            self.guess
        } else {
            self.spent / u32::try_from(self.done).unwrap_or(u32::MAX)
        }
    }

    /// A step starts, offering `load` (e.g. `600 relayed streams`).
    pub fn start(&mut self, load: &str) {
        let remaining = self.total.saturating_sub(self.done);
        let left = time_left(remaining, self.per_step());
        let last = self
            .last
            .as_deref()
            .map_or_else(String::new, |l| format!("; last step {l}"));
        let line = format!(
            "{}: step {}: offering {load}{last}; about {} left",
            self.prefix,
            self.of(),
            duration(left)
        );
        self.emit(line);
        if let Sink::Stderr(Some(bar)) = &self.sink {
            bar.set_prefix(format!("{} {}", self.prefix, self.of()));
            bar.set_position(0);
        }
        let now = Instant::now();
        self.step_started = Some(now);
        self.heartbeat_at = Some(now + HEARTBEAT);
    }

    /// The running step is `elapsed` of `total` seconds in; `detail` is
    /// what the counters say (packets sent and received).
    pub fn tick(&mut self, elapsed: f64, total: f64, detail: &str) {
        match &self.sink {
            Sink::Stderr(Some(bar)) => {
                bar.set_position((elapsed / total.max(1e-9) * 1000.0) as u64);
                bar.set_message(format!("{elapsed:.1}/{total:.1} s, {detail}"));
            }
            Sink::Quiet => {}
            _ => {
                let now = Instant::now();
                if self.heartbeat_at.is_some_and(|at| now >= at) {
                    self.heartbeat_at = Some(now + HEARTBEAT);
                    let line = format!(
                        "{}: step {}: {elapsed:.0} of {total:.0} s, {detail}",
                        self.prefix,
                        self.of()
                    );
                    self.emit(line);
                }
            }
        }
    }

    /// The running step ended: `passed`, with `figures` saying why.
    pub fn finish(&mut self, load: &str, passed: bool, figures: &str) {
        let took = self
            .step_started
            .take()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        let verdict = if passed { "pass" } else { "FAIL" };
        let line = format!(
            "{}: step {}: {load}: {verdict} ({figures}) in {}",
            self.prefix,
            self.of(),
            duration(took)
        );
        self.emit(line);
        self.spent += took;
        self.done += 1;
        self.last = Some(format!("{verdict} at {load}"));
    }

    /// The whole sequence ended; `outcome` in words.
    pub fn end(&mut self, outcome: &str) {
        if let Sink::Stderr(Some(bar)) = &self.sink {
            bar.finish_and_clear();
        }
        let line = format!(
            "{}: done after {} step(s) in {}: {outcome}",
            self.prefix,
            self.done,
            duration(self.started.elapsed())
        );
        self.emit(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(Duration::from_secs(12)), "12s");
        assert_eq!(duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(
            time_left(3, Duration::from_secs(20)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn each_step_says_k_of_n_the_load_the_last_verdict_and_the_time_left() {
        let mut log = StepLog::buffered("capacity sluice", 5, false, Duration::from_secs(14));
        log.start("40 relayed streams");
        log.tick(1.0, 13.0, "sent 10, received 10");
        log.finish("40 relayed streams", true, "loss 0.000 %, p99 0.40 ms");
        log.at_most(3);
        log.start("80 relayed streams");
        log.finish("80 relayed streams", false, "loss 1.200 %, p99 25.00 ms");
        log.end("largest passing: 40 relayed streams");
        let lines = log.lines();
        assert_eq!(
            lines[0],
            "capacity sluice: step 1 of at most 5: offering 40 relayed streams; about 1m10s left"
        );
        assert_eq!(
            lines[1],
            "capacity sluice: step 1 of at most 5: 40 relayed streams: pass (loss 0.000 %, p99 0.40 ms) in 0s"
        );
        assert!(
            lines[2].starts_with(
                "capacity sluice: step 2 of at most 3: offering 80 relayed streams; \
                 last step pass at 40 relayed streams; about "
            ),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains("step 2 of at most 3: 80 relayed streams: FAIL (loss 1.200 %"));
        assert!(
            lines[4].starts_with("capacity sluice: done after 2 step(s) in "),
            "{}",
            lines[4]
        );
        assert_eq!(lines.len(), 5, "no heartbeat within the first 30 s");
    }

    #[test]
    fn an_exact_count_drops_at_most_and_quiet_writes_nothing() {
        let mut log = StepLog::buffered("run", 2, true, Duration::from_secs(5));
        log.start("32 relayed streams against ceiling");
        assert!(
            log.lines()[0].starts_with("run: step 1 of 2: offering 32"),
            "{:?}",
            log.lines()
        );
        let mut quiet = StepLog::new("run", 2, true, Duration::from_secs(5), true);
        quiet.start("x");
        quiet.finish("x", true, "y");
        assert!(quiet.lines().is_empty());
    }
}
