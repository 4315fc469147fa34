//! The report of a run: what the JSON holds, the summary printed after a run, the HTML page,
//! and the recorders the simulation fills as it goes.
//!
//! The [`Report`] is deterministic: the same scenario and seed give the same JSON byte for
//! byte. Everything in it is derived from virtual time and seeded randomness; maps are
//! `BTreeMap`s and lists keep scenario order. Wall-clock figures (how long the run took, frames
//! per wall second) appear only in [`Report::summary_text`], never in the JSON or the HTML.
//!
//! How the simulation builds one: a [`VolumeRecorder`] per volume (every completed host I/O,
//! error and retry), an [`OracleTally`] for the integrity oracle, an [`EngineReport`] per engine
//! ([`EngineReport::new`] computes the fast-path hit ratio), a [`LinkReport`] per cable, and a
//! [`TimelineEntry`] per event run. The options a run takes ([`RunOptions`], [`PcapRequest`])
//! and the progress bar ([`ProgressSink`]) are in [`options`].

mod html;
pub mod options;
mod summary;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::engine::{NS_PER_SEC, SimTime};
use crate::histogram::{Histogram, LatencyStats};
use crate::link::LinkCounters;

pub use options::{NoProgress, PcapRequest, ProgressSink, RunOptions, StderrProgress};

/// How many violations a report lists; the rest are only counted.
pub const MAX_VIOLATIONS_KEPT: usize = 100;

/// Everything a run produced that is a function of the scenario and the seed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed the run used.
    pub seed: u64,
    /// Virtual time simulated, nanoseconds.
    pub simulated_ns: u64,
    /// The time-series resolution, nanoseconds.
    pub sample_interval_ns: u64,
    /// Frames that crossed a link (the simulator's unit of work).
    pub frames_simulated: u64,
    /// Per volume, in scenario order.
    pub volumes: Vec<VolumeReport>,
    /// Per engine, in scenario order.
    pub engines: Vec<EngineReport>,
    /// Per cable, in the order the simulation built them.
    pub links: Vec<LinkReport>,
    /// The timeline's events as they ran.
    pub timeline: Vec<TimelineEntry>,
    /// Per asynchronously replicated volume.
    pub replicas: Vec<ReplicaReport>,
    /// Per data-service flow on the timeline (snapshot, migration, degraded mirror and its
    /// resync, replication): the share of host I/O the fast path served while it ran.
    pub flows: Vec<FlowReport>,
    /// The verdict: the integrity oracle's, or that the set-up never finished.
    pub oracle: OracleVerdict,
}

impl Report {
    /// The JSON report: pretty-printed, with a final newline.
    pub fn to_json(&self) -> String {
        match serde_json::to_string_pretty(self) {
            Ok(mut json) => {
                json.push('\n');
                json
            }
            // Serializing plain data cannot fail; say so rather than panic if it ever does.
            Err(err) => format!("{{\"error\": \"{err}\"}}\n"),
        }
    }

    /// Whether the run is clean: its set-up finished and the oracle found nothing wrong.
    pub fn is_clean(&self) -> bool {
        matches!(self.oracle, OracleVerdict::Clean { .. })
    }

    /// What of the set-up did not finish (nothing for a clean run or one with violations).
    pub fn unfinished(&self) -> &[String] {
        match &self.oracle {
            OracleVerdict::Incomplete { unfinished, .. } => unfinished,
            _ => &[],
        }
    }

    /// Virtual time simulated.
    pub fn simulated(&self) -> SimTime {
        SimTime(self.simulated_ns)
    }

    /// The readable summary printed after a run. `wall` is how long the run took; it is shown
    /// (with the simulator's speed) but is not part of the report proper.
    pub fn summary_text(&self, wall: Duration) -> String {
        summary::summary_text(self, wall)
    }

    /// A self-contained HTML page (inline SVG, no scripts or external resources): IOPS and
    /// latency over time per volume with the timeline's events marked, and the summary tables.
    pub fn html(&self) -> String {
        html::html(self)
    }
}

