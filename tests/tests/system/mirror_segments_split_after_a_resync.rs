//! A degraded mirror's segments are not split or merged, and the refusal says what to do
//! (resynchronize or remove the dead side); after the resync the split is made under load,
//! and the side left when the other fails serves both new segments with every read right.

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario, timeline_outcomes};

#[test]
fn a_degraded_mirror_is_split_only_after_its_resync_and_its_segments_survive_a_side_failure() {
    let report = run(&scenario("mirror_segments_split_after_a_resync"));
    assert_clean(&report);
    assert_eq!(
        timeline_outcomes(&report, "refused: mir has a dead mirror side: resynchronize or remove it").len(),
        3
    );
    assert_once_on_timeline(&report, "mir side 1 resynchronized");
    assert_once_on_timeline(&report, "mir now has 2 segment(s)");
    assert_once_on_timeline(&report, "mir side 0 declared dead");
    assert_eq!(report.volumes[0].errors, 0, "no host-visible error");
}
