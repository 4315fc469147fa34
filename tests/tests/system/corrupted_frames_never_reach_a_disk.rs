//! Links that corrupt frames, under load on a mirror being snapshotted and on a stripe set
//! whose units are smaller than a frame: data the switch takes out of a frame cut through
//! unverified (a snapshot's push reads, write data the control path takes over, half a frame
//! sent to one stripe) is verified first, so no corruption reaches a disk with a good CRC.

use dve_tests::{
    assert_clean, assert_series_within_the_run, assert_snapshots_taken_and_completed, run, scenario,
};

#[test]
fn a_corrupted_frame_is_dropped_before_its_data_leaves_the_switch_with_a_fresh_crc() {
    let report = run(&scenario("corrupted_frames_never_reach_a_disk"));
    assert_clean(&report);
    assert_snapshots_taken_and_completed(&report, &["s1"]);
    // Retries finish in the drain after the end: they are in no point of the series.
    assert_series_within_the_run(&report);
    let corrupted: u64 = report.links.iter().map(|l| l.a_to_b.corrupted + l.b_to_a.corrupted).sum();
    assert!(corrupted > 100, "the links corrupted {corrupted} frames");
    for volume in &report.volumes {
        assert!(volume.writes > 200 && volume.reads > 200, "{}: served {volume:?}", volume.name);
    }
}
