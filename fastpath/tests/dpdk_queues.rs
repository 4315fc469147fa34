//! A DPDK device opened with one transmit queue per worker: every handle's frames reach the
//! far end, from threads of their own at once; only the receiving handle receives; a device
//! with too few transmit queues is refused with both numbers; the device stays open while
//! any handle lives and is released with the last. The devices are ring cables (two ethdevs,
//! each end's transmit queues feeding the other's receive queue) and `net_ring` vdevs, whose
//! 16 queues the ring PMD makes.
//!
//! Every test initialises EAL with the same arguments and makes cables of its own, so the
//! tests pass both one per process (nextest) and as threads of one process (`cargo test`).

#![cfg(feature = "dpdk")]

mod dpdk_eal;

use dpdk_eal::eal;

use dve_fastpath::port::{DpdkError, DpdkPort, DpdkPortConfig, ring_cable};
use dve_fp_api::frame::{Frame, FramePool, TxFrame};
use dve_fp_api::ids::PortId;
use dve_fp_api::port::PacketIo;

fn config() -> DpdkPortConfig {
    DpdkPortConfig::new(PortId(3), FramePool::new(2048, 0))
}

fn whole(bytes: &[u8]) -> TxFrame {
    TxFrame::whole(Frame::copy_from(bytes).expect("fits a frame"))
}

/// A frame of 64 bytes naming its sender and its sequence number.
fn tagged(sender: u8, seq: u16) -> Vec<u8> {
    let mut bytes = vec![0xa5; 64];
    bytes[0] = sender;
    bytes[1..3].copy_from_slice(&seq.to_be_bytes());
    bytes
}

/// Receive until `want` frames have come or the port stays quiet.
fn receive(port: &mut DpdkPort, want: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut quiet_polls = 0;
    while frames.len() < want && quiet_polls < 1000 {
        let mut got = Vec::new();
        if port.rx_burst(&mut got, 64) == 0 {
            quiet_polls += 1;
            std::thread::yield_now();
        }
        frames.extend(got.iter().map(|f| f.as_slice().to_vec()));
    }
    frames
}

fn send(port: &mut DpdkPort, bytes: &[u8]) {
    assert_eq!(port.tx_burst(&mut vec![whole(bytes)]), 1, "the ring takes the frame");
}

