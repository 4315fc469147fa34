//! A zero-latency fabric for control-path scenarios that need to send hosts' commands one by
//! one and look at the answers: one engine (the real workers and control path), real FCP
//! initiators and real disk targets, frames handed over at once, time advanced from timer
//! to timer.

use std::collections::VecDeque;

use dve_controlpath::store::{MemoryStore, MetadataStore};
use dve_controlpath::volume::LayoutSpec;
use dve_fp_api::ids::{LvId, PortId, Wwn};
use dve_sim::disk::{DiskConfig, DiskTarget};
use dve_sim::host::{Completion, HostOp, HostRequest, Initiator, InitiatorConfig, IoOutcome};
use dve_sim::switch::SwitchNode;

/// How often the engine's timers run.
const TICK_NS: u64 = 100_000;

/// Where a frame goes.
#[derive(Clone, Copy, Debug)]
enum Dest {
    Engine(u16),
    Host(usize),
    Disk(usize),
}

/// One engine with hosts on ports `0..hosts` and disks on the ports after.
#[derive(Debug)]
pub struct Bench {
    /// The engine.
    pub switch: SwitchNode,
    /// The hosts.
    pub hosts: Vec<Initiator>,
    /// The disks.
    pub disks: Vec<DiskTarget>,
    queue: VecDeque<(Dest, Vec<u8>)>,
    completions: Vec<(usize, Completion)>,
    /// Virtual time, ns.
    pub now: u64,
    next_tick: u64,
}

/// The WWPN of host `i`.
pub fn host_wwpn(i: usize) -> u64 {
    0x2100_0000_0000_0001 + i as u64
}

/// The WWPN of disk `i`.
pub fn disk_wwpn(i: usize) -> u64 {
    0x2200_0000_0000_0001 + i as u64
}

impl Bench {
    /// `hosts` hosts and one disk of `disk_blocks` per entry of `disks`, discovered by the
    /// engine (the hosts are not started: call [`Bench::start_hosts`] after exposing).
    pub fn new(hosts: usize, disks: &[u64]) -> Bench {
        Bench::build(hosts, disks, None)
    }

    /// As [`Bench::new`], with the control path committing to an in-memory metadata store
    /// from the start, so that the engine can be killed and restarted from what it committed
    /// ([`SwitchNode::kill`], [`SwitchNode::restart`]).
    pub fn with_store(hosts: usize, disks: &[u64]) -> Bench {
        Bench::build(hosts, disks, Some(Box::new(MemoryStore::new())))
    }

    /// [`Bench::new`] with the control path committing to `store`, which must be empty.
    pub fn with_metadata_store(hosts: usize, disks: &[u64], store: Box<dyn MetadataStore>) -> Bench {
        Bench::build(hosts, disks, Some(store))
    }

    fn build(hosts: usize, disks: &[u64], store: Option<Box<dyn MetadataStore>>) -> Bench {
        let ports = (hosts + disks.len()) as u16;
        let mut bench = Bench {
            switch: SwitchNode::new(1, ports, 2, 200_000_000, None),
            hosts: (0..hosts)
                .map(|i| {
                    let mac = [0x02, 0x10, 0, 0, 0, i as u8];
                    Initiator::new(InitiatorConfig::new(
                        format!("h{i}"),
                        host_wwpn(i),
                        host_wwpn(i) | 1 << 60,
                        mac,
                    ))
                })
                .collect(),
            disks: disks
                .iter()
                .enumerate()
                .map(|(i, blocks)| {
                    let mac = [0x02, 0x20, 0, 0, 0, i as u8];
                    DiskTarget::new(DiskConfig::new(
                        format!("d{i}"),
                        disk_wwpn(i),
                        disk_wwpn(i) | 1 << 60,
                        mac,
                        *blocks,
                    ))
                })
                .collect(),
            queue: VecDeque::new(),
            completions: Vec::new(),
            now: 1,
            next_tick: 0,
        };
        if let Some(store) = store {
            bench.switch.control_mut().attach_store(store).expect("an empty store attaches");
        }
        bench.log_disks_in();
        bench
    }

