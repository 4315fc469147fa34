//! Frames no well-behaved port sends, with good CRCs so they reach the worker's deep paths:
//! commands with any CDB, LUN and length; data, transfer-ready and status frames naming any
//! exchange, from the host's or a disk's address or any other, with any offset, length and
//! payload; aborts and their answers; unknown kinds. The worker must not panic, and once
//! their exchanges have timed out it must still carry a host's reads and writes correctly.
//! Frames from anyone but an exchange's own host and devices, naming it, change nothing in it.

mod support;

use dve_fp_api::frame::Frame;
use dve_fp_api::ids::{DeviceId, JournalGroupId, PortId, Timestamp, WorkerId};
use dve_fp_api::mapping::{
    JournalRegion, JournaledLayout, MirrorSet, MirrorSide, Placement, ReadPolicy, RedirectEntry, SideLayout,
    SideState, StorageDescriptor, StripeSet,
};
use dve_fp_api::message::MappingEntry;
use dve_wire::fc::{UNASSIGNED_X_ID, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, Sof};
use dve_wire::fcp::{FcpCmndRepr, TaskAttribute, lun_from_index};
use dve_wire::scsi::opcode;
use proptest::prelude::*;
use support::*;

/// One hostile frame: what it claims to be and where it claims to come from and go.
#[derive(Clone, Debug)]
struct Hostile {
    port: u16,
    r_ctl: u8,
    fc_type: u8,
    s_id: u32,
    d_id: u32,
    f_ctl: u32,
    ox: u16,
    rx: u16,
    parameter: u32,
    seq_cnt: u16,
    body: Body,
}

#[derive(Clone, Debug)]
enum Body {
    /// An FCP_CMND with this CDB (its first byte a read or a write, or anything), LUN,
    /// flags and length.
    Command { cdb: Vec<u8>, lun: u16, rd: bool, wr: bool, fcp_dl: u32, tmf: u8 },
    /// Any payload bytes.
    Bytes(Vec<u8>),
}

fn address() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(HOST_FC),
        Just(TARGET_FC),
        (1u32..=3).prop_map(disk_fc),
        (0u16..=4).prop_map(initiator_fc),
        0u32..0x100_0000,
    ]
}

fn exchange_id() -> impl Strategy<Value = u16> {
    // The worker's own ids start at 0; the host's at 1; FC's unassigned is 0xFFFF.
    prop_oneof![0u16..24, Just(UNASSIGNED_X_ID), any::<u16>()]
}

fn body() -> impl Strategy<Value = Body> {
    let cdb = (
        prop_oneof![
            Just(opcode::READ_16),
            Just(opcode::WRITE_16),
            Just(opcode::READ_10),
            Just(opcode::WRITE_10),
            any::<u8>()
        ],
        prop_oneof![4 => proptest::collection::vec(any::<u8>(), 15..=15), 1 => proptest::collection::vec(any::<u8>(), 0..18)],
        // A sane extent most of the time, so the command reaches the primitives.
        prop_oneof![1 => Just(None), 3 => (0u64..200, 1u32..40).prop_map(Some)],
    )
        .prop_map(|(op, mut rest, extent)| {
            rest.insert(0, op);
            if let Some((lba, blocks)) = extent
                && rest.len() >= 16
            {
                rest[2..10].copy_from_slice(&lba.to_be_bytes());
                rest[10..14].copy_from_slice(&blocks.to_be_bytes());
                rest[14] = 0;
            }
            rest
        });
    let command = (
        cdb,
        prop_oneof![3 => Just(0u16), 1 => 0u16..3],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(None), (0u32..40_000).prop_map(Some)],
        prop_oneof![4 => Just(0u8), 1 => any::<u8>()],
    )
        .prop_map(|(cdb, lun, rd, wr, fcp_dl, tmf)| {
            // The length the CDB asks for, unless told otherwise.
            let blocks = cdb.get(10..14).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let fcp_dl = fcp_dl.unwrap_or(blocks.saturating_mul(BLOCK as u32));
            let is_write = matches!(cdb.first(), Some(&opcode::WRITE_16) | Some(&opcode::WRITE_10));
            Body::Command { cdb, lun, rd: rd && !is_write, wr: wr || is_write, fcp_dl, tmf }
        });
    prop_oneof![
        2 => command,
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Body::Bytes),
        // A well-formed FCP_XFER_RDY or a plain FCP_RSP, often.
        1 => (prop_oneof![0u32..20_000, any::<u32>()], prop_oneof![0u32..20_000, any::<u32>()]).prop_map(|(ro, len)| {
            let mut b = ro.to_be_bytes().to_vec();
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&[0; 4]);
            Body::Bytes(b)
        }),
        1 => (any::<u8>(), prop_oneof![Just(0u8), any::<u8>()]).prop_map(|(status, flags)| {
            let mut b = vec![0u8; 24];
            b[10] = flags;
            b[11] = status;
            Body::Bytes(b)
        }),
        1 => proptest::collection::vec(any::<u8>(), 2040..2112).prop_map(Body::Bytes),
    ]
}

