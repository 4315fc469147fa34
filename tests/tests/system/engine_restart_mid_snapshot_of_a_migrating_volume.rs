//! An engine restart while snapshots of migrating volumes complete (seed 003 Fig. 33): the
//! engine is killed right after metadata transactions spread over the run (both migrations'
//! starts and chunks, both snapshots' making, pushes and ends) and restarted 200 ms later.
//! The migrations resume from their cursors, the snapshots are taken again over them and
//! finish from their committed pushes; each snapshot equals its source's image at its instant
//! and each migration ends once on its new disks, checked by the oracle.

use dve_tests::{assert_clean, run, run_killed_after_each, scenario, timeline_outcomes};

#[test]
fn an_engine_restart_mid_snapshot_of_a_migrating_volume_finishes_both() {
    let scenario = scenario("snapshot_during_migration");
    let undisturbed = run(&scenario);
    assert_clean(&undisturbed);
    let transactions = undisturbed.engines[0].metadata_commits;
    run_killed_after_each(&scenario, transactions, 6, 29, |n, report| {
        // What ran (an action on the dead engine is not run) ends once; a kill right after
        // the run's last transaction may lose its announcement with the engine.
        let ran = |event: &str| {
            report.timeline.iter().any(|t| t.event == event && !t.outcome.starts_with("not run"))
        };
        let flows = [
            ("migrate linear0 to d4", "linear0 migrated"),
            ("migrate stripe0 to d1,d4", "stripe0 migrated"),
            ("snapshot linear0 as snap-mid", "snapshot snap-mid complete"),
            ("snapshot stripe0 as snap-stripe-mid", "snapshot snap-stripe-mid complete"),
        ];
        for (event, end) in flows {
            let ends = timeline_outcomes(report, end).len();
            let expected = usize::from(ran(event));
            assert!(
                ends == expected || (n == transactions && ends < expected),
                "after transaction {n}: {end:?} {ends} times: {:#?}",
                report.timeline
            );
        }
        for volume in &report.volumes {
            assert!(volume.errors <= 8, "after transaction {n}: {} errors on {}", volume.errors, volume.name);
        }
    });
}