    /// Start every disk's login and wait until the engine has them all online.
    fn log_disks_in(&mut self) {
        for d in 0..self.disks.len() {
            let frames = self.disks[d].start(self.now);
            self.queue_from_node(Dest::Disk(d), frames);
        }
        let n = self.disks.len();
        self.run_until(1_000_000_000, |b| {
            (0..n).all(|d| {
                let control = b.switch.control();
                control
                    .device_of(Wwn(disk_wwpn(d)))
                    .is_ok_and(|id| control.devices().get(id).is_some_and(|dev| dev.online))
            })
        });
    }

    /// Kill the engine and restart it from what it committed (the bench must have a store),
    /// then log the disks in again (the hosts are not restarted).
    pub fn restart_engine(&mut self) {
        let committed = self.switch.kill().expect("the engine has a metadata store");
        self.switch.restart(committed).expect("the engine restarts from its store");
        self.log_disks_in();
    }

    fn port_of(&self, dest: Dest) -> u16 {
        match dest {
            Dest::Host(h) => h as u16,
            Dest::Disk(d) => (self.hosts.len() + d) as u16,
            Dest::Engine(p) => p,
        }
    }

    fn queue_from_node(&mut self, node: Dest, frames: Vec<Vec<u8>>) {
        let port = self.port_of(node);
        for f in frames {
            self.queue.push_back((Dest::Engine(port), f));
        }
    }

    fn queue_from_engine(&mut self, out: Vec<(PortId, Vec<u8>)>) {
        let hosts = self.hosts.len();
        for (port, frame) in out {
            let p = usize::from(port.0);
            let dest = if p < hosts { Dest::Host(p) } else { Dest::Disk(p - hosts) };
            self.queue.push_back((dest, frame));
        }
    }

    /// Deliver every frame in flight (at the current instant).
    fn settle(&mut self) {
        while let Some((dest, frame)) = self.queue.pop_front() {
            match dest {
                Dest::Engine(port) => {
                    let out = self.switch.receive(self.now, PortId(port), &frame);
                    self.queue_from_engine(out);
                }
                Dest::Host(h) => {
                    let out = self.hosts[h].receive(self.now, &frame);
                    self.queue_from_node(dest, out);
                    while let Some(c) = self.hosts[h].poll_completion() {
                        self.completions.push((h, c));
                    }
                }
                Dest::Disk(d) => {
                    let out = self.disks[d].receive(self.now, &frame);
                    self.queue_from_node(dest, out);
                }
            }
        }
    }

    /// Run until `done` holds or `limit_ns` of virtual time passed; returns whether it held.
    pub fn run_until(&mut self, limit_ns: u64, mut done: impl FnMut(&Bench) -> bool) -> bool {
        let deadline = self.now + limit_ns;
        loop {
            self.settle();
            if done(self) {
                return true;
            }
            let timers = self
                .hosts
                .iter()
                .filter_map(Initiator::next_timer)
                .chain(self.disks.iter().filter_map(DiskTarget::next_timer))
                .chain(std::iter::once(self.next_tick));
            let next = timers.min().unwrap_or(deadline).max(self.now);
            if next > deadline {
                return false;
            }
            self.now = next;
            if self.now >= self.next_tick {
                self.next_tick = self.now + TICK_NS;
                let out = self.switch.tick(self.now);
                self.queue_from_engine(out);
            }
            for h in 0..self.hosts.len() {
                if self.hosts[h].next_timer().is_some_and(|t| t <= self.now) {
                    let out = self.hosts[h].on_timer(self.now);
                    self.queue_from_node(Dest::Host(h), out);
                    while let Some(c) = self.hosts[h].poll_completion() {
                        self.completions.push((h, c));
                    }
                }
            }
            for d in 0..self.disks.len() {
                if self.disks[d].next_timer().is_some_and(|t| t <= self.now) {
                    let out = self.disks[d].on_timer(self.now);
                    self.queue_from_node(Dest::Disk(d), out);
                }
            }
        }
    }

