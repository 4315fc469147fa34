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

    /// Transmit what the core produced, in bursts per port; frames a full port refuses are
    /// dropped and counted (the exchange recovers as from any lost frame).
    pub fn flush<P: PacketIo>(&mut self, ports: &mut [P]) -> usize {
        let mut sent = 0;
        let mut pending = std::mem::take(&mut self.tx);
        let mut batch = std::mem::take(&mut self.tx_batch);
        for port in ports.iter_mut() {
            let id = port.id();
            batch.clear();
            batch.extend(pending.extract_if(.., |(p, _)| *p == id).map(|(_, f)| f));
            if batch.is_empty() {
                continue;
            }
            let n = port.tx_burst(&mut batch);
            sent += n;
            if !batch.is_empty() {
                let dropped = batch.len() as u64;
                batch.clear();
                if let Some(stats) = self.port_stats(id) {
                    stats.tx_dropped += dropped;
                }
            }
        }
        pending.clear();
        self.tx = pending;
        self.tx_batch = batch;
        sent
    }
}
