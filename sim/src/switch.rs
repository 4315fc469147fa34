//! A DVE engine in the simulator: the real fast-path workers and the real control path of one
//! engine, wired together in-process. Frames that arrive on a port go to the worker serving
//! it; FP API messages, hand-offs between workers and transmitted frames are moved until
//! nothing is left to do, so one call settles everything a frame caused at that instant.
//! Frames cross the engine's ports as the workers' own buffers ([`WireFrame`]): received
//! without a copy, transmitted without one when whole.

use dve_controlpath::control_path::{ControlPath, ControlPathConfig};
use dve_controlpath::store::MetadataStore;
use dve_fastpath::{PortConfig, Worker, WorkerConfig};
use dve_fp_api::ids::{PortId, Timestamp, WorkerId};
use dve_fp_api::stats::FpStatistics;

use crate::frame::WireFrame;

/// One engine: workers plus control path.
#[derive(Debug)]
pub struct SwitchNode {
    workers: Vec<Worker>,
    control: ControlPath,
    /// Frames dropped because they could not be copied into a frame buffer (too long), or
    /// transmitted frames too long for a link's buffer.
    pub oversized_frames: u64,
    /// FP API messages moved between workers and the control path.
    pub messages: u64,
    /// Whether the engine is running (a killed engine drops everything).
    pub running: bool,
    /// Hand-offs between workers being moved (kept to reuse its storage).
    handoffs: Vec<(WorkerId, PortId, dve_fp_api::frame::Frame)>,
}

/// Settling stops after this many rounds; a frame never causes anywhere near as many.
const MAX_ROUNDS: usize = 10_000;

impl SwitchNode {
    /// An engine in FC domain `domain` with `ports` ports served by `workers` workers.
    /// `misdirect_write` is test-only fault injection for worker 0 (see
    /// [`WorkerConfig::misdirect_write`]).
    pub fn new(
        domain: u8,
        ports: u16,
        workers: u8,
        downstream_timeout_ns: u64,
        misdirect_write: Option<u64>,
    ) -> SwitchNode {
        let control = ControlPath::new(ControlPathConfig::new(domain, ports, workers));
        let plan = control.plan().clone();
        let port_configs: Vec<PortConfig> = plan
            .ports()
            .iter()
            .map(|p| PortConfig { id: p.id, mac: p.mac, initiator_fc_id: p.initiator_fc_id })
            .collect();
        let workers = plan
            .workers()
            .into_iter()
            .map(|id| {
                let mut config = WorkerConfig::new(id, port_configs.clone());
                config.downstream_timeout_ns = downstream_timeout_ns;
                if id.0 == 0 {
                    config.misdirect_write = misdirect_write;
                }
                Worker::new(config)
            })
            .collect();
        SwitchNode { workers, control, oversized_frames: 0, messages: 0, running: true, handoffs: Vec::new() }
    }

    /// Stop the engine as a power loss would: every worker's and the control path's state is
    /// gone; only what the control path committed to its metadata store survives, returned
    /// here for [`SwitchNode::restart`].
    pub fn kill(&mut self) -> Option<Box<dyn MetadataStore>> {
        self.running = false;
        self.handoffs.clear();
        self.control.take_store()
    }

    /// Start the engine again from scratch (new workers, a new control path with the same
    /// configuration) over the metadata store a [`SwitchNode::kill`] left.
    pub fn restart(&mut self, store: Box<dyn MetadataStore>) -> Result<(), dve_controlpath::error::Error> {
        let config = self.control.config().clone();
        let worker = self.workers.first().map(|w| w.config().clone());
        let mut fresh = SwitchNode::new(
            config.domain,
            config.ports,
            config.workers,
            worker.as_ref().map_or(u64::MAX, |w| w.downstream_timeout_ns),
            worker.and_then(|w| w.misdirect_write),
        );
        fresh.control.attach_store(store)?;
        *self = SwitchNode { oversized_frames: self.oversized_frames, messages: self.messages, ..fresh };
        Ok(())
    }

    /// The control path (management calls go here).
    pub fn control(&self) -> &ControlPath {
        &self.control
    }

