//! A DVE engine in the simulator: the real fast-path workers and the real control path of one
//! engine, wired together in-process. Frames that arrive on a port go to the worker serving
//! it; FP API messages, hand-offs between workers and transmitted frames are moved until
//! nothing is left to do, so one call settles everything a frame caused at that instant.

use dve_controlpath::control_path::{ControlPath, ControlPathConfig};
use dve_controlpath::store::MetadataStore;
use dve_fastpath::{PortConfig, Worker, WorkerConfig};
use dve_fp_api::frame::{Frame, FrameMut};
use dve_fp_api::ids::{PortId, Timestamp, WorkerId};
use dve_fp_api::stats::FpStatistics;

use crate::engine::frame_buffer;

/// One engine: workers plus control path.
#[derive(Debug)]
pub struct SwitchNode {
    workers: Vec<Worker>,
    control: ControlPath,
    /// Frames dropped because they could not be copied into a frame buffer (too long).
    pub oversized_frames: u64,
    /// FP API messages moved between workers and the control path.
    pub messages: u64,
    /// Whether the engine is running (a killed engine drops everything).
    pub running: bool,
    /// Hand-offs between workers being moved (kept to reuse its storage).
    handoffs: Vec<(WorkerId, PortId, Frame)>,
    /// Buffers of frames just transmitted (copied out to the links), most recent last, to
    /// receive the next frames in. They are warm in cache; a worker's pool hands out the
    /// buffer freed longest ago (it is a FIFO), whose lines have long left the cache.
    warm_buffers: Vec<FrameMut>,
    /// Bit `i`: worker `i` was handed something (a frame, a message, a timer) since its
    /// outputs were last drained. A worker produces output only when handed something, so
    /// settling skips the others: their hand-offs, upcalls and transmits are empty. (Exchange
    /// ids allow 15 workers; any beyond 64 would simply never be skipped.)
    dirty: u64,
}

/// Transmitted frame buffers kept for receiving at most.
const WARM_BUFFERS: usize = 64;

