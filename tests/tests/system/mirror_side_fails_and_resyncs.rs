//! A mirror side fails under write load: writes continue on the live side, the side is
//! declared dead, and when its disk returns only the age extents written meanwhile are
//! copied (the workload touches 4 of them). Every read is checked by the oracle, and at the
//! end both copies hold the same bytes.

use dve_tests::{assert_clean, assert_flows_served_by_the_fast_path, assert_once_on_timeline, run, scenario};

#[test]
fn mirror_side_fails_under_write_load_and_is_resynced_by_copying_only_stale_extents() {
    let report = run(&scenario("mirror_side_failure"));
    assert_clean(&report);
    assert_once_on_timeline(&report, "side 0 declared dead");
    assert_once_on_timeline(&report, "side 0 resynchronized: 4 stale extents copied");
    let volume = &report.volumes[0];
    assert_eq!(volume.errors, 0, "no host-visible error");
    assert!(volume.writes > 1000, "writes continued: {}", volume.writes);
    // Degraded, then resynchronizing: the fast path keeps serving.
    assert_flows_served_by_the_fast_path(&report, &["mirror0 side 0 dead, then resynchronized"], 0.95);
}
