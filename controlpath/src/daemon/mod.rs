//! The `dved` daemon: one engine run in real time. The control path and the fast-path
//! workers are sans-I/O cores; this module is the runtime that wires them to threads, rings,
//! ports, the clock and the management API.
//!
//! - [`config`]: the TOML configuration file, checked before anything starts.
//! - [`ports`]: how the workers get their port handles ([`ports::PortSet`]), and the
//!   software backend whose far ends stay inside the process.
//! - `dpdk_ports` (feature `dpdk`): the DPDK backend, one transmit queue per worker on
//!   every ethdev, EAL started from the configuration's `[dpdk]` arguments.
//! - [`clock`]: the engine's nanosecond clock, shared by the workers and the control path.
//! - [`worker`]: a worker's poll loop on its own OS thread, and the statistics it publishes.
//! - [`affinity`]: each worker's thread pinned to the CPU the configuration names.
//! - [`control`]: the control path under its lock, the downcall queues to the workers, and
//!   the tokio task that feeds it upcalls and ticks.
//! - [`access`]: the management service's way into the engine ([`EngineAccess`]).
//! - [`engine`]: [`engine::EngineRuntime`], which starts all of it from the metadata store
//!   and stops it.
//!
//! Thread model: one OS thread per worker polls its ports and its FP API ring and never
//! blocks; one tokio task runs the control path (upcalls from every worker, ticks, downcalls
//! in order to each worker); tonic serves the management API on the same tokio runtime and
//! reaches the control path under the same lock.
//!
//! [`EngineAccess`]: crate::management::EngineAccess

pub mod access;
pub mod affinity;
pub mod clock;
pub mod config;
pub mod control;
#[cfg(feature = "dpdk")]
pub mod dpdk_ports;
pub mod engine;
pub mod ports;
pub mod worker;

use std::net::SocketAddr;

use dve_fp_api::ids::WorkerId;

pub use config::{ConfigError, DaemonConfig, DpdkSettings, PortBackend, PortSpec};
#[cfg(feature = "dpdk")]
pub use dpdk_ports::DpdkPortSet;
pub use engine::{EngineRuntime, ShutdownSignals};
pub use ports::{PortSet, SoftwarePortSet};

/// Why the daemon could not start, or did not stop cleanly. Maps into the crate's
/// [`crate::Error`] like the store's errors do.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration file is wrong.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The metadata store could not be opened or closed.
    #[error("metadata store {path}: {reason}")]
    Store {
        /// The redb file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The control path refused what the store holds.
    #[error("loading the metadata: {0}")]
    Load(crate::Error),
    /// DPDK (EAL or a device) refused.
    #[cfg(feature = "dpdk")]
    #[error("DPDK: {0}")]
    Dpdk(#[from] dve_fastpath::port::DpdkError),
    /// The configuration's `cpus` cannot be used here.
    #[error("cpus: {0}")]
    Cpus(String),
    /// The ports given do not match the configuration.
    #[error("ports: {0}")]
    Ports(String),
    /// The management API could not listen.
    #[error("management API on {address}: {reason}")]
    Listen {
        /// The address asked for.
        address: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The management server stopped with an error.
    #[error("management API: {0}")]
    Serve(String),
    /// An OS thread or the tokio runtime could not be started.
    #[error("{what}: {source}")]
    Os {
        /// What was being started.
        what: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A worker thread panicked (a bug); the others were stopped.
    #[error("fast-path worker {} panicked", .0.0)]
    WorkerPanicked(WorkerId),
    /// The control-path task panicked or was cancelled (a bug).
    #[error("the control-path task ended abnormally: {0}")]
    ControlTask(String),
}

impl From<DaemonError> for crate::Error {
    fn from(e: DaemonError) -> crate::Error {
        match e {
            DaemonError::Load(inner) => inner,
            other => crate::Error::Daemon(other.to_string()),
        }
    }
}
