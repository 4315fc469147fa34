//! Frame-level tests of the four primitives: a read and a write through remap, stripe,
//! mirror (write split) and journal produce the right downstream commands and data, and the
//! host gets its data and one good status.

mod support;

use dve_fp_api::ids::{DeviceId, JournalGroupId, WorkerId};
use dve_fp_api::journal::JournalEntryHeader;
use dve_fp_api::mapping::{
    JournalRegion, JournaledLayout, MirrorSet, MirrorSide, Placement, ReadPolicy, RedirectEntry, SideLayout,
    SideState, StorageDescriptor, StripeSet,
};
use dve_fp_api::message::MappingEntry;
use support::*;

fn placement(device: u32, lba: u64) -> Placement {
    Placement { device: DeviceId(device), lba }
}

fn good(bed: &Testbed, ox: u16) {
    assert_eq!(bed.result(ox).status, Some(0), "GOOD status; upcalls: {:?}", bed.upcalls);
}

#[test]
fn remap_read_and_write_go_to_the_mapped_device_and_lba() {
    let mut bed = Testbed::single(|_| {}, 10_000, table(vec![single(3, 5000)]));
    let data = pattern(1, 12);
    let ox = bed.write(100, data.clone());
    good(&bed, ox);
    assert_eq!(bed.disks.commands, vec![DeviceCommand { device: 3, write: true, lba: 5100, blocks: 12 }]);
    assert_eq!(bed.result(ox).xfer_rdys, 1, "the host is asked for its data once");
    let ox = bed.read(100, 12);
    good(&bed, ox);
    assert_eq!(bed.result(ox).data, data);
    assert_eq!(bed.disks.commands[1], DeviceCommand { device: 3, write: false, lba: 5100, blocks: 12 });
    let stats = bed.worker.statistics(dve_fp_api::ids::Timestamp(0));
    assert_eq!((stats.hits, stats.reads, stats.writes), (2, 1, 1));
}

#[test]
fn write_data_is_sent_in_the_bursts_the_disk_asks_for() {
    let mut bed = Testbed::single(|_| {}, 10_000, table(vec![single(1, 0)]));
    bed.disks.burst = 3 * BLOCK as u32;
    let data = pattern(7, 16);
    let ox = bed.write(40, data.clone());
    good(&bed, ox);
    for b in 0..16u64 {
        assert_eq!(bed.disks.read_block(1, 40 + b), data[b as usize * BLOCK..(b as usize + 1) * BLOCK]);
    }
}

#[test]
fn stripe_splits_an_io_crossing_units_and_reassembles_reads() {
    let members: Vec<Placement> = (1..=4).map(|d| placement(d, 1000 * u64::from(d))).collect();
    let sd = StorageDescriptor::Stripe(StripeSet::new(3, members).unwrap());
    let mut bed = Testbed::single(|_| {}, 4096, table(vec![RedirectEntry::read_write(sd)]));
    let data = pattern(2, 32);
    // Blocks 4..36 with 8-block units: 4..8 on dev 1, 8..16 dev 2, 16..24 dev 3, 24..32 dev 4,
    // 32..36 dev 1 (row 1).
    let ox = bed.write(4, data.clone());
    good(&bed, ox);
    let expected = [(1, 1004, 4), (2, 2000, 8), (3, 3000, 8), (4, 4000, 8), (1, 1008, 4)];
    let got: Vec<(u32, u64, u32)> = bed.disks.commands.iter().map(|c| (c.device, c.lba, c.blocks)).collect();
    assert_eq!(got, expected);
    let ox = bed.read(4, 32);
    good(&bed, ox);
    assert_eq!(bed.result(ox).data, data);
}

