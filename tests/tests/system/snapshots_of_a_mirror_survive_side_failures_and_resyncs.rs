//! Copy-on-write snapshots of a mirrored volume under write load, one taken while a side is
//! dead and completing while that side is resynchronized, one taken of the healthy mirror
//! and completing while a side dies and returns. Each equals the source's image at its
//! instant block by block (pushes and the snapshot's reads use only live, current sides),
//! the host sees no error, and the sides end alike.

use dve_sim::report::OracleVerdict;
use dve_tests::{assert_clean, assert_once_on_timeline, assert_snapshots_taken_and_completed, run, scenario};

#[test]
fn snapshots_of_a_mirror_survive_side_failures_and_resyncs() {
    let report = run(&scenario("mirror_snapshot_under_load"));
    assert_clean(&report);
    assert_snapshots_taken_and_completed(&report, &["snap-degraded", "snap-healthy"]);
    assert_once_on_timeline(&report, "side 0 declared dead");
    assert_once_on_timeline(&report, "side 1 declared dead");
    assert_once_on_timeline(&report, "side 0 resynchronized");
    assert_once_on_timeline(&report, "side 1 resynchronized");
    let volume = &report.volumes[0];
    assert_eq!(volume.errors, 0, "no host-visible error: {volume:#?}");
    assert!(volume.writes > 1000, "writes continued: {}", volume.writes);
    // Both snapshots (32 MiB each, 65536 blocks) were read back from their stores and
    // checked at the end, beyond the host's reads (8 KiB, 16 blocks each).
    let OracleVerdict::Clean { reads_checked, blocks_checked } = report.oracle else { unreachable!() };
    let snapshot_blocks = blocks_checked - reads_checked * 16;
    assert!(snapshot_blocks >= 2 * 65536, "{snapshot_blocks} snapshot blocks checked");
}
