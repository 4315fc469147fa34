//! [`EngineRuntime`]: one engine running in real time. It loads the control path from its
//! redb store (a new file is an empty engine; an existing one is the engine it left, as
//! `persist` reloads it and the simulator restarts an engine), makes one FP API channel per
//! worker, starts one OS thread per worker, the control-path task and the management gRPC
//! server on the caller's tokio runtime, and stops them all in order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use dve_fastpath::worker::run::WorkerMesh;
use dve_fastpath::{PortConfig, Worker, WorkerConfig};
use dve_fp_api::ids::{PortId, WorkerId};
use dve_fp_api::stats::FpStatistics;
use dve_fp_api::transport::fp_channel;
use tokio::sync::{broadcast, watch};
use tonic::transport::server::TcpIncoming;

use super::DaemonError;
use super::access::ControlAccess;
use super::affinity;
use super::clock::EngineClock;
use super::config::DaemonConfig;
use super::control::{Engine, SharedEngine, run_control, upcalls};
use super::ports::PortSet;
use super::worker::{StatisticsBoard, WorkerLoop};
use crate::management::ManagementService;
use crate::store::RedbStore;
use crate::{ControlEvent, ControlPath};

/// Messages each direction of a worker's FP API ring holds: room for the grants a restart
/// pushes to every worker at once for a few hundred volumes (more wait in order).
pub const FP_RING_MESSAGES: usize = 4096;

/// Frames each worker's inbox of handed-over frames holds.
pub const MESH_FRAMES: usize = 1024;

/// Control events kept for a subscriber that falls behind.
const EVENT_BACKLOG: usize = 1024;

/// How long the management server may take to finish its calls in progress at shutdown
/// (an open `WatchTask` stream would otherwise hold it).
const SERVER_GRACE: Duration = Duration::from_secs(5);