/// Figures for one volume.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VolumeReport {
    /// The volume's name.
    pub name: String,
    /// Its layout (`linear`, `stripe`, ...).
    pub layout: String,
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// I/Os per second of virtual time over the whole run.
    pub iops: f64,
    /// Megabytes (10^6 bytes) per second, reads and writes together.
    pub mb_per_s: f64,
    /// Completion latency of reads, writes and both.
    pub latency: LatencyBreakdown,
    /// I/Os that completed with an error status.
    pub errors: u64,
    /// Commands the hosts retried.
    pub retries: u64,
    /// The most times one I/O was retried before it completed.
    pub max_retries_per_io: u64,
    /// One point per sample interval of the run, the last one cut short by the run's end
    /// if the interval does not divide it. I/Os the end-of-run drain completed are in the
    /// totals above, not in the series.
    pub series: Vec<SeriesPoint>,
}

/// Latency of reads, writes and all I/Os.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LatencyBreakdown {
    /// Reads only.
    pub read: LatencyStats,
    /// Writes only.
    pub write: LatencyStats,
    /// Both.
    pub all: LatencyStats,
}

/// A volume's figures over one sample interval: from `start_ns` to the next point's, or to
/// the run's end for the last.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Start of the interval, nanoseconds.
    pub start_ns: u64,
    /// I/Os completed in it.
    pub ios: u64,
    /// I/Os per second over the interval's length.
    pub iops: f64,
    /// Megabytes per second over the interval's length.
    pub mb_per_s: f64,
    /// Mean completion latency, nanoseconds (0 when nothing completed).
    pub mean_latency_ns: u64,
    /// 99th percentile completion latency, nanoseconds.
    pub p99_latency_ns: u64,
}

/// Whether a host I/O read or wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoKind {
    /// A read.
    Read,
    /// A write.
    Write,
}

/// One sample interval's accumulation.
#[derive(Clone, Debug, Default)]
struct Interval {
    latency: Histogram,
    bytes: u64,
}

/// Collects one volume's completions during a run and turns them into a [`VolumeReport`].
///
/// Completions may be recorded in any order; everything is keyed by virtual time.
#[derive(Clone, Debug)]
pub struct VolumeRecorder {
    name: String,
    layout: String,
    sample_interval_ns: u64,
    /// The run's end: the series stops there.
    run_ns: u64,
    reads: u64,
    writes: u64,
    bytes_read: u64,
    bytes_written: u64,
    read_latency: Histogram,
    write_latency: Histogram,
    errors: u64,
    retries: u64,
    max_retries_per_io: u64,
    intervals: BTreeMap<u64, Interval>,
}

impl VolumeRecorder {
    /// A recorder for volume `name` of layout `layout` in a run of `run_ns`, sampling every
    /// `sample_interval_ns`.
    pub fn new(
        name: impl Into<String>,
        layout: impl Into<String>,
        sample_interval_ns: u64,
        run_ns: u64,
    ) -> VolumeRecorder {
        VolumeRecorder {
            name: name.into(),
            layout: layout.into(),
            sample_interval_ns: sample_interval_ns.max(1),
            run_ns,
            reads: 0,
            writes: 0,
            bytes_read: 0,
            bytes_written: 0,
            read_latency: Histogram::new(),
            write_latency: Histogram::new(),
            errors: 0,
            retries: 0,
            max_retries_per_io: 0,
            intervals: BTreeMap::new(),
        }
    }

