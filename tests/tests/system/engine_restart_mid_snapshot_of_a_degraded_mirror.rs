//! An engine restart while a snapshot of a RAID 10 volume completes and a side of the volume
//! is dead, then resynchronizing: the engine is killed right after metadata transactions
//! spread over the run (the side's death, the snapshot's making, its pushes, the resync's
//! steps, the ends) and restarted 200 ms later. The snapshot is taken again and finishes
//! from its committed pushes, reading only current sides; the side is resynchronized; the
//! oracle finds the snapshot equal to the source's image at its instant, every host read
//! right, and the sides alike at the end.

use dve_tests::{
    assert_clean, assert_once_on_timeline, run, run_killed_after_each, scenario, timeline_outcomes,
};

#[test]
fn an_engine_restart_mid_snapshot_of_a_degraded_mirror_finishes_both() {
    let scenario = scenario("engine_restart_mirror_snapshot");
    let undisturbed = run(&scenario);
    assert_clean(&undisturbed);
    assert_once_on_timeline(&undisturbed, "side 1 declared dead");
    assert_once_on_timeline(&undisturbed, "snapshot snap-raid complete");
    assert_once_on_timeline(&undisturbed, "side 1 resynchronized");
    assert_eq!(undisturbed.volumes[0].errors, 0);
    let transactions = undisturbed.engines[0].metadata_commits;
    run_killed_after_each(&scenario, transactions, 4, 5, |n, report| {
        let completions = timeline_outcomes(report, "snapshot snap-raid complete").len();
        // A kill right after the run's last transaction may lose the announcement; one whose
        // restart comes after the snapshot's instant leaves no snapshot taken.
        let not_taken = !timeline_outcomes(report, "the volume's engine is not running").is_empty();
        assert!(
            completions == 1 || ((n == transactions || not_taken) && completions == 0),
            "after transaction {n}: completed {completions} times: {:#?}",
            report.timeline
        );
        assert!(report.volumes[0].errors <= 8, "after transaction {n}: {} errors", report.volumes[0].errors);
    });
}
