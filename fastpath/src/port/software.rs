//! The software port: two ends of an in-memory cable, each a bounded lock-free ring, with
//! fault hooks in the manner of smoltcp's `FaultInjector` (drop, corrupt, delay, link down)
//! driven by a seeded generator so that runs repeat exactly.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_queue::ArrayQueue;
use dve_fp_api::frame::{Frame, FramePool, TxFrame};
use dve_fp_api::ids::PortId;
use dve_fp_api::port::PacketIo;

/// Faults a port injects into what it transmits.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FaultConfig {
    /// Frames dropped, per million.
    pub drop_per_million: u32,
    /// Frames with one byte flipped, per million.
    pub corrupt_per_million: u32,
    /// Receive polls a frame waits before it can be received.
    pub delay_polls: u32,
    /// Seed of the fault generator.
    pub seed: u64,
}

/// One direction of the cable. Frames travel as their pieces (scatter-gather, as DPDK
/// chains mbufs): a payload shared by several frames is never copied on the way.
#[derive(Debug)]
struct Lane {
    frames: ArrayQueue<TxFrame>,
}

#[derive(Debug)]
struct Cable {
    lanes: [Lane; 2],
    up: AtomicBool,
}

/// One end of a software cable.
#[derive(Debug)]
pub struct SoftwarePort {
    id: PortId,
    cable: Arc<Cable>,
    /// Which lane this end transmits on; it receives on the other.
    side: usize,
    pool: FramePool,
    faults: FaultConfig,
    rng: u64,
    polls: u64,
    /// Received frames held back by the delay fault, with the poll they become visible at.
    delayed: VecDeque<(u64, TxFrame)>,
    /// Frames lost to faults or a down link.
    pub dropped: u64,
    /// Frames corrupted.
    pub corrupted: u64,
}

/// Make a cable of two ports, each direction holding up to `capacity` frames. Multi-piece
/// frames are gathered into one buffer from `pool` when received through [`PacketIo`].
pub fn software_link(a: PortId, b: PortId, capacity: usize, pool: FramePool) -> (SoftwarePort, SoftwarePort) {
    let cable = Arc::new(Cable {
        lanes: [
            Lane { frames: ArrayQueue::new(capacity.max(1)) },
            Lane { frames: ArrayQueue::new(capacity.max(1)) },
        ],
        up: AtomicBool::new(true),
    });
    let end = |id, side| SoftwarePort {
        id,
        cable: cable.clone(),
        side,
        pool: pool.clone(),
        faults: FaultConfig::default(),
        rng: 0,
        polls: 0,
        delayed: VecDeque::new(),
        dropped: 0,
        corrupted: 0,
    };
    (end(a, 0), end(b, 1))
}

impl SoftwarePort {
    /// Inject faults into what this end transmits (and delay what it receives).
    pub fn set_faults(&mut self, faults: FaultConfig) {
        self.faults = faults;
        self.rng = faults.seed | 1;
    }

    /// Another handle on this end of the cable: it transmits on the same lane and receives
    /// from the same lane, with faults, delays and counters of its own. The lanes are
    /// multi-producer rings, so several threads may transmit through their own handles at
    /// once (every worker of an engine transmits on every port); receive through one handle
    /// only (the worker serving the port), or the frames are split between the handles.
    pub fn handle(&self) -> SoftwarePort {
        SoftwarePort {
            id: self.id,
            cable: Arc::clone(&self.cable),
            side: self.side,
            pool: self.pool.clone(),
            faults: FaultConfig::default(),
            rng: 0,
            polls: 0,
            delayed: VecDeque::new(),
            dropped: 0,
            corrupted: 0,
        }
    }

    /// Bring the cable up or down (both ends see it).
    pub fn set_link_up(&self, up: bool) {
        self.cable.up.store(up, Ordering::Release);
    }

