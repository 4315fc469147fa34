//! Lossy links from the very start: the engine discovers its eight disks although some
//! discovery answers (an identification INQUIRY's or a READ CAPACITY's data frame) are lost on
//! the way, and then serves a mirror and a stripe set whose reads the oracle checks, while a
//! mirror side's disk fails and returns.

use dve_tests::{assert_clean, assert_once_on_timeline, run, scenario};

#[test]
fn a_lost_discovery_answer_is_asked_again_and_every_disk_is_found() {
    let report = run(&scenario("lossy_links_during_discovery"));
    assert_clean(&report);
    assert_once_on_timeline(&report, "8 disks discovered, 2 volumes created and exposed");
    for volume in &report.volumes {
        assert_eq!(volume.errors, 0, "{}: no host-visible error", volume.name);
        assert!(volume.writes > 100, "{}: served: {} writes", volume.name, volume.writes);
    }
}
