//! Each fault cause of the decision chain (seed 003 Fig. 7) produced by a case built for it,
//! plus the control path's side of the FP API as a worker answers it: mapping-miss verdicts,
//! queued I/O completed by the control path, revocation, pause and resume, pending lists and
//! aborts.

mod support;

use bytes::Bytes;
use dve_fp_api::FaultCause;
use dve_fp_api::ids::{DeviceId, FcId, Lun, LvId, PortId, Timestamp, VsegId, Wwn};
use dve_fp_api::io::{IoStatus, PendingFilter, PendingSide, PendingState, ScsiStatus, Sense};
use dve_fp_api::mapping::{
    Extent, HostSet, LunMapping, LunMask, MirrorSet, MirrorSide, Placement, ReadPolicy, RedirectEntry,
    RedirectIndex, SideLayout, SideState, StorageDescriptor, TargetExposure, VsegDescriptor,
};
use dve_fp_api::message::{AbortTarget, MappingEntry, MappingKey, MissVerdict, ToCp, ToFp};
use dve_wire::fc::{UNASSIGNED_X_ID, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, Sof};
use dve_wire::fcp::FcpRspRepr;
use support::*;

fn bed() -> Testbed {
    Testbed::single(|_| {}, 1000, table(vec![single(1, 0)]))
}

fn last_io(bed: &Testbed) -> dve_fp_api::ids::IoTag {
    bed.upcalls
        .iter()
        .rev()
        .find_map(|u| match u {
            ToCp::QueueIo { io, .. } | ToCp::MappingMiss { io, .. } => Some(*io),
            _ => None,
        })
        .expect("an I/O went to the control path")
}

#[test]
fn other_commands_go_to_the_control_path_which_completes_them_through_the_worker() {
    let mut bed = bed();
    let ox = bed.command(&[0x12, 0, 0, 0, 36, 0], None, 36);
    assert_eq!(bed.queued_causes(), vec![FaultCause::NotReadWrite]);
    let io = last_io(&bed);
    let req = bed.req();
    bed.message(ToFp::PutData { req, io, offset: 0, data: Bytes::from(vec![0x5Au8; 36]) });
    bed.message(ToFp::QueueIoComplete { io, status: IoStatus::GOOD });
    assert_eq!(bed.result(ox).data, vec![0x5A; 36]);
    assert_eq!(bed.result(ox).status, Some(0));
    assert!(bed.disks.commands.is_empty());
}

#[test]
fn a_check_condition_from_the_control_path_reaches_the_host() {
    let mut bed = bed();
    let ox = bed.command(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], None, 8);
    let io = last_io(&bed);
    let sense = Sense { key: 5, asc: 0x20, ascq: 0 };
    bed.message(ToFp::QueueIoComplete { io, status: IoStatus::check_condition(sense) });
    assert_eq!(bed.result(ox).status, Some(2));
}

#[test]
fn a_masked_host_faults_for_what_the_mask_denies() {
    let mut bed = bed();
    let req = bed.req();
    let mask = LunMask { lv: LV, readers: HostSet::All, writers: HostSet::only(vec![Wwn(77)]) };
    bed.message(ToFp::SetLunMask { req, mask });
    let ox = bed.read(0, 1);
    assert_eq!(bed.result(ox).status, Some(0));
    bed.write(0, pattern(1, 1));
    assert_eq!(bed.queued_causes(), vec![FaultCause::MaskedLun]);
}

#[test]
fn a_lun_not_exposed_to_the_host_faults() {
    let mut bed = bed();
    let exposure = TargetExposure {
        id: EXPOSURE,
        port_name: Wwn(0x5000_0000_0000_0001),
        node_name: Wwn(0x5000_0000_0000_0000),
        fc_id: FcId::new(TARGET_FC).unwrap(),
        luns: vec![LunMapping { lun: Lun(0), lv: LV, hosts: HostSet::only(vec![Wwn(99)]) }],
    };
    let req = bed.req();
    bed.message(ToFp::Expose { req, exposure });
    bed.read(0, 1);
    assert_eq!(bed.queued_causes(), vec![FaultCause::NotExposed]);
}

