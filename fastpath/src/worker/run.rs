//! The run-to-completion poll loop for a worker on a real thread: receive bursts from its
//! ports, take frames other workers hand over and messages from the control path, feed them
//! to the core, and flush what it produced. It never blocks.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use dve_fp_api::frame::Frame;
use dve_fp_api::ids::{PortId, Timestamp, WorkerId};
use dve_fp_api::port::PacketIo;
use dve_fp_api::transport::FpEndpoint;

use super::Worker;

/// Frames handed between workers: one inbox per worker (several producers, one consumer).
#[derive(Clone, Debug)]
pub struct WorkerMesh {
    inboxes: Arc<Vec<ArrayQueue<(PortId, Frame)>>>,
}

impl WorkerMesh {
    /// Inboxes for `workers` workers, each holding `capacity` frames.
    pub fn new(workers: usize, capacity: usize) -> WorkerMesh {
        WorkerMesh { inboxes: Arc::new((0..workers).map(|_| ArrayQueue::new(capacity.max(1))).collect()) }
    }

    /// Hand `frame` to `worker`; false if its inbox is full or it does not exist (the frame
    /// is dropped and the host's retry recovers, as with any lost frame).
    pub fn hand_to(&self, worker: WorkerId, port: PortId, frame: Frame) -> bool {
        self.inboxes.get(usize::from(worker.0)).is_some_and(|inbox| inbox.push((port, frame)).is_ok())
    }

    fn take(&self, worker: WorkerId) -> Option<(PortId, Frame)> {
        self.inboxes.get(usize::from(worker.0))?.pop()
    }
}

/// What one poll did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PollReport {
    /// Frames received from ports and inboxes.
    pub frames_in: usize,
    /// Frames transmitted.
    pub frames_out: usize,
    /// Messages from the control path handled.
    pub messages: usize,
}

/// Frames taken per port per poll.
const BURST: usize = 32;

/// Frames held per port for a port that refused them: a few bursts' worth. A port that stays
/// full longer is congested beyond what holding can hide; beyond this the newest frames are
/// dropped, as a full queue drops its tail, so the older exchanges still complete.
pub const TX_HELD_FRAMES: usize = 1024;

impl Worker {
    /// One pass of the poll loop over `ports` (every port of the engine, which this worker
    /// may transmit on), receiving only from those whose ids are in `receive_from`.
    pub fn poll<P: PacketIo>(
        &mut self,
        now: Timestamp,
        ports: &mut [P],
        receive_from: &[PortId],
        mesh: &WorkerMesh,
        fp: &FpEndpoint,
        scratch: &mut Vec<Frame>,
    ) -> PollReport {
        let mut report = PollReport::default();
        self.expire(now);
        while let Some(message) = fp.try_recv() {
            self.handle_message(now, message);
            report.messages += 1;
        }
        while let Some((port, frame)) = mesh.take(self.id()) {
            self.handle_frame(now, port, frame);
            report.frames_in += 1;
        }
        for port in ports.iter_mut().filter(|p| receive_from.contains(&p.id())) {
            scratch.clear();
            let n = port.rx_burst(scratch, BURST);
            let id = port.id();
            // Statistics are counted per burst, here and for what leaves below.
            self.count_received(id, &scratch[..n]);
            for frame in scratch.drain(..n) {
                self.receive(now, id, frame);
            }
            report.frames_in += n;
        }
        self.count_transmits();
        report.frames_out += self.flush(ports);
        for (worker, port, frame) in self.handoffs.drain(..) {
            mesh.hand_to(worker, port, frame);
        }
        while let Some(message) = self.poll_upcall() {
            if let Err((_, message)) = fp.try_send(message) {
                self.unpoll_upcall(message);
                break;
            }
        }
        report
    }

