//! Online migration under load: the copy barrier advances chunk by chunk, only writes inside
//! it wait, no host sees an error, every read is checked, and once migrated a volume no
//! longer needs its source disk (which then dies without consequence).

use dve_tests::{assert_clean, assert_flows_served_by_the_fast_path, assert_once_on_timeline, run, scenario};

#[test]
fn volumes_migrate_between_disks_under_load_and_the_source_can_then_be_removed() {
    let report = run(&scenario("migration_under_load"));
    assert_clean(&report);
    assert_once_on_timeline(&report, "linear0 migrated: 16384 blocks copied, now on d4");
    assert_once_on_timeline(&report, "stripe0 migrated: 16384 blocks copied, now on d1, d4");
    for v in &report.volumes {
        assert_eq!(v.errors, 0, "{} saw errors", v.name);
        assert!(
            v.reads > 500 && v.writes > 500,
            "{} kept running: {} reads, {} writes",
            v.name,
            v.reads,
            v.writes
        );
    }
    assert!(report.engines[0].fast_path_hit_ratio > 0.95, "{}", report.engines[0].fast_path_hit_ratio);
    assert_flows_served_by_the_fast_path(&report, &["migration of linear0", "migration of stripe0"], 0.95);
}