#[test]
fn io_crossing_a_segment_faults() {
    let s1 = VsegDescriptor { id: VsegId(1), lv: LV, start: 0, blocks: 100 };
    let s2 = VsegDescriptor { id: VsegId(2), lv: LV, start: 100, blocks: 100 };
    let all = |blocks| vec![Extent { start: 0, end: blocks, value: RedirectIndex(0) }];
    let mut bed = Testbed::new(
        |_| {},
        vec![(s1, table(vec![single(1, 0)]), all(100)), (s2, table(vec![single(2, 0)]), all(100))],
    );
    let ox = bed.read(100, 4);
    assert_eq!(bed.result(ox).status, Some(0));
    assert_eq!(bed.disks.commands[0].device, 2, "the second segment maps to device 2 from its own block 0");
    assert_eq!(bed.disks.commands[0].lba, 0);
    bed.read(96, 8);
    bed.read(198, 4);
    assert_eq!(bed.queued_causes(), vec![FaultCause::SpansSegment, FaultCause::SpansSegment]);
}

#[test]
fn a_miss_asks_the_control_path_and_each_verdict_is_obeyed() {
    let seg = VsegDescriptor { id: VsegId(1), lv: LV, start: 0, blocks: 1000 };
    let mut bed = Testbed::new(|_| {}, vec![(seg, table(vec![single(1, 0)]), vec![])]);
    let ox = bed.read(10, 2);
    assert_eq!(bed.misses(), 1);
    let io = last_io(&bed);
    let extents = vec![Extent { start: 0, end: 1000, value: RedirectIndex(0) }];
    bed.message(ToFp::MappingMissReply {
        io,
        verdict: MissVerdict::Continue(vec![MappingEntry::Extents { vseg: VsegId(1), extents }]),
    });
    assert_eq!(bed.result(ox).status, Some(0), "CONTINUE: the I/O proceeds with the new mapping");

    let req = bed.req();
    bed.message(ToFp::RemoveMapping { req, key: MappingKey::Extents { vseg: VsegId(1), blocks: 0..1000 } });
    assert!(bed.upcalls.iter().any(|u| matches!(u, ToCp::InvalidationAck { req: r, .. } if *r == req)));
    let ox = bed.read(10, 2);
    let io = last_io(&bed);
    let status = IoStatus { status: ScsiStatus::BUSY, sense: None, residual: 0 };
    bed.message(ToFp::MappingMissReply { io, verdict: MissVerdict::Ignore(status) });
    assert_eq!(bed.result(ox).status, Some(ScsiStatus::BUSY.0), "IGNORE: completed with the given status");

    bed.read(10, 2);
    let io = last_io(&bed);
    bed.message(ToFp::MappingMissReply { io, verdict: MissVerdict::Queue });
    assert_eq!(bed.queued_causes(), vec![FaultCause::Miss], "QUEUE: handed over with CpQueueIO");
    assert_eq!(bed.misses(), 3);
}

fn two_extents(split: bool) -> Testbed {
    let seg = VsegDescriptor { id: VsegId(1), lv: LV, start: 0, blocks: 100 };
    let extents = vec![
        Extent { start: 0, end: 50, value: RedirectIndex(0) },
        Extent { start: 50, end: 100, value: RedirectIndex(1) },
    ];
    Testbed::new(|c| c.split_extents = split, vec![(seg, table(vec![single(1, 0), single(2, 0)]), extents)])
}

#[test]
fn io_spanning_extents_faults_or_splits_as_configured() {
    let mut bed = two_extents(false);
    bed.read(48, 4);
    assert_eq!(bed.queued_causes(), vec![FaultCause::SpansExtent]);
    let mut bed = two_extents(true);
    let data = pattern(9, 4);
    let ox = bed.write(48, data.clone());
    assert_eq!(bed.result(ox).status, Some(0));
    let legs: Vec<(u32, u64, u32)> = bed.disks.commands.iter().map(|c| (c.device, c.lba, c.blocks)).collect();
    assert_eq!(legs, [(1, 48, 2), (2, 50, 2)]);
    let ox = bed.read(48, 4);
    assert_eq!(bed.result(ox).data, data);
}

