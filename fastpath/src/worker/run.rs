//! The run-to-completion poll loop for a worker on a real thread: receive bursts from its
//! ports, take frames other workers hand over and messages from the control path, feed them
//! to the core, and flush what it produced. It never blocks.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use dve_fp_api::frame::{Frame, TxFrame};
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

impl Worker {
    /// One pass of the poll loop. `rx` are the ports this worker receives on; `tx` every port
    /// of the engine, indexed by port number, that this worker may transmit on.
    pub fn poll<P: PacketIo>(
        &mut self,
        now: Timestamp,
        rx: &mut [P],
        tx: &mut [P],
        mesh: &WorkerMesh,
        fp: &FpEndpoint,
        scratch: &mut Vec<Frame>,
    ) -> PollReport {
        let mut report = PollReport::default();
        while let Some(message) = fp.try_recv() {
            self.handle_message(now, message);
            report.messages += 1;
        }
        while let Some((port, frame)) = mesh.take(self.id()) {
            self.handle_frame(now, port, frame);
            report.frames_in += 1;
        }
        for port in rx.iter_mut() {
            scratch.clear();
            let n = port.rx_burst(scratch, BURST);
            let id = port.id();
            for frame in scratch.drain(..n) {
                self.handle_frame(now, id, frame);
            }
            report.frames_in += n;
        }
        report.frames_out += self.flush(tx);
        for (worker, port, frame) in self.take_handoffs().collect::<Vec<_>>() {
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

    /// Transmit what the core produced; frames a full port refuses are dropped and counted.
    fn flush<P: PacketIo>(&mut self, tx: &mut [P]) -> usize {
        let mut sent = 0;
        let mut batch: Vec<TxFrame> = Vec::new();
        let frames: Vec<(PortId, TxFrame)> = self.take_transmits().collect();
        for (port, frame) in frames {
            let Some(out) = tx.iter_mut().find(|p| p.id() == port) else { continue };
            batch.push(frame);
            sent += out.tx_burst(&mut batch);
            if !batch.is_empty() {
                batch.clear();
                if let Some(stats) = self.port_stats(port) {
                    stats.tx_dropped += 1;
                }
            }
        }
        sent
    }
}
