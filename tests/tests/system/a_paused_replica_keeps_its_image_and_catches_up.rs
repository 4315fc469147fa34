//! Pausing and resuming asynchronous replication under write load (scenario
//! `replication_paused_and_resumed`). Paused, a replica applies nothing and keeps the image of
//! the last consistency point it showed (the run ends with j0 paused, and the simulator
//! compares the whole replica with that image), while consistency points go on so the
//! writers never run out of journal slots. Resumed, only the blocks written meanwhile are
//! copied from the primary (j0's catch-up is far smaller than its volume), then cycles are
//! applied again and every image shown equals the primary's at its consistency point; j1,
//! paused in the middle of its baseline, finishes it on resuming.

use dve_tests::{assert_clean, run, scenario, timeline_outcomes};

#[test]
fn a_paused_replica_keeps_its_image_and_catches_up_on_resume() {
    let report = run(&scenario("replication_paused_and_resumed"));
    assert_clean(&report);
    assert!(timeline_outcomes(&report, "DIFFERS").is_empty(), "{:#?}", report.timeline);
    assert!(timeline_outcomes(&report, "refused").is_empty(), "{:#?}", report.timeline);
    let [j0, j1] = &report.replicas[..] else { panic!("{:#?}", report.replicas) };
    assert_eq!((j0.volume.as_str(), j1.volume.as_str()), ("j0", "j1"));
    for r in [j0, j1] {
        assert_eq!(r.cycles_verified, r.cycles_applied, "{r:#?}");
        // Paused or not, the journal cycles on.
        assert!(r.consistency_points >= 14, "{r:#?}");
    }
    // j0 showed cycles before its pause and after its resume, none while paused: about four
    // intervals of 100 ms each time, out of some 17 consistency points.
    assert!(j0.paused && !j1.paused, "{:#?}", report.replicas);
    assert!((4..=12).contains(&j0.cycles_applied), "{j0:#?}");
    assert!(j0.consistency_points > j0.cycles_applied + 4, "{j0:#?}");
    // Its catch-up copied the blocks written while paused, not the whole 16,384-block volume.
    assert!(j0.copied_blocks > 0 && j0.copied_blocks < 16_384, "{j0:#?}");
    // j1 was paused during its baseline: on resuming, what was left of it and what was
    // written meanwhile were copied, and cycles applied from then on.
    assert!(j1.cycles_applied >= 5, "{j1:#?}");
    let shown: Vec<u64> = report
        .timeline
        .iter()
        .filter(|t| t.outcome.contains("replica of j1 shows consistency point"))
        .map(|t| t.at_ns)
        .collect();
    assert!(
        !shown.is_empty() && shown.iter().all(|at| *at >= 800_000_000),
        "j1 showed an image while paused: {shown:?}"
    );
    for v in &report.volumes {
        assert_eq!(v.errors, 0, "{} saw errors", v.name);
        assert!(v.writes > 1_000, "{} kept writing: {}", v.name, v.writes);
    }
}

/// Scenario `replication_paused_across_an_engine_restart`: both replications are paused when
/// the engine is killed. The restarted engine keeps them paused (the pause was committed);
/// resuming then copies each whole volume (what was written while paused was known only in
/// memory) and every image shown afterwards equals the primary's; j0, paused again, ends
/// showing its last one. The simulator waits for a cycle being written at the end.
#[test]
fn a_paused_replication_stays_paused_across_an_engine_restart() {
    let report = run(&scenario("replication_paused_across_an_engine_restart"));
    assert_clean(&report);
    assert!(timeline_outcomes(&report, "DIFFERS").is_empty(), "{:#?}", report.timeline);
    assert!(timeline_outcomes(&report, "refused").is_empty(), "{:#?}", report.timeline);
    let [j0, j1] = &report.replicas[..] else { panic!("{:#?}", report.replicas) };
    assert!(j0.paused && !j1.paused, "{:#?}", report.replicas);
    // Cycles applied count the whole run, both lives of the engine, as the cycles verified
    // do: every one was verified.
    for r in [j0, j1] {
        assert_eq!(r.cycles_verified, r.cycles_applied, "{r:#?}");
    }
    assert!(j0.cycles_applied >= 2 && j1.cycles_applied >= 5, "{:#?}", report.replicas);
    for r in [j0, j1] {
        assert_eq!(r.copied_blocks, 16_384, "the whole volume copied after the restart: {r:#?}");
    }
    for v in &report.volumes {
        assert!(v.writes > 1_000, "{} kept writing: {}", v.name, v.writes);
    }
}
