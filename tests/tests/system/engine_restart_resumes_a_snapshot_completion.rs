//! An engine restart in the middle of a snapshot's completion resumes and finishes it. The
//! engine is killed right after metadata transactions over the whole run (set-up, the
//! snapshot's making, pushes made for host writes and by the completion task, its end) and
//! restarted 200 ms later from what it had committed. Every run completes the snapshot
//! once, and the oracle finds it equal, block by block, to the source's image at the
//! snapshot instant; every host read is checked too, before, during and after the restart.

use dve_tests::{assert_clean, assert_once_on_timeline, run, run_killed_after, scenario, timeline_outcomes};

#[test]
fn an_engine_restart_mid_snapshot_completion_resumes_and_finishes_it() {
    let scenario = scenario("engine_restart_snapshot");
    let undisturbed = run(&scenario);
    assert_clean(&undisturbed);
    assert_once_on_timeline(&undisturbed, "snapshot snap0 complete");
    let transactions = undisturbed.engines[0].metadata_commits;
    // Set-up (2 discoveries, the volume, its exposure), the snapshot, its pushes, its end.
    assert!(transactions >= 20, "{transactions} transactions");
    for n in 1..=transactions {
        let (report, kill) = run_killed_after(&scenario, n);
        let kill = kill.unwrap_or_else(|| panic!("the engine was killed after transaction {n}"));
        eprintln!("killed after transaction {n} of {transactions} at {kill} ns");
        assert_clean(&report);
        assert_once_on_timeline(&report, "snapshot snap0 complete");
        assert!(
            !timeline_outcomes(&report, "snapshot snap0 of linear0 taken").is_empty(),
            "after transaction {n}: the snapshot was taken"
        );
        assert!(report.volumes[0].errors <= 4, "after transaction {n}: {} errors", report.volumes[0].errors);
    }
}
