//! `report.html`: one self-contained page a planner opens in any browser,
//! offline: the summary's tables and the plots inline (SVG in the page,
//! no script, no stylesheet or font from anywhere else).
//!
//! The page is made from the Markdown summary the other reports share, so
//! the figures cannot disagree; the converter understands only what
//! `markdown.rs` and `dialin/report.rs` write (headings, bullet lists,
//! pipe tables, paragraphs, `**bold**` and `` `code` ``). Written here
//! rather than pulling a Markdown crate for that subset.

use std::fmt::Write as _;

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;\
color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;\
padding:.25em .6em;text-align:right}td:first-child,th:first-child{text-align:left}\
th{background:#eee}code{background:#f4f4f4;padding:0 .2em}figure{margin:1em 0}\
svg{max-width:100%;height:auto}";

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `text`, then turns `**x**` into bold and `` `x` `` into code.
fn inline(text: &str) -> String {
    let escaped = escape(text);
    let mut out = String::new();
    let mut bold = false;
    let mut code = false;
    let mut rest = escaped.as_str();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("**") {
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
            rest = after;
        } else if let Some(after) = rest.strip_prefix('`') {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
            rest = after;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if bold {
        out.push_str("</strong>");
    }
    if code {
        out.push_str("</code>");
    }
    out
}

fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

fn is_rule(line: &str) -> bool {
    cells(line)
        .iter()
        .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')))
}

/// The summary Markdown as HTML body content.
pub fn body(markdown: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = markdown.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            i += 1;
        } else if let Some(level) = (1..=4)
            .rev()
            .find(|n| trimmed.starts_with(&format!("{} ", "#".repeat(*n))))
        {
            let _ = writeln!(
                out,
                "<h{level}>{}</h{level}>",
                inline(&trimmed[level + 1..])
            );
            i += 1;
        } else if trimmed.starts_with('|') {
            out.push_str("<table>\n");
            let mut header = true;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                if is_rule(lines[i]) {
                    i += 1;
                    continue;
                }
                let tag = if header && i + 1 < lines.len() && is_rule(lines[i + 1]) {
                    "th"
                } else {
                    "td"
                };
                header = false;
                out.push_str("<tr>");
                for cell in cells(lines[i]) {
                    let _ = write!(out, "<{tag}>{}</{tag}>", inline(cell));
                }
                out.push_str("</tr>\n");
                i += 1;
            }
            out.push_str("</table>\n");
        } else if trimmed.starts_with("- ") {
            out.push_str("<ul>\n");
            while i < lines.len() && lines[i].trim_start().starts_with("- ") {
                let item = lines[i].trim_start();
                let nested = lines[i].starts_with("  ");
                let _ = writeln!(
                    out,
                    "<li{}>{}</li>",
                    if nested {
                        " style=\"margin-left:1.5em\""
                    } else {
                        ""
                    },
                    inline(&item[2..])
                );
                i += 1;
            }
            out.push_str("</ul>\n");
        } else {
            let mut paragraph = Vec::new();
            while i < lines.len() {
                let t = lines[i].trim_start();
                if t.is_empty() || t.starts_with('|') || t.starts_with('#') || t.starts_with("- ") {
                    break;
                }
                paragraph.push(t);
                i += 1;
            }
            let _ = writeln!(out, "<p>{}</p>", inline(&paragraph.join(" ")));
        }
    }
    out
}

/// An SVG document as an element to inline (its XML prologue dropped).
fn inline_svg(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(at) => &svg[at..],
        None => svg,
    }
}

/// The whole page: `title`, the summary, then each `(caption, svg)`.
pub fn page(title: &str, markdown: &str, plots: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    );
    for (caption, svg) in plots {
        let _ = write!(
            out,
            "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            inline_svg(svg),
            escape(caption)
        );
    }
    out.push_str(&body(markdown));
    out.push_str("</body>\n</html>\n");
    out
}

/// A small line plot as SVG: `series` of (name, points), x and y linear
/// from 0. For reports whose figures plotters does not draw.
pub fn line_plot(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> String {
    const W: f64 = 900.0;
    const H: f64 = 360.0;
    const L: f64 = 70.0;
    const B: f64 = 50.0;
    const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let x_max = all().map(|p| p.0).fold(1.0, f64::max) * 1.1;
    let y_max = all().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let x = |v: f64| L + v / x_max * (W - L - 20.0);
    let y = |v: f64| H - B - v / y_max * (H - B - 30.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"16\">{}</text>\
         <line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\
         <line x1=\"{L}\" y1=\"30\" x2=\"{L}\" y2=\"{}\" stroke=\"black\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>",
        W / 2.0,
        escape(title),
        H - B,
        W - 20.0,
        H - B,
        H - B,
        W / 2.0,
        H - 12.0,
        escape(x_label),
        (H - B) / 2.0,
        (H - B) / 2.0,
        escape(y_label)
    );
    for k in 0..=4 {
        let (vx, vy) = (x_max / 4.0 * f64::from(k), y_max / 4.0 * f64::from(k));
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{vx:.0}</text>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{vy:.0}</text>",
            x(vx),
            H - B + 16.0,
            L - 6.0,
            y(vy) + 4.0
        );
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut sorted = points.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = sorted
            .iter()
            .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for &(px, py) in &sorted {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{color}\"/>",
                x(px),
                y(py)
            );
        }
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            L + 12.0,
            36.0 + 16.0 * i as f64,
            L + 32.0,
            41.0 + 16.0 * i as f64,
            escape(name)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "# sluice-bench run: small\n\n2 meetings, **E2EE** share 0.5.\n\n\
        - **ceiling**: loopback\n  - a note <b>\n\n| figure | sluice | ceiling |\n|---|---:|---:|\n\
        | loss % | 0 | 0 |\n| p99 ms | 0.40 | 0.10 |\n";

    #[test]
    fn the_summary_becomes_headings_lists_and_tables() {
        let html = body(SUMMARY);
        assert!(html.contains("<h1>sluice-bench run: small</h1>"), "{html}");
        assert!(
            html.contains("<p>2 meetings, <strong>E2EE</strong> share 0.5.</p>"),
            "{html}"
        );
        assert!(
            html.contains("<li><strong>ceiling</strong>: loopback</li>"),
            "{html}"
        );
        assert!(
            html.contains("a note &lt;b&gt;"),
            "markup in figures is escaped"
        );
        assert!(
            html.contains("<tr><th>figure</th><th>sluice</th><th>ceiling</th></tr>"),
            "{html}"
        );
        assert!(
            html.contains("<tr><td>p99 ms</td><td>0.40</td><td>0.10</td></tr>"),
            "{html}"
        );
        assert!(!html.contains("---"), "the rule row is dropped");
    }

    #[test]
    fn the_page_inlines_its_plots_and_loads_nothing() {
        let plot = line_plot(
            "calls",
            "calls",
            "CPU %",
            &[("sluice", vec![(50.0, 10.0), (100.0, 21.0)])],
        );
        let svg = format!("<?xml version=\"1.0\"?>\n{plot}");
        let page = page("report", SUMMARY, &[("CPU against calls", &svg)]);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<figure>\n<svg xmlns"), "{page}");
        assert!(
            !page.contains("<?xml"),
            "the prologue is not valid inside HTML"
        );
        assert!(page.contains("<polyline"), "{page}");
        for external in ["<script", "<link", "src=", "href=", "@import", "url("] {
            assert!(
                !page.contains(external),
                "the page loads something: {external}"
            );
        }
    }
}
