//! A three-way mirror on lossy links loses one disk for a while: the reconciliations that
//! lost frames start on the good disks copy from the gone one and fail, and it is that side
//! that is declared dead, never a good one. The hosts see no error, and the last good disk
//! carries the volume once the first fails for good.

use dve_tests::{assert_clean, run, scenario, timeline_outcomes};

#[test]
fn a_reconciliation_that_keeps_failing_blames_the_side_whose_leg_failed() {
    let report = run(&scenario("lossy_links_blame_the_side_that_failed"));
    assert_clean(&report);
    assert!(!timeline_outcomes(&report, "mir side 1 declared dead").is_empty(), "{:#?}", report.timeline);
    assert!(
        timeline_outcomes(&report, "mir side 2 declared dead").is_empty(),
        "d3 never failed: {:#?}",
        report.timeline
    );
    // d1 is declared dead once, after it fails at 2 s.
    let d1 =
        report.timeline.iter().filter(|t| t.outcome.contains("mir side 0 declared dead")).collect::<Vec<_>>();
    assert_eq!(d1.len(), 1, "{:#?}", report.timeline);
    assert!(d1[0].at_ns > 2_000_000_000, "{:#?}", d1[0]);
    let mir = &report.volumes[0];
    assert_eq!(mir.errors, 0, "no host-visible error");
    assert!(mir.writes > 300, "writes continued: {}", mir.writes);
}
