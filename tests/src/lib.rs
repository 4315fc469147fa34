//! `dve-tests`: cross-crate integration and system tests, one module per scenario in the
//! `system` test binary (`tests/system/`), the DPDK one in a binary of its own.
//! The library part holds the scaffolding those scenarios share: loading the scenario files
//! under `tests/scenarios/` and running them in the simulator.

use std::path::PathBuf;

use dve_sim::report::options::RunOptions;
use dve_sim::report::{OracleVerdict, Report};
use dve_sim::scenario::Scenario;

/// The scenario file `tests/scenarios/NAME.toml`.
pub fn scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(format!("{name}.toml"));
    Scenario::load(&path).unwrap_or_else(|err| panic!("{err}"))
}

/// Options for a quiet run.
pub fn quiet() -> RunOptions {
    RunOptions { seed_override: None, duration_override_ms: None, pcaps: Vec::new(), progress: false }
}

/// Run a scenario quietly; panics if the run itself fails (not if the oracle objects).
pub fn run(scenario: &Scenario) -> Report {
    dve_sim::world::run(scenario, &quiet()).unwrap_or_else(|err| panic!("run failed: {err}"))
}

/// How long after an injected kill the engine starts again.
pub const RESTART_AFTER_NS: u64 = 200_000_000;

/// Run a scenario with its first engine killed right after its metadata transaction `n` and
/// restarted [`RESTART_AFTER_NS`] later. Returns the report and the kill's instant, or `None`
/// with the report if the run committed fewer than `n` transactions.
pub fn run_killed_after(scenario: &Scenario, n: u64) -> (Report, Option<u64>) {
    let faults = dve_sim::world::InjectedFaults {
        kill_after_commit: Some((n, RESTART_AFTER_NS)),
        ..dve_sim::world::InjectedFaults::default()
    };
    let report = dve_sim::world::run_with_faults(scenario, &quiet(), faults)
        .unwrap_or_else(|err| panic!("run failed: {err}"));
    let kill = report.timeline.iter().find(|t| t.event.starts_with("injected kill")).map(|t| t.at_ns);
    (report, kill)
}

/// Run a scenario killed after its transactions `first`, `first + step`, ... and after the
/// last of the `transactions` an undisturbed run committed (see [`run_killed_after`]); each
/// run must be clean, and `check` gets its report with the transaction it was killed after.
pub fn run_killed_after_each(
    scenario: &Scenario,
    transactions: u64,
    first: u64,
    step: usize,
    mut check: impl FnMut(u64, &Report),
) {
    let mut kills: Vec<u64> = (first..=transactions).step_by(step).collect();
    kills.push(transactions);
    for n in kills {
        let (report, kill) = run_killed_after(scenario, n);
        let kill = kill.unwrap_or_else(|| panic!("the engine was killed after transaction {n}"));
        eprintln!("killed after transaction {n} of {transactions} at {kill} ns");
        assert_clean(&report);
        check(n, &report);
    }
}

/// Panic with the first violations, or with what of the set-up never finished, unless the
/// run is clean.
pub fn assert_clean(report: &Report) {
    match &report.oracle {
        OracleVerdict::Clean { .. } => {}
        OracleVerdict::Incomplete { unfinished, .. } => panic!("the set-up never finished: {unfinished:#?}"),
        OracleVerdict::Violations { total, first, .. } => {
            panic!("{total} integrity violations, first: {first:#?}")
        }
    }
}

/// The outcomes on the timeline that contain `text`.
pub fn timeline_outcomes<'a>(report: &'a Report, text: &str) -> Vec<&'a str> {
    report.timeline.iter().map(|t| t.outcome.as_str()).filter(|o| o.contains(text)).collect()
}

/// Panic with the whole timeline unless exactly one outcome contains `text`.
pub fn assert_once_on_timeline(report: &Report, text: &str) {
    let found = timeline_outcomes(report, text);
    assert_eq!(
        found.len(),
        1,
        "{text:?} found {} times on the timeline: {:#?}",
        found.len(),
        report.timeline
    );
}

/// Panic unless each snapshot in `names` was taken once and completed once.
pub fn assert_snapshots_taken_and_completed(report: &Report, names: &[&str]) {
    for name in names {
        assert_once_on_timeline(report, &format!("snapshot {name} of"));
        assert_once_on_timeline(report, &format!("snapshot {name} complete"));
    }
}

/// Panic unless every flow whose name starts with one of `prefixes` ran, and the fast path
/// served at least `share` of the engine's host I/O while each of them ran.
pub fn assert_flows_served_by_the_fast_path(report: &Report, prefixes: &[&str], share: f64) {
    for prefix in prefixes {
        let flows: Vec<_> = report.flows.iter().filter(|f| f.flow.starts_with(prefix)).collect();
        assert!(!flows.is_empty(), "no flow {prefix:?}: {:#?}", report.flows);
        for f in flows {
            assert!(
                f.fast_path_share >= share,
                "{}: fast-path share {:.4} < {share}: {f:#?}",
                f.flow,
                f.fast_path_share
            );
        }
    }
}

/// Panic unless every snapshot flow (its copy-on-write window, from the take to the last
/// push) ended within `max_ns`: snapshots fault first writes to unpushed granules, briefly.
pub fn assert_snapshot_windows_brief(report: &Report, max_ns: u64) {
    for f in report.flows.iter().filter(|f| f.flow.starts_with("snapshot ")) {
        assert!(f.finished && f.end_ns - f.start_ns <= max_ns, "{} was not brief: {f:#?}", f.flow);
    }
}

pub mod bench;

/// Every volume's time series covers the run and no more: each point starts before the end,
/// lasts at most the sample interval (the last one up to the end), and its rate is its I/Os
/// over that length, so no point shows more I/Os per second than the volume completed in all
/// over the point's length.
pub fn assert_series_within_the_run(report: &Report) {
    let end = report.simulated_ns;
    for volume in &report.volumes {
        let completed = (volume.reads + volume.writes) as f64;
        for (index, point) in volume.series.iter().enumerate() {
            let next = volume.series.get(index + 1).map_or(end, |p| p.start_ns);
            assert!(
                point.start_ns < end,
                "{} point {index} starts at or after the end: {point:?}",
                volume.name
            );
            let length_ns = next.saturating_sub(point.start_ns);
            assert!(
                length_ns > 0 && length_ns <= report.sample_interval_ns,
                "{} point {index} is {length_ns} ns long",
                volume.name
            );
            let length_s = length_ns as f64 / 1e9;
            assert!(
                point.iops <= completed / length_s * (1.0 + 1e-9),
                "{} point {index}: {} IOPS, more than all {completed} I/Os over {length_ns} ns",
                volume.name,
                point.iops
            );
            let rate = point.ios as f64 / length_s;
            assert!((point.iops - rate).abs() <= rate * 1e-9, "{} point {index}: {point:?}", volume.name);
        }
    }
}
