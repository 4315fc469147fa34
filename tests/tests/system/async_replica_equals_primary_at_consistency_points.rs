//! Asynchronous ordered replication under write load (seed 003 Fig. 32): each journaled
//! volume's replica moves from one consistency point to the next, and every image it shows
//! equals, byte for byte, the primary's image at that consistency point (the simulator keeps
//! the blocks each cycle wrote as the primary held them at its consistency point, checked by
//! the oracle there, and compares them with the replica once the cycle is applied; the whole
//! replica is compared at its first image and at the end). One volume's consistency points follow its
//! interval; the other's journal fills first, so they come as often as its writers run out of
//! journal slots. Hosts see no error and the fast path keeps serving.

use dve_tests::{assert_clean, assert_flows_served_by_the_fast_path, run, scenario, timeline_outcomes};

#[test]
fn each_replica_equals_the_primary_at_every_consistency_point_applied() {
    let report = run(&scenario("async_replication"));
    assert_clean(&report);
    assert!(timeline_outcomes(&report, "DIFFERS").is_empty(), "{:#?}", report.timeline);
    assert_eq!(report.replicas.len(), 2, "{:#?}", report.replicas);
    for replica in &report.replicas {
        assert!(replica.cycles_applied >= 5, "{replica:#?}");
        assert_eq!(replica.cycles_verified, replica.cycles_applied, "{replica:#?}");
        assert!(replica.consistency_points >= replica.cycles_applied, "{replica:#?}");
        assert!(replica.last_lag_ns > 0 && replica.max_lag_ns >= replica.last_lag_ns, "{replica:#?}");
        let shown =
            timeline_outcomes(&report, &format!("replica of {} shows consistency point", replica.volume));
        assert_eq!(shown.len(), 1, "the first image shown is on the timeline: {:#?}", report.timeline);
    }
    // j0 replicates every 200 ms from 100 ms: its interval sets the pace. j1's writers fill
    // their journal slots in tens of milliseconds: running out of slots does.
    let j0 = &report.replicas[0];
    assert!((5..=8).contains(&j0.consistency_points), "{j0:#?}");
    let j1 = &report.replicas[1];
    assert!(j1.consistency_points > 20, "{j1:#?}");
    for v in &report.volumes {
        assert_eq!(v.errors, 0, "{} saw errors", v.name);
        assert!(v.writes > 500, "{} kept writing: {}", v.name, v.writes);
    }
    assert!(report.engines[0].fast_path_hit_ratio > 0.95, "{}", report.engines[0].fast_path_hit_ratio);
    assert_flows_served_by_the_fast_path(&report, &["replication of j0", "replication of j1"], 0.95);
}
