//! Journal disks failing under replicated write load (scenario
//! `journal_disks_fail_under_replication`). A journal whose write fails goes out of service:
//! no host sees an error, the volume's writes go on to its primary alone and its replica
//! keeps the last consistency point's image. j0's journal disk comes back, and the whole
//! volume is copied to its replica behind a new consistency point before cycles are applied
//! again; j1's keeps failing writes, so its journal is tried again every second and goes out
//! of service again each time. Every image shown equals the primary's at its consistency
//! point, and at the end each replica equals the image of its last cycle applied.

use dve_tests::{assert_clean, run, scenario, timeline_outcomes};

#[test]
fn a_failed_journal_leaves_the_volume_writable_and_its_replica_consistent() {
    let report = run(&scenario("journal_disks_fail_under_replication"));
    assert_clean(&report);
    assert!(timeline_outcomes(&report, "DIFFERS").is_empty(), "{:#?}", report.timeline);
    for v in &report.volumes {
        assert_eq!(v.errors, 0, "{} saw errors", v.name);
        assert!(v.writes > 5_000, "{} kept writing: {}", v.name, v.writes);
    }
    let out_of_service = |lv: &str| timeline_outcomes(&report, &format!("{lv} journal out of service")).len();
    let back = |lv: &str| timeline_outcomes(&report, &format!("{lv} journal back in service")).len();
    assert_eq!((out_of_service("j0"), back("j0")), (1, 1), "{:#?}", report.timeline);
    // j1's disk fails every write from 0.9 s on: tried again at 1.9 s and 2.9 s.
    assert!(out_of_service("j1") >= 2 && back("j1") >= 1, "{:#?}", report.timeline);
    let [j0, j1] = &report.replicas[..] else { panic!("{:#?}", report.replicas) };
    for r in [j0, j1] {
        assert_eq!(r.cycles_verified, r.cycles_applied, "{r:#?}");
    }
    // j0 applied cycles before its journal failed and again after the whole copy (a cycle
    // every 200 ms, with 0.7 s to 1.5 s and the copy's time lost).
    assert_eq!(j0.copied_blocks, 16_384, "the whole volume copied again: {j0:#?}");
    assert!(j0.cycles_applied >= 8, "{j0:#?}");
    // j1 showed only the cycles before 0.9 s.
    assert!((2..=6).contains(&j1.cycles_applied), "{j1:#?}");
}
