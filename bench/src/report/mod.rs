//! Reports for people and for tools: a Markdown summary, a JSON file with
//! every figure, an SVG plot of latency and loss against offered load, and
//! `report.html`, the summary with the plot inline in one offline page.
//! Every figure of a relay is also given as a ratio to the ceiling, and
//! sluice's as a ratio to rtpengine's when both ran.

pub mod html;
mod markdown;
mod svg;

use std::path::Path;

use serde::Serialize;

use crate::measure::Measurement;
use crate::scenario::Scenario;

pub use markdown::markdown;
pub use svg::plot;

/// One target's results: a single point (`run`) or a search (`capacity`).
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// Target name.
    pub name: String,
    /// What ran.
    pub describe: String,
    /// Every measured point, by growing load.
    pub points: Vec<Measurement>,
    /// Index of the largest passing point (capacity mode).
    pub largest_passing: Option<usize>,
    /// Why a capacity search stopped, or why the target could not run.
    pub note: Option<String>,
}

impl TargetReport {
    /// The point the summary table shows: the largest passing one in a
    /// capacity search, else the last.
    pub fn headline(&self) -> Option<&Measurement> {
        self.largest_passing
            .and_then(|i| self.points.get(i))
            .or_else(|| self.points.last())
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `run`, `capacity` or `smoke`.
    pub mode: String,
    /// The scenario as run.
    pub scenario: Scenario,
    /// When it ran (seconds since the Unix epoch).
    pub unix_time: u64,
    /// Per target, in `--targets` order.
    pub targets: Vec<TargetReport>,
    /// Headline figures as ratios (`sluice/ceiling`, `sluice/rtpengine`, …).
    pub ratios: Vec<Ratios>,
}

/// One pair's ratios of headline figures.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// `A/B`.
    pub pair: String,
    /// (figure, A ÷ B); absent where B is 0.
    pub figures: Vec<(String, Option<f64>)>,
}

/// The figures a summary table shows: (name, unit, value).
pub fn headline_figures(m: &Measurement) -> Vec<(&'static str, f64)> {
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut rows = vec![
        ("offered streams (relayed)", m.offered_streams as f64),
        ("packets sent", m.sent as f64),
        ("deliveries expected", m.expected as f64),
        ("delivered", m.received as f64),
        ("lost", m.lost as f64),
        ("loss %", m.loss_ratio * 100.0),
        ("duplicated", m.duplicated as f64),
        ("reordered", m.reordered as f64),
        ("decrypt failures", m.decrypt_failures as f64),
        ("latency p50 ms", ms(m.latency_ns.p50)),
        ("latency p99 ms", ms(m.latency_ns.p99)),
        ("latency p99.9 ms", ms(m.latency_ns.p999)),
        ("latency max ms", ms(m.latency_ns.max)),
        ("jitter mean ms", m.jitter_ms_mean),
        ("jitter max ms", m.jitter_ms_max),
        ("relayed pps", m.relayed_pps),
        ("relayed Gbit/s", m.relayed_gbps),
    ];
    if let Some(relay) = &m.relay {
        rows.push(("relay CPU mean %", relay.cpu_mean_pct));
        rows.push(("relay CPU max %", relay.cpu_max_pct));
        rows.push((
            "relay RSS max MiB",
            relay.rss_max_bytes as f64 / (1 << 20) as f64,
        ));
        if m.received > 0 {
            rows.push((
                "relay CPU µs per delivered packet",
                relay.cpu_seconds * 1e6 / m.received as f64,
            ));
            rows.push((
                "of which in the kernel, µs",
                relay.cpu_system_seconds * 1e6 / m.received as f64,
            ));
        }
    }
    rows.push(("verified deliveries", m.verified as f64));
    rows.push(("generator CPU mean %", m.generator.cpu_mean_pct));
    rows.push(("generator late sends", m.late_sends as f64));
    rows
}

