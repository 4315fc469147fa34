//! A deliberately corrupting fast path (test-only fault injection: one write goes one block
//! off) is caught by the integrity oracle, which names the volume and block.

use dve_sim::report::OracleVerdict;
use dve_sim::world::{InjectedFaults, run_with_faults};
use dve_tests::{quiet, run, scenario};

#[test]
fn a_write_misdirected_by_the_fast_path_is_caught_by_the_oracle() {
    let s = scenario("small_linear");
    assert!(run(&s).is_clean(), "the run is clean without the fault");
    let faults = InjectedFaults { misdirect_write: Some(20), ..InjectedFaults::default() };
    let report = run_with_faults(&s, &quiet(), faults).expect("run");
    let OracleVerdict::Violations { total, first, .. } = &report.oracle else {
        panic!("the oracle missed a misdirected write");
    };
    assert!(*total >= 1);
    let v = &first[0];
    assert!(v.volume == "linear0" || v.volume == "stripe0", "{v:?}");
    assert!(!v.expected.is_empty() && !v.found.is_empty() && v.time_ns > 0, "{v:?}");
}
