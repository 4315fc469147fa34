//! The `dve-sim` binary.
//!
//! ```text
//! dve-sim run [SCENARIO] [--seed N] [--duration-ms N] [--json PATH] [--html PATH]
//!             [--pcap PORT=PATH]... [--quiet]
//! dve-sim check [SCENARIO]
//! ```
//!
//! `run` with no scenario runs the built-in default (`sim/scenarios/default.toml`). While it
//! runs, a progress line is shown on stderr if stderr is a terminal; afterwards the summary is
//! printed on stdout (`--quiet` suppresses both). `check` only parses and validates.
//!
//! Exit status: 0 when the run is clean (or `check` passed), 1 when the oracle found a
//! violation, 2 for a bad scenario or bad usage (`error: FILE:LINE:COL: reason`), 3 when the run
//! itself failed (e.g. a report file could not be written), 4 when the run's set-up never
//! finished (disks not discovered, volumes not created, hosts not logged in: the report's
//! verdict is `incomplete` and says what).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use dve_sim::report::{OracleVerdict, PcapRequest, Report, RunOptions};
use dve_sim::scenario::Scenario;

/// Exit status: the oracle found a violation.
const EXIT_VIOLATION: u8 = 1;
/// Exit status: bad scenario or usage (clap uses 2 for usage errors too).
const EXIT_BAD_INPUT: u8 = 2;
/// Exit status: the run failed.
const EXIT_RUN_FAILED: u8 = 3;
/// Exit status: the run's set-up never finished, so what the scenario asks did not all run.
const EXIT_INCOMPLETE: u8 = 4;

/// The deterministic DVE fabric simulator.
#[derive(Debug, Parser)]
#[command(name = "dve-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and report (exit 1 if the integrity oracle finds a violation, 4 if the
    /// set-up never finished).
    Run(RunArgs),
    /// Parse and validate a scenario without running it.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The scenario file; the built-in default scenario when absent.
    scenario: Option<PathBuf>,
    /// Use this seed instead of the scenario's.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Run this many milliseconds of virtual time instead of the scenario's duration.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    duration_ms: Option<u64>,
    /// Write the full report as JSON.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write an HTML page with charts.
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
    /// Capture a port's frames into a pcap file; PORT is a host (`h1`, `h1:1` for its second
    /// path), a disk (`d2`) or an engine port (`dve1:3`). Repeatable.
    #[arg(long = "pcap", value_name = "PORT=PATH")]
    pcaps: Vec<PcapRequest>,
    /// No progress bar and no summary; only errors and the exit status.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The scenario file; the built-in default scenario when absent.
    scenario: Option<PathBuf>,
}

/// Runs the simulation proper.
fn run_world(scenario: &Scenario, options: &RunOptions) -> Result<Report, String> {
    dve_sim::world::run(scenario, options).map_err(|err| err.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => check(args),
    }
}

