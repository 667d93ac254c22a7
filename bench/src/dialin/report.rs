//! The dial-in report: a Markdown summary (stdout and `summary.md`) and
//! every run in `report.json`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::rtpengine::{EngineRun, EngineSettings, TRANSCODE_TO};
use super::sluice::{BridgeRun, BridgeSettings};
use super::{Search, SearchOptions};

/// One target's search, or why it did not run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<P> {
    /// The search ran.
    Searched(Search<P>),
    /// It could not run, in words.
    Failed(String),
}

/// Everything one `dialin` invocation measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DialinReport {
    /// Seconds since the Unix epoch when the report was made.
    pub unix_time: u64,
    /// Logical cores of the machine.
    pub cores: usize,
    /// The search's steps.
    pub search: SearchOptions,
    /// How sluice's bridges ran.
    pub sluice_settings: BridgeSettings,
    /// How rtpengine ran.
    pub rtpengine_settings: EngineSettings,
    /// sluice's search, if asked for.
    pub sluice: Option<Outcome<BridgeRun>>,
    /// rtpengine's search, if asked for.
    pub rtpengine: Option<Outcome<EngineRun>>,
}

impl DialinReport {
    /// sluice's calls per core: its largest passing N (one thread).
    pub fn sluice_calls_per_core(&self) -> Option<usize> {
        match &self.sluice {
            Some(Outcome::Searched(s)) => s.largest_passing,
            _ => None,
        }
    }

    /// rtpengine's largest passing run.
    pub fn rtpengine_best(&self) -> Option<&EngineRun> {
        match &self.rtpengine {
            Some(Outcome::Searched(s)) => {
                let n = s.largest_passing?;
                s.points.iter().find(|p| p.calls == n)
            }
            _ => None,
        }
    }

    /// Writes `summary.md`, `report.json` and `report.html` (the summary
    /// with a plot of CPU against calls inline) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let summary = markdown(self);
        crate::report::write_summary_and_json(dir, &summary, self)?;
        let mut series: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
        if let Some(Outcome::Searched(s)) = &self.sluice {
            series.push((
                "sluice bridge",
                s.points
                    .iter()
                    .map(|p| (p.calls as f64, p.cpu_pct))
                    .collect(),
            ));
        }
        if let Some(Outcome::Searched(s)) = &self.rtpengine {
            series.push((
                "rtpengine",
                s.points
                    .iter()
                    .map(|p| (p.calls as f64, p.cpu_pct))
                    .collect(),
            ));
        }
        let plot = crate::report::html::line_plot(
            "dial-in: CPU against concurrent calls",
            "concurrent calls",
            "CPU, % of one core",
            &series,
        );
        let page = crate::report::html::page(
            "sluice-bench dialin",
            &summary,
            &[("CPU of each step against its calls, per target", &plot)],
        );
        crate::report::write_file(&dir.join("report.html"), page.as_bytes())
    }
}

