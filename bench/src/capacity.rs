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
/// gets (step label, elapsed, total, counters).
pub fn search(
    open: &mut dyn FnMut() -> Result<Box<dyn Target>, TargetError>,
    scenario: &Scenario,
    search: SearchOptions,
    engine_options: &EngineOptions,
    progress: &mut dyn FnMut(&str, f64, f64, &Progress),
) -> Result<Search, EngineError> {
    let mut points = Vec::new();
    let mut largest_passing = None;
    let mut meetings = search.start_meetings.max(1);
    let stopped = loop {
        let step = Scenario {
            meetings,
            ..scenario.clone()
        };
        if step.relayed_streams() > search.max_streams {
            break format!(
                "the next step ({} relayed streams) is above --max-streams {}",
                step.relayed_streams(),
                search.max_streams
            );
        }
        let mut target = open()?;
        let label = format!("{} streams", step.relayed_streams());
        let measured = engine::run(&mut *target, &step, engine_options, &mut |e, t, c| {
            progress(&label, e, t, c);
        })?;
        drop(target);
        let passed = measured.passes(MAX_LOSS, MAX_P99_NS);
        let why = format!(
            "{} relayed streams: loss {:.3} %, p99 {:.2} ms",
            step.relayed_streams(),
            measured.loss_ratio * 100.0,
            measured.latency_ns.p99 as f64 / 1e6
        );
        points.push(measured);
        if !passed {
            break format!("failed at {why}");
        }
        largest_passing = Some(points.len() - 1);
        meetings += search.step_meetings.max(1);
    };
    Ok(Search {
        points,
        largest_passing,
        stopped,
    })
}