    /// Records a host I/O that completed successfully at `completed_at` after `latency_ns`.
    pub fn record(&mut self, completed_at: SimTime, kind: IoKind, bytes: u64, latency_ns: u64) {
        match kind {
            IoKind::Read => {
                self.reads += 1;
                self.bytes_read += bytes;
                self.read_latency.record(latency_ns);
            }
            IoKind::Write => {
                self.writes += 1;
                self.bytes_written += bytes;
                self.write_latency.record(latency_ns);
            }
        }
        // The drain after the end finishes I/O in flight for the comparisons; its
        // completions have no interval of the run to be a rate over.
        if completed_at.as_ns() >= self.run_ns {
            return;
        }
        let interval = self.intervals.entry(completed_at.as_ns() / self.sample_interval_ns).or_default();
        interval.latency.record(latency_ns);
        interval.bytes += bytes;
    }

    /// Records a host I/O that completed with an error status.
    pub fn record_error(&mut self) {
        self.errors += 1;
    }

    /// Records the retries a host made for one I/O.
    pub fn record_retries(&mut self, retries: u64) {
        self.retries += retries;
        self.max_retries_per_io = self.max_retries_per_io.max(retries);
    }

    /// The report at the end of the run.
    pub fn finish(&self) -> VolumeReport {
        let simulated_ns = self.run_ns;
        let seconds = simulated_ns as f64 / NS_PER_SEC as f64;
        let per_second = |value: f64| if seconds > 0.0 { value / seconds } else { 0.0 };
        let mut all = self.read_latency.clone();
        all.merge(&self.write_latency);
        let ios = self.reads + self.writes;
        let bytes = self.bytes_read + self.bytes_written;

        let interval = self.sample_interval_ns;
        let empty = Interval::default();
        let series = (0..simulated_ns.div_ceil(interval))
            .map(|index| {
                let start_ns = index * interval;
                // Never empty (`start_ns` is before the end); the last may be cut short.
                let length_ns = interval.min(simulated_ns - start_ns);
                let length_s = length_ns as f64 / NS_PER_SEC as f64;
                let sample = self.intervals.get(&index).unwrap_or(&empty);
                SeriesPoint {
                    start_ns,
                    ios: sample.latency.count(),
                    iops: sample.latency.count() as f64 / length_s,
                    mb_per_s: sample.bytes as f64 / 1e6 / length_s,
                    mean_latency_ns: sample.latency.mean(),
                    p99_latency_ns: sample.latency.percentile(99.0),
                }
            })
            .collect();

        VolumeReport {
            name: self.name.clone(),
            layout: self.layout.clone(),
            reads: self.reads,
            writes: self.writes,
            bytes_read: self.bytes_read,
            bytes_written: self.bytes_written,
            iops: per_second(ios as f64),
            mb_per_s: per_second(bytes as f64 / 1e6),
            latency: LatencyBreakdown {
                read: self.read_latency.stats(),
                write: self.write_latency.stats(),
                all: all.stats(),
            },
            errors: self.errors,
            retries: self.retries,
            max_retries_per_io: self.max_retries_per_io,
            series,
        }
    }
}

/// Figures for one engine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EngineReport {
    /// The engine's name.
    pub name: String,
    /// Host I/Os the engine completed.
    pub host_ios: u64,
    /// Of those, the ones the fast path completed without the control path.
    pub fast_path_ios: u64,
    /// `fast_path_ios / host_ios` (0 when there were none).
    pub fast_path_hit_ratio: f64,
    /// Faults the fast path raised to the control path, by cause name.
    pub faults: BTreeMap<String, u64>,
    /// Frames the engine's ports received.
    pub frames: u64,
    /// Metadata transactions its control path committed, over all its lives.
    pub metadata_commits: u64,
}

impl EngineReport {
    /// An engine's figures; the hit ratio is computed from the counts.
    pub fn new(
        name: impl Into<String>,
        host_ios: u64,
        fast_path_ios: u64,
        faults: BTreeMap<String, u64>,
        frames: u64,
    ) -> EngineReport {
        let fast_path_hit_ratio = if host_ios == 0 { 0.0 } else { fast_path_ios as f64 / host_ios as f64 };
        EngineReport {
            name: name.into(),
            host_ios,
            fast_path_ios,
            fast_path_hit_ratio,
            faults,
            frames,
            metadata_commits: 0,
        }
    }

