//! Replication over lossy links (scenario `lossy_links_under_replication`). A journaled
//! write whose legs did not all answer may have landed on the primary but not in the journal
//! (or the reverse); the host retries it, but a consistency point may fall in between. The
//! replica must never show the journal's version of such blocks where the primary's differs:
//! their blocks are copied from the primary behind a consistency point of their own.

use dve_tests::{assert_clean, run, scenario, timeline_outcomes};

#[test]
fn lossy_links_never_leave_a_replica_unlike_its_primary() {
    let report = run(&scenario("lossy_links_under_replication"));
    assert_clean(&report);
    assert!(timeline_outcomes(&report, "DIFFERS").is_empty(), "{:#?}", report.timeline);
    for v in &report.volumes {
        assert_eq!(v.errors, 0, "{} saw errors", v.name);
        assert!(v.retries > 0, "{} lost frames and retried: {v:#?}", v.name);
    }
    let replicas = &report.replicas;
    assert_eq!(replicas.len(), 2, "{replicas:#?}");
    for r in replicas {
        assert_eq!(r.cycles_verified, r.cycles_applied, "{r:#?}");
    }
    assert!(replicas.iter().map(|r| r.cycles_applied).sum::<u64>() >= 2, "{replicas:#?}");
}
