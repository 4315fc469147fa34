//! A snapshot taken in the middle of a migration (seed 003 Fig. 33) is exact: it equals its
//! source's image at the snapshot instant, and the migration finishes afterwards with every
//! acknowledged write in place.

use dve_tests::{assert_clean, run, scenario, timeline_outcomes};

#[test]
fn a_snapshot_taken_mid_migration_equals_the_source_at_its_instant() {
    let report = run(&scenario("snapshot_during_migration"));
    assert_clean(&report);
    for name in ["snap-mid", "snap-stripe-mid"] {
        assert_eq!(
            timeline_outcomes(&report, &format!("snapshot {name} of")).len(),
            1,
            "{:#?}",
            report.timeline
        );
        assert_eq!(
            timeline_outcomes(&report, &format!("snapshot {name} complete")).len(),
            1,
            "{:#?}",
            report.timeline
        );
    }
    for volume in ["linear0", "stripe0"] {
        assert_eq!(
            timeline_outcomes(&report, &format!("{volume} migrated")).len(),
            1,
            "{:#?}",
            report.timeline
        );
    }
    // The snapshots were taken before their migrations ended.
    let at = |text: &str| report.timeline.iter().find(|t| t.outcome.contains(text)).map(|t| t.at_ns);
    assert!(at("snapshot snap-mid of") < at("linear0 migrated"), "{:#?}", report.timeline);
    assert!(report.volumes.iter().all(|v| v.errors == 0));
}