#[test]
fn stripe_crossing_faults_when_splitting_is_off() {
    let members: Vec<Placement> = (1..=2).map(|d| placement(d, 0)).collect();
    let sd = StorageDescriptor::Stripe(StripeSet::new(3, members).unwrap());
    let mut bed =
        Testbed::single(|c| c.split_stripe_units = false, 4096, table(vec![RedirectEntry::read_write(sd)]));
    bed.read(6, 4);
    assert_eq!(bed.queued_causes(), vec![dve_fp_api::FaultCause::Capacity]);
    assert!(bed.disks.commands.is_empty());
}

fn mirror(sides: &[(u32, SideState)]) -> RedirectEntry {
    let sides = sides
        .iter()
        .map(|&(d, state)| MirrorSide { layout: SideLayout::Single(placement(d, 100)), state, read_cost: 1 })
        .collect();
    RedirectEntry::read_write(StorageDescriptor::Mirror(
        MirrorSet::new(sides, ReadPolicy::RoundRobin).unwrap(),
    ))
}

#[test]
fn mirror_writes_split_to_every_writable_side_and_reads_balance() {
    let entry =
        mirror(&[(1, SideState::Alive), (2, SideState::Alive), (3, SideState::Resync), (4, SideState::Dead)]);
    let mut bed = Testbed::single(|_| {}, 4096, table(vec![entry]));
    let data = pattern(3, 8);
    let ox = bed.write(10, data.clone());
    good(&bed, ox);
    assert_eq!(bed.result(ox).xfer_rdys, 1, "one host burst feeds every side");
    let mut written: Vec<u32> = bed.disks.commands.iter().map(|c| c.device).collect();
    written.sort_unstable();
    assert_eq!(written, [1, 2, 3], "alive and resyncing sides are written, the dead one is not");
    for device in [1, 2, 3] {
        for b in 0..8u64 {
            assert_eq!(
                bed.disks.read_block(device, 110 + b),
                data[b as usize * BLOCK..(b as usize + 1) * BLOCK]
            );
        }
    }
    bed.disks.commands.clear();
    for _ in 0..4 {
        let ox = bed.read(10, 8);
        assert_eq!(bed.result(ox).data, data);
    }
    let read_from: Vec<u32> = bed.disks.commands.iter().map(|c| c.device).collect();
    assert_eq!(read_from, [2, 1, 2, 1], "round robin over the readable sides only");
}

#[test]
fn journal_writes_append_header_and_data_at_the_workers_index() {
    let group = JournalGroupId(1);
    let sd =
        StorageDescriptor::Journaled(JournaledLayout { primary: SideLayout::Single(placement(1, 0)), group });
    let mut bed = Testbed::single(|_| {}, 4096, table(vec![RedirectEntry::read_write(sd)]));
    bed.grant(MappingEntry::Journal(JournalRegion {
        group,
        worker: WorkerId(0),
        placement: placement(2, 500),
        blocks: 20,
        sequence: 7,
    }));
    let first = pattern(4, 4);
    let ox = bed.write(8, first.clone());
    good(&bed, ox);
    let second = pattern(5, 2);
    let ox = bed.write(100, second.clone());
    good(&bed, ox);
    let header = JournalEntryHeader::decode(&bed.disks.read_block(2, 500)).expect("a header block");
    assert_eq!((header.journal_sequence, header.position, header.lba, header.blocks), (7, 0, 8, 4));
    for b in 0..4u64 {
        assert_eq!(bed.disks.read_block(2, 501 + b), first[b as usize * BLOCK..(b as usize + 1) * BLOCK]);
        assert_eq!(bed.disks.read_block(1, 8 + b), first[b as usize * BLOCK..(b as usize + 1) * BLOCK]);
    }
    let header = JournalEntryHeader::decode(&bed.disks.read_block(2, 505)).expect("second header");
    assert_eq!((header.position, header.lba, header.blocks), (5, 100, 2));
    // A third write of 14 blocks needs 15 of the 12 left: the journal is full.
    bed.write(0, pattern(6, 14));
    assert_eq!(bed.queued_causes(), vec![dve_fp_api::FaultCause::JournalFull]);
    // Reads of a journaled volume go to the primary only.
    bed.disks.commands.clear();
    let ox = bed.read(8, 4);
    assert_eq!(bed.result(ox).data, first);
    assert_eq!(bed.disks.commands.len(), 1);
}

