//! Replication over lossy links while a catch-up copy is under way (scenario
//! `lossy_links_during_a_replica_copy`). A journaled write that fails then may have reached
//! the journal and not the primary; the cycles applied after the copy must not bring the
//! journal's version of its blocks back over the primary's, which the copy takes once the
//! cycle open at the failure has closed.

use dve_tests::{assert_clean, run, scenario, timeline_outcomes};

#[test]
fn a_write_failing_during_a_copy_never_shows_on_the_replica_unlike_its_primary() {
    let report = run(&scenario("lossy_links_during_a_replica_copy"));
    assert_clean(&report);
    assert!(timeline_outcomes(&report, "DIFFERS").is_empty(), "{:#?}", report.timeline);
    let replicas = &report.replicas;
    assert_eq!(replicas.len(), 2, "{replicas:#?}");
    for r in replicas {
        assert_eq!(r.cycles_verified, r.cycles_applied, "{r:#?}");
    }
    // j1's copy is the one a failed write met: it finished and cycles were shown after it.
    assert!(replicas.iter().any(|r| r.volume == "j1" && r.cycles_applied > 0), "{replicas:#?}");
}
