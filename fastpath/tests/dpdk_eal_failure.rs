//! EAL initialisation that fails: the error names the arguments and DPDK's reason, and any
//! later initialisation in the process says the first attempt failed (DPDK allows one). Its
//! own test binary, so its failed EAL touches no other test.

#![cfg(feature = "dpdk")]

use dve_fastpath::port::{DpdkError, Eal};

#[test]
fn a_failed_eal_initialisation_is_reported_and_not_retried() {
    let empty: &[&str] = &[];
    assert_eq!(Eal::init(empty).unwrap_err(), DpdkError::EalNoArguments);
    assert!(matches!(Eal::init(&["dve", "bad\0arg"]), Err(DpdkError::EalArgument(a)) if a == "bad\0arg"));

    let bad = ["dve-test", "--no-huge", "--no-such-eal-option"];
    let error = Eal::init(&bad).unwrap_err();
    let DpdkError::EalInit { args, reason } = &error else { panic!("{error:?}") };
    assert_eq!(args, &bad);
    assert!(reason.contains("errno"), "{reason}");
    assert!(error.to_string().contains("--no-such-eal-option"), "{error}");

    let error = Eal::init(&["dve-test", "--no-huge", "--no-pci", "--no-shconf", "-m", "64"]).unwrap_err();
    let DpdkError::EalFailedEarlier(first) = &error else { panic!("{error:?}") };
    assert!(first.contains("--no-such-eal-option"), "{first}");
}