    /// All faults, whatever the cause.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// Counters of one cable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkReport {
    /// The port at end A, e.g. `h1` or `d2:1`.
    pub a: String,
    /// The port at end B, e.g. `dve1:0`.
    pub b: String,
    /// Frames from A to B.
    pub a_to_b: LinkCounters,
    /// Frames from B to A.
    pub b_to_a: LinkCounters,
}

/// One asynchronously replicated volume: how far its replica got and how far behind it was.
/// The counts and lags are over the whole run: an engine killed and restarted counts afresh,
/// and the simulator adds up its lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaReport {
    /// The replicated volume.
    pub volume: String,
    /// The replica's disk.
    pub disk: String,
    /// Consistency points taken, over the whole run.
    pub consistency_points: u64,
    /// Cycles applied to the replica as a consistency point's image, over the whole run
    /// (every life of the engine; catch-up cycles behind a baseline copy are not counted).
    pub cycles_applied: u64,
    /// Of `cycles_applied`, those whose replica image was compared with the primary's image
    /// at their consistency point, over the whole run (every one, when the run is clean).
    pub cycles_verified: u64,
    /// Blocks the applier wrote over the whole run, catch-up cycles included.
    pub blocks_applied: u64,
    /// Lag when the last cycle of the run was applied (consistency point to replica), ns; 0
    /// if none was.
    pub last_lag_ns: u64,
    /// The largest lag of the run.
    pub max_lag_ns: u64,
    /// Blocks of the replica's last copy from the primary: its baseline, or the catch-up
    /// after its last resume.
    pub copied_blocks: u64,
    /// Paused at the end: the replica shows its last applied consistency point.
    pub paused: bool,
}

/// The fast path's share of host I/O while one flow ran.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowReport {
    /// What ran, e.g. `snapshot snap0 of linear0`.
    pub flow: String,
    /// The engine that ran it.
    pub engine: String,
    /// When it began, ns.
    pub start_ns: u64,
    /// When it ended (or the run did), ns.
    pub end_ns: u64,
    /// Whether it finished before the run ended.
    pub finished: bool,
    /// Host I/Os the engine completed meanwhile (every volume).
    pub host_ios: u64,
    /// Of those, the ones the fast path completed alone.
    pub fast_path_ios: u64,
    /// `fast_path_ios / host_ios` (1 when there were none).
    pub fast_path_share: f64,
}

/// One timeline event as it ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// When it ran, nanoseconds.
    pub at_ns: u64,
    /// What it was, e.g. `fail-disk d5`.
    pub event: String,
    /// What came of it, e.g. `done`, `resync finished at 7.210s`, `refused: ...`.
    pub outcome: String,
}

/// A read that returned data the oracle did not expect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// When the read completed, nanoseconds.
    pub time_ns: u64,
    /// The host that read.
    pub host: String,
    /// The volume it read.
    pub volume: String,
    /// The first block that differed.
    pub lba: u64,
    /// What the oracle expected there (a short description, e.g. a write's stamp).
    pub expected: String,
    /// What the read returned.
    pub found: String,
}

/// The run's verdict: the integrity oracle's, unless the set-up never finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum OracleVerdict {
    /// Every checked read returned what was last acknowledged as written.
    Clean {
        /// Reads checked.
        reads_checked: u64,
        /// Blocks checked.
        blocks_checked: u64,
    },
    /// The set-up did not finish (disks not discovered, volumes not created, hosts not
    /// logged in), so the I/O the scenario asks for did not all run: not a clean run, whatever
    /// the reads that did run returned (they found nothing wrong; violations win over this).
    Incomplete {
        /// Reads checked.
        reads_checked: u64,
        /// Blocks checked.
        blocks_checked: u64,
        /// What did not finish, one line each, naming the engine or host and what it lacked.
        unfinished: Vec<String>,
    },
    /// Some reads returned wrong data.
    Violations {
        /// Reads checked.
        reads_checked: u64,
        /// Blocks checked.
        blocks_checked: u64,
        /// How many violations there were.
        total: u64,
        /// The first ones, at most [`MAX_VIOLATIONS_KEPT`].
        first: Vec<Violation>,
    },
}