/// How a test reorders one burst of the host's data frames.
type Arrangement = fn(&mut Vec<Vec<u8>>);

/// A write of `data` at `lba` whose host data frames are handed to the worker in the order
/// `arrange` puts each burst's frames in; returns the host's OX_ID once nothing moves.
fn write_arranged(bed: &mut Testbed, lba: u64, data: Vec<u8>, arrange: Arrangement) -> u16 {
    let blocks = (data.len() / BLOCK) as u16;
    let len = data.len() as u32;
    let (ox, command) = bed.host.command(&write10(lba as u32, blocks), Some(data), len);
    bed.deliver(HOST_PORT, command);
    loop {
        let frames = bed.transmits();
        if frames.is_empty() {
            return ox;
        }
        for (port, bytes) in frames {
            let mut replies =
                if port == HOST_PORT { bed.host.receive(&bytes) } else { bed.disks.receive(&bytes) };
            if port == HOST_PORT {
                arrange(&mut replies);
            }
            for reply in replies {
                bed.deliver(port, reply);
            }
        }
    }
}

#[test]
fn a_mirror_write_sends_each_host_data_frame_to_both_sides_without_copying_its_payload() {
    // One side's data frame is the host's frame with its headers rewritten; the other side's
    // carries its own headers and the same payload bytes, by reference.
    let mut bed =
        Testbed::single(|_| {}, 4096, table(vec![mirror(&[(1, SideState::Alive), (2, SideState::Alive)])]));
    bed.sent_to_disks = Some(Vec::new());
    let data = pattern(4, 24);
    let ox = bed.write(8, data.clone());
    assert_eq!(bed.result(ox).status, Some(0), "upcalls {:?}", bed.upcalls);
    let sent = bed.sent_to_disks.take().unwrap_or_default();
    let data_frames = |port| -> Vec<dve_fp_api::frame::TxFrame> {
        sent.iter()
            .filter(|(p, f)| {
                *p == port && f.head.as_slice().get(28) == Some(&dve_wire::fc::r_ctl::SOLICITED_DATA)
            })
            .map(|(_, f)| f.clone())
            .collect()
    };
    let (one, two) = (data_frames(disk_port(1)), data_frames(disk_port(2)));
    assert_eq!(one.len(), two.len());
    assert!(one.len() >= 6, "12 KiB in frames of at most 2 KiB: {} frames", one.len());
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        let (whole, shared) = match (&a.body, &b.body) {
            (None, Some(body)) => (&a.head, body),
            (Some(body), None) => (&b.head, body),
            _ => panic!("frame {i}: one side's frame is the host's, the other shares it"),
        };
        assert!(shared.shares_storage_with(whole), "frame {i}: the payload is shared, not copied");
    }
    for device in [1, 2] {
        for b in 0..24u64 {
            assert_eq!(
                bed.disks.read_block(device, 108 + b),
                data[b as usize * BLOCK..(b as usize + 1) * BLOCK]
            );
        }
    }
}

