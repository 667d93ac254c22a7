//! `latency.svg`: one-way latency percentiles (top) and loss (bottom)
//! against offered load, one colour per target.

use std::path::Path;

use plotters::prelude::*;

use super::Report;

const PERCENTILES: [(&str, u32); 3] = [("p50", 1), ("p99", 2), ("p99.9", 3)];

/// Latency is drawn on a log axis from 1 µs; smaller values sit on it.
const FLOOR_MS: f64 = 0.001;

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6).max(FLOOR_MS)
}

/// Draws the plot to `path`.
pub fn plot(report: &Report, path: &Path) -> Result<(), String> {
    draw(report, path).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

fn draw(report: &Report, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let points = || report.targets.iter().flat_map(|t| t.points.iter());
    let x_max = points()
        .map(|m| m.offered_streams as f64)
        .fold(1.0, f64::max)
        * 1.15;
    let limit_ms = ms(crate::capacity::MAX_P99_NS);
    let y_max = points()
        .map(|m| ms(m.latency_ns.p999))
        .fold(limit_ms, f64::max)
        * 2.0;
    let loss_max = points().map(|m| m.loss_ratio * 100.0).fold(0.2, f64::max) * 1.2;

    let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(460);
    let title = format!("sluice-bench {}: {}", report.mode, report.scenario.name);
    let mut latency = ChartBuilder::on(&top)
        .caption(format!("{title}: one-way latency"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, (FLOOR_MS..y_max).log_scale())?;
    latency
        .configure_mesh()
        .x_desc("offered streams (relayed)")
        .y_desc("latency, ms (log)")
        .draw()?;
    {
        latency
            .draw_series(LineSeries::new(
                [(0.0, limit_ms), (x_max, limit_ms)],
                BLACK.mix(0.4),
            ))?
            .label("capacity limit: p99 20 ms")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    }
    for (i, target) in report.targets.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        for (name, width) in PERCENTILES {
            let series: Vec<(f64, f64)> = target
                .points
                .iter()
                .map(|m| {
                    let v = match name {
                        "p50" => m.latency_ns.p50,
                        "p99" => m.latency_ns.p99,
                        _ => m.latency_ns.p999,
                    };
                    (m.offered_streams as f64, ms(v))
                })
                .collect();
            latency
                .draw_series(LineSeries::new(series.clone(), color.stroke_width(width)))?
                .label(format!("{} {name}", target.name))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
                });
            latency.draw_series(
                series
                    .iter()
                    .map(|&p| Circle::new(p, 2 + width, color.filled())),
            )?;
        }
    }
    latency
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;

    let mut loss = ChartBuilder::on(&bottom)
        .caption("loss", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..loss_max)?;
    loss.configure_mesh()
        .x_desc("offered streams (relayed)")
        .y_desc("loss, %")
        .draw()?;
    loss.draw_series(LineSeries::new(
        [(0.0, 0.1), (x_max, 0.1)],
        BLACK.mix(0.4).stroke_width(1),
    ))?
    .label("capacity limit 0.1 %")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    for (i, target) in report.targets.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let series: Vec<(f64, f64)> = target
            .points
            .iter()
            .map(|m| (m.offered_streams as f64, m.loss_ratio * 100.0))
            .collect();
        loss.draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))?
            .label(target.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        loss.draw_series(series.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    loss.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