/// Counts what the oracle checked and keeps the first violations.
#[derive(Clone, Debug, Default)]
pub struct OracleTally {
    reads_checked: u64,
    blocks_checked: u64,
    total_violations: u64,
    kept: Vec<Violation>,
}

impl OracleTally {
    /// Nothing checked yet.
    pub fn new() -> OracleTally {
        OracleTally::default()
    }

    /// A read of `blocks` blocks was checked.
    pub fn read_checked(&mut self, blocks: u64) {
        self.reads_checked += 1;
        self.blocks_checked += blocks;
    }

    /// A violation was found (only the first [`MAX_VIOLATIONS_KEPT`] are kept).
    pub fn violation(&mut self, violation: Violation) {
        self.total_violations += 1;
        if self.kept.len() < MAX_VIOLATIONS_KEPT {
            self.kept.push(violation);
        }
    }

    /// Violations found so far.
    pub fn violations(&self) -> u64 {
        self.total_violations
    }

    /// The verdict.
    pub fn verdict(&self) -> OracleVerdict {
        if self.total_violations == 0 {
            OracleVerdict::Clean { reads_checked: self.reads_checked, blocks_checked: self.blocks_checked }
        } else {
            OracleVerdict::Violations {
                reads_checked: self.reads_checked,
                blocks_checked: self.blocks_checked,
                total: self.total_violations,
                first: self.kept.clone(),
            }
        }
    }
}

