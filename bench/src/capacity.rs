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

/// Searches with a fresh target from `open` at every step; `progress`
/// gets (step label, elapsed, total, counters). After the first failing
/// step, `search.refine` bisections between it and the last passing step
/// narrow the answer.
pub fn search(
    open: &mut dyn FnMut() -> Result<Box<dyn Target>, TargetError>,
    scenario: &Scenario,
    search: SearchOptions,
    engine_options: &EngineOptions,
    progress: &mut dyn FnMut(&str, f64, f64, &Progress),
) -> Result<Search, EngineError> {
    let mut points: Vec<Measurement> = Vec::new();
    let mut measure = |meetings: u32| -> Result<bool, EngineError> {
        let step = Scenario {
            meetings,
            ..scenario.clone()
        };
        let mut target = open()?;
        let label = format!("{} streams", step.relayed_streams());
        let measured = engine::run(&mut *target, &step, engine_options, &mut |e, t, c| {
            progress(&label, e, t, c);
        })?;
        drop(target);
        let passed = measured.passes(MAX_LOSS, MAX_P99_NS);
        points.push(measured);
        Ok(passed)
    };
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
        if !measure(meetings)? {
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
            if measure(mid)? {
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
