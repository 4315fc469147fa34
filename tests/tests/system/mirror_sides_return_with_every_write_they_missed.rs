//! Mirror sides that die one after another come back with every write they missed, copied
//! from their age lists, also across an engine restart: a three-way mirror loses two sides,
//! the second to die returns first, then the first; and in a second scenario the engine
//! restarts between the two deaths. The oracle checks every read (reads are balanced over
//! every side once it is alive again) and the sides are alike at the end.

use dve_sim::report::Report;
use dve_tests::{
    assert_clean, assert_once_on_timeline, run, run_killed_after_each, scenario, timeline_outcomes,
};

/// Sides 1 and 2 each died once and came back with the 4 age extents the workload writes
/// copied (each missed writes to all of them), and hosts saw at most `errors` errors.
fn assert_both_sides_back_with_what_they_missed(report: &Report, errors: u64) {
    assert_clean(report);
    for side in ["side 1", "side 2"] {
        assert_once_on_timeline(report, &format!("{side} declared dead"));
        assert_once_on_timeline(report, &format!("{side} resynchronized: 4 stale extents copied"));
    }
    assert!(report.volumes[0].errors <= errors, "{} errors", report.volumes[0].errors);
}

#[test]
fn the_first_side_to_die_is_not_made_current_by_the_second_sides_resync() {
    assert_both_sides_back_with_what_they_missed(&run(&scenario("three_way_mirror_double_failure")), 0);
}

/// Copied from the lists the restarted engine loaded, not whole (16 extents). The kill fails
/// what was in flight: at most the queue depth.
#[test]
fn age_lists_survive_an_engine_restart_between_two_side_deaths() {
    let report = run(&scenario("engine_restart_between_two_mirror_side_deaths"));
    assert_both_sides_back_with_what_they_missed(&report, 4);
}

#[test]
fn an_engine_killed_after_any_transaction_of_two_side_deaths_loses_no_write() {
    let scenario = scenario("three_way_mirror_double_failure");
    let undisturbed = run(&scenario);
    let transactions = undisturbed.engines[0].metadata_commits;
    run_killed_after_each(&scenario, transactions, 2, 3, |n, report| {
        // Each side that died came back, however the kill fell.
        for side in ["side 1", "side 2"] {
            let dead = timeline_outcomes(report, &format!("{side} declared dead")).len();
            let back = timeline_outcomes(report, &format!("{side} resynchronized")).len();
            assert!(dead <= 1 && back == dead, "after transaction {n}: {side}: {:#?}", report.timeline);
        }
    });
}
