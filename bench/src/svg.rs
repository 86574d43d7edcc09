//! A hand-written SVG of one or more reports: the latency percentile spectrum (x: percentile on
//! a "nines" scale, y: latency) and throughput over time, one line per report and kind.
//!
//! ```text
//!  ┌ latency by percentile ──────────┐  ┌ throughput over time ───────────┐
//!  │ ms                        ╱     │  │ MB/s  ───────────────            │
//!  │ ───────────────────────╱─       │  │      ╱                           │
//!  └ 0%  90%  99%  99.9%  99.99% ────┘  └ 0 s            …            t s ─┘
//!   legend: one row per line (label + kind), solid = produce, dashed = end-to-end / consume
//! ```

use std::fmt::Write;

use crate::report::Report;
use crate::stats::percentile_at_nines;

const WIDTH: f64 = 1100.0;
const PANEL_TOP: f64 = 50.0;
const PANEL_HEIGHT: f64 = 300.0;
const PANEL_WIDTH: f64 = 440.0;
const LEFT_PANEL_X: f64 = 80.0;
const RIGHT_PANEL_X: f64 = 620.0;
const LEGEND_ROW_HEIGHT: f64 = 18.0;
const NINES_MAX: f64 = 5.0;
const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

struct Line {
    name: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The smallest 1, 2 or 5 × 10^k at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&c| c >= value * (1.0 - 1e-12)).unwrap_or(10.0 * magnitude)
}

fn nines_of(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        return NINES_MAX;
    }
    (-(1.0 - percentile / 100.0).log10()).clamp(0.0, NINES_MAX)
}

fn format_tick(value: f64) -> String {
    if value == 0.0 || value.abs() >= 10.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn spectrum_lines(reports: &[Report]) -> Vec<Line> {
    let mut lines = Vec::new();
    for (index, report) in reports.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let kinds = [
            ("produce ack", false, report.produce.as_ref().and_then(|s| s.latency.as_ref())),
            ("end-to-end", true, report.consume.as_ref().and_then(|s| s.latency.as_ref())),
        ];
        for (kind, dashed, latency) in kinds {
            if let Some(latency) = latency {
                let points = latency.spectrum.iter().map(|p| (nines_of(p.percentile), p.latency_ms)).collect();
                lines.push(Line { name: format!("{} {kind}", report.label), color, dashed, points });
            }
        }
    }
    lines
}

fn throughput_lines(reports: &[Report]) -> Vec<Line> {
    let mut lines = Vec::new();
    for (index, report) in reports.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let produce: Vec<(f64, f64)> = report.time_series.iter().map(|s| (s.second as f64, s.produce_mb_per_second)).collect();
        let consume: Vec<(f64, f64)> = report.time_series.iter().map(|s| (s.second as f64, s.consume_mb_per_second)).collect();
        if report.produce.is_some() {
            lines.push(Line { name: format!("{} produce MB/s", report.label), color, dashed: false, points: produce });
        }
        if report.consume.is_some() {
            lines.push(Line { name: format!("{} consume MB/s", report.label), color, dashed: true, points: consume });
        }
    }
    lines
}

struct Axes {
    x: f64,
    x_max: f64,
    y_max: f64,
}

impl Axes {
    fn point(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let px = self.x + (x / self.x_max).clamp(0.0, 1.0) * PANEL_WIDTH;
        let py = PANEL_TOP + PANEL_HEIGHT - (y / self.y_max).clamp(0.0, 1.0) * PANEL_HEIGHT;
        (px, py)
    }
}

fn panel(out: &mut String, axes: &Axes, title: &str, y_unit: &str, x_ticks: &[(f64, String)], lines: &[Line]) {
    let bottom = PANEL_TOP + PANEL_HEIGHT;
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"##,
        axes.x,
        PANEL_TOP - 12.0,
        escape(title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{PANEL_TOP:.1}" width="{PANEL_WIDTH:.1}" height="{PANEL_HEIGHT:.1}" fill="none" stroke="#444"/>"##,
        axes.x
    );
    for step in 0..=5 {
        let value = axes.y_max * step as f64 / 5.0;
        let (_, y) = axes.point((0.0, value));
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            axes.x,
            axes.x + PANEL_WIDTH,
            axes.x - 6.0,
            y + 4.0,
            format_tick(value)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">{}</text>"##,
        axes.x - 55.0,
        PANEL_TOP + PANEL_HEIGHT / 2.0,
        axes.x - 55.0,
        PANEL_TOP + PANEL_HEIGHT / 2.0,
        escape(y_unit)
    );
    for (value, label) in x_ticks {
        let (x, _) = axes.point((*value, 0.0));
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{PANEL_TOP:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            bottom + 16.0,
            escape(label)
        );
    }
    for line in lines {
        if line.points.is_empty() {
            continue;
        }
        let points: Vec<String> = line
            .points
            .iter()
            .map(|&p| {
                let (x, y) = axes.point(p);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let dash = if line.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="{}" stroke-width="1.8"{dash} points="{}"><title>{}</title></polyline>"##,
            line.color,
            points.join(" "),
            escape(&line.name)
        );
    }
}

fn legend(out: &mut String, top: f64, lines: &[Line]) {
    for (row, line) in lines.iter().enumerate() {
        let y = top + row as f64 * LEGEND_ROW_HEIGHT;
        let dash = if line.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"##,
            LEFT_PANEL_X,
            LEFT_PANEL_X + 30.0,
            line.color,
            LEFT_PANEL_X + 38.0,
            y + 4.0,
            escape(&line.name)
        );
    }
}