/// A running engine.
#[derive(Debug)]
pub struct EngineRuntime {
    shared: SharedEngine,
    board: Arc<StatisticsBoard>,
    clock: EngineClock,
    events: broadcast::Sender<ControlEvent>,
    management: SocketAddr,
    metadata: PathBuf,
    stop: watch::Sender<bool>,
    stop_workers: Arc<AtomicBool>,
    workers: Vec<(WorkerId, JoinHandle<()>)>,
    control_task: Option<tokio::task::JoinHandle<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl EngineRuntime {
    /// Start the engine `config` describes on `ports`, on the current tokio runtime (the
    /// control-path task and the management server run there; the workers get threads of
    /// their own). Nothing is left running if it fails.
    pub async fn start<P: PortSet>(
        config: &DaemonConfig,
        ports: &mut P,
    ) -> Result<EngineRuntime, DaemonError> {
        if ports.port_count() != config.ports.len() {
            return Err(DaemonError::Ports(format!(
                "the configuration has {} ports, {} were given",
                config.ports.len(),
                ports.port_count()
            )));
        }
        let refused = affinity::refused_cpu(&config.cpus)
            .map_err(|e| DaemonError::Cpus(format!("the CPUs this process may run on: {e}")))?;
        if let Some(why) = refused {
            return Err(DaemonError::Cpus(why));
        }
        let metadata = config.metadata.clone();
        let store = RedbStore::open(&metadata).map_err(|e| DaemonError::Store {
            path: metadata.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut control = ControlPath::new(config.control_path_config());
        control.attach_store(Box::new(store)).map_err(DaemonError::Load)?;

        let plan = control.plan().clone();
        let port_configs: Vec<PortConfig> = plan
            .ports()
            .iter()
            .map(|p| PortConfig { id: p.id, mac: p.mac, initiator_fc_id: p.initiator_fc_id })
            .collect();
        let worker_ids = plan.workers();
        let downstream_timeout_ns = u64::try_from(config.downstream_timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut loops = Vec::with_capacity(worker_ids.len());
        let mut endpoints = Vec::with_capacity(worker_ids.len());
        let mesh = WorkerMesh::new(worker_ids.len(), MESH_FRAMES);
        let board = Arc::new(StatisticsBoard::new(worker_ids.len()));
        let clock = EngineClock::start();
        let stop_workers = Arc::new(AtomicBool::new(false));
        for &id in &worker_ids {
            let (fp, cp) = fp_channel(FP_RING_MESSAGES);
            endpoints.push(Arc::new(cp));
            let mut worker_config = WorkerConfig::new(id, port_configs.clone());
            worker_config.downstream_timeout_ns = downstream_timeout_ns;
            let receive_from: Vec<PortId> =
                plan.ports().iter().filter(|p| p.worker == id).map(|p| p.id).collect();
            loops.push(WorkerLoop {
                worker: Worker::new(worker_config),
                ports: ports.handles_for(id)?,
                receive_from,
                mesh: mesh.clone(),
                fp,
                clock,
                stop: Arc::clone(&stop_workers),
                board: Arc::clone(&board),
                idle_pause: ports.idle_pause(),
            });
        }

        // Listen before any thread starts: an address in use is a clean refusal.
        let incoming = TcpIncoming::bind(config.listen)
            .map_err(|e| DaemonError::Listen { address: config.listen, reason: e.to_string() })?;
        let management = incoming
            .local_addr()
            .map_err(|e| DaemonError::Listen { address: config.listen, reason: e.to_string() })?;

        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let upcall_stream = upcalls(&endpoints);
        let shared = SharedEngine::new(Engine::new(control, endpoints, events.clone()));
        let (stop, stop_seen) = watch::channel(false);

        // Each pinned worker says whether it got its CPU before it polls.
        let (pinned_tx, pinned_rx) = std::sync::mpsc::channel::<(WorkerId, usize, nix::Result<()>)>();
        let mut workers = Vec::with_capacity(loops.len());
        for worker_loop in loops {
            let id = worker_loop.worker.id();
            let cpu = config.cpus.get(usize::from(id.0)).copied();
            let pinned = pinned_tx.clone();
            let spawned = std::thread::Builder::new().name(format!("dve-worker-{}", id.0)).spawn(move || {
                if let Some(cpu) = cpu {
                    let result = affinity::pin_current_thread(cpu);
                    let failed = result.is_err();
                    let _ = pinned.send((id, cpu, result));
                    if failed {
                        return;
                    }
                }
                worker_loop.run();
            });
            match spawned {
                Ok(handle) => workers.push((id, handle)),
                Err(source) => {
                    stop_workers.store(true, Ordering::Release);
                    for (_, handle) in workers {
                        let _ = handle.join();
                    }
                    return Err(DaemonError::Os {
                        what: format!("starting worker {}'s thread", id.0),
                        source,
                    });
                }
            }
        }
        drop(pinned_tx);
        for _ in 0..config.cpus.len() {
            let Ok((id, cpu, Err(e))) = pinned_rx.recv() else { continue };
            stop_workers.store(true, Ordering::Release);
            for (_, handle) in workers {
                let _ = handle.join();
            }
            return Err(DaemonError::Cpus(format!("worker {} could not be pinned to CPU {cpu}: {e}", id.0)));
        }

        let control_task = tokio::spawn(run_control(
            shared.clone(),
            upcall_stream,
            clock,
            config.tick_interval,
            stop_seen.clone(),
        ));
        let service =
            ManagementService::new(ControlAccess::new(shared.clone(), Arc::clone(&board))).into_server();
        let mut server_stop = stop_seen;
        let server = tokio::spawn(
            tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(
                incoming,
                async move {
                    let _ = server_stop.wait_for(|stopped| *stopped).await;
                },
            ),
        );
        Ok(EngineRuntime {
            shared,
            board,
            clock,
            events,
            management,
            metadata,
            stop,
            stop_workers,
            workers,
            control_task: Some(control_task),
            server: Some(server),
        })
    }

    /// Where the management API listens (the port chosen, if the configuration said 0).
    pub fn management_address(&self) -> SocketAddr {
        self.management
    }

    /// The redb file the engine keeps its metadata in.
    pub fn metadata_path(&self) -> &std::path::Path {
        &self.metadata
    }

    /// Events of the control path from now on (a subscriber that falls more than 1024
    /// behind loses the oldest).
    pub fn events(&self) -> broadcast::Receiver<ControlEvent> {
        self.events.subscribe()
    }

    /// The engine as the management service reaches it, for users inside the process.
    pub fn access(&self) -> ControlAccess {
        ControlAccess::new(self.shared.clone(), Arc::clone(&self.board))
    }

    /// What the workers last published.
    pub fn worker_statistics(&self) -> Vec<FpStatistics> {
        self.board.snapshot()
    }

    /// The engine's clock.
    pub fn clock(&self) -> EngineClock {
        self.clock
    }

    /// Run until SIGINT or SIGTERM arrives on `signals` (or until the management server or
    /// the control-path task ends on its own, which is an error), then shut down.
    pub async fn run_until_signal(mut self, mut signals: ShutdownSignals) -> Result<(), DaemonError> {
        let ended = {
            let (Some(server), Some(control)) = (self.server.as_mut(), self.control_task.as_mut()) else {
                return self.shutdown().await;
            };
            tokio::select! {
                () = signals.recv() => None,
                served = server => {
                    self.server = None;
                    Some(match served {
                        Ok(Ok(())) => DaemonError::Serve("the server stopped on its own".into()),
                        Ok(Err(e)) => DaemonError::Serve(e.to_string()),
                        Err(e) => DaemonError::Serve(e.to_string()),
                    })
                }
                joined = control => {
                    self.control_task = None;
                    Some(DaemonError::ControlTask(match joined {
                        Ok(()) => "it returned".into(),
                        Err(e) => e.to_string(),
                    }))
                }
            }
        };
        let stopped = self.shutdown().await;
        match ended {
            Some(error) => Err(error),
            None => stopped,
        }
    }

    /// Stop the engine: the management server (calls in progress may finish), the
    /// control-path task, then the workers; then close the metadata store. Every commit was
    /// durable when it returned (redb, immediate durability), so closing the file loses
    /// nothing, and the file can be opened again at once by a new engine. Returns the first
    /// thing that went wrong, after stopping everything.
    pub async fn shutdown(mut self) -> Result<(), DaemonError> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        if let Some(server) = self.server.take() {
            match tokio::time::timeout(SERVER_GRACE, server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => first_error = first_error.or(Some(DaemonError::Serve(e.to_string()))),
                Ok(Err(e)) => first_error = first_error.or(Some(DaemonError::Serve(e.to_string()))),
                // Dropping the handle detaches the server; its listener is already closed.
                Err(_) => {}
            }
        }
        if let Some(task) = self.control_task.take()
            && let Err(e) = task.await
        {
            first_error = first_error.or(Some(DaemonError::ControlTask(e.to_string())));
        }
        self.stop_workers.store(true, Ordering::Release);
        let workers = std::mem::take(&mut self.workers);
        // Joining waits for a worker's current poll, microseconds; off the async threads all
        // the same.
        let joined = tokio::task::spawn_blocking(move || {
            workers.into_iter().filter_map(|(id, handle)| handle.join().err().map(|_| id)).collect::<Vec<_>>()
        })
        .await;
        match joined {
            Ok(panicked) => {
                if let Some(id) = panicked.first() {
                    first_error = first_error.or(Some(DaemonError::WorkerPanicked(*id)));
                }
            }
            Err(e) => first_error = first_error.or(Some(DaemonError::ControlTask(e.to_string()))),
        }
        let store = self.shared.lock().control.take_store();
        drop(store);
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// An engine dropped without [`EngineRuntime::shutdown`] (a test that failed half-way) still
/// stops: its workers leave their loops and its tasks end at their next step. Nothing is
/// joined, so the store closes when the last task lets go of the engine.
impl Drop for EngineRuntime {
    fn drop(&mut self) {
        self.stop_workers.store(true, Ordering::Release);
        let _ = self.stop.send(true);
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment [`ShutdownSignals::listen`] returns:
/// made before the daemon says it runs, so a signal sent as soon as it does stops it cleanly
/// instead of killing it.
#[derive(Debug)]
pub struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Catch both signals from now on (inside the tokio runtime).
    pub fn listen() -> Result<ShutdownSignals, DaemonError> {
        use tokio::signal::unix::{SignalKind, signal};
        let os = |what: &'static str| {
            move |source| DaemonError::Os { what: format!("listening for {what}"), source }
        };
        Ok(ShutdownSignals {
            terminate: signal(SignalKind::terminate()).map_err(os("SIGTERM"))?,
            interrupt: signal(SignalKind::interrupt()).map_err(os("SIGINT"))?,
        })
    }

    /// The next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