/// A report with made-up but plausible figures, for the formatting tests.
#[cfg(test)]
pub(crate) fn sample_report(violations: usize) -> Report {
    use crate::engine::NS_PER_MS;
    let interval = 100 * NS_PER_MS;
    let simulated_ns = 2_000 * NS_PER_MS;
    let mut volumes = Vec::new();
    for (index, (name, layout)) in [("linear0", "linear"), ("mirror0", "mirror")].into_iter().enumerate() {
        let mut recorder = VolumeRecorder::new(name, layout, interval, simulated_ns);
        for i in 0..4_000u64 {
            let at = SimTime(i * 500_000 + index as u64);
            let kind = if i % 3 == 0 { IoKind::Write } else { IoKind::Read };
            let latency = 80_000 + (i * 7919 % 50_000) + if (800..1200).contains(&i) { 2_000_000 } else { 0 };
            recorder.record(at, kind, 4096, latency);
        }
        recorder.record_error();
        recorder.record_retries(1);
        volumes.push(recorder.finish());
    }
    let mut faults = BTreeMap::new();
    faults.insert("MappingMiss".to_string(), 12);
    faults.insert("QueueIo".to_string(), 3);
    let mut oracle = OracleTally::new();
    for _ in 0..5000 {
        oracle.read_checked(8);
    }
    for i in 0..violations {
        oracle.violation(Violation {
            time_ns: 1_500_000_000 + i as u64,
            host: "h1".into(),
            volume: "mirror0".into(),
            lba: 4096 + i as u64,
            expected: "write #17 <stamp>".into(),
            found: "zeros & <garbage>".into(),
        });
    }
    Report {
        scenario: "sample".into(),
        seed: 1,
        simulated_ns,
        sample_interval_ns: interval,
        frames_simulated: 123_456,
        volumes,
        engines: vec![EngineReport::new("dve1", 8000, 7800, faults, 100_000)],
        links: vec![LinkReport {
            a: "h1".into(),
            b: "dve1:0".into(),
            a_to_b: LinkCounters { frames: 10, bytes: 20_000, dropped_lost: 1, ..LinkCounters::default() },
            b_to_a: LinkCounters::default(),
        }],
        timeline: vec![
            TimelineEntry { at_ns: 400 * NS_PER_MS, event: "fail-disk d5".into(), outcome: "done".into() },
            TimelineEntry {
                at_ns: 1_300 * NS_PER_MS,
                event: "restore-disk d5".into(),
                outcome: "done".into(),
            },
        ],
        replicas: vec![ReplicaReport {
            volume: "v".into(),
            disk: "d6".into(),
            consistency_points: 4,
            cycles_applied: 3,
            cycles_verified: 3,
            blocks_applied: 812,
            last_lag_ns: 20 * NS_PER_MS,
            max_lag_ns: 31 * NS_PER_MS,
            copied_blocks: 16_384,
            paused: false,
        }],
        flows: vec![FlowReport {
            flow: "snapshot s of v".into(),
            engine: "dve1".into(),
            start_ns: 400 * NS_PER_MS,
            end_ns: 600 * NS_PER_MS,
            finished: true,
            host_ios: 2000,
            fast_path_ios: 1990,
            fast_path_share: 0.995,
        }],
        oracle: oracle.verdict(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NS_PER_MS;

    #[test]
    fn recorder_counts_and_series() {
        let record = |recorder: &mut VolumeRecorder| {
            recorder.record(SimTime::from_ms(10), IoKind::Read, 4096, 100_000);
            recorder.record(SimTime::from_ms(20), IoKind::Write, 8192, 300_000);
            recorder.record(SimTime::from_ms(250), IoKind::Read, 4096, 200_000);
        };
        let mut recorder = VolumeRecorder::new("v", "linear", 100 * NS_PER_MS, 300 * NS_PER_MS);
        record(&mut recorder);
        let report = recorder.finish();
        assert_eq!((report.reads, report.writes), (2, 1));
        assert_eq!((report.bytes_read, report.bytes_written), (8192, 8192));
        assert!((report.iops - 10.0).abs() < 1e-9);
        assert_eq!(report.latency.all.count, 3);
        assert_eq!(report.latency.read.max_ns, 200_000);
        assert_eq!(report.series.len(), 3);
        assert_eq!(report.series[0].ios, 2);
        assert!((report.series[0].iops - 20.0).abs() < 1e-9);
        assert_eq!(report.series[0].mean_latency_ns, 200_000);
        assert_eq!(report.series[1].ios, 0);
        assert_eq!(report.series[2].start_ns, 200 * NS_PER_MS);
        // A partial last interval: 50 ms and 1 ns long, its rate over that length.
        let mut short = VolumeRecorder::new("v", "linear", 100 * NS_PER_MS, 250 * NS_PER_MS + 1);
        record(&mut short);
        let short = short.finish();
        assert_eq!(short.series.len(), 3);
        assert_eq!(short.series[2].ios, 1);
        assert!((short.series[2].iops - 1e9 / (50 * NS_PER_MS + 1) as f64).abs() < 1e-9);
        // Nothing simulated: no division by zero.
        let empty = VolumeRecorder::new("e", "mirror", 0, 0).finish();
        assert_eq!((empty.iops, empty.mb_per_s, empty.series.len()), (0.0, 0.0, 0));
    }

    #[test]
    fn the_series_ends_with_the_run_and_its_rates_are_over_each_intervals_length() {
        let interval = 100 * NS_PER_MS;
        let run = 250 * NS_PER_MS;
        let mut recorder = VolumeRecorder::new("v", "linear", interval, run);
        for at_ms in [10, 120, 249, 250, 260, 400, 3_350] {
            recorder.record(SimTime::from_ms(at_ms), IoKind::Read, 4096, 1_000);
        }
        let report = recorder.finish();
        // Every completion counts in the totals; the drain's (at or after the end) in no point.
        assert_eq!(report.reads, 7);
        let ios: Vec<u64> = report.series.iter().map(|p| p.ios).collect();
        assert_eq!(ios, [1, 1, 1]);
        for (index, point) in report.series.iter().enumerate() {
            assert!(point.start_ns < run, "point {index} starts at {} ns, after the end", point.start_ns);
            let next = report.series.get(index + 1).map_or(run, |p| p.start_ns);
            let length_ns = next - point.start_ns;
            assert!(length_ns > 0 && length_ns <= interval, "point {index}: {length_ns} ns long");
            let bound = report.reads as f64 * 1e9 / length_ns as f64;
            assert!(point.iops <= bound + 1e-6, "point {index}: {} IOPS above {bound}", point.iops);
            assert!((point.iops - point.ios as f64 * 1e9 / length_ns as f64).abs() < 1e-6, "{point:?}");
        }
        // The last interval is 50 ms: one I/O in it is 20 IOPS.
        assert!((report.series[2].iops - 20.0).abs() < 1e-9, "{:?}", report.series[2]);
    }

    #[test]
    fn oracle_keeps_the_first_violations_and_counts_all() {
        let mut tally = OracleTally::new();
        tally.read_checked(8);
        assert_eq!(tally.verdict(), OracleVerdict::Clean { reads_checked: 1, blocks_checked: 8 });
        for i in 0..(MAX_VIOLATIONS_KEPT as u64 + 5) {
            tally.violation(Violation {
                time_ns: i,
                host: "h".into(),
                volume: "v".into(),
                lba: i,
                expected: "a".into(),
                found: "b".into(),
            });
        }
        match tally.verdict() {
            OracleVerdict::Violations { total, first, .. } => {
                assert_eq!(total, MAX_VIOLATIONS_KEPT as u64 + 5);
                assert_eq!(first.len(), MAX_VIOLATIONS_KEPT);
                assert_eq!(first[0].lba, 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_is_deterministic_and_has_no_wall_clock() {
        let report = sample_report(2);
        let json = report.to_json();
        assert_eq!(json, sample_report(2).to_json());
        assert!(json.ends_with("}\n"));
        assert!(!json.contains("wall"));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(value["oracle"]["verdict"], "violations");
        assert_eq!(value["oracle"]["total"], 2);
        assert_eq!(value["engines"][0]["faults"]["MappingMiss"], 12);
        assert_eq!(value["volumes"][0]["series"].as_array().map(Vec::len), Some(20));
        // Field order is the declaration order.
        let scenario = json.find("\"scenario\"").unwrap_or(usize::MAX);
        let seed = json.find("\"seed\"").unwrap_or(0);
        assert!(scenario < seed);
        assert!(!report.is_clean());
        assert!(sample_report(0).is_clean());
        assert_eq!(sample_report(0).to_json().matches("\"verdict\": \"clean\"").count(), 1);
    }

    #[test]
    fn a_run_whose_set_up_never_finished_is_incomplete_and_says_what() {
        let unfinished = vec!["engine dve1: set-up never finished: its volumes were not created".to_string()];
        let report = Report {
            oracle: OracleVerdict::Incomplete {
                reads_checked: 0,
                blocks_checked: 0,
                unfinished: unfinished.clone(),
            },
            ..sample_report(0)
        };
        assert!(!report.is_clean());
        assert_eq!(report.unfinished(), unfinished.as_slice());
        assert!(sample_report(0).unfinished().is_empty());
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap_or_default();
        assert_eq!(value["oracle"]["verdict"], "incomplete");
        assert_eq!(value["oracle"]["unfinished"][0], unfinished[0].as_str());
        let summary = report.summary_text(Duration::from_secs(1));
        assert!(summary.contains("INCOMPLETE: the set-up never finished (engine dve1"), "{summary}");
    }

    #[test]
    fn engine_hit_ratio() {
        let engine = EngineReport::new("e", 200, 150, BTreeMap::new(), 0);
        assert!((engine.fast_path_hit_ratio - 0.75).abs() < 1e-12);
        assert_eq!(EngineReport::new("e", 0, 0, BTreeMap::new(), 0).fast_path_hit_ratio, 0.0);
        assert_eq!(sample_report(0).engines[0].total_faults(), 15);
    }
}
