//! Every link loses one frame in a thousand under read and write load on linear, striped,
//! mirrored and journaled volumes. Lost commands, transfer-ready and status frames are
//! recovered by timeouts and retries. A read data frame lost on a device's link leaves every
//! leg GOOD but the switch short of data: the worker hands that read to the control path,
//! which answers with a retryable error, so no host takes a buffer with a hole as the
//! volume's data (before the fix, this scenario gave 228 oracle violations). A control-path
//! leg nobody answered is retried by the host, not failed with the worker's TASK ABORTED
//! mark (before, the journaled volume saw one such error here).
//!
//! A mirror leg that times out no longer costs its side: the device's path is tested (it has
//! one path) and a read probe follows; the device answers, so the read is redone or the
//! write's range is copied from the other side before the host retries. Before, a single
//! lost frame declared a side dead, and with seeds 1, 3 and 4 both sides of `mir` died and
//! its hosts saw hundreds of errors. At the end of every run both copies of `mir` are
//! compared byte for byte, which they are only when no side is dead.

use dve_sim::report::Report;
use dve_sim::report::options::RunOptions;
use dve_tests::{assert_clean, quiet, run, scenario, timeline_outcomes};

#[test]
fn lost_frames_are_retried_and_every_read_is_exact() {
    let report = run(&scenario("lossy_links"));
    assert_clean(&report);
    let lost_from_devices: u64 =
        report.links.iter().filter(|l| l.a.starts_with('d')).map(|l| l.a_to_b.dropped_lost).sum();
    assert!(lost_from_devices > 20, "devices' links lost frames: {lost_from_devices}");
    let engine = &report.engines[0];
    let downstream_errors = engine.faults.get("downstream-error").copied().unwrap_or(0);
    assert!(downstream_errors > 0, "lost frames reached the fault path: {:?}", engine.faults);
    for volume in &report.volumes {
        assert!(volume.reads > 100, "{}: reads ran ({})", volume.name, volume.reads);
        assert!(volume.retries > 0, "{}: hosts retried what was lost", volume.name);
        assert_eq!(volume.errors, 0, "{}: retries recovered every loss", volume.name);
    }
    assert_every_side_lived(&report);
}

/// The scenario with another seed: the losses fall elsewhere, on every kind of frame.
fn run_with_seed(seed: u64) -> Report {
    let options = RunOptions { seed_override: Some(seed), ..quiet() };
    let report = dve_sim::world::run(&scenario("lossy_links"), &options).expect("run");
    assert_clean(&report);
    assert_eq!(report.seed, seed);
    for volume in &report.volumes {
        assert_eq!(volume.errors, 0, "seed {seed}, {}: retries recovered every loss", volume.name);
    }
    assert_every_side_lived(&report);
    report
}

/// No mirror side was declared dead, so the sides were compared at the end (and the oracle,
/// clean, found them equal).
fn assert_every_side_lived(report: &Report) {
    let deaths = timeline_outcomes(report, "declared dead");
    assert!(deaths.is_empty(), "seed {}: a healthy device lost its side: {deaths:?}", report.seed);
}

#[test]
fn a_lost_frame_kills_no_mirror_side_with_seed_1() {
    run_with_seed(1);
}

#[test]
fn a_lost_frame_kills_no_mirror_side_with_seed_3() {
    run_with_seed(3);
}

#[test]
fn a_lost_frame_kills_no_mirror_side_with_seed_4() {
    run_with_seed(4);
}
