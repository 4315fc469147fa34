//! `sim-bench`: how fast the simulator runs the default scenario, beside a reference measured
//! in the same process.
//!
//! ```text
//! sim-bench [DURATION_MS] [RUNS]
//! ```
//!
//! Runs the built-in default scenario (`sim/scenarios/default.toml`), shortened to
//! `DURATION_MS` of virtual time if given, `RUNS` times (default 3), and prints one JSON object
//! per line per metric: frames simulated per wall-clock second and per second of this thread's
//! CPU time (best and median run), and the same for the reference.
//!
//! The reference moves the same number of frames through the same event queue
//! ([`EventQueue`]) and link model ([`Link`], with the scenario's cables and their parameters)
//! with no node logic at all: each frame delivered at one end of a cable is sent straight back
//! at once, frames of each direction as long on average as the real run's, a few frames in
//! flight per cable. Its rate is the ceiling the simulator's own bookkeeping allows; the ratio
//! `reference / simulator` says how much of a real run is spent in the nodes (hosts, disks, the
//! real fast path and control path, the oracle).
//!
//! A benchmark, not a test: it asserts nothing about time. It does check that every run gave
//! the same report (the simulator is deterministic).
//!
//! Build it with the workspace's `release-lto` profile, as the performance notes do since
//! their Stop 24: `cargo run --profile release-lto -p dve-sim --bin sim-bench -- 5000 3`.
//! Fat LTO inlines across the crates a frame goes through (wire, fp-api, fastpath,
//! controlpath, sim), which `--release` (four codegen units per crate, no LTO) cannot: the same
//! code runs about 13 % more frames per CPU second. A `--release` build still works; its
//! figures are the ones earlier stops give.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use dve_sim::engine::{EventQueue, SimRng, SimTime};
use dve_sim::link::{Link, LinkParams, LinkVerdict};
use dve_sim::report::{Report, RunOptions};
use dve_sim::scenario::{NodeRef, Scenario};