    /// Create a volume of `blocks` blocks with `layout` over the disks numbered in
    /// `disks` (the layout's devices are replaced by theirs, in order).
    pub fn volume(
        &mut self,
        name: &str,
        blocks: u64,
        layout: impl FnOnce(Vec<dve_fp_api::ids::DeviceId>) -> LayoutSpec,
        disks: &[usize],
    ) -> LvId {
        let control = self.switch.control_mut();
        let devices =
            disks.iter().map(|d| control.device_of(Wwn(disk_wwpn(*d))).expect("disk discovered")).collect();
        let lv = control.create_volume(name, blocks, layout(devices)).expect("volume created");
        let out = self.switch.settle(self.now);
        self.queue_from_engine(out);
        lv
    }

    /// A journaled volume `j` of `blocks` blocks on disk 0, journaled in `journal_blocks` on
    /// disk 1, exposed to host 0 with every host started; returns it and its LUN.
    pub fn journaled_volume(&mut self, blocks: u64, journal_blocks: u64) -> (LvId, u16) {
        let lv = self.volume(
            "j",
            blocks,
            |d| LayoutSpec::Journal { primary: d[0], journal: d[1], journal_blocks },
            &[0, 1],
        );
        let lun = self.expose(lv, &[0]);
        self.start_hosts();
        (lv, lun)
    }

    /// Expose `lv` to hosts `hosts`; returns its LUN.
    pub fn expose(&mut self, lv: LvId, hosts: &[usize]) -> u16 {
        let wwpns: Vec<Wwn> = hosts.iter().map(|h| Wwn(host_wwpn(*h))).collect();
        let lun = self.switch.control_mut().expose(lv, &wwpns).expect("exposed");
        let out = self.switch.settle(self.now);
        self.queue_from_engine(out);
        lun
    }

    /// Run `f` on the control path, then let the engine send what it produced.
    pub fn control<R>(&mut self, f: impl FnOnce(&mut dve_controlpath::ControlPath) -> R) -> R {
        let result = f(self.switch.control_mut());
        let out = self.switch.settle(self.now);
        self.queue_from_engine(out);
        result
    }

    /// Withdraw LUN `lun` from every host; returns the volume behind it.
    pub fn hide(&mut self, lun: u16) -> LvId {
        let lv = self.switch.control_mut().hide(lun).expect("hidden");
        let out = self.switch.settle(self.now);
        self.queue_from_engine(out);
        lv
    }

    /// Start every host and wait until each finished discovery.
    pub fn start_hosts(&mut self) {
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        self.start(&all);
    }

    /// Start hosts `hosts` and wait until they finished discovery.
    pub fn start(&mut self, hosts: &[usize]) {
        for &h in hosts {
            let frames = self.hosts[h].start(self.now);
            self.queue_from_node(Dest::Host(h), frames);
        }
        let ready = self.run_until(2_000_000_000, |b| hosts.iter().all(|&h| b.hosts[h].is_ready()));
        assert!(ready, "hosts finished discovery");
    }

    /// Let the engine's timers run for `ns` of virtual time.
    pub fn idle(&mut self, ns: u64) {
        let until = self.now + ns;
        self.run_until(ns, |b| b.now >= until);
    }

    /// The engine's virtual target port name.
    pub fn target(&self) -> u64 {
        self.switch.control().exposure().port_name.0
    }

    /// Run one request of host `h` to completion.
    pub fn request(&mut self, h: usize, lun: u16, op: HostOp) -> Result<IoOutcome, String> {
        let target = self.target();
        let (id, frames) = self.hosts[h]
            .submit(self.now, HostRequest { target, lun, op })
            .map_err(|e| format!("not submitted: {e}"))?;
        self.queue_from_node(Dest::Host(h), frames);
        let finished =
            self.run_until(10_000_000_000, |b| b.completions.iter().any(|(x, c)| *x == h && c.id == id));
        assert!(finished, "request completed");
        let at = self.completions.iter().position(|(x, c)| *x == h && c.id == id).expect("completion");
        let (_, completion) = self.completions.remove(at);
        completion.result.map_err(|e| format!("failed: {e}"))
    }

    /// A SCSI command with its CDB.
    pub fn command(
        &mut self,
        h: usize,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        data_in_len: u32,
    ) -> IoOutcome {
        let op = HostOp::Command { cdb: cdb.to_vec(), data_out: data_out.to_vec(), data_in_len };
        self.request(h, lun, op).unwrap_or_else(|e| panic!("{e}"))
    }
}