/// The summary: the headline table, then every run of each target.
pub fn markdown(r: &DialinReport) -> String {
    let mut s = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(
        s,
        "# Dial-in transcoding capacity\n\n{} cores; each step {} s; search from {} calls, doubling, then {} bisections.\n",
        r.cores, r.sluice_settings.seconds, r.search.start, r.search.refine
    );
    let _ = writeln!(
        s,
        "| target | what one call costs | calls per core | at that load |\n|---|---|---:|---|"
    );
    let sluice_cpc = r.sluice_calls_per_core();
    match &r.sluice {
        Some(Outcome::Searched(search)) => {
            let best = sluice_cpc.and_then(|n| search.points.iter().find(|p| p.calls == n));
            let _ = writeln!(
                s,
                "| sluice | {} of every {} callers talking: PCMU→Opus ({} bit/s, complexity {}, silent callers suppressed); a meeting mix of 3 Opus speakers shared by its {} calls, →PCMU | **{}** | {} |",
                r.sluice_settings.talking_per_meeting,
                r.sluice_settings.callers_per_meeting,
                r.sluice_settings.opus_bitrate,
                r.sluice_settings.opus_complexity,
                r.sluice_settings.callers_per_meeting,
                sluice_cpc.map_or("none passed".into(), |n| n.to_string()),
                best.map_or(String::new(), |p| format!(
                    "{} late of {} rounds, round p50 {:.2} ms, p99 {:.2} ms, thread CPU {:.0} %, so {:.0} calls per busy core",
                    p.late_rounds,
                    p.rounds,
                    p.round_p50_us as f64 / 1000.0,
                    p.round_p99_us as f64 / 1000.0,
                    p.cpu_pct,
                    p.calls_per_busy_core
                ))
            );
        }
        Some(Outcome::Failed(why)) => {
            let _ = writeln!(s, "| sluice | | did not run: {why} | |");
        }
        None => {}
    }
    match &r.rtpengine {
        Some(Outcome::Searched(search)) => {
            let best = r.rtpengine_best();
            let _ = writeln!(
                s,
                "| rtpengine {} | PCMU↔{TRANSCODE_TO} (complexity: FFmpeg default 10), no mix | **{}** | {} |",
                best.or(search.points.first()).map_or("", |p| p.version.as_str()),
                search
                    .largest_passing
                    .map_or("none passed".into(), |n| n.to_string()),
                best.map_or(String::new(), |p| format!(
                    "CPU {:.0} % of one core ({} threads), so {:.0} calls per busy core; loss {:.3} % / {:.3} %",
                    p.cpu_pct,
                    p.threads,
                    p.calls_per_core,
                    p.to_meeting.loss_pct,
                    p.to_caller.loss_pct
                ))
            );
        }
        Some(Outcome::Failed(why)) => {
            let _ = writeln!(s, "| rtpengine | | did not run: {why} | |");
        }
        None => {}
    }
    if let (Some(a), Some(b)) = (sluice_cpc, r.rtpengine_best().map(|p| p.calls)) {
        let _ = writeln!(
            s,
            "\nsluice / rtpengine calls per core: **{:.1}×**",
            a as f64 / b as f64
        );
    }

    if let Some(Outcome::Searched(search)) = &r.sluice {
        let _ = writeln!(
            s,
            "\n## sluice: every step ({})\n\n| calls | rounds | late | round p50 ms | p99 ms | max ms | worst finish after due ms | thread CPU % | calls per busy core | slowest rounds: wall / thread CPU ms, involuntary switches, minor faults | run: involuntary switches, minor faults, steal % | pass |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
            search.stopped
        );
        for p in &search.points {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {} | {}, {}, {:.1} | {} |",
                p.calls,
                p.rounds,
                p.late_rounds,
                p.round_p50_us as f64 / 1000.0,
                p.round_p99_us as f64 / 1000.0,
                p.round_max_us as f64 / 1000.0,
                p.finish_max_us as f64 / 1000.0,
                p.cpu_pct,
                p.calls_per_busy_core,
                p.slowest
                    .iter()
                    .map(|r| format!(
                        "{:.1} / {:.1}, {}, {}",
                        r.wall_us as f64 / 1000.0,
                        r.cpu_us as f64 / 1000.0,
                        r.involuntary_switches,
                        r.minor_faults
                    ))
                    .collect::<Vec<_>>()
                    .join("; "),
                p.involuntary_switches,
                p.minor_faults,
                p.steal_pct,
                if p.passes() { "yes" } else { "no" }
            );
        }
    }
    if let Some(Outcome::Searched(search)) = &r.rtpengine {
        let _ = writeln!(
            s,
            "\n## rtpengine: every step ({})\n\n| calls | rtpengine CPU % | threads | calls per busy core | to meeting: Opus rcvd / sent, loss %, backlog growth → at close (frames/call) | to caller: PCMU rcvd / sent, loss %, backlog growth → at close | generator late % | pass |\n|---:|---:|---:|---:|---|---|---:|---|",
            search.stopped
        );
        for p in &search.points {
            let dir = |d: &super::rtpengine::Direction| {
                format!(
                    "{} / {}, {:.3}, {:+.2} → {:.2} frames",
                    d.expected_pt, d.sent, d.loss_pct, d.backlog_growth_frames, d.backlog_frames
                )
            };
            let _ = writeln!(
                s,
                "| {} | {:.0} | {} | {:.0} | {} | {} | {:.2} | {} |",
                p.calls,
                p.cpu_pct,
                p.threads,
                p.calls_per_core,
                dir(&p.to_meeting),
                dir(&p.to_caller),
                p.generator_late_pct,
                if p.passes() { "yes" } else { "no" }
            );
        }
    }
    s
}