/// Loads the named scenario or the built-in default.
fn load(path: Option<&Path>) -> Result<Scenario, ExitCode> {
    let loaded = match path {
        Some(path) => Scenario::load(path),
        None => Scenario::default_scenario(),
    };
    loaded.map_err(|err| {
        eprintln!("error: {err}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

fn check(args: CheckArgs) -> ExitCode {
    let scenario = match load(args.scenario.as_deref()) {
        Ok(scenario) => scenario,
        Err(code) => return code,
    };
    println!(
        "{}: ok: scenario `{}`, seed {}, {} ms; {} engine(s), {} host(s), {} disk(s), {} volume(s), {} workload(s), {} event(s)",
        scenario.file,
        scenario.name,
        scenario.seed,
        scenario.duration_ms,
        scenario.engines.len(),
        scenario.hosts.len(),
        scenario.disks.len(),
        scenario.volumes.len(),
        scenario.workloads.len(),
        scenario.events.len()
    );
    ExitCode::SUCCESS
}

fn run(args: RunArgs) -> ExitCode {
    let scenario = match load(args.scenario.as_deref()) {
        Ok(scenario) => scenario,
        Err(code) => return code,
    };
    for request in &args.pcaps {
        if let Err(reason) = request.resolve(&scenario) {
            eprintln!("error: --pcap {}={}: {reason}", request.port, request.path.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    }
    let options = RunOptions {
        seed_override: args.seed,
        duration_override_ms: args.duration_ms,
        pcaps: args.pcaps.clone(),
        progress: !args.quiet && std::io::stderr().is_terminal(),
    };
    let scenario = options.effective_scenario(&scenario);

    let started = Instant::now();
    let report = match run_world(&scenario, &options) {
        Ok(report) => report,
        Err(reason) => {
            eprintln!("error: {reason}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    let wall = started.elapsed();

    let outputs = [
        (args.json.as_deref(), "JSON report", report.to_json()),
        (args.html.as_deref(), "HTML page", report.html()),
    ];
    for (path, what, contents) in outputs {
        if let Some(path) = path
            && let Err(err) = std::fs::write(path, contents)
        {
            eprintln!("error: cannot write the {what} to {}: {err}", path.display());
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    }
    if !args.quiet {
        print!("{}", report.summary_text(wall));
    }
    ExitCode::from(exit_status(&report))
}

/// The exit status a finished run's report calls for.
fn exit_status(report: &Report) -> u8 {
    match report.oracle {
        OracleVerdict::Clean { .. } => 0,
        OracleVerdict::Incomplete { .. } => EXIT_INCOMPLETE,
        OracleVerdict::Violations { .. } => EXIT_VIOLATION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_exit_status_follows_the_verdict() {
        let report = |oracle| Report {
            scenario: "s".into(),
            seed: 1,
            simulated_ns: 1,
            sample_interval_ns: 1,
            frames_simulated: 0,
            volumes: Vec::new(),
            engines: Vec::new(),
            links: Vec::new(),
            timeline: Vec::new(),
            replicas: Vec::new(),
            flows: Vec::new(),
            oracle,
        };
        let clean = OracleVerdict::Clean { reads_checked: 1, blocks_checked: 8 };
        let unfinished = vec!["engine dve1: set-up never finished".to_string()];
        let incomplete = OracleVerdict::Incomplete { reads_checked: 0, blocks_checked: 0, unfinished };
        let violated =
            OracleVerdict::Violations { reads_checked: 1, blocks_checked: 8, total: 1, first: Vec::new() };
        assert_eq!(exit_status(&report(clean)), 0);
        assert_eq!(exit_status(&report(incomplete)), EXIT_INCOMPLETE);
        assert_eq!(exit_status(&report(violated)), EXIT_VIOLATION);
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// The README's main command (`cargo run --release -p dve-sim -- run`) names no binary:
    /// with more than one in the package, cargo needs `default-run` to pick this one.
    #[test]
    fn cargo_run_picks_this_binary() {
        let manifest = include_str!("../Cargo.toml");
        assert!(
            manifest.lines().any(|line| line.trim() == "default-run = \"dve-sim\""),
            "sim/Cargo.toml must say default-run = \"dve-sim\""
        );
    }

    #[test]
    fn run_arguments_parse() {
        let cli = Cli::try_parse_from([
            "dve-sim",
            "run",
            "s.toml",
            "--seed",
            "9",
            "--duration-ms",
            "500",
            "--json",
            "r.json",
            "--html",
            "r.html",
            "--pcap",
            "h1=h1.pcap",
            "--pcap",
            "dve1:3=p3.pcap",
            "--quiet",
        ]);
        let Ok(Cli { command: Command::Run(args) }) = cli else { panic!("{cli:?}") };
        assert_eq!(args.scenario, Some(PathBuf::from("s.toml")));
        assert_eq!((args.seed, args.duration_ms), (Some(9), Some(500)));
        assert_eq!(args.pcaps.len(), 2);
        assert_eq!(args.pcaps[1].port, "dve1:3");
        assert!(args.quiet);
        assert!(Cli::try_parse_from(["dve-sim", "run", "--duration-ms", "0"]).is_err());
        assert!(Cli::try_parse_from(["dve-sim", "run", "--pcap", "h1"]).is_err());
        let default = Cli::try_parse_from(["dve-sim", "run"]);
        assert!(matches!(default, Ok(Cli { command: Command::Run(RunArgs { scenario: None, .. }) })));
    }
}
