//! Copy-on-write snapshots taken under write load equal their sources' images at the
//! snapshot instant, block by block, while the sources keep changing; the completion task
//! pushes everything, and the fast path keeps serving nearly all I/O throughout.

use dve_tests::{
    assert_clean, assert_snapshot_windows_brief, assert_snapshots_taken_and_completed, run, scenario,
};

#[test]
fn snapshots_under_write_load_equal_the_source_image_at_the_snapshot_instant() {
    let report = run(&scenario("snapshot_under_load"));
    assert_clean(&report);
    assert_snapshots_taken_and_completed(&report, &["snap-linear", "snap-stripe"]);
    assert!(report.volumes.iter().all(|v| v.errors == 0 && v.writes > 500), "{:#?}", report.volumes);
    let engine = &report.engines[0];
    assert!(
        engine.fast_path_hit_ratio > 0.95,
        "fast path served {:.3} of host I/O",
        engine.fast_path_hit_ratio
    );
    // Copy-on-write faults first writes to unpushed granules only while the completion task
    // pushes the rest: a brief window.
    assert_snapshot_windows_brief(&report, 50_000_000);
}