/// Who a frame claims to be from, and to: the host to the virtual target, a disk to the
/// switch's initiator address on its port, or anyone to anything.
fn ends() -> impl Strategy<Value = (u16, u32, u32)> {
    prop_oneof![
        4 => Just((HOST_PORT.0, HOST_FC, TARGET_FC)),
        3 => (1u32..=2).prop_map(|d| (disk_port(d).0, disk_fc(d), initiator_fc(disk_port(d).0))),
        1 => (0u16..=4, address(), address()).prop_map(|(p, s, d)| (p, s, d)),
    ]
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let kind = prop_oneof![
        Just((r_ctl::UNSOLICITED_COMMAND, fc_type::FCP)),
        Just((r_ctl::SOLICITED_DATA, fc_type::FCP)),
        Just((r_ctl::DATA_DESCRIPTOR, fc_type::FCP)),
        Just((r_ctl::COMMAND_STATUS, fc_type::FCP)),
        Just((r_ctl::BLS_ABTS, fc_type::BLS)),
        Just((r_ctl::BLS_BA_ACC, fc_type::BLS)),
        Just((r_ctl::BLS_BA_RJT, fc_type::BLS)),
        (any::<u8>(), any::<u8>()),
    ];
    (
        ends(),
        kind,
        prop_oneof![
            Just(f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE),
            Just(f_ctl::RELATIVE_OFFSET),
            Just(f_ctl::EXCHANGE_CONTEXT | f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE),
            0u32..0x100_0000,
        ],
        (exchange_id(), exchange_id()),
        prop_oneof![0u32..16_384, any::<u32>()],
        any::<u16>(),
        body(),
    )
        .prop_map(|((port, s_id, d_id), (r_ctl, fc_type), f_ctl, (ox, rx), parameter, seq_cnt, body)| {
            Hostile { port, r_ctl, fc_type, s_id, d_id, f_ctl, ox, rx, parameter, seq_cnt, body }
        })
}

impl Hostile {
    fn bytes(&self) -> Vec<u8> {
        let mut hd = header(
            self.r_ctl,
            self.d_id,
            self.s_id,
            self.fc_type,
            self.f_ctl,
            self.ox,
            self.rx,
            self.parameter,
        );
        hd.seq_cnt = self.seq_cnt;
        match &self.body {
            Body::Command { cdb, lun, rd, wr, fcp_dl, tmf } => {
                let cmnd = FcpCmndRepr {
                    lun: lun_from_index(*lun),
                    crn: 0,
                    priority: 0,
                    task_attribute: TaskAttribute::Simple,
                    task_management: *tmf,
                    wrdata: *wr,
                    rddata: *rd,
                    cdb,
                    fcp_dl: *fcp_dl,
                };
                let mut buf = vec![0u8; 64];
                match dve_wire::emit::WireEmit::emit(&cmnd, &mut buf) {
                    Ok(len) => fcoe(&hd, Sof::I3, Eof::T, &buf[..len]),
                    // A CDB wire will not encode: its bytes as they are.
                    Err(_) => fcoe(&hd, Sof::I3, Eof::T, &cdb[..]),
                }
            }
            Body::Bytes(payload) => fcoe(&hd, Sof::I3, Eof::T, &payload[..]),
        }
    }
}

fn mirrored() -> Testbed {
    let side = |d| MirrorSide {
        layout: SideLayout::Single(Placement { device: DeviceId(d), lba: 0 }),
        state: SideState::Alive,
        read_cost: 1,
    };
    let mirror = MirrorSet::new(vec![side(1), side(2)], ReadPolicy::RoundRobin).unwrap();
    Testbed::single(|_| {}, 4096, table(vec![RedirectEntry::read_write(StorageDescriptor::Mirror(mirror))]))
}

/// Writes to device 1 journaled on device 2: each write's second leg carries a header block
/// before the host's data.
fn journaled() -> Testbed {
    let group = JournalGroupId(1);
    let primary = SideLayout::Single(Placement { device: DeviceId(1), lba: 0 });
    let sd = StorageDescriptor::Journaled(JournaledLayout { primary, group });
    let mut bed = Testbed::single(|_| {}, 4096, table(vec![RedirectEntry::read_write(sd)]));
    bed.grant(MappingEntry::Journal(JournalRegion {
        group,
        worker: WorkerId(0),
        placement: Placement { device: DeviceId(2), lba: 100_000 },
        blocks: 1 << 20,
        sequence: 1,
    }));
    bed
}