#[test]
fn write_data_out_of_order_lands_as_in_order_on_one_leg_and_on_a_mirror() {
    // In order, every host frame goes straight to the waiting legs; out of order, frames are
    // held as pieces and served as the gaps fill. Both must land the same data.
    let arrangements: [(&str, Arrangement); 4] = [
        ("in order", |_| {}),
        ("reversed", |f| f.reverse()),
        ("first two swapped", |f| {
            if f.len() > 1 {
                f.swap(0, 1);
            }
        }),
        ("last first", |f| {
            if !f.is_empty() {
                f.rotate_right(1);
            }
        }),
    ];
    for (name, arrange) in arrangements {
        for layout in ["single", "mirror"] {
            let entry = if layout == "single" {
                single(1, 0)
            } else {
                mirror(&[(1, SideState::Alive), (2, SideState::Alive)])
            };
            let mut bed = Testbed::single(|_| {}, 4096, table(vec![entry]));
            let data = pattern(9, 24);
            let ox = write_arranged(&mut bed, 8, data.clone(), arrange);
            assert_eq!(bed.result(ox).status, Some(0), "{name}, {layout}: upcalls {:?}", bed.upcalls);
            let (devices, base) = if layout == "single" { (vec![1], 8) } else { (vec![1, 2], 108) };
            for device in devices {
                for b in 0..24u64 {
                    assert_eq!(
                        bed.disks.read_block(device, base + b),
                        data[b as usize * BLOCK..(b as usize + 1) * BLOCK],
                        "{name}, {layout}: device {device} block {b}"
                    );
                }
            }
        }
    }
}

/// The port and OX_ID of the command the worker sent device `device` (held by the testbed).
fn held_leg(bed: &Testbed, device: u32) -> (dve_fp_api::ids::PortId, u16) {
    let (port, command) = bed
        .held_disk_frames
        .iter()
        .find(|(_, f)| f[28 + 1..28 + 4] == disk_fc(device).to_be_bytes()[1..])
        .cloned()
        .expect("the device's command");
    (port, u16::from_be_bytes([command[28 + 16], command[28 + 17]]))
}

/// A frame device `device` sends on `port` in the worker's exchange `leg`: FCP `r_ctl` with
/// relative offset `parameter` and `payload`.
fn device_frame(
    (port, leg): (dve_fp_api::ids::PortId, u16),
    device: u32,
    r_ctl: u8,
    parameter: u32,
    payload: &[u8],
) -> Vec<u8> {
    use dve_wire::fc::f_ctl;
    let f = f_ctl::EXCHANGE_CONTEXT | f_ctl::RELATIVE_OFFSET | f_ctl::SEQUENCE_INITIATIVE;
    let hd = header(
        r_ctl,
        initiator_fc(port.0),
        disk_fc(device),
        dve_wire::fc::fc_type::FCP,
        f,
        leg,
        0x55,
        parameter,
    );
    fcoe(&hd, dve_wire::fcoe::Sof::I3, dve_wire::fcoe::Eof::T, payload)
}

/// A device that asks for data beyond what its command moves (an FCP_XFER_RDY whose offset
/// and length reach past the leg's FCP_DL) is not followed: the frame is counted malformed and
/// dropped, and the write completes once the device asks properly. (A leg that starts well
/// into the host's data, as a stripe's second unit does, once overflowed the worker's offset
/// arithmetic on such a frame.)
#[test]
fn a_transfer_ready_beyond_the_legs_length_is_dropped_and_counted() {
    let members: Vec<Placement> = (1..=2).map(|d| placement(d, 0)).collect();
    let sd = StorageDescriptor::Stripe(StripeSet::new(3, members).unwrap());
    let mut bed = Testbed::single(|_| {}, 4096, table(vec![RedirectEntry::read_write(sd)]));
    bed.hold_disks = true;
    let data = pattern(5, 16);
    let ox = bed.write(0, data.clone());
    // The second leg: device 2, from byte 4,096 of the host's data.
    let leg = held_leg(&bed, 2);
    for (ro, len) in [(0xFFFF_FF00, 0x10), (4096, 1), (0, 0x1_0000), (u32::MAX, u32::MAX)] {
        let mut ready = ro.to_be_bytes().to_vec();
        ready.extend_from_slice(&len.to_be_bytes());
        ready.extend_from_slice(&[0; 4]);
        bed.deliver(leg.0, device_frame(leg, 2, dve_wire::fc::r_ctl::DATA_DESCRIPTOR, 0, &ready));
        bed.settle();
    }
    let malformed: u64 =
        bed.worker.statistics(dve_fp_api::ids::Timestamp(0)).ports.iter().map(|p| p.malformed).sum();
    assert_eq!(malformed, 4, "each is counted");
    assert_eq!(bed.result(ox).xfer_rdys, 0, "the host was asked for nothing");
    bed.release_disks();
    good(&bed, ox);
    let ox = bed.read(0, 16);
    assert_eq!(bed.result(ox).data, data);
}

