//! A mirror side lost to a black-holed path (its disk still logged in to the fabric) comes
//! back when the path answers the periodic test of failed paths: the device is identified
//! again, comes online, and the side is resynchronized, with no disk login and no operator.
//! Every read is checked, and at the end both copies hold the same bytes.

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario};

#[test]
fn a_mirror_side_lost_to_a_path_is_resynchronized_when_the_path_answers_again() {
    let report = run(&scenario("mirror_side_returns_over_a_restored_path"));
    assert_clean(&report);
    assert_once_on_timeline(&report, "side 0 declared dead");
    assert_once_on_timeline(&report, "path to d1:0 answers again");
    assert_once_on_timeline(&report, "side 0 resynchronized: 4 stale extents copied");
    assert!(
        !report.timeline.iter().any(|t| t.outcome.contains("logs in to the fabric")),
        "the disk never logged in by itself"
    );
    let volume = &report.volumes[0];
    assert_eq!(volume.errors, 0, "no host-visible error");
}