/// Worker `index`'s bit in [`SwitchNode::dirty`]; none past 64.
fn worker_bit(index: usize) -> u64 {
    u32::try_from(index).ok().and_then(|i| 1u64.checked_shl(i)).unwrap_or(0)
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
        SwitchNode {
            workers,
            control,
            oversized_frames: 0,
            messages: 0,
            running: true,
            handoffs: Vec::new(),
            warm_buffers: Vec::new(),
            dirty: u64::MAX,
        }
    }

    /// Notes that worker `index` was handed something.
    fn touch(&mut self, index: usize) {
        self.dirty |= worker_bit(index);
    }

    /// Stop the engine as a power loss would: every worker's and the control path's state is
    /// gone; only what the control path committed to its metadata store survives, returned
    /// here for [`SwitchNode::restart`].
    pub fn kill(&mut self) -> Option<Box<dyn MetadataStore>> {
        self.running = false;
        self.handoffs.clear();
        self.warm_buffers.clear();
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

    /// A frame arrived on `port`; returns the frames to transmit, by port.
    pub fn receive(&mut self, now: u64, port: PortId, bytes: &[u8]) -> Vec<(PortId, Vec<u8>)> {
        let mut out = Vec::new();
        self.receive_into(now, port, bytes, &mut out);
        out
    }

    /// [`SwitchNode::receive`], appending the frames to transmit to `out`: a caller that
    /// keeps one list for every call allocates none per frame.
    pub fn receive_into(&mut self, now: u64, port: PortId, bytes: &[u8], out: &mut Vec<(PortId, Vec<u8>)>) {
        if !self.running {
            return;
        }
        let owner = self.control.plan().worker_of(port).and_then(|w| self.worker_index(w)).unwrap_or(0);
        // Received into a pool buffer, as a port would: one just transmitted if there is
        // one (its storage returns to its own pool when the frame is done with), else one of
        // the owning worker's pool.
        let warm = match self.warm_buffers.pop() {
            Some(mut buffer) => {
                if buffer.set_len(bytes.len()) {
                    Some(buffer)
                } else {
                    self.warm_buffers.push(buffer);
                    None
                }
            }
            None => None,
        };
        let frame = match (warm, self.workers.get(owner)) {
            (Some(buffer), _) => Some(buffer),
            (None, Some(worker)) => worker.pool().alloc(bytes.len()),
            (None, None) => FrameMut::from_slice(bytes),
        }
        .map(|mut buffer| {
            buffer.as_mut_slice().copy_from_slice(bytes);
            buffer.freeze()
        });
        let Some(frame) = frame else {
            self.oversized_frames += 1;
            return;
        };
        if let Some(worker) = self.workers.get_mut(owner) {
            worker.handle_frame(Timestamp(now), port, frame);
            self.touch(owner);
        }
        self.settle_into(now, out);
    }

    /// Timers: control-path ticks and downstream expiry.
    pub fn tick(&mut self, now: u64) -> Vec<(PortId, Vec<u8>)> {
        let mut out = Vec::new();
        self.tick_into(now, &mut out);
        out
    }

    /// [`SwitchNode::tick`], appending the frames to transmit to `out`.
    pub fn tick_into(&mut self, now: u64, out: &mut Vec<(PortId, Vec<u8>)>) {
        if !self.running {
            return;
        }
        for worker in &mut self.workers {
            worker.expire(Timestamp(now));
        }
        self.dirty = u64::MAX;
        self.control.tick(Timestamp(now));
        self.settle_into(now, out);
    }

    /// Move messages and frames until nothing moves; returns what to transmit.
    pub fn settle(&mut self, now: u64) -> Vec<(PortId, Vec<u8>)> {
        let mut out = Vec::new();
        self.settle_into(now, &mut out);
        out
    }

    /// [`SwitchNode::settle`], appending the frames to transmit to `out`.
    pub fn settle_into(&mut self, now: u64, out: &mut Vec<(PortId, Vec<u8>)>) {
        let at = Timestamp(now);
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            for i in 0..self.workers.len() {
                // In the same order as visiting every worker: a worker skipped here has
                // nothing to hand over. The bit is cleared before the worker is drained, so
                // anything handed to it meanwhile (a hand-off to itself) brings it back next
                // round.
                let bit = worker_bit(i);
                if bit != 0 && self.dirty & bit == 0 {
                    continue;
                }
                self.dirty &= !bit;
                let mut handoffs = std::mem::take(&mut self.handoffs);
                handoffs.extend(self.workers[i].take_handoffs());
                for (to, port, frame) in handoffs.drain(..) {
                    moved = true;
                    if let Some(j) = self.worker_index(to) {
                        self.workers[j].handle_frame(at, port, frame);
                        self.touch(j);
                    }
                }
                self.handoffs = handoffs;
                let id = self.workers[i].id();
                while let Some(message) = self.workers[i].poll_upcall() {
                    moved = true;
                    self.messages += 1;
                    self.control.handle_upcall(at, id, message);
                }
                if !self.workers[i].has_transmits() {
                    continue;
                }
                for (port, tx) in self.workers[i].take_transmits() {
                    moved = true;
                    let mut bytes = frame_buffer(tx.len());
                    tx.write_to(&mut bytes);
                    out.push((port, bytes));
                    if self.warm_buffers.len() < WARM_BUFFERS
                        && let Ok(buffer) = tx.head.try_into_mut()
                    {
                        self.warm_buffers.push(buffer);
                    }
                }
            }
            while let Some((worker, message)) = self.control.poll_downcall() {
                moved = true;
                self.messages += 1;
                if let Some(j) = self.worker_index(worker) {
                    self.workers[j].handle_message(at, message);
                    self.touch(j);
                }
            }
            if !moved {
                break;
            }
        }
    }
}
