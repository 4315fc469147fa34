//! A RAID 10 volume's only current side loses a disk while the other side is being
//! resynchronized under a snapshot (so the control path runs the writes to unpushed
//! granules): a write that reached the resynchronizing side only is not acknowledged, since
//! that side is the one declared dead again when its resync fails. Once the failed disk is
//! back and the side resynchronized, the other side's first disk fails and every block is
//! read from the side left.

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario, timeline_outcomes};

#[test]
fn a_write_that_reached_only_a_resynchronizing_side_is_not_acknowledged() {
    let report = run(&scenario("raid10_current_side_fails_while_the_other_resyncs"));
    assert_clean(&report);
    // Side 1 dies with d2, and again when its resync cannot read d3.
    assert_eq!(timeline_outcomes(&report, "r10 side 1 declared dead").len(), 2, "{:#?}", report.timeline);
    assert_once_on_timeline(&report, "r10 side 1 resynchronized");
    assert_once_on_timeline(&report, "snapshot s1 complete");
    assert_once_on_timeline(&report, "r10 side 0 declared dead");
    let r10 = report.volumes.iter().find(|v| v.name == "r10").expect("r10 in the report");
    assert!(r10.writes > 1000, "writes continued: {}", r10.writes);
}