    /// The control path, mutably; call [`SwitchNode::settle`] after changing anything.
    pub fn control_mut(&mut self) -> &mut ControlPath {
        &mut self.control
    }

    /// Statistics of every worker.
    pub fn statistics(&self, now: u64) -> Vec<FpStatistics> {
        self.workers.iter().map(|w| w.statistics(Timestamp(now))).collect()
    }

    fn worker_index(&self, id: WorkerId) -> Option<usize> {
        self.workers.iter().position(|w| w.id() == id)
    }

    /// A frame arrived on `port` (copied into a frame buffer); returns the frames to
    /// transmit, by port.
    pub fn receive(&mut self, now: u64, port: PortId, bytes: &[u8]) -> Vec<(PortId, WireFrame)> {
        let mut out = Vec::new();
        match WireFrame::copy_from(bytes) {
            Some(frame) => self.receive_into(now, port, frame, &mut out),
            None if self.running => self.oversized_frames += 1,
            None => {}
        }
        out
    }

    /// A frame arrived on `port`: handed to the worker serving the port as it is (it is a
    /// pool buffer, as a port would have received it into). The frames to transmit are
    /// appended to `out`: a caller that keeps one list for every call allocates none per
    /// frame.
    pub fn receive_into(
        &mut self,
        now: u64,
        port: PortId,
        frame: WireFrame,
        out: &mut Vec<(PortId, WireFrame)>,
    ) {
        if !self.running {
            return;
        }
        let owner = self.control.plan().worker_of(port).and_then(|w| self.worker_index(w)).unwrap_or(0);
        if let Some(worker) = self.workers.get_mut(owner) {
            worker.handle_frame(Timestamp(now), port, frame.into_frame());
        }
        self.settle_into(now, out);
    }

    /// Timers: control-path ticks and downstream expiry.
    pub fn tick(&mut self, now: u64) -> Vec<(PortId, WireFrame)> {
        let mut out = Vec::new();
        self.tick_into(now, &mut out);
        out
    }

    /// [`SwitchNode::tick`], appending the frames to transmit to `out`.
    pub fn tick_into(&mut self, now: u64, out: &mut Vec<(PortId, WireFrame)>) {
        if !self.running {
            return;
        }
        for worker in &mut self.workers {
            worker.expire(Timestamp(now));
        }
        self.control.tick(Timestamp(now));
        self.settle_into(now, out);
    }

    /// Move messages and frames until nothing moves; returns what to transmit.
    pub fn settle(&mut self, now: u64) -> Vec<(PortId, WireFrame)> {
        let mut out = Vec::new();
        self.settle_into(now, &mut out);
        out
    }

    /// [`SwitchNode::settle`], appending the frames to transmit to `out`.
    pub fn settle_into(&mut self, now: u64, out: &mut Vec<(PortId, WireFrame)>) {
        let at = Timestamp(now);
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            for i in 0..self.workers.len() {
                let mut handoffs = std::mem::take(&mut self.handoffs);
                handoffs.extend(self.workers[i].take_handoffs());
                for (to, port, frame) in handoffs.drain(..) {
                    moved = true;
                    if let Some(j) = self.worker_index(to) {
                        self.workers[j].handle_frame(at, port, frame);
                    }
                }
                self.handoffs = handoffs;
                let id = self.workers[i].id();
                while let Some(message) = self.workers[i].poll_upcall() {
                    moved = true;
                    self.messages += 1;
                    self.control.handle_upcall(at, id, message);
                }
                for (port, tx) in self.workers[i].take_transmits() {
                    moved = true;
                    match WireFrame::from_transmitted(tx) {
                        Some(frame) => out.push((port, frame)),
                        None => self.oversized_frames += 1,
                    }
                }
            }
            while let Some((worker, message)) = self.control.poll_downcall() {
                moved = true;
                self.messages += 1;
                if let Some(j) = self.worker_index(worker) {
                    self.workers[j].handle_message(at, message);
                }
            }
            if !moved {
                break;
            }
        }
    }
}