#[test]
fn fault_on_write_and_fault_on_read_are_permission_faults() {
    let sd = StorageDescriptor::Single(Placement { device: DeviceId(1), lba: 0 });
    let mut bed = Testbed::single(|_| {}, 100, table(vec![RedirectEntry::read_only(sd.clone())]));
    let ox = bed.read(0, 1);
    assert_eq!(bed.result(ox).status, Some(0));
    bed.write(0, pattern(1, 1));
    let mut bed2 = Testbed::single(|_| {}, 100, table(vec![RedirectEntry::no_access(sd)]));
    bed2.read(0, 1);
    assert_eq!(bed.queued_causes(), vec![FaultCause::Permission]);
    assert_eq!(bed2.queued_causes(), vec![FaultCause::Permission]);
}

#[test]
fn io_beyond_the_fast_paths_limits_is_a_capacity_fault() {
    let mut bed = Testbed::single(|c| c.max_io_blocks = 8, 100, table(vec![single(1, 0)]));
    bed.read(0, 16);
    assert_eq!(bed.queued_causes(), vec![FaultCause::Capacity]);
}

fn mirrored() -> Testbed {
    let side = |d| MirrorSide {
        layout: SideLayout::Single(Placement { device: DeviceId(d), lba: 0 }),
        state: SideState::Alive,
        read_cost: 1,
    };
    let sd =
        StorageDescriptor::Mirror(MirrorSet::new(vec![side(1), side(2)], ReadPolicy::RoundRobin).unwrap());
    Testbed::single(|_| {}, 1000, table(vec![RedirectEntry::read_write(sd)]))
}

#[test]
fn overlapping_mirror_writes_are_never_in_flight_together() {
    let mut bed = mirrored();
    bed.hold_disks = true;
    let first = bed.write(0, pattern(1, 8));
    bed.write(4, pattern(2, 8));
    assert_eq!(bed.queued_causes(), vec![FaultCause::SerializationConflict]);
    let third = bed.write(8, pattern(3, 8));
    bed.release_disks();
    assert_eq!(bed.result(first).status, Some(0));
    assert_eq!(bed.result(third).status, Some(0), "a write next to, not over, the first one proceeds");
    let ox = bed.write(4, pattern(2, 8));
    assert_eq!(bed.result(ox).status, Some(0), "once the first completed, the overlap is free");
}

#[test]
fn a_failed_leg_sends_the_io_to_the_control_path_with_the_failure() {
    let mut bed = mirrored();
    bed.disks.failing_writes = vec![2];
    let ox = bed.write(0, pattern(1, 4));
    assert_eq!(bed.result(ox).status, None, "no status before the control path decides");
    let failure = bed.upcalls.iter().find_map(|u| match u {
        ToCp::QueueIo { reason, .. } if reason.cause == FaultCause::DownstreamError => reason.failure,
        _ => None,
    });
    let failure = failure.expect("a downstream failure");
    assert_eq!(failure.device, DeviceId(2));
    assert_eq!(failure.status.map(|s| s.status), Some(ScsiStatus::CHECK_CONDITION));
}

#[test]
fn a_paused_volume_holds_io_until_resumed() {
    let mut bed = bed();
    let req = bed.req();
    bed.message(ToFp::PauseLv { req, lv: LV });
    let ox = bed.read(0, 1);
    assert!(bed.disks.commands.is_empty());
    assert_eq!(bed.result(ox).status, None);
    let req = bed.req();
    bed.message(ToFp::ResumeLv { req, lv: LV });
    assert_eq!(bed.result(ox).status, Some(0));
    let req = bed.req();
    bed.message(ToFp::PauseLv { req, lv: LvId(42) });
    assert!(bed.upcalls.iter().any(|u| matches!(u, ToCp::Done { req: r, result: Err(_) } if *r == req)));
}