impl Report {
    /// A report; ratios are worked out from the targets' headlines.
    pub fn new(mode: &str, scenario: Scenario, targets: Vec<TargetReport>) -> Self {
        let find = |name: &str| {
            targets
                .iter()
                .find(|t| t.name == name)
                .and_then(TargetReport::headline)
        };
        let mut ratios = Vec::new();
        let mut pair = |a: &Measurement, b: &Measurement| {
            let (fa, fb) = (headline_figures(a), headline_figures(b));
            let figures = fa
                .iter()
                .filter_map(|(name, va)| {
                    let (_, vb) = fb.iter().find(|(n, _)| n == name)?;
                    Some(((*name).to_owned(), (*vb != 0.0).then(|| va / vb)))
                })
                .collect();
            ratios.push(Ratios {
                pair: format!("{}/{}", a.target, b.target),
                figures,
            });
        };
        if let Some(ceiling) = find("ceiling") {
            for t in targets.iter().filter(|t| t.name != "ceiling") {
                if let Some(m) = t.headline() {
                    pair(m, ceiling);
                }
            }
        }
        if let (Some(s), Some(f)) = (find("sluice"), find("forward")) {
            pair(s, f);
        }
        if let (Some(s), Some(r)) = (find("sluice"), find("rtpengine")) {
            pair(s, r);
        }
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            mode: mode.into(),
            scenario,
            unix_time,
            targets,
            ratios,
        }
    }

    /// Writes `summary.md`, `report.json`, `latency.svg` and
    /// `report.html` (the summary with the plot inline) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let summary = markdown(self);
        write_summary_and_json(dir, &summary, self)?;
        let svg_path = dir.join("latency.svg");
        plot(self, &svg_path)?;
        let svg = std::fs::read_to_string(&svg_path)
            .map_err(|e| format!("cannot read {}: {e}", svg_path.display()))?;
        let title = format!("sluice-bench {}: {}", self.mode, self.scenario.name);
        let page = html::page(
            &title,
            &summary,
            &[(
                "One-way latency (top) and loss (bottom) against offered load",
                &svg,
            )],
        );
        write_file(&dir.join("report.html"), page.as_bytes())
    }
}

/// Writes one report file; the error names it.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates `dir` and writes `summary.md` (the Markdown) and `report.json`
/// (`report` as pretty JSON) into it; errors name the file.
pub fn write_summary_and_json(
    dir: &Path,
    markdown: &str,
    report: &impl Serialize,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let put = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    put("summary.md", markdown.as_bytes())?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| format!("report.json: {e}"))?;
    put("report.json", &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Tally;
    use crate::procstat::ProcessFigures;

    fn point(target: &str, pps_scale: u64) -> Measurement {
        let scenario = Scenario::smoke();
        let mut tally = Tally::new(&scenario, target, target.into());
        tally.steady_packets = 1000 * pps_scale;
        tally.latency.record(1_000_000 * pps_scale);
        tally.finish(None, ProcessFigures::default())
    }

    fn single(name: &str, m: Measurement) -> TargetReport {
        TargetReport {
            name: name.into(),
            describe: name.into(),
            points: vec![m],
            largest_passing: None,
            note: None,
        }
    }

    #[test]
    fn ratios_to_the_ceiling_and_between_relays() {
        let report = Report::new(
            "run",
            Scenario::smoke(),
            vec![
                single("ceiling", point("ceiling", 4)),
                single("sluice", point("sluice", 2)),
                single("rtpengine", point("rtpengine", 1)),
            ],
        );
        let pairs: Vec<&str> = report.ratios.iter().map(|r| r.pair.as_str()).collect();
        assert_eq!(
            pairs,
            ["sluice/ceiling", "rtpengine/ceiling", "sluice/rtpengine"]
        );
        let figure = |pair: usize, name: &str| {
            report.ratios[pair]
                .figures
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| *v)
        };
        assert_eq!(figure(0, "relayed pps"), Some(0.5));
        assert_eq!(figure(2, "relayed pps"), Some(2.0));
        assert_eq!(figure(1, "latency max ms"), Some(0.25));
        // Nothing lost anywhere: no ratio rather than a division by zero.
        assert_eq!(figure(0, "lost"), None);
        let md = markdown(&report);
        assert!(
            md.contains("| sluice/ceiling | rtpengine/ceiling | sluice/rtpengine |"),
            "{md}"
        );
        assert!(
            md.contains("| relayed pps | 1333 | 666.67 | 333.33 | 0.50× | 0.25× | 2.00× |"),
            "{md}"
        );
    }

    #[test]
    fn a_target_that_did_not_run_is_named_with_its_reason() {
        let mut failed = single("rtpengine", point("rtpengine", 1));
        failed.points.clear();
        failed.note = Some("rtpengine could not start: not installed".into());
        let report = Report::new(
            "run",
            Scenario::smoke(),
            vec![single("ceiling", point("ceiling", 1)), failed],
        );
        assert!(report.ratios.is_empty());
        let md = markdown(&report);
        assert!(
            md.contains("rtpengine could not start: not installed"),
            "{md}"
        );
    }
}
