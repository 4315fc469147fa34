//! The documented example scenario (`sim/scenarios/example.toml`, which shows every option) runs
//! to a clean verdict. It is the first scenario a user runs after the default one, and its
//! lossy links once handed a host reads with a hole in them (8 oracle violations) while no
//! test ran it.

use std::path::PathBuf;

use dve_sim::scenario::Scenario;
use dve_tests::{assert_clean, run};

#[test]
fn the_example_scenario_runs_clean() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim/scenarios/example.toml");
    let scenario = Scenario::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let report = run(&scenario);
    assert_clean(&report);
    let lost: u64 = report.links.iter().map(|l| l.a_to_b.dropped_lost + l.b_to_a.dropped_lost).sum();
    assert!(lost > 0, "the example's links lose frames");
}
