//! `sluice-bench dialin`: how many dial-in calls one core transcodes, G.711
//! ↔ Opus, before 20 ms frames start to be late; sluice's call bridge next
//! to rtpengine transcoding PCMU ↔ Opus.
//!
//! - [`sluice`]: N calls of the daemon's media path ticked in real time on
//!   one thread (one core): a `MeetingMix` per meeting (three speakers,
//!   mixed) shared by its calls, a `CallerUplink` per call; no sockets.
//! - [`rtpengine`]: Debian's rtpengine transcoding N calls PCMU ↔ Opus,
//!   fed real RTP over loopback; no mixing (one Opus stream per call).
//!
//! [`search`] finds the largest N that passes, doubling from a start and
//! then bisecting; [`report`] writes the Markdown summary and the JSON.

pub mod audio;
pub mod report;
pub mod rtpengine;
pub mod sluice;

use serde::Serialize;

/// Target names `dialin --targets` accepts, in report order.
pub const TARGETS: &[&str] = &["sluice", "rtpengine"];

/// How the capacity search steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SearchOptions {
    /// Calls at the first step; each further step doubles.
    pub start: usize,
    /// Never run more calls than this.
    pub max: usize,
    /// Bisection steps between the last pass and the first failure.
    pub refine: u32,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            start: 50,
            max: 4096,
            refine: 4,
        }
    }
}

/// Every step of a search, and its answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Search<P> {
    /// Each run, in the order made.
    pub points: Vec<P>,
    /// The most calls that passed (None: not even the smallest step).
    pub largest_passing: Option<usize>,
    /// Why the search stopped, in words.
    pub stopped: String,
}

/// The most runs [`search`] can make with `options`: the doublings from
/// `start` up to `max`, then the bisections.
pub fn most_steps(options: SearchOptions) -> usize {
    let max = options.max.max(1);
    let mut n = options.start.clamp(1, max);
    let mut steps = 1;
    while n < max {
        n = (n * 2).min(max);
        steps += 1;
    }
    steps + options.refine as usize
}

/// Doubles the calls from `options.start` until a run fails (or
/// `options.max` is reached), then bisects `options.refine` times between
/// the last pass and the first failure, stopping early once they are
/// within 2 % (or one call) of each other. `run` measures N calls;
/// `passes` judges a run.
pub fn search<P, E>(
    options: SearchOptions,
    mut run: impl FnMut(usize) -> Result<P, E>,
    passes: impl Fn(&P) -> bool,
) -> Result<Search<P>, E> {
    let mut points = Vec::new();
    let mut pass = 0usize;
    let mut fail = None;
    let mut n = options.start.clamp(1, options.max.max(1));
    let stopped = loop {
        let point = run(n)?;
        let ok = passes(&point);
        points.push(point);
        if !ok {
            fail = Some(n);
            break format!("{n} calls failed");
        }
        pass = n;
        if n >= options.max {
            break format!("{n} calls passed, the --max-calls cap");
        }
        n = (n * 2).min(options.max);
    };
    let mut stopped = stopped;
    if let Some(mut hi) = fail {
        for _ in 0..options.refine {
            if hi - pass <= (pass / 50).max(1) {
                break;
            }
            let mid = pass + (hi - pass) / 2;
            let point = run(mid)?;
            if passes(&point) {
                pass = mid;
            } else {
                hi = mid;
            }
            points.push(point);
        }
        stopped = format!("{pass} calls passed, {hi} failed");
    }
    Ok(Search {
        points,
        largest_passing: (pass > 0).then_some(pass),
        stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn searched(capacity: usize, options: SearchOptions) -> (Option<usize>, Vec<usize>) {
        let s = search::<usize, ()>(options, Ok, |&n| n <= capacity).unwrap();
        (s.largest_passing, s.points)
    }

    #[test]
    fn most_steps_bounds_every_search() {
        let options = SearchOptions {
            start: 50,
            max: 300,
            refine: 3,
        };
        // 50, 100, 200, 300, then up to 3 bisections.
        assert_eq!(most_steps(options), 7);
        for capacity in [0, 20, 120, 10_000] {
            assert!(searched(capacity, options).1.len() <= most_steps(options));
        }
    }

    #[test]
    fn doubles_then_bisects() {
        let (best, runs) = searched(
            430,
            SearchOptions {
                start: 50,
                max: 10_000,
                refine: 4,
            },
        );
        assert_eq!(runs[..5], [50, 100, 200, 400, 800]);
        assert_eq!(runs[5..], [600, 500, 450, 425]);
        assert_eq!(best, Some(425));
    }

    #[test]
    fn stops_at_the_cap_and_below_the_start() {
        let options = SearchOptions {
            start: 50,
            max: 300,
            refine: 3,
        };
        assert_eq!(
            searched(10_000, options),
            (Some(300), vec![50, 100, 200, 300])
        );
        let (best, runs) = searched(20, options);
        assert_eq!(runs, [50, 25, 12, 18]);
        assert_eq!(best, Some(18));
        assert_eq!(searched(0, options).0, None);
    }
}
