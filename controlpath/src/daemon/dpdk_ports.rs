//! The DPDK backend of [`PortSet`]: every configured ethdev opened with one transmit queue
//! per worker, so no two worker threads ever share a queue (DPDK's one rule for its burst
//! calls), and one receive queue whose handle goes to the worker the address plan makes the
//! port's server. EAL starts here, from the configuration's `[dpdk] eal_args`.

use std::time::Duration;

use dve_fastpath::port::{DpdkPort, DpdkPortConfig, Eal};
use dve_fp_api::frame::FramePool;
use dve_fp_api::ids::WorkerId;

use super::DaemonError;
use super::config::{DaemonConfig, DpdkSettings, PortBackend};
use super::ports::PortSet;
use crate::address::AddressPlan;

/// Frame buffers each port's pool keeps for received frames.
const RECEIVE_POOL_FRAMES: usize = 4096;

/// The engine's DPDK ports: each worker's handles, made at opening and handed out once.
#[derive(Debug)]
pub struct DpdkPortSet {
    /// Per port, per worker, the handle not yet handed out.
    handles: Vec<Vec<Option<DpdkPort>>>,
    idle_pause: Option<Duration>,
}

impl DpdkPortSet {
    /// Start EAL with the configuration's arguments ([`start_eal`]), then open its ports
    /// ([`DpdkPortSet::open_with`]).
    ///
    /// `rte_eal_init` pins the thread that calls it to the main lcore, and every thread that
    /// thread creates afterwards inherits the pinning. It runs here on a thread of its own,
    /// which ends: the caller's thread, and the worker threads the engine creates from it,
    /// stay on every CPU. Threads made earlier (the tokio runtime's) are untouched anyway.
    pub fn open(config: &DaemonConfig) -> Result<DpdkPortSet, DaemonError> {
        let eal = start_eal(&config.dpdk)?;
        DpdkPortSet::open_with(&eal, config)
    }

    /// Open every port of `config` (all DPDK ports) on a running EAL: port p with one
    /// transmit queue per worker, the receiving handle for the worker serving p.
    pub fn open_with(eal: &Eal, config: &DaemonConfig) -> Result<DpdkPortSet, DaemonError> {
        let plan = AddressPlan::new(config.domain, config.ports.len() as u16, config.workers);
        let mut handles = Vec::with_capacity(config.ports.len());
        for (spec, port) in config.ports.iter().zip(plan.ports()) {
            let PortBackend::Dpdk { device } = &spec.backend else {
                return Err(DaemonError::Ports(format!(
                    "port `{}` is a {} port: the DPDK backend opens only DPDK ports",
                    spec.name,
                    spec.backend.kind()
                )));
            };
            let port_config = DpdkPortConfig::new(port.id, FramePool::new(RECEIVE_POOL_FRAMES, 0));
            let opened = DpdkPort::open_queues(
                eal,
                device.as_str(),
                port_config,
                u16::from(config.workers),
                u16::from(port.worker.0),
            )
            .map_err(|e| DaemonError::Ports(format!("port `{}`: {e}", spec.name)))?;
            handles.push(opened.into_iter().map(Some).collect());
        }
        Ok(DpdkPortSet { handles, idle_pause: config.dpdk.idle_pause })
    }
}

/// Start EAL with `settings`' arguments on a thread of its own (see [`DpdkPortSet::open`]),
/// or get the running one if it was started with the same arguments.
pub fn start_eal(settings: &DpdkSettings) -> Result<Eal, DaemonError> {
    let args = settings.eal_argv();
    let eal = std::thread::Builder::new()
        .name("dved-eal-init".into())
        .spawn(move || Eal::init(&args))
        .map_err(|source| DaemonError::Os { what: "starting the EAL's thread".into(), source })?
        .join()
        .map_err(|_| DaemonError::Ports("EAL initialisation panicked".into()))??;
    Ok(eal)
}

impl PortSet for DpdkPortSet {
    type Port = DpdkPort;

    fn port_count(&self) -> usize {
        self.handles.len()
    }

    /// `worker`'s handle on every port; each can be taken once (the devices cannot be opened
    /// again in the process once their handles are dropped, so an engine restart needs a new
    /// process).
    fn handles_for(&mut self, worker: WorkerId) -> Result<Vec<DpdkPort>, DaemonError> {
        let mut taken = Vec::with_capacity(self.handles.len());
        for (p, per_worker) in self.handles.iter_mut().enumerate() {
            let handle = per_worker.get_mut(usize::from(worker.0)).and_then(Option::take).ok_or_else(|| {
                DaemonError::Ports(format!(
                    "worker {}'s handle on DPDK port {p} is handed out already, or there is no such worker",
                    worker.0
                ))
            })?;
            taken.push(handle);
        }
        Ok(taken)
    }

    fn idle_pause(&self) -> Option<Duration> {
        self.idle_pause
    }
}
