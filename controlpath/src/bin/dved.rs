//! `dved`: the DVE engine as a daemon. `dved --config PATH` runs the engine the file
//! describes until SIGINT or SIGTERM; `dved check PATH` checks a file and prints what it
//! would run. Exit codes: 0 done, 1 the engine failed to start or stop cleanly, 2 the
//! configuration (or the command line) is wrong.
//!
//! The ports are DPDK ethdevs (`backend = "dpdk"`, in a build with `--features
//! dve-controlpath/dpdk`), which hosts and disks reach over the wire, or software ports,
//! whose far ends stay inside the process: a standalone `dved` on software ports serves the
//! management API over an engine no host or disk can reach (in-process users, the system
//! tests, attach hosts and disks to the far ends).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
#[cfg(feature = "dpdk")]
use dve_controlpath::daemon::DpdkPortSet;
use dve_controlpath::daemon::{
    DaemonConfig, DaemonError, EngineRuntime, PortBackend, PortSet, ShutdownSignals, SoftwarePortSet,
};
use dve_fastpath::port::SoftwarePort;
use tokio::sync::broadcast::error::RecvError;

/// The DVE storage virtualization switch.
#[derive(Debug, Parser)]
#[command(name = "dved", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The configuration file to run (see controlpath/dved.example.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a configuration file and print what it would run; start nothing.
    Check {
        /// The configuration file.
        path: PathBuf,
    },
}

/// Exit code of a wrong configuration or command line (clap's too).
const BAD_CONFIG: u8 = 2;
/// Exit code of an engine that failed.
const FAILED: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = match (cli.command, cli.config) {
        (Some(Command::Check { path }), _) => return check(&path),
        (None, Some(path)) => path,
        (None, None) => {
            eprintln!("dved: give --config PATH to run the engine, or `dved check PATH` (see --help)");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    let config = match DaemonConfig::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dved: {e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    // The tokio runtime comes first, before DPDK's EAL starts (in `Ports::open`): the EAL
    // pins the thread that initialises it to its main lcore and takes the other configured
    // cores for its own threads, and threads created after it inherit that affinity. The
    // runtime's threads must be made before, on the cores the control path is meant to share.
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().thread_name("dved-cp").enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("dved: cannot start the tokio runtime: {e}");
                return ExitCode::from(FAILED);
            }
        };
    // Only now the ports, and with DPDK ones, EAL.
    let ports = match Ports::open(&config) {
        Ok(ports) => ports,
        Err(e) => {
            eprintln!("dved: {e}");
            return ExitCode::from(FAILED);
        }
    };
    let result = match ports {
        Ports::Software { mut set, far_ends } => {
            let result = runtime.block_on(run(&config, &mut set));
            drop(far_ends);
            result
        }
        #[cfg(feature = "dpdk")]
        Ports::Dpdk(mut set) => runtime.block_on(run(&config, &mut set)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dved: {e}");
            ExitCode::from(FAILED)
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match DaemonConfig::load(path) {
        Ok(config) => {
            print!("{}: ok\n{}", path.display(), config.describe());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dved: {e}");
            ExitCode::from(BAD_CONFIG)
        }
    }
}

/// The engine's ports, on the one backend the configuration names.
enum Ports {
    /// In-memory cables. The far ends are kept for the daemon's life: nothing outside the
    /// process reaches them, and frames the engine sends there wait until the cable is full,
    /// then are counted as dropped by the worker.
    Software { set: SoftwarePortSet, far_ends: Vec<SoftwarePort> },
    /// DPDK ethdevs, one transmit queue per worker.
    #[cfg(feature = "dpdk")]
    Dpdk(DpdkPortSet),
}

impl Ports {
    fn open(config: &DaemonConfig) -> Result<Ports, DaemonError> {
        if config.uses_dpdk() {
            #[cfg(feature = "dpdk")]
            return Ok(Ports::Dpdk(DpdkPortSet::open(config)?));
            // The configuration refuses DPDK ports in this build; one that got past it all
            // the same is refused here rather than run as something it is not.
            #[cfg(not(feature = "dpdk"))]
            return Err(DaemonError::Ports(
                "DPDK ports need a dved built with `--features dve-controlpath/dpdk`".into(),
            ));
        }
        if let Some(port) = config.ports.iter().find(|p| p.backend != PortBackend::Software) {
            return Err(DaemonError::Ports(format!("port `{}`: ports of two backends", port.name)));
        }
        let (set, far_ends) = SoftwarePortSet::new(config.ports.len());
        Ok(Ports::Software { set, far_ends })
    }
}

async fn run<P: PortSet>(config: &DaemonConfig, ports: &mut P) -> Result<(), DaemonError> {
    // Caught before the engine says it runs: a signal sent at once must not kill it.
    let signals = ShutdownSignals::listen()?;
    let engine = EngineRuntime::start(config, ports).await?;
    let backend = if config.uses_dpdk() { "DPDK" } else { "software" };
    eprintln!(
        "dved: engine in FC domain {} running: {} worker(s), {} {backend} port(s), metadata {}, management API on {}",
        config.domain,
        config.workers,
        config.ports.len(),
        engine.metadata_path().display(),
        engine.management_address()
    );
    let mut events = engine.events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => eprintln!("dved: {event:?}"),
                Err(RecvError::Lagged(missed)) => {
                    eprintln!("dved: {missed} events not shown (too many at once)")
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    let result = engine.run_until_signal(signals).await;
    if result.is_ok() {
        eprintln!("dved: stopped; metadata closed");
    }
    result
}
