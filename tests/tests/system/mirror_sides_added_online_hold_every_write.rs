//! Mirror sides added online under a read/write load: a single-disk linear volume becomes a
//! two-sided mirror and a two-sided mirror gains a third side. Each new side is copied whole
//! while hosts write; then reads are balanced onto it and checked by the oracle, and at the
//! end every side of both mirrors holds the same bytes (a difference is a violation).

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario};

#[test]
fn mirror_sides_added_under_load_are_copied_whole_and_hold_every_write() {
    let report = run(&scenario("mirror_side_added_under_load"));
    assert_clean(&report);
    assert_once_on_timeline(&report, "side 1 added: the whole volume is copied onto it");
    assert_once_on_timeline(&report, "side 2 added: the whole volume is copied onto it");
    // 8 MiB volumes in 1 MiB age extents: the whole volume is stale on a new side.
    assert_once_on_timeline(&report, "lin side 1 resynchronized: 8 stale extents copied");
    assert_once_on_timeline(&report, "mir side 2 resynchronized: 8 stale extents copied");
    for volume in &report.volumes {
        assert_eq!(volume.errors, 0, "{}: no host-visible error", volume.name);
        assert!(volume.writes > 1000, "{}: writes continued: {}", volume.name, volume.writes);
    }
}