/// Frames the reference keeps in flight on each cable (both directions together).
const REFERENCE_IN_FLIGHT_PER_CABLE: usize = 4;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |index: usize, what: &str| -> Result<Option<u64>, String> {
        args.get(index)
            .map(|text| text.parse::<u64>().map_err(|_| format!("{what} `{text}` is not a number")))
            .transpose()
    };
    let (duration_ms, runs) = match (parse(0, "duration"), parse(1, "runs")) {
        (Ok(duration), Ok(runs)) => (duration.filter(|d| *d > 0), runs.unwrap_or(3).max(1)),
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("usage: sim-bench [DURATION_MS] [RUNS]\nerror: {err}");
            return ExitCode::from(2);
        }
    };
    let scenario = match Scenario::default_scenario() {
        Ok(scenario) => scenario,
        Err(err) => {
            eprintln!("error: the default scenario: {err}");
            return ExitCode::from(2);
        }
    };
    let options = RunOptions { duration_override_ms: duration_ms, ..RunOptions::default() };
    let scenario = options.effective_scenario(&scenario);

    let mut simulator = Vec::new();
    let mut reference = Vec::new();
    let mut first_report: Option<String> = None;
    let mut deterministic = true;
    for _ in 0..runs {
        let started = Measure::start();
        let report = match dve_sim::world::run(&scenario, &options) {
            Ok(report) => report,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(3);
            }
        };
        simulator.push(started.finish(report.frames_simulated));
        let json = report.to_json();
        match &first_report {
            Some(first) => deterministic &= *first == json,
            None => first_report = Some(json),
        }
        // The reference right after, under the same conditions.
        let plan = ReferencePlan::new(&scenario, &report);
        let started = Measure::start();
        let moved = plan.run();
        reference.push(started.finish(moved));
    }

    let name = format!("default scenario, {} ms simulated", scenario.duration_ms);
    let frames = simulator[0].frames;
    print_metric("simulator_frames_per_wall_second", &name, frames, &simulator, |m| m.per_wall_second());
    print_metric("simulator_frames_per_cpu_second", &name, frames, &simulator, |m| m.per_cpu_second());
    print_metric("reference_frames_per_wall_second", &name, frames, &reference, |m| m.per_wall_second());
    print_metric("reference_frames_per_cpu_second", &name, frames, &reference, |m| m.per_cpu_second());
    let best = |ms: &[Measurement], f: fn(&Measurement) -> Option<f64>| {
        ms.iter().filter_map(f).fold(None, |acc: Option<f64>, v| Some(acc.map_or(v, |a| a.max(v))))
    };
    let ratio = match (
        best(&reference, Measurement::per_cpu_second),
        best(&simulator, Measurement::per_cpu_second),
    ) {
        (Some(r), Some(s)) if s > 0.0 => Some(r / s),
        _ => None,
    };
    println!(
        "{}",
        serde_json::json!({
            "metric": "reference_over_simulator",
            "scenario": name,
            "value": ratio,
            "unit": "ratio of best frames per CPU second",
            "node_logic_share": ratio.map(|r| 1.0 - 1.0 / r),
            "deterministic": deterministic,
        })
    );
    if deterministic { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// One timed run.
#[derive(Clone, Copy, Debug)]
struct Measurement {
    frames: u64,
    wall: Duration,
    cpu: Option<Duration>,
}

impl Measurement {
    fn per_wall_second(&self) -> Option<f64> {
        let secs = self.wall.as_secs_f64();
        (secs > 0.0).then(|| self.frames as f64 / secs)
    }

    fn per_cpu_second(&self) -> Option<f64> {
        let secs = self.cpu?.as_secs_f64();
        (secs > 0.0).then(|| self.frames as f64 / secs)
    }
}

/// Wall-clock and CPU time at the start of a run.
struct Measure {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Measure {
    fn start() -> Measure {
        Measure { wall: Instant::now(), cpu: thread_cpu_time() }
    }

    fn finish(self, frames: u64) -> Measurement {
        let wall = self.wall.elapsed();
        let cpu = match (self.cpu, thread_cpu_time()) {
            (Some(start), Some(end)) => end.checked_sub(start),
            _ => None,
        };
        Measurement { frames, wall, cpu }
    }
}

/// Time this thread has spent on a CPU (Linux: the first field of
/// `/proc/thread-self/schedstat`, nanoseconds), so that other jobs on a shared machine weigh
/// less in the figures; `None` elsewhere.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn print_metric(
    metric: &str,
    scenario: &str,
    frames: u64,
    runs: &[Measurement],
    rate: fn(&Measurement) -> Option<f64>,
) {
    let mut values: Vec<f64> = runs.iter().filter_map(rate).collect();
    values.sort_by(f64::total_cmp);
    let best = values.last().copied();
    let median = (!values.is_empty()).then(|| values[values.len() / 2]);
    println!(
        "{}",
        serde_json::json!({
            "metric": metric,
            "scenario": scenario,
            "value": best,
            "median": median,
            "unit": "frames/s",
            "frames": frames,
            "runs": values,
        })
    );
}

/// What the reference does: the scenario's cables, and the frames to move on them.
struct ReferencePlan {
    /// Per cable: its parameters and mean frame lengths toward the engine and toward the node.
    cables: Vec<(LinkParams, usize, usize)>,
    frames: u64,
}

/// A frame arriving at one end of a cable.
struct Arrival {
    cable: usize,
    to_engine: bool,
    epoch: u64,
    frame: Vec<u8>,
}

impl ReferencePlan {
    fn new(scenario: &Scenario, report: &Report) -> ReferencePlan {
        let mean = |frames: u64, bytes: u64| bytes.checked_div(frames).map_or(64, |m| m.max(1) as usize);
        let mut cables = Vec::new();
        for engine in 0..scenario.engines.len() {
            for port in scenario.engine_ports(engine).into_iter().filter(|p| p.path == 0) {
                let params = match port.peer {
                    NodeRef::Host(h) => scenario.hosts[h].link.clone(),
                    NodeRef::Disk(d) => scenario.disks[d].link.clone(),
                };
                let counters = report.links.get(cables.len());
                let up = counters.map_or(64, |l| mean(l.a_to_b.frames, l.a_to_b.bytes));
                let down = counters.map_or(64, |l| mean(l.b_to_a.frames, l.b_to_a.bytes));
                cables.push((params, up, down));
            }
        }
        ReferencePlan { cables, frames: report.frames_simulated }
    }

    /// Moves `frames` frames; returns how many were delivered.
    fn run(&self) -> u64 {
        let root = SimRng::new(1);
        let mut links: Vec<(Link, SimRng, SimRng)> = self
            .cables
            .iter()
            .enumerate()
            .map(|(i, (params, _, _))| {
                (Link::new(params.clone()), root.fork(&format!("up:{i}")), root.fork(&format!("down:{i}")))
            })
            .collect();
        let mut queue: EventQueue<Arrival> = EventQueue::new();
        let send = |links: &mut Vec<(Link, SimRng, SimRng)>,
                    queue: &mut EventQueue<Arrival>,
                    now: SimTime,
                    cable: usize,
                    to_engine: bool,
                    frame: Vec<u8>| {
            let (link, up, down) = &mut links[cable];
            let verdict = if to_engine {
                link.a_to_b.send(now, frame.len(), up)
            } else {
                link.b_to_a.send(now, frame.len(), down)
            };
            if let LinkVerdict::Deliver { at, epoch } | LinkVerdict::Corrupt { at, epoch, .. } = verdict {
                // As the world queues them: one ordered stream per link direction.
                queue.push_ordered(
                    cable * 2 + usize::from(to_engine),
                    at,
                    Arrival { cable, to_engine, epoch, frame },
                );
            }
        };
        for (cable, (_, up, _)) in self.cables.iter().enumerate() {
            for _ in 0..REFERENCE_IN_FLIGHT_PER_CABLE {
                send(&mut links, &mut queue, SimTime::ZERO, cable, true, vec![0u8; *up]);
            }
        }
        let mut delivered = 0;
        while delivered < self.frames {
            let Some((now, arrival)) = queue.pop() else { break };
            let Arrival { cable, to_engine, epoch, mut frame } = arrival;
            let (link, _, _) = &links[cable];
            let direction = if to_engine { &link.a_to_b } else { &link.b_to_a };
            if !direction.is_delivery_valid(epoch) {
                continue;
            }
            delivered += 1;
            // Straight back the other way, as long as that direction's frames are.
            let (_, up, down) = self.cables[cable];
            frame.resize(if to_engine { down } else { up }, 0);
            send(&mut links, &mut queue, now, cable, !to_engine, frame);
        }
        delivered
    }
}