/// The whole picture for `reports` (one or more runs).
pub fn render(reports: &[Report]) -> String {
    let spectrum = spectrum_lines(reports);
    let throughput = throughput_lines(reports);
    let legend_lines: Vec<Line> = spectrum
        .iter()
        .chain(throughput.iter())
        .map(|l| Line { name: l.name.clone(), color: l.color, dashed: l.dashed, points: Vec::new() })
        .collect();
    let legend_top = PANEL_TOP + PANEL_HEIGHT + 50.0;
    let height = legend_top + legend_lines.len() as f64 * LEGEND_ROW_HEIGHT + 20.0;

    let latency_max = spectrum.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let seconds_max = throughput.iter().flat_map(|l| l.points.iter().map(|p| p.0)).fold(0.0, f64::max).max(1.0);
    let mb_max = throughput.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0, f64::max);

    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" font-family="sans-serif">"##
    );
    let _ = writeln!(out, r##"<rect x="0" y="0" width="{WIDTH:.0}" height="{height:.0}" fill="white"/>"##);
    let nines_ticks: Vec<(f64, String)> = (0..=NINES_MAX as u32)
        .map(|n| {
            let percentile = percentile_at_nines(n as f64);
            let label = if n == 0 { "0%".to_string() } else { format!("{}%", format_percentile(percentile)) };
            (n as f64, label)
        })
        .collect();
    let latency_axes = Axes { x: LEFT_PANEL_X, x_max: NINES_MAX, y_max: nice_ceiling(latency_max) };
    panel(&mut out, &latency_axes, "latency by percentile", "latency (ms)", &nines_ticks, &spectrum);
    let time_ticks: Vec<(f64, String)> =
        (0..=4).map(|i| seconds_max * i as f64 / 4.0).map(|s| (s, format!("{s:.0} s"))).collect();
    let throughput_axes = Axes { x: RIGHT_PANEL_X, x_max: seconds_max, y_max: nice_ceiling(mb_max) };
    panel(&mut out, &throughput_axes, "throughput over time", "MB/s", &time_ticks, &throughput);
    legend(&mut out, legend_top, &legend_lines);
    out.push_str("</svg>\n");
    out
}

fn format_percentile(percentile: f64) -> String {
    let text = format!("{percentile:.5}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    /// A crude XML check: tags balance, attributes are quoted, no stray '<' or '&' in text.
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            assert!(!text.contains('>'), "stray '>' in {text:?}");
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..];
                assert!(["&amp;", "&lt;", "&gt;", "&quot;"].iter().any(|e| entity.starts_with(e)), "bad entity in {text:?}");
            }
            let close = rest[open..].find('>').expect("unterminated tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "'<' inside tag {tag:?}");
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in {tag:?}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap().to_string());
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed tags {stack:?}");
        assert!(rest.trim().is_empty());
    }

    #[test]
    fn one_report_draws_spectrum_and_throughput() {
        let svg = render(&[sample_report("fjord <main> & co", 1.0)]);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_well_formed(&svg);
        // produce + e2e spectra, produce + consume throughput.
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("fjord &lt;main&gt; &amp; co produce ack"));
        assert!(svg.contains(">99.9%<") && svg.contains(">99.999%<"));
    }

    #[test]
    fn several_reports_draw_one_line_each() {
        let reports = [sample_report("fjord", 1.0), sample_report("kafka", 2.0), sample_report("redpanda", 3.0)];
        let svg = render(&reports);
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 12);
        for label in ["fjord", "kafka", "redpanda"] {
            assert!(svg.contains(&format!("{label} produce ack")));
        }
    }

    #[test]
    fn empty_and_odd_inputs_still_render() {
        assert_well_formed(&render(&[]));
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(0.011), 0.02);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert!((nines_of(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines_of(100.0), NINES_MAX);
    }
}