    /// xorshift64*: cheap, seeded, good enough to pick frames to fault.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, per_million: u32) -> bool {
        per_million > 0 && (self.next_random() % 1_000_000) < u64::from(per_million)
    }

    /// The frame as one buffer: zero-copy when it already is one piece.
    fn gather(&self, frame: TxFrame) -> Option<Frame> {
        if frame.body.is_none() && frame.tail.as_slice().is_empty() {
            return Some(frame.head);
        }
        frame.gathered_in(&self.pool)
    }

    fn corrupt(&mut self, frame: TxFrame) -> TxFrame {
        if frame.is_empty() {
            return frame;
        }
        let at = (self.next_random() % frame.len() as u64) as usize;
        let mut bytes = Vec::with_capacity(frame.len());
        frame.write_to(&mut bytes);
        bytes[at] ^= 0x5A;
        self.corrupted += 1;
        Frame::copy_from(&bytes).map_or(frame, TxFrame::whole)
    }

    /// Receive frames as the pieces they were sent in, without gathering them: for consumers
    /// that read headers only (benchmark emulators).
    pub fn rx_burst_pieces(&mut self, out: &mut Vec<TxFrame>, max: usize) -> usize {
        self.polls += 1;
        if !self.link_up() {
            return 0;
        }
        let lane = &self.cable.lanes[1 - self.side];
        let mut received = 0;
        while received < max {
            let Some(frame) = lane.frames.pop() else { break };
            out.push(frame);
            received += 1;
        }
        received
    }
}

impl PacketIo for SoftwarePort {
    fn id(&self) -> PortId {
        self.id
    }

    fn rx_burst(&mut self, out: &mut Vec<Frame>, max: usize) -> usize {
        self.polls += 1;
        if !self.link_up() {
            return 0;
        }
        let lane = &self.cable.lanes[1 - self.side];
        let mut received = 0;
        if self.faults.delay_polls == 0 && self.delayed.is_empty() {
            while received < max {
                let Some(frame) = lane.frames.pop() else { break };
                if let Some(frame) = self.gather(frame) {
                    out.push(frame);
                    received += 1;
                }
            }
            return received;
        }
        while let Some(frame) = lane.frames.pop() {
            self.delayed.push_back((self.polls + u64::from(self.faults.delay_polls), frame));
        }
        while received < max {
            match self.delayed.front() {
                Some(&(due, _)) if due <= self.polls => {
                    if let Some(frame) = self.delayed.pop_front().and_then(|(_, f)| self.gather(f)) {
                        out.push(frame);
                        received += 1;
                    }
                }
                _ => break,
            }
        }
        received
    }

    fn tx_burst(&mut self, frames: &mut Vec<TxFrame>) -> usize {
        let mut sent = 0;
        let up = self.link_up();
        // Pop from the back after one reversal: frames move into the ring without clones.
        frames.reverse();
        while let Some(mut frame) = frames.pop() {
            if !up || self.chance(self.faults.drop_per_million) {
                self.dropped += 1;
                continue;
            }
            if self.chance(self.faults.corrupt_per_million) {
                frame = self.corrupt(frame);
            }
            if let Err(frame) = self.cable.lanes[self.side].frames.push(frame) {
                frames.push(frame);
                break;
            }
            sent += 1;
        }
        frames.reverse();
        sent
    }

