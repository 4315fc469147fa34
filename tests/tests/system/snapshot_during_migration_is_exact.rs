//! A snapshot taken in the middle of a migration (seed 003 Fig. 33) is exact: it equals its
//! source's image at the snapshot instant, and the migration finishes afterwards with every
//! acknowledged write in place.

use dve_tests::{
    assert_clean, assert_flows_served_by_the_fast_path, assert_once_on_timeline,
    assert_snapshot_windows_brief, assert_snapshots_taken_and_completed, run, scenario,
};

#[test]
fn a_snapshot_taken_mid_migration_equals_the_source_at_its_instant() {
    let report = run(&scenario("snapshot_during_migration"));
    assert_clean(&report);
    assert_snapshots_taken_and_completed(&report, &["snap-mid", "snap-stripe-mid"]);
    for volume in ["linear0", "stripe0"] {
        assert_once_on_timeline(&report, &format!("{volume} migrated"));
    }
    // The snapshots were taken before their migrations ended.
    let at = |text: &str| report.timeline.iter().find(|t| t.outcome.contains(text)).map(|t| t.at_ns);
    assert!(at("snapshot snap-mid of") < at("linear0 migrated"), "{:#?}", report.timeline);
    assert!(report.volumes.iter().all(|v| v.errors == 0));
    // The migrations' copy agents leave the fast path serving; the snapshots' copy-on-write
    // windows (first writes to unpushed granules fault) last tens of milliseconds.
    assert_flows_served_by_the_fast_path(&report, &["migration of linear0", "migration of stripe0"], 0.95);
    assert_snapshot_windows_brief(&report, 50_000_000);
}
