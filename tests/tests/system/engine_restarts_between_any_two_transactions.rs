//! The engine is killed right after each of its metadata transactions in turn (device
//! discovery, volume creation and exposure, a mirror side's death, the resync's start, each
//! of its steps and its end) and restarted 200 ms later from what it had committed, under
//! host load. Every run must come back consistent: every read the oracle checks (before, during and after) is
//! right, the mirror's sides are identical at the end, hosts see errors only for the I/O in
//! flight when the engine died, and I/O runs again after the restart.

use dve_tests::{RESTART_AFTER_NS, assert_clean, run_killed_after, scenario, timeline_outcomes};

#[test]
fn an_engine_killed_between_any_two_metadata_transactions_comes_back_consistent() {
    let scenario = scenario("engine_restart");
    let mut transactions = 0;
    let mut resynchronized = Vec::new();
    for n in 1.. {
        let (report, kill) = run_killed_after(&scenario, n);
        let Some(kill) = kill else {
            // The run committed fewer than n transactions: every one has been tried.
            break;
        };
        transactions = n;
        let events: Vec<String> = report
            .timeline
            .iter()
            .filter(|t| t.at_ns <= kill && t.event.contains("control path"))
            .map(|t| t.outcome.clone())
            .collect();
        eprintln!("killed after transaction {n} at {} ns; control-path events before: {events:?}", kill);
        assert_clean(&report);
        let restart = report.timeline.iter().find(|t| t.event == "injected restart").expect("restarted");
        assert!(
            restart.outcome.starts_with("the engine starts"),
            "after transaction {n}: {}",
            restart.outcome
        );
        for volume in &report.volumes {
            assert!(
                volume.errors <= 4,
                "after transaction {n}: {} errors on {} (queue depth 4)",
                volume.errors,
                volume.name
            );
            let after: u64 = volume
                .series
                .iter()
                .filter(|p| p.start_ns > kill + RESTART_AFTER_NS + 100_000_000)
                .map(|p| p.ios)
                .sum();
            assert!(after > 0, "after transaction {n}: no I/O on {} after the restart", volume.name);
        }
        resynchronized.push(timeline_outcomes(&report, "side 0 resynchronized").len());
    }
    // The resync ends once in every run: started after the restart, or resumed from its
    // committed progress when the engine died in the middle of it. Only a kill right after
    // its last transaction (its end) loses the announcement with the engine.
    let (last, before) = resynchronized.split_last().expect("runs");
    assert!(before.iter().all(|n| *n == 1), "resync ends per run: {resynchronized:?}");
    assert!(*last <= 1, "resync ends per run: {resynchronized:?}");
    assert!(transactions >= 10, "only {transactions} metadata transactions were tried");
}