/// Devices 1 and 2 mirrored, each side a stripe over its device and device 3 (8-block
/// units): a command's legs start at many offsets into the host's data.
fn striped_mirror() -> Testbed {
    let side = |d| MirrorSide {
        layout: SideLayout::Stripe(
            StripeSet::new(
                3,
                vec![
                    Placement { device: DeviceId(d), lba: 0 },
                    Placement { device: DeviceId(3), lba: 10_000 * u64::from(d) },
                ],
            )
            .unwrap(),
        ),
        state: SideState::Alive,
        read_cost: 1,
    };
    let mirror = MirrorSet::new(vec![side(1), side(2)], ReadPolicy::RoundRobin).unwrap();
    Testbed::single(|_| {}, 4096, table(vec![RedirectEntry::read_write(StorageDescriptor::Mirror(mirror))]))
}

/// Run the worker over `frames` with nobody answering what it sends, then let every exchange
/// they opened time out. Half the frames claiming to be a disk's are made to answer a command
/// the worker sent a disk (its OX_ID, from the disk it went to, on that port), so they reach
/// the legs.
fn assault(bed: &mut Testbed, frames: &[Hostile]) {
    let mut legs: Vec<(PortId, u32, u16)> = Vec::new();
    for hostile in frames {
        let mut hostile = hostile.clone();
        let from_disk = hostile.s_id != HOST_FC && hostile.d_id != TARGET_FC;
        if from_disk && hostile.seq_cnt % 2 == 0 && !legs.is_empty() {
            let (port, disk, ox) = legs[usize::from(hostile.seq_cnt / 2) % legs.len()];
            (hostile.port, hostile.s_id, hostile.d_id, hostile.ox) = (port.0, disk, initiator_fc(port.0), ox);
            // An answer a device gives, of any offset and length: a transfer-ready, a status or
            // data (the frame's other fields are random already).
            let (ro, len) = (hostile.parameter, hostile.parameter.rotate_left(13) >> (hostile.seq_cnt % 24));
            hostile.fc_type = fc_type::FCP;
            match (hostile.seq_cnt >> 2) % 3 {
                0 => {
                    hostile.r_ctl = r_ctl::DATA_DESCRIPTOR;
                    let mut b = ro.to_be_bytes().to_vec();
                    b.extend_from_slice(&len.to_be_bytes());
                    b.extend_from_slice(&[0; 4]);
                    hostile.body = Body::Bytes(b);
                }
                1 => hostile.r_ctl = r_ctl::COMMAND_STATUS,
                _ => hostile.r_ctl = r_ctl::SOLICITED_DATA,
            }
        }
        bed.now += 1;
        let frame = Frame::copy_from(&hostile.bytes()).expect("fits a frame");
        bed.worker.handle_frame(Timestamp(bed.now), PortId(hostile.port), frame);
        for (port, tx) in bed.worker.take_transmits() {
            let mut bytes = Vec::new();
            tx.write_to(&mut bytes);
            if port != HOST_PORT && bytes.get(FC) == Some(&r_ctl::UNSOLICITED_COMMAND) {
                let d_id = u32::from_be_bytes([0, bytes[FC + 1], bytes[FC + 2], bytes[FC + 3]]);
                legs.push((port, d_id, u16::from_be_bytes([bytes[FC + 16], bytes[FC + 17]])));
            }
        }
        while bed.worker.poll_upcall().is_some() {}
    }
    let timeout = bed.worker.config().downstream_timeout_ns;
    for _ in 0..4 {
        bed.now += timeout + 1;
        bed.worker.expire(Timestamp(bed.now));
        bed.worker.take_transmits().for_each(drop);
        while bed.worker.poll_upcall().is_some() {}
    }
}

/// Where the FC header starts in an untagged FCoE frame.
const FC: usize = 28;