    /// Transmit what the core produced, in bursts per port. Frames a full port refuses are
    /// held, oldest first, and go before anything newer on that port at the next flush: FCoE
    /// runs on a lossless fabric, and a host recovers a lost frame only by timing out its
    /// exchange (seconds). Beyond `TX_HELD_FRAMES` per port, or on a port whose link is down,
    /// frames are dropped and counted as `tx_dropped`.
    pub fn flush<P: PacketIo>(&mut self, ports: &mut [P]) -> usize {
        let mut sent = 0;
        let mut batch = std::mem::take(&mut self.tx_batch);
        for port in ports.iter_mut() {
            let id = port.id();
            let slot = self.port_slot(id);
            batch.clear();
            if let Some(held) = slot.and_then(|at| self.tx_held.get_mut(at)) {
                batch.append(held);
            }
            if let Some(list) = slot.and_then(|at| self.tx.port_list(at)) {
                // Nothing held, as nearly always: the port's list is the batch, its vector
                // swapped rather than its frames moved.
                if batch.is_empty() {
                    std::mem::swap(list, &mut batch);
                } else {
                    batch.append(list);
                }
            }
            self.tx.take_other(id, &mut batch);
            if batch.is_empty() {
                continue;
            }
            sent += port.tx_burst(&mut batch);
            if batch.is_empty() {
                continue;
            }
            let keep = if port.link_up() { batch.len().min(TX_HELD_FRAMES) } else { 0 };
            let dropped = (batch.len() - keep) as u64;
            batch.truncate(keep);
            match slot.and_then(|at| self.tx_held.get_mut(at)) {
                // The refused frames become the held list; its old (empty) vector is reused
                // as the next port's batch.
                Some(held) => std::mem::swap(held, &mut batch),
                None => batch.clear(),
            }
            if dropped > 0
                && let Some(stats) = self.port_stats(id)
            {
                stats.tx_dropped += dropped;
            }
        }
        self.tx.clear();
        self.tx_batch = batch;
        sent
    }

    /// Frames held for ports that were full at the last flush.
    pub fn held_transmits(&self) -> usize {
        self.tx_held.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use dve_fp_api::frame::TxFrame;
    use dve_fp_api::ids::FcId;
    use dve_wire::ethernet::MacAddr;

    use super::*;
    use crate::{PortConfig, WorkerConfig};

    /// A port that takes at most `room` frames per burst and records what it took.
    struct NarrowPort {
        room: usize,
        up: bool,
        taken: Vec<u8>,
    }

    impl PacketIo for NarrowPort {
        fn id(&self) -> PortId {
            PortId(0)
        }
        fn rx_burst(&mut self, _: &mut Vec<Frame>, _: usize) -> usize {
            0
        }
        fn tx_burst(&mut self, frames: &mut Vec<TxFrame>) -> usize {
            let n = if self.up { frames.len().min(self.room) } else { 0 };
            self.taken.extend(frames.drain(..n).map(|f| f.head.as_slice()[0]));
            n
        }
        fn link_up(&self) -> bool {
            self.up
        }
    }

    fn worker() -> Worker {
        let port = PortConfig {
            id: PortId(0),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            initiator_fc_id: FcId::new(0x0a0001).unwrap(),
        };
        Worker::new(WorkerConfig::new(WorkerId(0), vec![port]))
    }

    /// Queue frames numbered `from..to` (their first byte, modulo 256) for port 0.
    fn queue(worker: &mut Worker, numbers: std::ops::Range<usize>) {
        for n in numbers {
            worker.send(PortId(0), TxFrame::whole(Frame::copy_from(&[n as u8; 64]).unwrap()));
        }
    }

    fn dropped(worker: &Worker) -> u64 {
        worker.statistics(Timestamp(0)).ports[0].tx_dropped
    }

    #[test]
    fn refused_frames_are_held_and_sent_first_in_order() {
        let mut worker = worker();
        let mut port = [NarrowPort { room: 3, up: true, taken: Vec::new() }];
        queue(&mut worker, 0..10);
        assert_eq!(worker.flush(&mut port), 3);
        assert_eq!(worker.held_transmits(), 7);
        queue(&mut worker, 10..12);
        while worker.held_transmits() > 0 || worker.has_transmits() {
            worker.flush(&mut port);
        }
        assert_eq!(port[0].taken, (0..12).collect::<Vec<u8>>(), "nothing lost, nothing reordered");
        assert_eq!(dropped(&worker), 0);
    }

    #[test]
    fn beyond_the_hold_the_newest_frames_are_dropped_and_counted() {
        let mut worker = worker();
        let mut port = [NarrowPort { room: 0, up: true, taken: Vec::new() }];
        queue(&mut worker, 0..TX_HELD_FRAMES + 76);
        assert_eq!(worker.flush(&mut port), 0);
        assert_eq!(worker.held_transmits(), TX_HELD_FRAMES);
        assert_eq!(dropped(&worker), 76);
        port[0].room = usize::MAX;
        assert_eq!(worker.flush(&mut port), TX_HELD_FRAMES);
        let expected: Vec<u8> = (0..TX_HELD_FRAMES).map(|n| n as u8).collect();
        assert_eq!(port[0].taken, expected, "the oldest frames were kept");
    }

    #[test]
    fn a_port_whose_link_is_down_holds_nothing() {
        let mut worker = worker();
        let mut port = [NarrowPort { room: 5, up: false, taken: Vec::new() }];
        queue(&mut worker, 0..8);
        assert_eq!(worker.flush(&mut port), 0);
        assert_eq!((worker.held_transmits(), dropped(&worker)), (0, 8));
    }
}
