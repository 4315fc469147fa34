//! Scenario tests of data frames lost on a device's link: every leg says GOOD, but the
//! switch did not get all the data. Neither the host nor the control path may be handed a
//! buffer with a hole as if it were the device's data.

mod support;

use dve_fp_api::FaultCause;
use dve_fp_api::ids::{DeviceId, DispatchTag};
use dve_fp_api::io::{DownstreamOp, DownstreamRequest};
use dve_fp_api::message::{ToCp, ToFp};
use support::*;

#[test]
fn a_read_missing_a_data_frame_goes_to_the_control_path_instead_of_a_good_status() {
    let mut bed = Testbed::single(|_| {}, 10_000, table(vec![single(3, 5000)]));
    // Twelve blocks come back in three data frames; the middle one is lost.
    bed.lose_disk_data_frame = Some(2);
    let ox = bed.read(100, 12);
    assert_eq!(bed.result(ox).status, None, "the host gets no status from the fast path");
    let queued: Vec<_> = bed
        .upcalls
        .iter()
        .filter_map(|u| match u {
            ToCp::QueueIo { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(queued.len(), 1, "upcalls: {:?}", bed.upcalls);
    assert_eq!(queued[0].cause, FaultCause::DownstreamError);
    assert_eq!(queued[0].failure, None, "no device or side is blamed for a lost frame");

    // The same read without a loss completes well.
    let ox = bed.read(100, 12);
    assert_eq!(bed.result(ox).status, Some(0));
    assert_eq!(bed.result(ox).data.len(), 12 * 512);
}

fn dispatched_read(bed: &mut Testbed) -> Option<usize> {
    bed.upcalls.clear();
    bed.message(ToFp::DispatchIo(DownstreamRequest {
        tag: DispatchTag(9),
        device: DeviceId(3),
        op: DownstreamOp::Read { lba: 100, blocks: 12 },
    }));
    let done = bed.upcalls.iter().find_map(|u| match u {
        ToCp::DispatchIoComplete { tag: DispatchTag(9), status, data } => Some((*status, data.clone())),
        _ => None,
    });
    let (status, data) = done.expect("the dispatch completes");
    assert!(status.is_good(), "the device said GOOD: {status:?}");
    data.map(|d| d.len())
}

#[test]
fn a_control_path_read_missing_a_middle_data_frame_hands_over_no_data() {
    let mut bed = Testbed::single(|_| {}, 10_000, table(vec![single(3, 5000)]));
    assert_eq!(dispatched_read(&mut bed), Some(12 * 512));
    // A lost middle frame would leave zeros in place of device data, at full length.
    bed.lose_disk_data_frame = Some(2);
    assert_eq!(dispatched_read(&mut bed), None);
}
