//! An engine restart in the middle of a migration resumes and finishes it. The engine is
//! killed right after metadata transactions spread over the whole run (set-up, the
//! migration's start, chunks of its copy, its end) and restarted 200 ms later from what it
//! had committed. Every run finishes the migration once, onto d2, and every read under the
//! host's load is checked by the oracle, before, during and after the restart.

use dve_tests::{assert_clean, assert_once_on_timeline, run, run_killed_after, scenario};

#[test]
fn an_engine_restart_mid_migration_resumes_and_finishes_it() {
    let scenario = scenario("engine_restart_migration");
    let undisturbed = run(&scenario);
    assert_clean(&undisturbed);
    assert_once_on_timeline(&undisturbed, "linear0 migrated: 8192 blocks copied, now on d2");
    let transactions = undisturbed.engines[0].metadata_commits;
    // A 4 MiB volume moves in 64 KiB chunks: 64 chunk transactions besides start and end.
    assert!(transactions >= 66, "{transactions} transactions");
    let mut kills: Vec<u64> = (1..=transactions).step_by(9).collect();
    kills.extend([transactions - 1, transactions]);
    for n in kills {
        let (report, kill) = run_killed_after(&scenario, n);
        let kill = kill.unwrap_or_else(|| panic!("the engine was killed after transaction {n}"));
        eprintln!("killed after transaction {n} of {transactions} at {kill} ns");
        assert_clean(&report);
        assert_once_on_timeline(&report, "linear0 migrated");
        assert!(
            report.timeline.iter().any(|t| t.outcome.contains("now on d2")),
            "after transaction {n}: the migration ended on d2"
        );
        assert!(report.volumes[0].errors <= 4, "after transaction {n}: {} errors", report.volumes[0].errors);
    }
}
