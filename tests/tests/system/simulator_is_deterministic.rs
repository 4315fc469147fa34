//! The same scenario and seed give the same report, byte for byte; another seed gives
//! another run.

use dve_tests::{assert_clean, quiet, run, scenario};

#[test]
fn two_runs_with_the_same_seed_give_identical_json_reports() {
    let s = scenario("small_linear");
    let first = run(&s);
    let second = run(&s);
    assert_clean(&first);
    assert_eq!(first.to_json(), second.to_json());
    let options = dve_sim::report::options::RunOptions { seed_override: Some(99), ..quiet() };
    let other = dve_sim::world::run(&s, &options).expect("run");
    assert_ne!(first.to_json(), other.to_json(), "the seed changes the run");
}

#[test]
fn the_default_scenario_runs_clean_and_deterministically_for_its_first_second() {
    let s = dve_sim::scenario::Scenario::default_scenario().expect("the default scenario parses");
    let options = dve_sim::report::options::RunOptions { duration_override_ms: Some(1200), ..quiet() };
    let first = dve_sim::world::run(&s, &options).expect("run");
    assert_clean(&first);
    let second = dve_sim::world::run(&s, &options).expect("run");
    assert_eq!(first.to_json(), second.to_json());
    assert!(first.volumes.iter().all(|v| v.reads > 0 && v.writes > 0), "every volume did I/O");
}
