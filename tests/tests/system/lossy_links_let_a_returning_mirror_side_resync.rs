//! A mirror side fails and returns while every link loses two frames in a thousand: a 1 MiB
//! resync step is over a thousand frames, so most steps lose one. Steps that lose a frame are
//! copied again in smaller pieces under their range lock (after a path test when a leg went
//! unanswered), so the resync completes instead of declaring the side dead again; the hosts
//! see no error and the oracle checks every read.

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario};

#[test]
fn a_resync_over_lossy_links_copies_failed_steps_again_and_completes() {
    let report = run(&scenario("lossy_links_mirror_side_resync"));
    assert_clean(&report);
    // Declared dead once, when d1 failed; never again while it was resynchronized.
    assert_once_on_timeline(&report, "mir side 0 declared dead");
    assert_once_on_timeline(&report, "mir side 0 resynchronized: 6 stale extents copied");
    let lost: u64 = report.links.iter().map(|l| l.a_to_b.dropped_lost + l.b_to_a.dropped_lost).sum();
    assert!(lost > 20, "the links lost frames: {lost}");
    let mir = &report.volumes[0];
    assert_eq!(mir.errors, 0, "no host-visible error");
    assert!(mir.writes > 200, "writes continued: {}", mir.writes);
    let flow =
        report.flows.iter().find(|f| f.flow.starts_with("mir side 0 dead")).expect("the flow is reported");
    assert!(flow.finished, "the resync finished before the run ended: {flow:#?}");
}
