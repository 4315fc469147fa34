//! A dead mirror side is removed while another side is dead too: the other side's age list
//! moves to its new index with it, so when its disk returns it is copied wherever it missed
//! writes (the whole volume here), and then serves every block alone.

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario};

#[test]
fn a_side_removed_while_another_is_dead_leaves_that_side_its_own_age_list() {
    let report = run(&scenario("mirror_side_removed_while_another_is_dead"));
    assert_clean(&report);
    assert_once_on_timeline(&report, "mir side 2 declared dead");
    assert_once_on_timeline(&report, "side 0 of mir removed: 2 side(s) left");
    // d3's side, index 1 now: h2 wrote all 24 MiB while it was dead; d1's list (had it been
    // given d3's index) would have named only the first 2 MiB.
    assert_once_on_timeline(&report, "mir side 1 resynchronized: 24 stale extents copied");
    let mir = &report.volumes[0];
    assert_eq!(mir.errors, 0, "no host-visible error");
}
