//! A mirror side whose disk fails every write, without leaving the fabric, is declared dead
//! and its device taken as failed; the engine logs in to the device again after 5 s (the
//! side dies again: the disk still fails writes), then after 10 s, when the disk writes
//! again and the side is resynchronized. No operator, no disk login; every read is checked
//! and at the end both copies hold the same bytes.

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario, timeline_outcomes};

#[test]
fn a_side_failed_for_write_errors_is_tried_again_with_a_growing_wait_until_it_resyncs() {
    let report = run(&scenario("mirror_side_back_after_write_errors"));
    assert_clean(&report);
    let deaths: Vec<u64> = report
        .timeline
        .iter()
        .filter(|t| t.outcome.contains("side 1 declared dead"))
        .map(|t| t.at_ns / 1_000_000)
        .collect();
    assert_eq!(deaths.len(), 2, "dead at the first error, then after the first try: {deaths:?}");
    let back: Vec<u64> = report
        .timeline
        .iter()
        .filter(|t| t.outcome.contains(" online"))
        .map(|t| t.at_ns / 1_000_000)
        .collect();
    // The waits after the first death: 5 s, then twice that.
    assert_eq!(back.iter().map(|t| t - deaths[0]).collect::<Vec<_>>(), vec![5_000, 15_000], "{back:?}");
    assert_once_on_timeline(&report, "side 1 resynchronized: 4 stale extents copied");
    assert!(
        timeline_outcomes(&report, "logs in to the fabric").is_empty(),
        "the disk never logged in by itself"
    );
    assert_eq!(report.volumes[0].errors, 0, "no host-visible error");
}