    fn link_up(&self) -> bool {
        self.cable.up.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dve_fp_api::frame::Trailer;

    fn tx(bytes: &[u8]) -> TxFrame {
        TxFrame::whole(Frame::copy_from(bytes).unwrap())
    }

    fn pair(capacity: usize) -> (SoftwarePort, SoftwarePort) {
        software_link(PortId(0), PortId(1), capacity, FramePool::new(64, 0))
    }

    #[test]
    fn frames_cross_in_order_and_a_full_ring_pushes_back() {
        let (mut a, mut b) = pair(2);
        let mut out = vec![tx(b"one"), tx(b"two"), tx(b"three")];
        assert_eq!(a.tx_burst(&mut out), 2);
        assert_eq!(out, vec![tx(b"three")], "the frame the ring refused stays with the caller");
        let mut got = Vec::new();
        assert_eq!(b.rx_burst(&mut got, 8), 2);
        assert_eq!(got[0].as_slice(), b"one");
        assert_eq!(got[1].as_slice(), b"two");
    }

    #[test]
    fn pieces_are_gathered_and_single_pieces_are_not_copied() {
        let (mut a, mut b) = pair(8);
        let whole = Frame::copy_from(b"whole").unwrap();
        let gathered = TxFrame {
            head: Frame::copy_from(b"he").unwrap(),
            body: Some(Frame::copy_from(b"ad").unwrap()),
            tail: Trailer::new(b"!").unwrap(),
        };
        a.tx_burst(&mut vec![TxFrame::whole(whole.clone()), gathered]);
        let mut got = Vec::new();
        b.rx_burst(&mut got, 8);
        assert!(got[0].shares_storage_with(&whole));
        assert_eq!(got[1].as_slice(), b"head!");
    }

    #[test]
    fn handles_of_one_end_share_its_lanes_from_several_threads() {
        let (a, mut b) = pair(4096);
        let senders: Vec<_> = (0..4u8)
            .map(|t| {
                let mut handle = a.handle();
                std::thread::spawn(move || {
                    for i in 0..500u16 {
                        let mut out = vec![tx(&[t, (i >> 8) as u8, i as u8])];
                        while handle.tx_burst(&mut out) == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.join().unwrap();
        }
        let mut got = Vec::new();
        while b.rx_burst(&mut got, 64) > 0 {}
        assert_eq!(got.len(), 2000, "every frame of every handle arrived once");
        for t in 0..4u8 {
            let sequence: Vec<u16> = got
                .iter()
                .map(Frame::as_slice)
                .filter(|f| f[0] == t)
                .map(|f| u16::from_be_bytes([f[1], f[2]]))
                .collect();
            assert_eq!(sequence, (0..500).collect::<Vec<_>>(), "handle {t}'s frames stay in order");
        }

        // The far end answers through the cable; a handle of the near end receives it, and
        // the link state is the cable's.
        let mut receiver = a.handle();
        b.tx_burst(&mut vec![tx(b"back")]);
        got.clear();
        assert_eq!(receiver.rx_burst(&mut got, 8), 1);
        assert_eq!(got[0].as_slice(), b"back");
        b.set_link_up(false);
        assert!(!receiver.link_up() && !a.link_up());
    }

    #[test]
    fn faults_drop_corrupt_delay_and_cut_the_link() {
        let (mut a, mut b) = pair(1024);
        a.set_faults(FaultConfig { drop_per_million: 500_000, seed: 7, ..Default::default() });
        let mut out: Vec<TxFrame> = (0..200u8).map(|i| tx(&[i; 16])).collect();
        a.tx_burst(&mut out);
        let mut got = Vec::new();
        b.rx_burst(&mut got, 1024);
        assert_eq!(got.len() as u64 + a.dropped, 200);
        assert!((60..140).contains(&got.len()), "about half dropped: {}", got.len());

        a.set_faults(FaultConfig { corrupt_per_million: 1_000_000, seed: 3, ..Default::default() });
        a.tx_burst(&mut vec![tx(&[0u8; 16])]);
        got.clear();
        b.rx_burst(&mut got, 8);
        assert_eq!(got[0].as_slice().iter().filter(|&&x| x != 0).count(), 1);

        a.set_faults(FaultConfig::default());
        b.set_faults(FaultConfig { delay_polls: 3, ..Default::default() });
        a.tx_burst(&mut vec![tx(b"late")]);
        got.clear();
        assert_eq!(b.rx_burst(&mut got, 8), 0);
        assert_eq!(b.rx_burst(&mut got, 8), 0);
        assert_eq!(b.rx_burst(&mut got, 8), 0);
        assert_eq!(b.rx_burst(&mut got, 8), 1);

        a.set_link_up(false);
        assert!(!b.link_up());
        a.tx_burst(&mut vec![tx(b"lost")]);
        a.set_link_up(true);
        got.clear();
        assert_eq!(b.rx_burst(&mut got, 8), 0);
    }
}
