//! The Markdown summary: one table of headline figures with a column per
//! target and one per ratio, and, for capacity searches, every step.

use std::fmt::Write as _;

use super::{Report, headline_figures};

fn number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.fract() == 0.0 && v.abs() >= 1.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The summary as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.scenario;
    let _ = writeln!(out, "# sluice-bench {}: {}\n", report.mode, s.name);
    let _ = writeln!(
        out,
        "{} meetings × ({} publishers + {} subscribers), E2EE share {}, {}, {} s after a {} s ramp.\n",
        s.meetings, s.publishers, s.subscribers, s.e2ee_share, s.profile, s.seconds, s.ramp_seconds
    );
    for t in &report.targets {
        let _ = writeln!(out, "- **{}**: {}", t.name, t.describe);
        if let Some(note) = &t.note {
            let _ = writeln!(out, "  - {note}");
        }
    }
    let _ = writeln!(out);
    let shown: Vec<_> = report
        .targets
        .iter()
        .filter_map(|t| t.headline().map(|m| (t, m)))
        .collect();
    if shown.is_empty() {
        let _ = writeln!(out, "No target produced figures.");
        return out;
    }
    if report.mode == "capacity" {
        let _ = writeln!(
            out,
            "Headline: the largest passing load of each target (loss ≤ 0.1 %, p99 ≤ 20 ms).\n"
        );
    }
    let _ = write!(out, "| figure |");
    for (t, _) in &shown {
        let _ = write!(out, " {} |", t.name);
    }
    for r in &report.ratios {
        let _ = write!(out, " {} |", r.pair);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "|---|{}",
        "---:|".repeat(shown.len() + report.ratios.len())
    );
    let rows = headline_figures(shown[0].1);
    let all: Vec<_> = shown.iter().map(|(_, m)| headline_figures(m)).collect();
    let mut names: Vec<&str> = rows.iter().map(|(n, _)| *n).collect();
    for figures in &all {
        for (n, _) in figures {
            if !names.contains(n) {
                names.push(n);
            }
        }
    }
    for name in names {
        let _ = write!(out, "| {name} |");
        for figures in &all {
            match figures.iter().find(|(n, _)| *n == name) {
                Some((_, v)) => {
                    let _ = write!(out, " {} |", number(*v));
                }
                None => out.push_str(" – |"),
            }
        }
        for r in &report.ratios {
            match r
                .figures
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| *v)
            {
                Some(v) => {
                    let _ = write!(out, " {v:.2}× |");
                }
                None => out.push_str(" – |"),
            }
        }
        let _ = writeln!(out);
    }
    for (t, m) in &shown {
        if m.generator_bound() {
            let _ = writeln!(
                out,
                "\n> **{}: the generator fell behind**: {} of {} packets were sent more than 1 ms late \
                 (worst {:.1} ms). The figures are bounded by the generator sharing this box; \
                 use `--cpu-pin`, more cores, or a smaller load.",
                t.name,
                m.late_sends,
                m.sent,
                m.worst_late_us / 1e3
            );
        }
    }
    if report.mode == "capacity" {
        for t in &report.targets {
            let _ = writeln!(out, "\n## {} steps\n", t.name);
            let _ = writeln!(
                out,
                "| offered streams | loss % | p50 ms | p99 ms | p99.9 ms | relay CPU % | pass |"
            );
            let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|:---:|");
            for (i, m) in t.points.iter().enumerate() {
                let pass = m.passes(crate::capacity::MAX_LOSS, crate::capacity::MAX_P99_NS);
                let _ = writeln!(
                    out,
                    "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {}{} |",
                    m.offered_streams,
                    m.loss_ratio * 100.0,
                    m.latency_ns.p50 as f64 / 1e6,
                    m.latency_ns.p99 as f64 / 1e6,
                    m.latency_ns.p999 as f64 / 1e6,
                    m.relay
                        .map_or("–".into(), |r| format!("{:.0}", r.cpu_mean_pct)),
                    if pass { "yes" } else { "no" },
                    if t.largest_passing == Some(i) {
                        " (largest)"
                    } else {
                        ""
                    },
                );
            }
        }
    }
    out
}
