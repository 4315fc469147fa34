//! Path failures under load, on disks with two ports each: a black-holed path and a cable
//! taken down. The control path tests the path, switches the device to its other path for
//! every worker at once, and the I/O that met the dead path is redone or retried once by the
//! host: no host sees an error, no I/O needs more than one retry, the mirror keeps both
//! sides, and every read is checked by the oracle. Failed paths return as standby paths and
//! carry the device again when the new path fails in turn.

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario, timeline_outcomes};

#[test]
fn a_path_failure_is_survived_with_at_most_one_retry() {
    let report = run(&scenario("path_failover"));
    assert_clean(&report);
    for volume in &report.volumes {
        assert_eq!(volume.errors, 0, "{}: no host-visible error", volume.name);
        assert!(
            volume.max_retries_per_io <= 1,
            "{}: {} retries for one I/O",
            volume.name,
            volume.max_retries_per_io
        );
        assert!(volume.reads > 10_000 && volume.writes > 10_000, "{}: load ran throughout", volume.name);
    }
    // Both failures found by a path test and failed over; then back to the restored path.
    assert_once_on_timeline(&report, "path to d1:0 failed its test");
    assert_once_on_timeline(&report, "path to d2:0 failed its test");
    assert_once_on_timeline(&report, "failed over to the path to d1:1");
    assert_once_on_timeline(&report, "failed over to the path to d2:1");
    assert_once_on_timeline(&report, "path to d1:0 answers again");
    assert_once_on_timeline(&report, "path to d2:0 answers again");
    assert_once_on_timeline(&report, "path to d1:1 failed its test");
    assert_once_on_timeline(&report, "failed over to the path to d1:0");
    // The device stayed reachable, so the mirror lost no side.
    assert!(timeline_outcomes(&report, "declared dead").is_empty(), "no mirror side died");
    assert!(
        timeline_outcomes(&report, "device").iter().all(|o| !o.contains("online")),
        "no device went away"
    );
    // The path changed globally: no extent faulted for it, the fast path kept serving.
    let engine = &report.engines[0];
    assert!(engine.fast_path_ios as f64 >= 0.999 * engine.host_ios as f64, "fast path share {engine:?}");
}
