//! The DPDK port over `net_ring` virtual devices, each of which loops what it transmits back
//! to its own receive queue: frames come back byte for byte, a gathered frame arrives whole,
//! a burst larger than the ring leaves the refused frames with the caller, a full-size FCoE
//! frame (more than a default 2 KiB mbuf) survives, and unknown devices, a second opening and
//! a second EAL initialisation are clear errors, and a closed device is gone.
//!
//! Every test initialises EAL with the same arguments and opens a device of its own, so the
//! tests pass both one per process (nextest) and as threads of one process (`cargo test`).

#![cfg(feature = "dpdk")]

mod dpdk_eal;

use dpdk_eal::{EAL_ARGS, eal};

use dve_fastpath::port::{DpdkError, DpdkPort, DpdkPortConfig, Eal, EthDevice};
use dve_fp_api::frame::{FRAME_CAPACITY, Frame, FramePool, Trailer, TxFrame};
use dve_fp_api::ids::PortId;
use dve_fp_api::port::PacketIo;
use dve_wire::ethernet::{EthernetRepr, MacAddr, VlanTag};
use dve_wire::fc::{FcHeaderRepr, FcId, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
use dve_wire::stack::{emit_fcoe_frame, parse_fcoe_frame};

fn open(device: &str) -> DpdkPort {
    let config = DpdkPortConfig::new(PortId(7), FramePool::new(2048, 0));
    DpdkPort::open(&eal(), device, config).unwrap_or_else(|e| panic!("open {device}: {e}"))
}

/// A frame of `len` bytes whose bytes depend on `seed`.
fn patterned(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn whole(bytes: &[u8]) -> TxFrame {
    TxFrame::whole(Frame::copy_from(bytes).expect("fits a frame"))
}

/// Receive until `want` frames have come or the port stays quiet.
fn receive(port: &mut DpdkPort, want: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut quiet_polls = 0;
    while frames.len() < want && quiet_polls < 100 {
        let room = want - frames.len();
        if port.rx_burst(&mut frames, room) == 0 {
            quiet_polls += 1;
        }
    }
    frames
}

#[test]
fn frames_come_back_byte_for_byte() {
    let mut port = open("net_ring0");
    assert_eq!(port.name(), "net_ring0");
    assert_eq!(port.id(), PortId(7));
    assert!(port.link_up());
    let sent: Vec<Vec<u8>> =
        [60, 64, 100, 1500, 2000].iter().zip(1..).map(|(&len, seed)| patterned(len, seed)).collect();
    let mut burst: Vec<TxFrame> = sent.iter().map(|bytes| whole(bytes)).collect();
    assert_eq!(port.tx_burst(&mut burst), sent.len());
    assert!(burst.is_empty(), "every frame accepted");
    let got = receive(&mut port, sent.len() + 1);
    let got: Vec<&[u8]> = got.iter().map(Frame::as_slice).collect();
    assert_eq!(got, sent.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let counters = port.counters();
    assert_eq!((counters.tx_frames, counters.rx_frames), (5, 5));
    assert_eq!((counters.tx_dropped, counters.rx_dropped, counters.mbuf_alloc_failures), (0, 0, 0));
}

#[test]
fn a_gathered_frame_arrives_as_one() {
    let mut port = open("net_ring1");
    // One payload shared by two frames, as a mirrored write's data goes to every side.
    let data = Frame::copy_from(&patterned(1200, 9)).unwrap();
    let body = data.slice(100..1124).unwrap();
    let frames: Vec<TxFrame> = (0..2u8)
        .map(|side| TxFrame {
            head: Frame::copy_from(&patterned(60, side)).unwrap(),
            body: Some(body.clone()),
            tail: Trailer::new(&[0xc0, 0xc1, 0xc2, 0xc3, side, 0, 0, 0]).unwrap(),
        })
        .collect();
    let expected: Vec<Vec<u8>> = frames
        .iter()
        .map(|frame| {
            let mut bytes = Vec::new();
            frame.write_to(&mut bytes);
            bytes
        })
        .collect();
    let mut burst = frames;
    assert_eq!(port.tx_burst(&mut burst), 2);
    let got = receive(&mut port, 2);
    assert_eq!(got.len(), 2);
    for (frame, expected) in got.iter().zip(&expected) {
        assert_eq!(frame.len(), 60 + 1024 + 8);
        assert_eq!(frame.as_slice(), &expected[..]);
    }
    assert_eq!(body.as_slice(), &data.as_slice()[100..1124], "the shared payload is untouched");
}

#[test]
fn a_burst_larger_than_the_ring_leaves_the_refused_frames_with_the_caller() {
    let mut port = open("net_ring2");
    let frame = |i: u16| {
        let mut bytes = patterned(64, 0);
        bytes[..2].copy_from_slice(&i.to_be_bytes());
        bytes
    };
    let index = |frame: &[u8]| u16::from_be_bytes([frame[0], frame[1]]);
    let total = 1100u16;
    let mut burst: Vec<TxFrame> = (0..total).map(|i| whole(&frame(i))).collect();
    let sent = port.tx_burst(&mut burst);
    assert!(sent > 0 && sent < usize::from(total), "the ring takes some, not all: {sent}");
    assert_eq!(burst.len(), usize::from(total) - sent, "refused frames stay in the Vec");
    let left: Vec<u16> = burst.iter().map(|f| index(f.head.as_slice())).collect();
    assert_eq!(left, (sent as u16..total).collect::<Vec<_>>(), "the refused frames are the last, in order");
    assert_eq!(port.counters().tx_frames, sent as u64);
    assert_eq!(port.counters().tx_dropped, 0);

    let got = receive(&mut port, usize::from(total));
    assert_eq!(
        got.iter().map(|f| index(f.as_slice())).collect::<Vec<_>>(),
        (0..sent as u16).collect::<Vec<_>>()
    );
    // Drained, the ring takes the rest.
    assert_eq!(port.tx_burst(&mut burst), left.len());
    let got = receive(&mut port, usize::from(total));
    assert_eq!(got.iter().map(|f| index(f.as_slice())).collect::<Vec<_>>(), left);
}

#[test]
fn a_full_size_fcoe_frame_survives_and_an_oversized_one_is_dropped() {
    let mut port = open("net_ring3");
    let header = FcHeaderRepr {
        r_ctl: r_ctl::SOLICITED_DATA,
        d_id: FcId(0x01_0002),
        cs_ctl: 0,
        s_id: FcId(0x02_0001),
        fc_type: fc_type::FCP,
        f_ctl: f_ctl::END_SEQUENCE,
        seq_id: 1,
        df_ctl: 0,
        seq_cnt: 0,
        ox_id: 0x1234,
        rx_id: 0x0042,
        parameter: 0,
    };
    let ethernet = EthernetRepr {
        dst_addr: MacAddr([0x0e, 0xfc, 0x00, 0x01, 0x00, 0x02]),
        src_addr: MacAddr([0x0e, 0xfc, 0x00, 0x02, 0x00, 0x01]),
        vlan: Some(VlanTag { pcp: 3, dei: false, vid: 100 }),
        ethertype: 0,
    };
    let payload = patterned(2112, 5);
    let mut buf = vec![0u8; FRAME_CAPACITY];
    let len =
        emit_fcoe_frame(&mut buf, &ethernet, &FcoeRepr { sof: Sof::I3, eof: Eof::T }, &header, &payload[..])
            .expect("a maximal FCoE frame");
    buf.truncate(len);
    assert!(len > 2048, "longer than a default mbuf's 2 KiB of data: {len}");

    // Longer than any frame: dropped and counted, and the frame behind it still goes.
    let oversized = TxFrame {
        head: Frame::copy_from(&patterned(2000, 1)).unwrap(),
        body: Some(Frame::copy_from(&patterned(2000, 2)).unwrap()),
        tail: Trailer::NONE,
    };
    let mut burst = vec![oversized, whole(&buf)];
    assert_eq!(port.tx_burst(&mut burst), 1);
    assert!(burst.is_empty(), "the oversized frame is removed, not left to retry");
    assert_eq!(port.counters().tx_dropped, 1);

    let got = receive(&mut port, 2);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_slice(), &buf[..]);
    let view = parse_fcoe_frame(got[0].as_slice()).expect("CRC and framing intact");
    assert_eq!((view.header.ox_id, view.payload), (0x1234, &payload[..]));
}

#[test]
fn unknown_devices_and_a_second_opening_are_clear_errors() {
    let eal = eal();
    let config = || DpdkPortConfig::new(PortId(1), FramePool::new(16, 0));
    let error = DpdkPort::open(&eal, "net_ring9", config()).unwrap_err();
    let DpdkError::NoSuchDevice { name, present } = &error else { panic!("{error:?}") };
    assert_eq!(name, "net_ring9");
    assert!(present.iter().any(|p| p == "net_ring0"), "{present:?}");
    let message = error.to_string();
    assert!(message.contains("\"net_ring9\"") && message.contains("--vdev"), "{message}");

    let error = DpdkPort::open(&eal, EthDevice::Id(31), config()).unwrap_err();
    assert!(matches!(error, DpdkError::NoSuchPort { port: 31, .. }), "{error:?}");

    let port = DpdkPort::open(&eal, "net_ring4", config()).expect("net_ring4");
    let error = DpdkPort::open(&eal, EthDevice::Id(port.dpdk_port()), config()).unwrap_err();
    assert_eq!(error, DpdkError::PortInUse { port: port.dpdk_port(), name: "net_ring4".into() });
    assert!(error.to_string().contains("already open"), "{error}");
    drop(port);
    let error = DpdkPort::open(&eal, "net_ring4", config()).unwrap_err();
    assert!(matches!(error, DpdkError::NoSuchDevice { .. }), "a closed device is released: {error:?}");
}

#[test]
fn eal_initialises_once() {
    let first = eal();
    let again = eal();
    assert_eq!(first.args(), again.args());
    let error = Eal::init(&["dve-test", "--no-huge"]).unwrap_err();
    let DpdkError::EalAlreadyInitialized { existing, requested } = &error else { panic!("{error:?}") };
    assert_eq!(existing, EAL_ARGS);
    assert_eq!(requested, &["dve-test", "--no-huge"]);
    assert!(error.to_string().contains("already initialised"), "{error}");
}