#[test]
fn every_handle_transmits_on_its_own_queue_and_only_the_receiver_receives() {
    let eal = eal();
    let [a, b] = ring_cable(&eal, "sharedq", 3).expect("a cable of three queues each way");
    let mut handles = DpdkPort::open_queues(&eal, a.as_str(), config(), 3, 1).expect("three handles");
    let mut far = DpdkPort::open(&eal, b.as_str(), config()).expect("the far end");
    assert_eq!(handles.iter().map(DpdkPort::tx_queue).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(handles.iter().map(DpdkPort::receives).collect::<Vec<_>>(), [false, true, false]);
    assert!(handles.iter().all(|h| h.dpdk_port() == handles[0].dpdk_port() && h.id() == PortId(3)));

    for (k, handle) in handles.iter_mut().enumerate() {
        send(handle, &tagged(k as u8, 0));
    }
    let mut heard = receive(&mut far, 3);
    heard.sort();
    assert_eq!(heard, [tagged(0, 0), tagged(1, 0), tagged(2, 0)], "each queue's frame arrived");
    assert!(handles.iter().all(|h| h.counters().tx_frames == 1));

    for seq in 0..4 {
        send(&mut far, &tagged(9, seq));
    }
    // The frames wait on the device's one receive queue: the handles without it never see
    // them, however often they poll, and the receiving one gets all four in order.
    for k in [0, 2] {
        assert!(receive(&mut handles[k], 1).is_empty(), "handle {k} does not receive");
    }
    assert_eq!(receive(&mut handles[1], 4), (0..4).map(|seq| tagged(9, seq)).collect::<Vec<_>>());
    assert_eq!(handles[1].counters().rx_frames, 4);
}

#[test]
fn handles_transmit_from_threads_of_their_own_at_once() {
    const FRAMES: u16 = 500;
    let eal = eal();
    let [a, b] = ring_cable(&eal, "threads", 4).expect("a cable");
    let handles = DpdkPort::open_queues(&eal, a.as_str(), config(), 4, 0).expect("four handles");
    let mut far = DpdkPort::open(&eal, b.as_str(), config()).expect("the far end");
    let senders: Vec<_> = handles
        .into_iter()
        .map(|mut handle| {
            std::thread::spawn(move || {
                let sender = handle.tx_queue() as u8;
                for seq in 0..FRAMES {
                    let mut out = vec![whole(&tagged(sender, seq))];
                    // The far end drains the ring; a full ring only means it is behind.
                    while handle.tx_burst(&mut out) == 0 {
                        std::thread::yield_now();
                    }
                }
                handle
            })
        })
        .collect();
    let mut heard = Vec::new();
    while heard.len() < 4 * usize::from(FRAMES) {
        let got = receive(&mut far, 4 * usize::from(FRAMES) - heard.len());
        if got.is_empty() && senders.iter().all(std::thread::JoinHandle::is_finished) {
            break;
        }
        heard.extend(got);
    }
    let handles: Vec<DpdkPort> = senders.into_iter().map(|s| s.join().expect("sender")).collect();
    assert_eq!(heard.len(), 4 * usize::from(FRAMES), "every frame of every handle arrived");
    // Each handle's frames arrive in the order it sent them, whatever the interleaving.
    for sender in 0..4u8 {
        let seqs: Vec<u16> =
            heard.iter().filter(|f| f[0] == sender).map(|f| u16::from_be_bytes([f[1], f[2]])).collect();
        assert_eq!(seqs, (0..FRAMES).collect::<Vec<_>>(), "handle {sender}");
    }
    drop(handles);
}

#[test]
fn a_device_with_too_few_transmit_queues_is_refused_untouched() {
    let eal = eal();
    let [a, _b] = ring_cable(&eal, "narrow", 2).expect("a cable of two queues");
    let error = DpdkPort::open_queues(&eal, a.as_str(), config(), 3, 0).expect_err("three are too many");
    let DpdkError::TooManyTxQueues { name, wanted, max, .. } = &error else { panic!("{error:?}") };
    assert_eq!((name.as_str(), *wanted, *max), (a.as_str(), 3, 2));
    let text = error.to_string();
    assert!(text.contains(&a) && text.contains("at most 2") && text.contains("3 were asked for"), "{text}");
    // Refused before it was configured: two handles still open it.
    let handles = DpdkPort::open_queues(&eal, a.as_str(), config(), 2, 1).expect("two fit");
    assert_eq!(handles.len(), 2);

    let error = DpdkPort::open_queues(&eal, "net_ring0", config(), 2, 2).expect_err("no handle 2 of 2");
    assert!(matches!(error, DpdkError::ReceiverOutOfRange { receiver: 2, handles: 2 }), "{error:?}");
    let error = DpdkPort::open_queues(&eal, "net_ring0", config(), 0, 0).expect_err("no handles");
    assert!(matches!(error, DpdkError::ReceiverOutOfRange { handles: 0, .. }), "{error:?}");
}

#[test]
fn a_ring_vdev_has_sixteen_queues() {
    let eal = eal();
    let error = DpdkPort::open_queues(&eal, "net_ring0", config(), 17, 0).expect_err("17 are too many");
    assert!(matches!(error, DpdkError::TooManyTxQueues { wanted: 17, max: 16, .. }), "{error:?}");
    let mut handles = DpdkPort::open_queues(&eal, "net_ring0", config(), 16, 0).expect("16 fit");
    // A ring vdev loops transmit queue k to receive queue k: queue 0's frame comes back to
    // the receiving handle, another queue's never reaches receive queue 0.
    send(&mut handles[5], &tagged(5, 0));
    send(&mut handles[0], &tagged(0, 0));
    assert_eq!(receive(&mut handles[0], 2), [tagged(0, 0)]);
}

#[test]
fn the_device_closes_with_its_last_handle() {
    let eal = eal();
    let [a, b] = ring_cable(&eal, "lasting", 2).expect("a cable");
    let mut far = DpdkPort::open(&eal, b.as_str(), config()).expect("the far end");
    let mut handles = DpdkPort::open_queues(&eal, a.as_str(), config(), 2, 0).expect("two handles");
    let mut last = handles.pop().expect("handle 1");
    drop(handles);
    send(&mut last, &tagged(1, 7));
    assert_eq!(receive(&mut far, 1), [tagged(1, 7)], "one handle keeps the device open");
    let error = DpdkPort::open(&eal, a.as_str(), config()).expect_err("still open");
    assert!(matches!(error, DpdkError::PortInUse { .. }), "{error:?}");
    drop(last);
    let error = DpdkPort::open(&eal, a.as_str(), config()).expect_err("closed and released");
    assert!(matches!(error, DpdkError::NoSuchDevice { .. }), "{error:?}");
}

#[test]
fn bad_ring_cables_are_refused() {
    let eal = eal();
    for (name, queues, reason) in [
        ("wide", 17, "1 to 16"),
        ("none", 0, "1 to 16"),
        ("a-dash", 1, "ASCII letters and digits"),
        ("muchtoolongacablename", 1, "ASCII letters and digits"),
    ] {
        let error = ring_cable(&eal, name, queues).expect_err(name);
        assert!(
            matches!(&error, DpdkError::RingCable { .. }) && error.to_string().contains(reason),
            "{error}"
        );
    }
    ring_cable(&eal, "twice", 1).expect("a first cable");
    let error = ring_cable(&eal, "twice", 1).expect_err("a name is used once");
    assert!(matches!(error, DpdkError::RingCable { .. }), "{error:?}");
}
