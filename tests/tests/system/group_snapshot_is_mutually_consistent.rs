//! A group-atomic snapshot of two volumes under write load: both are taken at the same
//! instant, after every member's writes in flight drained, so each image equals its source
//! at that one instant (the oracle checks both against it) and the pair is consistent.

use dve_tests::{assert_clean, assert_snapshot_windows_brief, run, scenario};

#[test]
fn a_two_volume_group_snapshot_is_taken_at_one_instant_and_is_exact() {
    let report = run(&scenario("group_snapshot"));
    assert_clean(&report);
    let taken: Vec<_> = report
        .timeline
        .iter()
        .filter(|t| t.outcome.starts_with("snapshot") && t.outcome.ends_with(" taken"))
        .collect();
    assert_eq!(taken.len(), 2, "{:#?}", report.timeline);
    assert_eq!(taken[0].at_ns, taken[1].at_ns, "one instant for the whole group");
    assert!(
        taken.iter().any(|t| t.outcome.contains("grp.linear0"))
            && taken.iter().any(|t| t.outcome.contains("grp.stripe0"))
    );
    let complete = report.timeline.iter().filter(|t| t.outcome.contains("complete")).count();
    assert_eq!(complete, 2, "{:#?}", report.timeline);
    assert_snapshot_windows_brief(&report, 50_000_000);
}
