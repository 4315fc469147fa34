//! LV reconfiguration under load (seed 003 section 6.8): segments of a linear, a striped and
//! a mirrored volume are split and merged again while hosts write and read them, each with
//! the volume's I/O paused and drained first. The new boundaries are committed: after an
//! engine restart the volumes still have their split segments, and merging them works. Cuts
//! the storage cannot take (a stripe row split in the middle, two segments on different
//! disks joined) are refused and change nothing. Every read is checked by the oracle.

use dve_tests::{assert_clean, run, scenario, timeline_outcomes};

#[test]
fn segments_are_split_and_merged_under_load_and_across_a_restart() {
    let report = run(&scenario("segments_split_and_merge"));
    assert_clean(&report);
    let outcomes: Vec<&str> = report
        .timeline
        .iter()
        .filter(|t| t.event.contains("control path") || t.event.contains("segment"))
        .map(|t| t.outcome.as_str())
        .collect();
    let expected = [
        // Splits: linear0 has a segment per disk to begin with.
        "linear0 now has 3 segment(s)",
        "stripe0 now has 2 segment(s)",
        "mirror0 now has 2 segment(s)",
        "linear0 now has 4 segment(s)",
        // After the restart, merges find the committed boundaries.
        "linear0 now has 3 segment(s)",
        "stripe0 now has 1 segment(s)",
        "mirror0 now has 1 segment(s)",
        "linear0 now has 2 segment(s)",
    ];
    let made: Vec<&str> = outcomes.iter().copied().filter(|o| o.contains("now has")).collect();
    assert_eq!(made, expected, "{:#?}", report.timeline);
    let refused = timeline_outcomes(&report, "refused");
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0].contains("stripe rows"), "{}", refused[0]);
    assert!(refused[1].contains("does not continue"), "{}", refused[1]);
    for volume in &report.volumes {
        // Only the I/O in flight when the engine was killed may fail (queue depth 4).
        assert!(volume.errors <= 4, "{}: {} errors", volume.name, volume.errors);
        assert!(volume.reads > 1000 && volume.writes > 1000, "{:?}", volume);
    }
}
