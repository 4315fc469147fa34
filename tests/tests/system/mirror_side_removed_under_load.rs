//! Mirror sides removed online under a read/write load: a disk under a mirror is replaced (a
//! side added on a new disk and copied whole, then the old disk's side removed), then the
//! other old disk fails and the new one alone carries the volume; and a side is removed while
//! it is still being added. The hosts see no error and the oracle finds every read right.

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario, timeline_outcomes};

#[test]
fn mirror_sides_removed_under_load_lose_no_write_and_the_disks_left_carry_the_volume() {
    let report = run(&scenario("mirror_side_removed_under_load"));
    assert_clean(&report);
    assert_eq!(timeline_outcomes(&report, "side 2 added: the whole volume is copied onto it").len(), 2);
    assert_once_on_timeline(&report, "mir side 2 resynchronized: 8 stale extents copied");
    // `two` loses the side it was gaining; `mir` the side on d1, before d2 fails.
    assert_once_on_timeline(&report, "side 2 of two removed: 2 side(s) left");
    assert_once_on_timeline(&report, "side 0 of mir removed: 2 side(s) left");
    assert!(timeline_outcomes(&report, "two side 2 resynchronized").is_empty(), "its resync ended");
    // d2 fails after the removal: it is side 0 now, and d3 carries the volume alone.
    assert_once_on_timeline(&report, "mir side 0 declared dead");
    for volume in &report.volumes {
        assert_eq!(volume.errors, 0, "{}: no host-visible error", volume.name);
        assert!(volume.writes > 1000, "{}: writes continued: {}", volume.name, volume.writes);
    }
}
