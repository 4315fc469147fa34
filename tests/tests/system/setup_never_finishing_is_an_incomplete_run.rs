//! A run whose set-up never finishes ran none of the I/O its scenario asks for: its verdict
//! is `incomplete`, naming what did not finish (an engine whose disk was never discovered, so
//! its volume was never created; a host that never logged in, so its workload never started),
//! never `clean` because nothing was read wrong.

use dve_sim::report::OracleVerdict;
use dve_tests::{run, scenario};

#[test]
fn a_run_whose_set_up_never_finishes_is_incomplete_and_says_what_did_not_finish() {
    let report = run(&scenario("setup_never_finishes"));
    assert!(!report.is_clean(), "{:#?}", report.oracle);
    let OracleVerdict::Incomplete { reads_checked, unfinished, .. } = &report.oracle else {
        panic!("{:#?}", report.oracle)
    };
    assert_eq!(*reads_checked, 0, "no I/O ran");
    assert_eq!(
        unfinished,
        &[
            "engine dve1: set-up never finished: its volumes were not created, disks not discovered: d2",
            "host h1: login and discovery never finished: its workloads on mir never started",
            "host h2: login and discovery never finished: its workloads on lin never started",
        ],
        "{:#?}",
        report.timeline
    );
    assert!(report.volumes.iter().all(|v| v.reads + v.writes == 0), "{:#?}", report.volumes);
}
