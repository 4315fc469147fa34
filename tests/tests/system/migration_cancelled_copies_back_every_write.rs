//! Cancelling a migration under load: what it moved, writes made since included, is copied
//! back online chunk by chunk, after which the disks it was moving to can die without a host
//! noticing and the volume migrates elsewhere (at a limited rate). An engine restart at any point of a cancel
//! resumes the copy back from its committed record; every read is checked by the oracle.

use dve_tests::{
    assert_clean, assert_once_on_timeline, run, run_killed_after_each, scenario, timeline_outcomes,
};

#[test]
fn cancelled_migrations_copy_back_and_their_destinations_can_then_die() {
    let report = run(&scenario("migration_cancelled_under_load"));
    assert_clean(&report);
    assert_once_on_timeline(&report, "stripe0 migration cancelled");
    assert_once_on_timeline(&report, "linear0 migration cancelled");
    assert_once_on_timeline(&report, "linear0 migrated: 32768 blocks copied, now on d4");
    // 16 MiB at 100 MiB/s from 0.6 s: not before 0.76 s of simulated time.
    let migrated = report.timeline.iter().find(|t| t.outcome.contains("now on d4")).expect("migrated");
    assert!(migrated.at_ns >= 760_000_000, "migrated at {} ns", migrated.at_ns);
    for v in &report.volumes {
        assert_eq!(v.errors, 0, "{} saw errors", v.name);
        assert!(v.reads > 1000 && v.writes > 1000, "{}: {} reads, {} writes", v.name, v.reads, v.writes);
    }
}

#[test]
fn an_engine_restart_mid_cancel_resumes_the_copy_back() {
    let scenario = scenario("engine_restart_cancelled_migration");
    let undisturbed = run(&scenario);
    assert_clean(&undisturbed);
    assert_once_on_timeline(&undisturbed, "linear0 migration cancelled");
    let transactions = undisturbed.engines[0].metadata_commits;
    // 4 MiB in 64 KiB chunks, cancelled about halfway: chunks out and back, start, cancel, end.
    assert!(transactions >= 40, "{transactions} transactions");
    run_killed_after_each(&scenario, transactions, 1, 5, |n, report| {
        let cancel_ran = report
            .timeline
            .iter()
            .any(|t| t.event == "cancel-migration linear0" && t.outcome.starts_with("copying back"));
        let cancelled = timeline_outcomes(report, "linear0 migration cancelled").len();
        let migrated = timeline_outcomes(report, "now on d2").len();
        if cancel_ran {
            assert_eq!((cancelled, migrated), (1, 0), "after transaction {n}: {:#?}", report.timeline);
        } else {
            // The engine was down when the cancel came: the migration went on to its end.
            assert_eq!((cancelled, migrated), (0, 1), "after transaction {n}: {:#?}", report.timeline);
        }
        assert!(report.volumes[0].errors <= 4, "after transaction {n}: {} errors", report.volumes[0].errors);
    });
}
