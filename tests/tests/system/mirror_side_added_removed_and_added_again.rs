//! A linear volume under a read/write load takes a mirror side, loses one and takes sides
//! again, after a snapshot of it: the scenario is accepted before the run (the validator
//! follows the volume's layout through each change), the engine accepts every change (a
//! completed snapshot does not keep a side from being added), each new side is copied whole,
//! the host sees no error and the oracle finds every read right.

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario, timeline_outcomes};

#[test]
fn a_linear_volume_takes_a_side_loses_one_and_takes_sides_again_without_losing_a_write() {
    let report = run(&scenario("mirror_side_added_removed_and_added_again"));
    assert_clean(&report);
    assert_once_on_timeline(&report, "snapshot lin_snap complete");
    let refused = timeline_outcomes(&report, "refused");
    assert!(refused.is_empty(), "every change is accepted: {refused:?}");
    // Linear on d1, then d1+d2, d2 alone, d2+d3, d2+d3+d1, and d3+d1 at the end.
    assert_eq!(timeline_outcomes(&report, "side 1 added: the whole volume is copied onto it").len(), 2);
    assert_once_on_timeline(&report, "side 2 added: the whole volume is copied onto it");
    assert_eq!(timeline_outcomes(&report, "lin side 1 resynchronized: 8 stale extents copied").len(), 2);
    assert_once_on_timeline(&report, "lin side 2 resynchronized: 8 stale extents copied");
    assert_once_on_timeline(&report, "side 0 of lin removed: 1 side(s) left");
    assert_once_on_timeline(&report, "side 0 of lin removed: 2 side(s) left");
    for volume in &report.volumes {
        assert_eq!(volume.errors, 0, "{}: no host-visible error", volume.name);
        assert!(volume.writes > 1000, "{}: writes continued: {}", volume.name, volume.writes);
    }
}