/// A read or write whose FCP_DL or data direction does not agree with its CDB is refused at
/// once with CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT (as
/// Linux's target refuses it): the worker never asks the host for data beyond FCP_DL, sends
/// no read data beyond it, and starts nothing. A read whose FCP_DL is larger than its CDB's
/// transfer is an underrun: it completes, with the residual reported.
#[test]
fn a_command_whose_length_or_direction_disagrees_with_its_cdb_is_refused() {
    let mut bed = Testbed::single(|_| {}, 4096, table(vec![single(1, 0)]));
    // Name, CDB, the host's data (a write), FCP_DL.
    type Case = (&'static str, Vec<u8>, Option<Vec<u8>>, u32);
    let cases: [Case; 4] = [
        ("write, FCP_DL short", write10(8, 8).to_vec(), Some(pattern(1, 4)), 2048),
        ("write, FCP_DL long", write10(8, 8).to_vec(), Some(pattern(1, 16)), 8192),
        ("write without WRDATA", write10(8, 8).to_vec(), None, 4096),
        ("read, FCP_DL short", read16(8, 8).to_vec(), None, 2048),
    ];
    for (name, cdb, data, fcp_dl) in cases {
        let ox = bed.command(&cdb, data, fcp_dl);
        let result = bed.result(ox);
        assert_eq!(result.status, Some(0x02), "{name}: CHECK CONDITION");
        assert_eq!(result.xfer_rdys, 0, "{name}: the host is asked for nothing");
        assert!(result.data.is_empty(), "{name}: no data sent");
        let sense = result.sense.as_ref().expect("sense data");
        assert_eq!((sense[2] & 0x0F, sense[12], sense[13]), (0x05, 0x0E, 0x03), "{name}: the reason");
    }
    assert!(bed.disks.commands.is_empty(), "no device was asked anything");
    assert!(bed.upcalls.is_empty(), "nothing for the control path: {:?}", bed.upcalls);
    // A larger FCP_DL on a read: the data, and an underrun.
    let data = pattern(2, 8);
    let ox = bed.write(8, data.clone());
    assert_eq!(bed.result(ox).status, Some(0));
    let ox = bed.command(&read16(8, 8), None, 8192);
    assert_eq!(bed.result(ox).status, Some(0));
    assert_eq!(bed.result(ox).data, data);
    assert_eq!(bed.result(ox).residual_under, Some(4096));
}

/// A device's read data outside what its command asked for (past the leg's length, where the
/// host's buffer holds another device's data, or overflowing) is not passed on: the frame is
/// counted malformed and dropped, and the read's data is each device's own.
#[test]
fn read_data_past_a_legs_length_is_dropped_and_counted() {
    let members: Vec<Placement> = (1..=2).map(|d| placement(d, 0)).collect();
    let sd = StorageDescriptor::Stripe(StripeSet::new(3, members).unwrap());
    let mut bed = Testbed::single(|_| {}, 4096, table(vec![RedirectEntry::read_write(sd)]));
    let data = pattern(6, 16);
    let ox = bed.write(0, data.clone());
    good(&bed, ox);
    bed.hold_disks = true;
    let ox = bed.read(0, 16);
    // Device 1's leg moves the host's bytes 0..4096; 4096.. are device 2's.
    let leg = held_leg(&bed, 1);
    for (offset, len) in [(4096u32, 512usize), (3584, 1024), (u32::MAX - 100, 512)] {
        let frame = device_frame(leg, 1, dve_wire::fc::r_ctl::SOLICITED_DATA, offset, &vec![0xEE; len]);
        bed.now += 1;
        let frame = dve_fp_api::frame::Frame::copy_from(&frame).unwrap();
        bed.worker.handle_frame(dve_fp_api::ids::Timestamp(bed.now), leg.0, frame);
        let to_host = bed.worker.take_transmits().filter(|(p, _)| *p == HOST_PORT).count();
        assert_eq!(to_host, 0, "offset {offset}: nothing reaches the host");
    }
    let malformed: u64 =
        bed.worker.statistics(dve_fp_api::ids::Timestamp(0)).ports.iter().map(|p| p.malformed).sum();
    assert_eq!(malformed, 3, "each is counted");
    bed.release_disks();
    good(&bed, ox);
    assert_eq!(bed.result(ox).data, data, "each device's own data");
}

/// The same for a control-path read (`FPDispatchIO`): data past what it asked for does not
/// grow its buffer; it completes with the device's own data, at its length.
#[test]
fn control_path_read_data_past_its_length_is_dropped_and_counted() {
    use dve_fp_api::ids::DispatchTag;
    use dve_fp_api::io::{DownstreamOp, DownstreamRequest};
    use dve_fp_api::message::{ToCp, ToFp};
    let mut bed = Testbed::single(|_| {}, 10_000, table(vec![single(3, 0)]));
    bed.disks.blocks.insert((3, 100), vec![0x3C; BLOCK]);
    bed.hold_disks = true;
    bed.message(ToFp::DispatchIo(DownstreamRequest {
        tag: DispatchTag(9),
        device: DeviceId(3),
        op: DownstreamOp::Read { lba: 100, blocks: 1 },
    }));
    let leg = held_leg(&bed, 3);
    for offset in [512u32, 1 << 20, u32::MAX - 100] {
        bed.deliver(leg.0, device_frame(leg, 3, dve_wire::fc::r_ctl::SOLICITED_DATA, offset, &[0xEE; 512]));
    }
    let malformed: u64 =
        bed.worker.statistics(dve_fp_api::ids::Timestamp(0)).ports.iter().map(|p| p.malformed).sum();
    assert_eq!(malformed, 3, "each is counted");
    bed.release_disks();
    let data = bed.upcalls.iter().find_map(|u| match u {
        ToCp::DispatchIoComplete { tag: DispatchTag(9), data, .. } => Some(data.clone()),
        _ => None,
    });
    assert_eq!(
        data.flatten().map(|d| d.to_vec()),
        Some(vec![0x3C; BLOCK]),
        "the device's block, at its length"
    );
}

/// A write leg whose device says GOOD with an underrun (it stored less than FCP_DL) did not
/// store the write: the host is not told GOOD; the write goes to the control path as a
/// failure of that device, and nothing of it is acknowledged. On a mirror the other side's
/// GOOD does not stand for it either.
#[test]
fn a_write_leg_good_with_an_underrun_is_a_failed_leg() {
    for layout in ["single", "mirror"] {
        let entry = if layout == "single" {
            single(1, 0)
        } else {
            mirror(&[(1, SideState::Alive), (2, SideState::Alive)])
        };
        let mut bed = Testbed::single(|_| {}, 4096, table(vec![entry]));
        bed.disks.short_writes = vec![1];
        let ox = bed.write(8, pattern(3, 8));
        assert_eq!(bed.result(ox).status, None, "{layout}: no status from the fast path");
        let failures: Vec<_> = bed
            .upcalls
            .iter()
            .filter_map(|u| match u {
                dve_fp_api::message::ToCp::QueueIo { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect();
        assert_eq!(failures.len(), 1, "{layout}: {:?}", bed.upcalls);
        assert_eq!(failures[0].cause, dve_fp_api::FaultCause::DownstreamError);
        assert_eq!(failures[0].failure.map(|f| f.device), Some(DeviceId(1)), "{layout}: device 1's");
    }
}
