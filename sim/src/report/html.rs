//! The HTML page: one self-contained file (inline CSS and SVG, no scripts, nothing fetched)
//! with the summary tables and, per volume, IOPS and latency over time with the timeline's
//! events drawn as numbered vertical markers. Like the JSON, it holds no wall-clock figure, so
//! it is reproducible too.

use std::fmt::Write as _;

use super::summary::{
    Table, engine_table, flow_table, latency_table, oracle_line, replica_table, seconds, timeline_table,
    troubled_link_table, violation_table, volume_table,
};
use super::{Report, VolumeReport};
use crate::engine::{NS_PER_MS, NS_PER_SEC, NS_PER_US};

/// Chart geometry, in SVG user units.
const WIDTH: f64 = 880.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;

const IOPS_COLOUR: &str = "#1f77b4";
const MEAN_COLOUR: &str = "#2ca02c";
const P99_COLOUR: &str = "#d62728";
const EVENT_COLOUR: &str = "#e08a00";

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:960px}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}h3{font-size:1em;margin:1.2em 0 .3em}\
table{border-collapse:collapse;margin:.4em 0;font-size:.9em}\
th,td{padding:3px 9px;border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{padding:8px 12px;border-radius:4px;font-weight:600}.clean{background:#e3f4e1}.bad{background:#fbe0e0}\
svg{display:block;margin:.2em 0 .8em}.axis{font-size:11px;fill:#555}.legend{font-size:12px}";

/// Escapes text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A table as HTML.
fn table_html(table: &Table) -> String {
    let mut out = String::from("<table><thead><tr>");
    for header in &table.headers {
        let _ = write!(out, "<th>{}</th>", escape(header));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &table.rows {
        out.push_str("<tr>");
        for (column, cell) in row.iter().enumerate() {
            if table.numeric.get(column).copied().unwrap_or(false) {
                let _ = write!(out, "<td class=\"n\">{}</td>", escape(cell));
            } else {
                let _ = write!(out, "<td>{}</td>", escape(cell));
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
    out
}

/// The smallest "nice" number (1, 2, 2.5 or 5 times a power of ten) at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if !(value.is_finite() && value > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= value * (1.0 - 1e-12) {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// A tick label: at most two decimals, trailing zeros dropped.
fn tick_label(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-0" { "0".to_string() } else { text.to_string() }
}

/// One line on a chart.
struct Line<'a> {
    label: &'a str,
    colour: &'a str,
    /// (time ns, value) points.
    points: Vec<(u64, f64)>,
}

/// A line chart over the run's duration with the timeline's events marked.
fn chart(report: &Report, title: &str, unit: &str, lines: &[Line<'_>]) -> String {
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let span_ns = report.simulated_ns.max(1) as f64;
    let max_value =
        lines.iter().flat_map(|line| line.points.iter().map(|&(_, value)| value)).fold(0.0, f64::max);
    // A little headroom so a flat line does not run along the frame.
    let y_max = nice_ceiling(max_value * 1.05);
    let x = |ns: u64| LEFT + plot_width * (ns as f64 / span_ns).min(1.0);
    let y = |value: f64| TOP + plot_height * (1.0 - (value / y_max).clamp(0.0, 1.0));

    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    // Horizontal grid and y labels.
    for tick in 0..=4 {
        let value = y_max * f64::from(tick) / 4.0;
        let ty = y(value);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#e5e5e5\"/>\
<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_width,
            LEFT - 6.0,
            ty + 4.0,
            tick_label(value)
        );
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"12\" y=\"{:.1}\" transform=\"rotate(-90 12 {:.1})\" text-anchor=\"middle\">{}</text>",
        TOP + plot_height / 2.0,
        TOP + plot_height / 2.0,
        escape(unit)
    );
    // Time axis: about eight ticks at a nice step.
    let step_s = nice_ceiling(span_ns / NS_PER_SEC as f64 / 8.0);
    let step_ns = ((step_s * NS_PER_SEC as f64).round() as u64).max(1);
    let mut tick_ns = 0u64;
    while tick_ns <= report.simulated_ns {
        let tx = x(tick_ns);
        let _ = write!(
            svg,
            "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
<text class=\"axis\" x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_height,
            TOP + plot_height + 4.0,
            TOP + plot_height + 16.0,
            tick_label(tick_ns as f64 / NS_PER_SEC as f64)
        );
        tick_ns = match tick_ns.checked_add(step_ns) {
            Some(next) => next,
            None => break,
        };
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time (s)</text>",
        LEFT + plot_width / 2.0,
        HEIGHT - 4.0
    );
    let _ = write!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_width:.1}\" height=\"{plot_height:.1}\" fill=\"none\" stroke=\"#999\"/>"
    );
    // Event markers, numbered as in the timeline table.
    for (number, entry) in report.timeline.iter().enumerate() {
        let ex = x(entry.at_ns);
        let _ = write!(
            svg,
            "<g><title>{} {}: {}</title><line x1=\"{ex:.1}\" y1=\"{TOP}\" x2=\"{ex:.1}\" y2=\"{:.1}\" stroke=\"{EVENT_COLOUR}\" stroke-dasharray=\"4 3\"/>\
<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" fill=\"{EVENT_COLOUR}\">{}</text></g>",
            escape(&seconds(entry.at_ns)),
            escape(&entry.event),
            escape(&entry.outcome),
            TOP + plot_height,
            ex + 3.0,
            TOP + 11.0,
            number + 1
        );
    }
    // The data.
    for line in lines {
        if line.points.is_empty() {
            continue;
        }
        let points: Vec<String> =
            line.points.iter().map(|&(ns, value)| format!("{:.1},{:.1}", x(ns), y(value))).collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline>",
            line.colour,
            points.join(" "),
            escape(line.label)
        );
    }
    svg.push_str("</svg>");

    let mut out = format!("<h3>{}</h3>\n<div class=\"legend\">", escape(title));
    for line in lines {
        let _ = write!(
            out,
            "<span style=\"color:{}\">&#9632;</span> {} &nbsp; ",
            line.colour,
            escape(line.label)
        );
    }
    let _ = write!(out, "<span style=\"color:{EVENT_COLOUR}\">&#9474;</span> timeline events</div>\n{svg}\n");
    out
}

/// The middle of a sample interval, for plotting.
fn midpoint(report: &Report, start_ns: u64) -> u64 {
    start_ns.saturating_add(report.sample_interval_ns / 2).min(report.simulated_ns)
}

/// The two charts of one volume.
fn volume_charts(report: &Report, volume: &VolumeReport) -> String {
    let iops = Line {
        label: "IOPS",
        colour: IOPS_COLOUR,
        points: volume.series.iter().map(|point| (midpoint(report, point.start_ns), point.iops)).collect(),
    };
    let max_latency = volume.series.iter().map(|point| point.p99_latency_ns).max().unwrap_or(0);
    let (unit, divisor) = if max_latency >= 10 * NS_PER_MS {
        ("latency (ms)", NS_PER_MS as f64)
    } else {
        ("latency (µs)", NS_PER_US as f64)
    };
    // Intervals with no completion have no latency: leave them out rather than plot zero.
    let latency_points = |pick: fn(&super::SeriesPoint) -> u64| -> Vec<(u64, f64)> {
        volume
            .series
            .iter()
            .filter(|point| point.ios > 0)
            .map(|point| (midpoint(report, point.start_ns), pick(point) as f64 / divisor))
            .collect()
    };
    let latency = [
        Line {
            label: "mean latency",
            colour: MEAN_COLOUR,
            points: latency_points(|point| point.mean_latency_ns),
        },
        Line {
            label: "p99 latency",
            colour: P99_COLOUR,
            points: latency_points(|point| point.p99_latency_ns),
        },
    ];
    let name = &volume.name;
    let mut out = format!(
        "<h2 id=\"volume-{}\">Volume {} ({})</h2>\n",
        escape(name),
        escape(name),
        escape(&volume.layout)
    );
    out.push_str(&chart(report, &format!("{name}: IOPS"), "IOPS", &[iops]));
    out.push_str(&chart(report, &format!("{name}: latency"), unit, &latency));
    out
}

/// The whole page.
pub(super) fn html(report: &Report) -> String {
    let mut out = String::new();
    let title = format!("dve-sim: {}", report.scenario);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = writeln!(
        out,
        "<h1>{}</h1>\n<p>Seed {}, {} of virtual time, {} frames simulated, sampled every {}.</p>",
        escape(&title),
        report.seed,
        escape(&seconds(report.simulated_ns)),
        super::summary::thousands(report.frames_simulated),
        escape(&super::summary::latency(report.sample_interval_ns))
    );
    let class = if report.is_clean() { "clean" } else { "bad" };
    let _ = writeln!(out, "<p class=\"verdict {class}\">Oracle: {}</p>", escape(&oracle_line(report)));
    let violations = violation_table(report);
    if !violations.rows.is_empty() {
        out.push_str(&table_html(&violations));
    }

    out.push_str("<h2>Volumes</h2>\n");
    out.push_str(&table_html(&volume_table(report)));
    out.push_str(&table_html(&latency_table(report)));
    out.push_str("<h2>Engines</h2>\n");
    out.push_str(&table_html(&engine_table(report)));
    let replicas = replica_table(report);
    if !replicas.rows.is_empty() {
        out.push_str("<h2>Replicas</h2>\n");
        out.push_str(&table_html(&replicas));
    }
    let flows = flow_table(report);
    if !flows.rows.is_empty() {
        out.push_str("<h2>Fast-path share during each flow</h2>\n");
        out.push_str(&table_html(&flows));
    }
    out.push_str("<h2>Timeline</h2>\n");
    let mut timeline = timeline_table(report);
    timeline.headers.insert(0, "#");
    timeline.numeric.insert(0, true);
    for (number, row) in timeline.rows.iter_mut().enumerate() {
        row.insert(0, (number + 1).to_string());
    }
    if timeline.rows.is_empty() {
        out.push_str("<p>No events.</p>\n");
    } else {
        out.push_str(&table_html(&timeline));
    }
    let links = troubled_link_table(report);
    if !links.rows.is_empty() {
        out.push_str("<h2>Links that dropped or corrupted frames</h2>\n");
        out.push_str(&table_html(&links));
    }
    for volume in &report.volumes {
        out.push_str(&volume_charts(report, volume));
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(4100.0), 5000.0);
        assert_eq!(nice_ceiling(0.013), 0.02);
        assert_eq!(tick_label(2.5), "2.5");
        assert_eq!(tick_label(2000.0), "2000");
        assert_eq!(tick_label(0.0), "0");
    }

    #[test]
    fn the_page_is_self_contained_and_escaped() {
        let report = sample_report(1);
        let page = report.html();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.ends_with("</html>\n"));
        assert!(!page.contains("<script"));
        assert!(
            !page.contains("http://")
                || page.matches("http://").count()
                    == page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
        assert!(!page.contains("https://"));
        // Two charts per volume, a marker per event in each.
        assert_eq!(page.matches("<svg").count(), 4);
        assert_eq!(page.matches("stroke-dasharray").count(), 4 * report.timeline.len());
        assert!(page.contains("zeros &amp; &lt;garbage&gt;"));
        assert!(!page.contains("<garbage>"));
        assert!(page.contains("verdict bad"));
        assert!(sample_report(0).html().contains("verdict clean"));
        assert!(
            page.contains("<h2>Replicas</h2>") && page.contains("<h2>Fast-path share during each flow</h2>")
        );
        // Deterministic.
        assert_eq!(page, sample_report(1).html());
    }

    #[test]
    fn empty_reports_render() {
        let mut report = sample_report(0);
        report.volumes.clear();
        report.timeline.clear();
        report.simulated_ns = 0;
        let page = report.html();
        assert!(page.contains("No events."));
        assert_eq!(page.matches("<svg").count(), 0);
        let escaped = escape("<a href='x'>&\"");
        assert_eq!(escaped, "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
    }
}