#[test]
fn pending_lists_report_both_sides_with_timestamps_and_aborts_complete_the_host() {
    let mut bed = bed();
    bed.hold_disks = true;
    let ox = bed.read(5, 2);
    let req = bed.req();
    bed.message(ToFp::QueryPendingIos { req, filter: PendingFilter::default() });
    let ios = bed
        .upcalls
        .iter()
        .find_map(|u| match u {
            ToCp::PendingIos { ios, .. } => Some(ios.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(ios.len(), 2);
    let upstream = ios.iter().find(|i| i.side == PendingSide::Upstream).unwrap();
    let downstream = ios.iter().find(|i| i.side == PendingSide::Downstream).unwrap();
    assert_eq!(downstream.io, upstream.io, "the downstream entry links to its parent");
    assert_eq!(downstream.device, Some(DeviceId(1)));
    assert!(upstream.timestamp <= downstream.timestamp);
    let later = PendingFilter { before: Some(upstream.timestamp), ..Default::default() };
    let req = bed.req();
    bed.message(ToFp::QueryPendingIos { req, filter: later });
    assert!(matches!(bed.upcalls.last(), Some(ToCp::PendingIos { ios, .. }) if ios.is_empty()));

    let req = bed.req();
    let status = IoStatus { status: ScsiStatus::TASK_ABORTED, sense: None, residual: 0 };
    bed.message(ToFp::AbortPendingIos {
        req,
        target: AbortTarget::Io(upstream.io.unwrap()),
        status: Some(status),
    });
    assert_eq!(bed.result(ox).status, Some(ScsiStatus::TASK_ABORTED.0));
    bed.release_disks();
    assert_eq!(bed.worker.statistics(Timestamp(0)).pending_upstream, 0);
}

#[test]
fn statistics_count_faults_by_cause_and_frames_by_port() {
    let mut bed = bed();
    bed.read(0, 1);
    bed.command(&[0x00, 0, 0, 0, 0, 0], None, 0);
    let stats = bed.worker.statistics(Timestamp(0));
    assert_eq!(stats.hits, 1);
    assert_eq!(stats.faults.get(FaultCause::NotReadWrite), 1);
    let host_port = stats.ports.iter().find(|p| p.port == PortId(0)).unwrap();
    assert_eq!(host_port.frames_in, 2);
    assert!(host_port.frames_out >= 2);
    assert!((stats.hit_ratio() - 1.0).abs() < 1e-9, "a non-read/write command does not count as a miss");
}

/// A host's ABTS, with the RX_ID unassigned.
fn abts(ox: u16) -> Vec<u8> {
    abts_with_rx(ox, UNASSIGNED_X_ID)
}

/// A host's ABTS naming the exchange `ox`, `rx`.
fn abts_with_rx(ox: u16, rx: u16) -> Vec<u8> {
    let f = f_ctl::END_SEQUENCE | f_ctl::LAST_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
    let hd = header(r_ctl::BLS_ABTS, TARGET_FC, HOST_FC, fc_type::BLS, f, ox, rx, 0);
    fcoe(&hd, Sof::I3, Eof::T, &[][..])
}

/// A host whose answer to a finished exchange was lost aborts it, naming the RX_ID the
/// worker gave it; the worker has since given that slot to a new exchange of the same host,
/// which the ABTS must not touch (it goes to the control path, which answers it). Likewise a
/// late data frame of the old exchange is not taken as the new write's data.
#[test]
fn a_late_abts_or_data_frame_of_a_finished_exchange_leaves_the_exchange_in_its_slot_alone() {
    let mut bed = bed();
    let old = bed.write(6, pattern(1, 2));
    assert_eq!(bed.result(old).status, Some(0));
    let old_rx = bed.result(old).rx_id.unwrap();
    bed.hold_disks = true;
    let new = bed.write(6, pattern(2, 2));
    // A stale data frame of the old exchange over the new write's range.
    let f = f_ctl::RELATIVE_OFFSET | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
    let hd = header(r_ctl::SOLICITED_DATA, TARGET_FC, HOST_FC, fc_type::FCP, f, old, old_rx, 0);
    bed.deliver(HOST_PORT, fcoe(&hd, Sof::I3, Eof::T, &pattern(9, 1)[..]));
    bed.deliver(HOST_PORT, abts_with_rx(old, old_rx));
    bed.settle();
    assert_eq!(abts_passed_up(&bed), 1, "the control path answers the ABTS of the old exchange");
    assert_eq!(aborted_writes(&bed), vec![]);
    bed.release_disks();
    assert_eq!(bed.result(new).status, Some(0), "the new write was not aborted");
    assert_eq!(
        bed.result(new).rx_id,
        Some(old_rx),
        "it had the old one's slot (else the test shows nothing)"
    );
    let stored = [bed.disks.read_block(1, 6), bed.disks.read_block(1, 7)].concat();
    assert_eq!(stored, pattern(2, 2), "and its data is its own");
}

/// The ranges of the `WriteAborted` upcalls so far, with the OX_ID of the ABTS each carries.
fn aborted_writes(bed: &Testbed) -> Vec<(u64, u32, u16)> {
    bed.upcalls
        .iter()
        .filter_map(|u| match u {
            ToCp::WriteAborted { request, abts, .. } => {
                let ox = u16::from_be_bytes([abts.as_slice()[FC_OX_ID], abts.as_slice()[FC_OX_ID + 1]]);
                Some((request.lba, request.blocks, ox))
            }
            _ => None,
        })
        .collect()
}

/// The ABTS frames passed up as they came (those of I/O with nothing that may still land).
fn abts_passed_up(bed: &Testbed) -> usize {
    bed.upcalls.iter().filter(|u| matches!(u, ToCp::ControlFrame { .. })).count()
}

/// Where the OX_ID sits in an untagged FCoE frame.
const FC_OX_ID: usize = 28 + 16;

/// The host's ABTS of a write whose legs were sent: it may have landed on some legs and not
/// others, so the control path hears of it with the write's range and the ABTS to answer,
/// but only once each leg's own abort is answered, when no leg can land any more. Until
/// then drains see the write. A read's abort goes up at once.
#[test]
fn a_host_abort_of_a_write_in_flight_is_reported_with_its_range_once_its_legs_are_aborted() {
    let mut bed = bed();
    bed.hold_disks = true;
    let write = bed.write(6, pattern(3, 2));
    let read = bed.read(40, 1);
    bed.deliver(HOST_PORT, abts(read));
    bed.deliver(HOST_PORT, abts(write));
    bed.settle();
    assert_eq!(abts_passed_up(&bed), 1, "the read's ABTS, at once");
    assert_eq!(aborted_writes(&bed), vec![], "the write's leg may still land");
    let req = bed.req();
    bed.message(ToFp::QueryPendingIos {
        req,
        filter: PendingFilter { writes_only: true, ..Default::default() },
    });
    let pending = bed.upcalls.iter().find_map(|u| match u {
        ToCp::PendingIos { req: r, ios, .. } if *r == req => Some(ios.clone()),
        _ => None,
    });
    let aborting: Vec<_> = pending
        .unwrap()
        .into_iter()
        .filter(|io| io.side == PendingSide::Upstream)
        .map(|io| (io.state, io.vseg, io.first_block, io.blocks))
        .collect();
    assert_eq!(aborting, vec![(PendingState::Aborting, Some(VsegId(1)), 6, 2)], "a drain waits for it");
    bed.release_disks();
    assert_eq!(aborted_writes(&bed), vec![(6, 2, write)], "once the disk answered the leg's ABTS");
    assert_eq!(abts_passed_up(&bed), 1);
    assert_eq!(bed.worker.statistics(Timestamp(0)).pending_upstream, 0);
    let req = bed.req();
    bed.message(ToFp::QueryPendingIos { req, filter: PendingFilter::default() });
    assert!(
        bed.upcalls
            .iter()
            .any(|u| matches!(u, ToCp::PendingIos { req: r, ios, .. } if *r == req && ios.is_empty()))
    );
}

/// A host that repeats its ABTS of a write still held (its first unanswered, as it stays
/// until the legs' aborts are answered) is not answered early: the repeat waits with the write
/// and goes up with it, once; another host's ABTS naming the same OX_ID is not taken for it.
#[test]
fn a_repeated_abts_of_a_held_write_waits_for_the_write_and_goes_up_once() {
    let mut bed = bed();
    bed.hold_disks = true;
    let write = bed.write(6, pattern(3, 2));
    bed.deliver(HOST_PORT, abts(write));
    bed.settle();
    // A different SEQ_ID, as a retransmitted ABTS's may be.
    let f = f_ctl::END_SEQUENCE | f_ctl::LAST_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
    let mut hd = header(r_ctl::BLS_ABTS, TARGET_FC, HOST_FC, fc_type::BLS, f, write, UNASSIGNED_X_ID, 0);
    hd.seq_id ^= 0x5A;
    let repeat = fcoe(&hd, Sof::I3, Eof::T, &[][..]);
    bed.deliver(HOST_PORT, repeat.clone());
    bed.settle();
    assert_eq!(abts_passed_up(&bed), 0, "the repeat is not answered before the write settles");
    assert_eq!(aborted_writes(&bed), vec![]);
    bed.release_disks();
    assert_eq!(aborted_writes(&bed), vec![(6, 2, write)], "one upcall, once the leg's abort is answered");
    let carried = bed.upcalls.iter().find_map(|u| match u {
        ToCp::WriteAborted { abts, .. } => Some(abts.as_slice().to_vec()),
        _ => None,
    });
    assert_eq!(carried, Some(repeat), "the latest ABTS is the one to answer");
    // Another ABTS of the same exchange now finds nothing held: it goes up as it came.
    bed.deliver(HOST_PORT, abts(write));
    bed.settle();
    assert_eq!(abts_passed_up(&bed), 1);
}

/// A device's frame is taken only from the target the exchange went to: a status naming a
/// leg's OX_ID from another device's address does not end the leg, whose own device then
/// answers as usual.
#[test]
fn a_frame_naming_a_legs_exchange_from_another_device_is_not_taken() {
    let mut bed = bed();
    bed.disks.blocks.insert((1, 40), vec![0x6C; BLOCK]);
    bed.hold_disks = true;
    let read = bed.read(40, 1);
    let (port, command) = bed.held_disk_frames.front().cloned().expect("the leg's command");
    let leg = u16::from_be_bytes([command[FC_OX_ID], command[FC_OX_ID + 1]]);
    let f = f_ctl::EXCHANGE_CONTEXT | f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
    let hd = header(r_ctl::COMMAND_STATUS, initiator_fc(port.0), disk_fc(2), fc_type::FCP, f, leg, 0x77, 0);
    let rsp = FcpRspRepr { scsi_status: 0x02, ..FcpRspRepr::good() };
    bed.deliver(port, fcoe(&hd, Sof::I3, Eof::T, &rsp));
    bed.settle();
    assert_eq!(bed.result(read).status, None, "the stray status ended nothing");
    assert!(bed.queued_causes().is_empty(), "{:?}", bed.queued_causes());
    bed.release_disks();
    assert_eq!(bed.result(read).status, Some(0));
    assert_eq!(bed.result(read).data, vec![0x6C; BLOCK]);
}

/// A mirror write its host aborted stays serialized while a leg's abort is unanswered: an
/// overlapping write goes to the control path, as it would were the write still running. A
/// device that never answers the abort is given up on after a second timeout.
#[test]
fn an_aborted_mirror_write_blocks_overlapping_writes_until_its_legs_are_settled() {
    let mut bed = mirrored();
    bed.hold_disks = true;
    let first = bed.write(0, pattern(1, 8));
    bed.deliver(HOST_PORT, abts(first));
    bed.settle();
    let second = bed.write(4, pattern(2, 8));
    assert_eq!(bed.queued_causes(), vec![FaultCause::SerializationConflict]);
    assert_eq!(bed.result(second).status, None);
    assert_eq!(aborted_writes(&bed), vec![]);
    // Neither disk ever answers: the legs' slots are reclaimed after two timeouts.
    bed.held_disk_frames.clear();
    let timeout = bed.worker.config().downstream_timeout_ns;
    for step in 1..=4 {
        bed.now += timeout;
        bed.worker.expire(Timestamp(bed.now));
        bed.settle();
        bed.held_disk_frames.clear();
        if step < 2 {
            assert_eq!(aborted_writes(&bed), vec![], "still waiting after {step} timeouts");
        }
    }
    assert_eq!(aborted_writes(&bed), vec![(0, 8, first)]);
    bed.release_disks();
    let third = bed.write(4, pattern(3, 8));
    assert_eq!(bed.result(third).status, Some(0), "the range is free once the write is settled");
}
