//! The capacity search and its reports, against the ceiling (no relay, so
//! it runs anywhere): steps grow by the asked number of meetings, stop at
//! `max_streams`, and every step shows up in the JSON, Markdown and plot.

use sluice::srtp::SrtpProfile;
use sluice_bench::capacity::{self, SearchOptions};
use sluice_bench::engine::EngineOptions;
use sluice_bench::report::{Report, TargetReport};
use sluice_bench::scenario::Scenario;
use sluice_bench::target::Target;
use sluice_bench::targets::Ceiling;

#[test]
fn search_steps_until_the_stream_cap_and_reports_every_step() {
    let scenario = Scenario {
        name: "tiny".into(),
        meetings: 1,
        publishers: 2,
        seconds: 0.3,
        ramp_seconds: 0.1,
        ..Scenario::default()
    };
    // 2 relayed streams per meeting: steps of 1, 3, 5 meetings fit under 10.
    let options = SearchOptions {
        start_meetings: 1,
        step_meetings: 2,
        max_streams: 10,
        refine: 2,
    };
    let engine = EngineOptions {
        drain: std::time::Duration::from_millis(200),
        ..EngineOptions::default()
    };
    let mut started = Vec::new();
    let search = capacity::search(
        &mut || Ok(Box::new(Ceiling::new(SrtpProfile::AeadAes128Gcm)) as Box<dyn Target>),
        &scenario,
        options,
        &engine,
        &mut |event| {
            if let capacity::SearchEvent::Started { streams, at_most } = event {
                started.push((streams, at_most));
            }
        },
    )
    .expect("search runs");
    // 1, 3, 5 meetings fit under the cap, then 2 bisections at most; the
    // search never failed, so the bound stayed.
    assert_eq!(started, [(2, 5), (6, 5), (10, 5)]);
    assert_eq!(capacity::most_steps(&scenario, options), 5);
    let offered: Vec<u64> = search.points.iter().map(|m| m.offered_streams).collect();
    assert_eq!(offered, [2, 6, 10]);
    assert_eq!(search.largest_passing, Some(2), "{}", search.stopped);
    assert!(
        search.stopped.contains("--max-streams 10"),
        "{}",
        search.stopped
    );
    for m in &search.points {
        assert_eq!(m.lost, 0);
        assert!(m.flawless());
    }

    let report = Report::new(
        "capacity",
        scenario,
        vec![TargetReport {
            name: "ceiling".into(),
            describe: "ceiling".into(),
            points: search.points,
            largest_passing: search.largest_passing,
            note: Some(search.stopped),
        }],
    );
    let dir = std::env::temp_dir().join(format!("sluice-bench-capacity-{}", std::process::id()));
    report.write(&dir).expect("writes the reports");
    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
    assert!(summary.contains("## ceiling steps"), "{summary}");
    assert!(summary.contains("| 10 | 0.000 |"), "{summary}");
    assert!(summary.contains("(largest)"), "{summary}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json"))
            .expect("JSON");
    assert_eq!(
        json["targets"][0]["points"].as_array().map(Vec::len),
        Some(3)
    );
    let svg = std::fs::read_to_string(dir.join("latency.svg")).expect("latency.svg");
    assert!(svg.contains("ceiling p99"), "the legend names each series");
    let _ = std::fs::remove_dir_all(dir);
}

/// The ceiling, but meetings from index `from` on get receive keys no
/// sender uses, so any step with more than `from` meetings fails.
#[derive(Debug)]
struct FailsBeyond {
    ceiling: Ceiling,
    from: usize,
}

impl Target for FailsBeyond {
    fn name(&self) -> &'static str {
        "fails-beyond"
    }

    fn describe(&self) -> String {
        format!("the ceiling, broken from meeting {}", self.from)
    }

    fn admit(
        &mut self,
        meeting: &sluice_bench::target::MeetingSpec,
        participants: &[std::net::SocketAddr],
    ) -> Result<Vec<sluice_bench::target::LegPlan>, sluice_bench::target::TargetError> {
        let mut plans = self.ceiling.admit(meeting, participants)?;
        if meeting.index >= self.from {
            let wrong = sluice::srtp::MasterKey::new(
                meeting.profile,
                &vec![0x42; meeting.profile.key_material_len()],
            )
            .expect("key");
            for path in plans.iter_mut().flat_map(|p| p.receives.iter_mut()) {
                path.key = Some(wrong.clone());
            }
        }
        Ok(plans)
    }

    fn pid(&self) -> Option<u32> {
        None
    }
}

#[test]
fn bisection_finds_the_largest_passing_step_between_two_coarse_ones() {
    let scenario = Scenario {
        name: "tiny".into(),
        meetings: 1,
        publishers: 2,
        seconds: 0.2,
        ramp_seconds: 0.0,
        ..Scenario::default()
    };
    let options = SearchOptions {
        start_meetings: 1,
        step_meetings: 4,
        max_streams: 1000,
        refine: 2,
    };
    let engine = EngineOptions {
        drain: std::time::Duration::from_millis(100),
        ..EngineOptions::default()
    };
    let mut bounds = Vec::new();
    let search = capacity::search(
        &mut || {
            Ok(Box::new(FailsBeyond {
                ceiling: Ceiling::new(SrtpProfile::AeadAes128Gcm),
                from: 3,
            }) as Box<dyn Target>)
        },
        &scenario,
        options,
        &engine,
        &mut |event| {
            if let capacity::SearchEvent::Started { at_most, .. } = event {
                bounds.push(at_most);
            }
        },
    )
    .expect("search runs");
    // Once step 2 failed, only the 2 bisections could follow: 4 in all.
    let most = capacity::most_steps(&scenario, options);
    assert!(most > 4);
    assert_eq!(bounds, [most, most, 4, 4]);
    // Steps: 1 (pass), 5 (fail), then 3 (pass), 4 (fail).
    let meetings: Vec<u64> = search.points.iter().map(|m| m.meetings).collect();
    assert_eq!(meetings, [1, 3, 4, 5], "{}", search.stopped);
    let largest = search.largest_passing.map(|i| search.points[i].meetings);
    assert_eq!(largest, Some(3), "{}", search.stopped);
    assert!(
        search.stopped.contains("between 3 and 4 meetings"),
        "{}",
        search.stopped
    );
}
