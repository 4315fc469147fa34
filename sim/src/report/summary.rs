//! The readable summary printed after a run, and the table rows the HTML page shares with it.

use std::fmt::Write as _;
use std::time::Duration;

use super::{OracleVerdict, Report};
use crate::engine::{NS_PER_MS, NS_PER_SEC, NS_PER_US, SimTime};

/// A table: headers, rows of cells, and which columns hold numbers (right-aligned).
#[derive(Clone, Debug, Default)]
pub(super) struct Table {
    pub(super) headers: Vec<&'static str>,
    pub(super) numeric: Vec<bool>,
    pub(super) rows: Vec<Vec<String>>,
}

impl Table {
    /// Renders the table as aligned text, each line indented by two spaces.
    pub(super) fn text(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|header| header.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|header| header.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::from(" ");
            for (column, cell) in row.iter().enumerate().take(columns) {
                let width = widths[column];
                let pad = width.saturating_sub(cell.chars().count());
                line.push(' ');
                if self.numeric.get(column).copied().unwrap_or(false) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
                line.push(' ');
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1234567` as `1,234,567`.
pub(super) fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A latency in the unit that reads best: `850 ns`, `85.3 µs`, `1.24 ms`, `2.500 s`.
pub(super) fn latency(ns: u64) -> String {
    if ns < NS_PER_US {
        format!("{ns} ns")
    } else if ns < NS_PER_MS {
        format!("{:.1} µs", ns as f64 / NS_PER_US as f64)
    } else if ns < NS_PER_SEC {
        format!("{:.2} ms", ns as f64 / NS_PER_MS as f64)
    } else {
        format!("{:.3} s", ns as f64 / NS_PER_SEC as f64)
    }
}

/// A virtual time as seconds with milliseconds: `4.000 s`.
pub(super) fn seconds(ns: u64) -> String {
    format!("{:.3} s", SimTime(ns).as_secs_f64())
}

/// A rate with one decimal and a thousands separator on the integer part.
pub(super) fn rate(value: f64) -> String {
    if !value.is_finite() || value < 0.0 {
        return "0.0".to_string();
    }
    let tenths = (value * 10.0).round() as u64;
    format!("{}.{}", thousands(tenths / 10), tenths % 10)
}

/// The per-volume throughput and latency table.
pub(super) fn volume_table(report: &Report) -> Table {
    Table {
        headers: vec![
            "volume", "layout", "reads", "writes", "IOPS", "MB/s", "p50", "p99", "p99.9", "errors", "retries",
        ],
        numeric: vec![false, false, true, true, true, true, true, true, true, true, true],
        rows: report
            .volumes
            .iter()
            .map(|volume| {
                vec![
                    volume.name.clone(),
                    volume.layout.clone(),
                    thousands(volume.reads),
                    thousands(volume.writes),
                    rate(volume.iops),
                    rate(volume.mb_per_s),
                    latency(volume.latency.all.p50_ns),
                    latency(volume.latency.all.p99_ns),
                    latency(volume.latency.all.p999_ns),
                    thousands(volume.errors),
                    thousands(volume.retries),
                ]
            })
            .collect(),
    }
}

/// The per-volume read and write latency table.
pub(super) fn latency_table(report: &Report) -> Table {
    Table {
        headers: vec![
            "volume",
            "read p50",
            "read p99",
            "read p99.9",
            "write p50",
            "write p99",
            "write p99.9",
        ],
        numeric: vec![false, true, true, true, true, true, true],
        rows: report
            .volumes
            .iter()
            .map(|volume| {
                let (read, write) = (&volume.latency.read, &volume.latency.write);
                vec![
                    volume.name.clone(),
                    latency(read.p50_ns),
                    latency(read.p99_ns),
                    latency(read.p999_ns),
                    latency(write.p50_ns),
                    latency(write.p99_ns),
                    latency(write.p999_ns),
                ]
            })
            .collect(),
    }
}

/// The per-engine table.
pub(super) fn engine_table(report: &Report) -> Table {
    Table {
        headers: vec!["engine", "host I/Os", "fast path", "hit ratio", "frames", "faults by cause"],
        numeric: vec![false, true, true, true, true, false],
        rows: report
            .engines
            .iter()
            .map(|engine| {
                let faults = if engine.faults.is_empty() {
                    "none".to_string()
                } else {
                    let parts: Vec<String> = engine
                        .faults
                        .iter()
                        .map(|(cause, count)| format!("{cause} {}", thousands(*count)))
                        .collect();
                    parts.join(", ")
                };
                vec![
                    engine.name.clone(),
                    thousands(engine.host_ios),
                    thousands(engine.fast_path_ios),
                    format!("{:.2}%", engine.fast_path_hit_ratio * 100.0),
                    thousands(engine.frames),
                    faults,
                ]
            })
            .collect(),
    }
}

/// The replicas table.
pub(super) fn replica_table(report: &Report) -> Table {
    Table {
        headers: vec![
            "volume",
            "replica",
            "consistency points",
            "applied",
            "verified",
            "blocks",
            "lag",
            "max lag",
        ],
        numeric: vec![false, false, true, true, true, true, true, true],
        rows: report
            .replicas
            .iter()
            .map(|r| {
                vec![
                    if r.paused { format!("{} (paused)", r.volume) } else { r.volume.clone() },
                    r.disk.clone(),
                    thousands(r.consistency_points),
                    thousands(r.cycles_applied),
                    thousands(r.cycles_verified),
                    thousands(r.blocks_applied),
                    latency(r.last_lag_ns),
                    latency(r.max_lag_ns),
                ]
            })
            .collect(),
    }
}

/// The flows table: the fast path's share while each data-service flow ran.
pub(super) fn flow_table(report: &Report) -> Table {
    Table {
        headers: vec!["flow", "from", "to", "host I/Os", "fast path", "share"],
        numeric: vec![false, true, true, true, true, true],
        rows: report
            .flows
            .iter()
            .map(|f| {
                let end = if f.finished { seconds(f.end_ns) } else { format!("({})", seconds(f.end_ns)) };
                vec![
                    f.flow.clone(),
                    seconds(f.start_ns),
                    end,
                    thousands(f.host_ios),
                    thousands(f.fast_path_ios),
                    format!("{:.2}%", f.fast_path_share * 100.0),
                ]
            })
            .collect(),
    }
}

/// The timeline table.
pub(super) fn timeline_table(report: &Report) -> Table {
    Table {
        headers: vec!["time", "event", "outcome"],
        numeric: vec![true, false, false],
        rows: report
            .timeline
            .iter()
            .map(|entry| vec![seconds(entry.at_ns), entry.event.clone(), entry.outcome.clone()])
            .collect(),
    }
}

/// The links that dropped or corrupted anything, one row per direction.
pub(super) fn troubled_link_table(report: &Report) -> Table {
    let mut rows = Vec::new();
    for link in &report.links {
        for (from, to, counters) in [(&link.a, &link.b, &link.a_to_b), (&link.b, &link.a, &link.b_to_a)] {
            if counters.dropped() + counters.corrupted == 0 {
                continue;
            }
            rows.push(vec![
                format!("{from} -> {to}"),
                thousands(counters.frames),
                thousands(counters.dropped_lost),
                thousands(counters.dropped_queue_full),
                thousands(counters.dropped_down),
                thousands(counters.corrupted),
                thousands(counters.max_queue_bytes),
            ]);
        }
    }
    Table {
        headers: vec!["link", "frames", "lost", "queue full", "down", "corrupted", "max queue B"],
        numeric: vec![false, true, true, true, true, true, true],
        rows,
    }
}

/// The oracle's verdict in one line.
pub(super) fn oracle_line(report: &Report) -> String {
    match &report.oracle {
        OracleVerdict::Clean { reads_checked, blocks_checked } => format!(
            "clean: {} reads and {} blocks checked, no violation",
            thousands(*reads_checked),
            thousands(*blocks_checked)
        ),
        OracleVerdict::Incomplete { reads_checked, blocks_checked, unfinished } => format!(
            "INCOMPLETE: the set-up never finished ({}); {} reads and {} blocks checked, no violation",
            unfinished.join("; "),
            thousands(*reads_checked),
            thousands(*blocks_checked)
        ),
        OracleVerdict::Violations { reads_checked, blocks_checked, total, first } => format!(
            "VIOLATED: {} violation(s) in {} reads ({} blocks) checked; the first {} follow",
            thousands(*total),
            thousands(*reads_checked),
            thousands(*blocks_checked),
            first.len()
        ),
    }
}

/// The violations kept, one row each.
pub(super) fn violation_table(report: &Report) -> Table {
    let rows = match &report.oracle {
        OracleVerdict::Clean { .. } | OracleVerdict::Incomplete { .. } => Vec::new(),
        OracleVerdict::Violations { first, .. } => first
            .iter()
            .map(|violation| {
                vec![
                    SimTime(violation.time_ns).to_string(),
                    violation.host.clone(),
                    violation.volume.clone(),
                    violation.lba.to_string(),
                    violation.expected.clone(),
                    violation.found.clone(),
                ]
            })
            .collect(),
    };
    Table {
        headers: vec!["time", "host", "volume", "lba", "expected", "found"],
        numeric: vec![true, false, false, true, false, false],
        rows,
    }
}

/// The whole summary.
pub(super) fn summary_text(report: &Report, wall: Duration) -> String {
    let mut out = String::new();
    let wall_s = wall.as_secs_f64();
    let simulated_s = SimTime(report.simulated_ns).as_secs_f64();
    let _ = writeln!(out, "dve-sim: scenario `{}`, seed {}", report.scenario, report.seed);
    let speed = if wall_s > 0.0 {
        format!(
            "{:.2}x real time, {} frames per wall second",
            simulated_s / wall_s,
            thousands((report.frames_simulated as f64 / wall_s).round() as u64)
        )
    } else {
        "speed not measured".to_string()
    };
    let _ = writeln!(
        out,
        "simulated {} in {wall_s:.2} s of wall-clock time; {} frames ({speed})",
        seconds(report.simulated_ns),
        thousands(report.frames_simulated)
    );

    let sections = [
        ("Volumes", volume_table(report), "no volumes"),
        ("Latency by direction", latency_table(report), "no volumes"),
        ("Engines", engine_table(report), "no engines"),
        ("Replicas", replica_table(report), "no replicated volumes"),
        ("Fast-path share during each flow", flow_table(report), "no flows"),
        ("Timeline", timeline_table(report), "no events"),
    ];
    for (title, table, empty) in sections {
        let _ = writeln!(out, "\n{title}");
        if table.rows.is_empty() {
            let _ = writeln!(out, "  ({empty})");
        } else {
            out.push_str(&table.text());
        }
    }
    let links = troubled_link_table(report);
    if !links.rows.is_empty() {
        let _ = writeln!(out, "\nLinks that dropped or corrupted frames");
        out.push_str(&links.text());
    }
    let _ = writeln!(out, "\nOracle: {}", oracle_line(report));
    let violations = violation_table(report);
    if !violations.rows.is_empty() {
        out.push_str(&violations.text());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(latency(850), "850 ns");
        assert_eq!(latency(85_300), "85.3 µs");
        assert_eq!(latency(1_240_000), "1.24 ms");
        assert_eq!(latency(2_500_000_000), "2.500 s");
        assert_eq!(rate(1234.56), "1,234.6");
        assert_eq!(rate(f64::NAN), "0.0");
        assert_eq!(seconds(4_000_000_000), "4.000 s");
    }

    #[test]
    fn tables_align() {
        let table = Table {
            headers: vec!["name", "n"],
            numeric: vec![false, true],
            rows: vec![vec!["a".into(), "1".into()], vec!["long".into(), "1,000".into()]],
        };
        assert_eq!(table.text(), "  name      n\n  a         1\n  long  1,000\n");
    }

    #[test]
    fn the_summary_has_every_section() {
        let report = sample_report(2);
        let text = report.summary_text(Duration::from_millis(500));
        for needle in [
            "scenario `sample`, seed 1",
            "simulated 2.000 s in 0.50 s",
            "4.00x real time",
            "246,912 frames per wall second",
            "linear0",
            "mirror0",
            "p99.9",
            "write p99.9",
            "97.50%",
            "MappingMiss 12, QueueIo 3",
            "0.400 s",
            "fail-disk d5",
            "h1 -> dve1:0",
            "VIOLATED: 2 violation(s)",
            "zeros & <garbage>",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        let clean = sample_report(0).summary_text(Duration::ZERO);
        assert!(clean.contains("Oracle: clean: 5,000 reads and 40,000 blocks checked"), "{clean}");
        assert!(clean.contains("speed not measured"));
    }
}
