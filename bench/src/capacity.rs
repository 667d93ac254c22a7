//! Capacity search: runs the scenario's shape at growing numbers of
//! meetings against a fresh target each step, until loss exceeds 0.1 %,
//! p99 latency exceeds 20 ms, or the offered load passes the cap; the
//! largest passing step is the target's capacity for that shape.

use serde::Serialize;

use crate::engine::{self, EngineError, EngineOptions, Progress};
use crate::measure::Measurement;
use crate::scenario::Scenario;
use crate::target::{Target, TargetError};

/// Loss above this fails a step (0.1 %).
pub const MAX_LOSS: f64 = 0.001;
/// p99 one-way latency above this fails a step (20 ms).
pub const MAX_P99_NS: u64 = 20_000_000;

/// How the search grows the load.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions {
    /// Meetings at the first step.
    pub start_meetings: u32,
    /// Meetings added each step.
    pub step_meetings: u32,
    /// Stop before offering more relayed streams than this.
    pub max_streams: u64,
    /// Bisection steps after the first failure.
    pub refine: u32,
}

/// One target's search.
#[derive(Debug, Clone, Serialize)]
pub struct Search {
    /// Every step, in order.
    pub points: Vec<Measurement>,
    /// Index in `points` of the largest passing step.
    pub largest_passing: Option<usize>,
    /// Why the search stopped.
    pub stopped: String,
}

/// What [`search`] tells its caller while it runs.
#[derive(Debug)]
pub enum SearchEvent<'a> {
    /// A step starts: `streams` relayed streams; `at_most` steps in all
    /// can still happen (growth steps under the cap, then bisections).
    Started {
        /// Relayed streams offered.
        streams: u64,
        /// The most steps the whole search can take, as known now.
        at_most: usize,
    },
    /// The running step's engine progress.
    Tick {
        /// Seconds into the step's load.
        elapsed: f64,
        /// The step's seconds of load.
        total: f64,
        /// Packets sent and received so far.
        counters: &'a Progress,
    },
    /// The step ended.
    Finished {
        /// Its figures.
        measurement: &'a Measurement,
        /// Whether it met the capacity criteria.
        passed: bool,
    },
}

/// How many growth steps fit under the cap, plus the bisections: the most
/// steps a search with `options` can take.
pub fn most_steps(scenario: &Scenario, options: SearchOptions) -> usize {
    let mut meetings = options.start_meetings.max(1);
    let mut steps = 0usize;
    let streams = |meetings| {
        Scenario {
            meetings,
            ..scenario.clone()
        }
        .relayed_streams()
    };
    while streams(meetings) <= options.max_streams {
        steps += 1;
        meetings = match meetings.checked_add(options.step_meetings.max(1)) {
            Some(m) => m,
            None => break,
        };
    }
    steps + options.refine as usize
}

/// Searches with a fresh target from `open` at every step, telling `on`
/// as each step starts, progresses and ends. After the first failing
/// step, `search.refine` bisections between it and the last passing step
/// narrow the answer.
pub fn search(
    open: &mut dyn FnMut() -> Result<Box<dyn Target>, TargetError>,
    scenario: &Scenario,
    search: SearchOptions,
    engine_options: &EngineOptions,
    on: &mut dyn FnMut(SearchEvent<'_>),
) -> Result<Search, EngineError> {
    let mut points: Vec<Measurement> = Vec::new();
    let mut at_most = most_steps(scenario, search);
    let mut measure = |meetings: u32, at_most: usize| -> Result<bool, EngineError> {
        let step = Scenario {
            meetings,
            ..scenario.clone()
        };
        on(SearchEvent::Started {
            streams: step.relayed_streams(),
            at_most,
        });
        let mut target = open()?;
        let measured = engine::run(&mut *target, &step, engine_options, &mut |e, t, c| {
            on(SearchEvent::Tick {
                elapsed: e,
                total: t,
                counters: c,
            });
        })?;
        drop(target);
        let passed = measured.passes(MAX_LOSS, MAX_P99_NS);
        on(SearchEvent::Finished {
            measurement: &measured,
            passed,
        });
        points.push(measured);
        Ok(passed)
    };
    let mut done = 0usize;
    let mut passed_at = 0;
    let mut meetings = search.start_meetings.max(1);
    let mut stopped = loop {
        let streams = Scenario {
            meetings,
            ..scenario.clone()
        }
        .relayed_streams();
        if streams > search.max_streams {
            break format!(
                "the next step ({streams} relayed streams) is above --max-streams {}",
                search.max_streams
            );
        }
        let passed = measure(meetings, at_most)?;
        done += 1;
        if !passed {
            // Only the bisections can follow now.
            at_most = done + search.refine as usize;
            break format!("the first failing step was {streams} relayed streams");
        }
        passed_at = meetings;
        meetings += search.step_meetings.max(1);
    };
    let mut failed_at = meetings;
    if stopped.starts_with("the first failing") {
        for _ in 0..search.refine {
            let mid = passed_at + (failed_at - passed_at) / 2;
            if mid <= passed_at {
                break;
            }
            if measure(mid, at_most)? {
                passed_at = mid;
            } else {
                failed_at = mid;
            }
        }
        stopped.push_str(&format!(
            "; bisection narrowed it to between {passed_at} and {failed_at} meetings"
        ));
    }
    points.sort_by_key(|m| m.offered_streams);
    let largest_passing = points
        .iter()
        .rposition(|m| m.meetings == u64::from(passed_at));
    let largest_passing = largest_passing.filter(|_| passed_at > 0);
    Ok(Search {
        points,
        largest_passing,
        stopped,
    })
}
