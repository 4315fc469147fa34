//! An engine restart keeps incremental volumes (seed 003 Fig. 22) whole: the engine is
//! killed right after metadata transactions spread over the run (set-up of the base and its
//! three incrementals, granule copies made for their first writes) and restarted 200 ms
//! later. The base is read-only again, each incremental reads its recorded granules from
//! its own store and the rest through the base, and the oracle checks every read of all four
//! volumes before, during and after the restart.

use dve_tests::{assert_clean, run, run_killed_after_each, scenario};

#[test]
fn an_engine_restart_keeps_incrementals_and_their_granules() {
    let scenario = scenario("incrementals_of_one_base");
    let undisturbed = run(&scenario);
    assert_clean(&undisturbed);
    let transactions = undisturbed.engines[0].metadata_commits;
    // Four discoveries, four volumes and their exposures, then the granule copies.
    assert!(transactions >= 40, "{transactions} transactions");
    run_killed_after_each(&scenario, transactions, 1, 37, |n, report| {
        let base = &report.volumes[0];
        assert_eq!((base.name.as_str(), base.writes), ("base0", 0), "after transaction {n}");
        // At most the I/O in flight when the engine died fails.
        for (v, volume) in report.volumes.iter().enumerate() {
            let depth: usize =
                scenario.workloads.iter().filter(|w| w.volume == v).map(|w| w.queue_depth).sum();
            assert!(
                volume.errors <= depth as u64,
                "after transaction {n}: {} errors on {} (queue depth {depth})",
                volume.errors,
                volume.name
            );
        }
        for inc in &report.volumes[1..] {
            assert!(inc.writes > 100, "after transaction {n}: {} took {} writes", inc.name, inc.writes);
        }
    });
}
