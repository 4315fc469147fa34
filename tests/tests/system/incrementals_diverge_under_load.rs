//! Three incrementals of one prefilled base under concurrent load, in the simulator (seed 003
//! Fig. 22). Every read of every volume is checked by the oracle: the read-only base never
//! changes, and each incremental returns the base's data where it has not written and its
//! own writes where it has, so the three diverge independently. First writes to granules
//! still read through the base fault to the control path, which copies them to the private
//! store; everything else stays on the fast path.

use dve_tests::{assert_clean, run, scenario};

#[test]
fn three_incrementals_of_one_base_diverge_independently_under_load() {
    let report = run(&scenario("incrementals_of_one_base"));
    assert_clean(&report);
    let base = &report.volumes[0];
    assert_eq!((base.name.as_str(), base.writes, base.errors), ("base0", 0, 0));
    assert!(base.reads > 1000, "the base is read throughout: {}", base.reads);
    for inc in &report.volumes[1..] {
        assert_eq!(inc.errors, 0, "{} saw errors", inc.name);
        assert!(
            inc.reads > 1000 && inc.writes > 1000,
            "{}: {} reads, {} writes",
            inc.name,
            inc.reads,
            inc.writes
        );
    }
    let engine = &report.engines[0];
    assert!(engine.faults.get("permission").is_some_and(|n| *n > 0), "granules were copied on first write");
    assert!(engine.fast_path_hit_ratio > 0.95, "{}", engine.fast_path_hit_ratio);
}