/// Half the host's data frames and aborts name the exchange of the host's last command
/// before them (by its OX_ID), so they reach what that command opened.
fn following(mut frames: Vec<Hostile>) -> Vec<Hostile> {
    let mut last_command = None;
    for f in &mut frames {
        let from_host = f.s_id == HOST_FC && f.d_id == TARGET_FC;
        if from_host && f.r_ctl == r_ctl::UNSOLICITED_COMMAND {
            last_command = Some(f.ox);
        } else if from_host
            && matches!(f.r_ctl, r_ctl::SOLICITED_DATA | r_ctl::BLS_ABTS)
            && f.seq_cnt % 2 == 0
            && let Some(ox) = last_command
        {
            f.ox = ox;
        }
    }
    frames
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever arrives, the worker does not panic; afterwards a host's write and reads of a
    /// range the frames could not have touched complete with the data written, on both sides
    /// (of a plain mirror; of one whose sides are stripes, whose legs start at offsets into
    /// the host's data; of a journaled volume, whose journal leg sends a header block first).
    #[test]
    fn hostile_frames_neither_panic_the_worker_nor_stop_it(
        frames in proptest::collection::vec(hostile(), 1..48),
        layout in 0..3,
    ) {
        let frames = following(frames);
        let mut bed = match layout {
            0 => mirrored(),
            1 => striped_mirror(),
            _ => journaled(),
        };
        assault(&mut bed, &frames);
        bed.upcalls.clear();
        let data = pattern(7, 16);
        let ox = bed.write(3000, data.clone());
        prop_assert_eq!(bed.result(ox).status, Some(0), "upcalls {:?}", bed.upcalls);
        // Both sides: a read goes to one, round robin.
        for _ in 0..2 {
            let ox = bed.read(3000, 16);
            prop_assert_eq!(bed.result(ox).status, Some(0));
            prop_assert!(bed.result(ox).data == data);
        }
        let sides: &[u32] = match layout {
            0 => &[1, 2],
            1 => &[],
            _ => &[1],
        };
        for &device in sides {
            for b in 0..16u64 {
                prop_assert_eq!(
                    bed.disks.read_block(device, 3000 + b),
                    data[b as usize * BLOCK..(b as usize + 1) * BLOCK].to_vec()
                );
            }
        }
    }
}

/// Frames from addresses that are neither the host's nor a disk's, to the virtual target or
/// the switch's initiator addresses, naming any exchange id (the live write's among them).
fn stranger() -> impl Strategy<Value = Hostile> {
    // Not the host or a disk (an address that is one becomes a fixed stranger's).
    let stranger =
        address().prop_map(|a| if [HOST_FC, disk_fc(1), disk_fc(2)].contains(&a) { 0x0B_0001 } else { a });
    (hostile(), stranger, prop_oneof![Just(TARGET_FC), (0u16..=4).prop_map(initiator_fc)], 0u16..=4).prop_map(
        |(mut h, s_id, d_id, port)| {
            (h.s_id, h.d_id, h.port) = (s_id, d_id, port);
            h
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A mirror write in flight (its commands sent, the disks not yet answering) is not
    /// touched by frames from strangers naming its exchanges, or any other: once the disks
    /// answer, it completes GOOD with its data on both sides, and reads back.
    #[test]
    fn frames_from_strangers_change_nothing_in_a_write_in_flight(
        frames in proptest::collection::vec(stranger(), 1..40),
    ) {
        let mut bed = mirrored();
        bed.hold_disks = true;
        let data = pattern(9, 24);
        let ox = bed.write(100, data.clone());
        // A third of the strangers name the host's exchange as the host would: its OX_ID and
        // the RX_ID the worker gave it (a fresh worker's first exchange is slot 0), at offset 0
        // half the time.
        let frames: Vec<Hostile> = frames
            .into_iter()
            .map(|mut f| {
                if f.seq_cnt % 3 == 0 {
                    (f.ox, f.rx) = (ox, (f.seq_cnt / 3) % 2);
                    if f.seq_cnt % 2 == 0 {
                        f.parameter = 0;
                    }
                }
                f
            })
            .collect();
        for hostile in &frames {
            bed.now += 1;
            let frame = Frame::copy_from(&hostile.bytes()).expect("fits a frame");
            bed.worker.handle_frame(Timestamp(bed.now), PortId(hostile.port), frame);
            let sent: Vec<_> = bed.worker.take_transmits().map(|(port, _)| port).collect();
            prop_assert!(sent.iter().all(|&p| p != HOST_PORT), "nothing goes to the host for a stranger's frame");
            while bed.worker.poll_upcall().is_some() {}
        }
        bed.release_disks();
        prop_assert_eq!(bed.result(ox).status, Some(0), "upcalls {:?}", bed.upcalls);
        for device in [1, 2] {
            for b in 0..24u64 {
                prop_assert_eq!(
                    bed.disks.read_block(device, 100 + b),
                    data[b as usize * BLOCK..(b as usize + 1) * BLOCK].to_vec()
                );
            }
        }
        let ox = bed.read(100, 24);
        prop_assert!(bed.result(ox).data == data);
    }
}
