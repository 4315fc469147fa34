//! What a run is asked to do beyond the scenario: overrides, captures and the progress bar.
//!
//! The CLI builds a [`RunOptions`] and passes it with the scenario to the simulation. The
//! simulation reports progress through a [`ProgressSink`] it gets from
//! [`RunOptions::progress_sink`]: a single updating line on stderr when the options ask for it,
//! nothing otherwise. Progress never touches the report, so it cannot affect determinism.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::engine::SimTime;
use crate::scenario::{PortRef, Scenario};

/// Options of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Use this seed instead of the scenario's.
    pub seed_override: Option<u64>,
    /// Run this long (milliseconds) instead of the scenario's duration.
    pub duration_override_ms: Option<u64>,
    /// Ports to capture, each to its own pcap file.
    pub pcaps: Vec<PcapRequest>,
    /// Show a progress bar on stderr (the CLI sets it when stderr is a terminal and `--quiet`
    /// was not given).
    pub progress: bool,
}

impl RunOptions {
    /// The scenario with the overrides applied (see [`Scenario::with_overrides`]). Idempotent:
    /// the CLI applies them before the run, and the simulation may apply them again.
    pub fn effective_scenario(&self, scenario: &Scenario) -> Scenario {
        scenario.with_overrides(self.seed_override, self.duration_override_ms)
    }

    /// Where the simulation reports progress: a [`StderrProgress`] when `progress` is set, a
    /// [`NoProgress`] otherwise.
    pub fn progress_sink(&self) -> Box<dyn ProgressSink> {
        if self.progress { Box::new(StderrProgress::new()) } else { Box::new(NoProgress) }
    }
}

/// A request to capture the frames of one port into a pcap file: `PORT=PATH` on the command
/// line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PcapRequest {
    /// The port as written: `h1`, `h1:1`, `d2`, `dve1:3` (see [`Scenario::resolve_port`]).
    pub port: String,
    /// The file to write.
    pub path: PathBuf,
}

impl PcapRequest {
    /// The port this request names in `scenario`.
    pub fn resolve(&self, scenario: &Scenario) -> Result<PortRef, String> {
        scenario.resolve_port(&self.port)
    }
}

/// Why a `PORT=PATH` argument did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapRequestError(String);

impl fmt::Display for PcapRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PcapRequestError {}

impl FromStr for PcapRequest {
    type Err = PcapRequestError;

    /// Parses `PORT=PATH`; both parts must be non-empty.
    fn from_str(text: &str) -> Result<PcapRequest, PcapRequestError> {
        match text.split_once('=') {
            Some((port, path)) if !port.is_empty() && !path.is_empty() => {
                Ok(PcapRequest { port: port.to_string(), path: PathBuf::from(path) })
            }
            _ => Err(PcapRequestError(format!(
                "`{text}` is not PORT=PATH (e.g. h1=h1.pcap or dve1:0=port0.pcap)"
            ))),
        }
    }
}

/// Where a running simulation reports how far it got.
///
/// Call [`update`](ProgressSink::update) as often as convenient (every event is fine: sinks
/// throttle themselves) and [`finish`](ProgressSink::finish) at the end.
pub trait ProgressSink {
    /// `simulated` of `total` virtual time has run.
    fn update(&mut self, simulated: SimTime, total: SimTime);
    /// The run is over: clear or complete the display.
    fn finish(&mut self);
}

/// Shows nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn update(&mut self, _simulated: SimTime, _total: SimTime) {}

    fn finish(&mut self) {}
}

/// Width of the bar, characters.
const BAR_WIDTH: usize = 30;
/// Redraw at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Look at the clock only every this many updates.
const CLOCK_EVERY: u32 = 256;

/// A single line on stderr, redrawn in place: `[#####-----] 4.200 s / 10.000 s  42%`.
#[derive(Debug)]
pub struct StderrProgress {
    started: Instant,
    last_draw: Option<Instant>,
    updates: u32,
    drawn: bool,
}

impl Default for StderrProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl StderrProgress {
    /// A bar that has not drawn anything yet.
    pub fn new() -> StderrProgress {
        StderrProgress { started: Instant::now(), last_draw: None, updates: 0, drawn: false }
    }

    /// The line for `simulated` of `total` after `wall` (without the leading carriage return).
    pub fn line(simulated: SimTime, total: SimTime, wall: Duration) -> String {
        let fraction = if total.as_ns() == 0 {
            1.0
        } else {
            (simulated.as_ns() as f64 / total.as_ns() as f64).clamp(0.0, 1.0)
        };
        let filled = ((fraction * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
        format!(
            "[{}{}] {:.3} s / {:.3} s {:>4.0}%  ({:.1} s wall)",
            "#".repeat(filled),
            "-".repeat(BAR_WIDTH - filled),
            simulated.as_secs_f64(),
            total.as_secs_f64(),
            fraction * 100.0,
            wall.as_secs_f64()
        )
    }
}

impl ProgressSink for StderrProgress {
    fn update(&mut self, simulated: SimTime, total: SimTime) {
        self.updates = self.updates.wrapping_add(1);
        if self.drawn && !self.updates.is_multiple_of(CLOCK_EVERY) {
            return;
        }
        let now = Instant::now();
        if self.last_draw.is_some_and(|last| now.duration_since(last) < REDRAW_EVERY) {
            return;
        }
        self.last_draw = Some(now);
        self.drawn = true;
        let line = StderrProgress::line(simulated, total, now.duration_since(self.started));
        let mut stderr = std::io::stderr().lock();
        // A progress bar that cannot be drawn is not worth failing the run over.
        let _ = write!(stderr, "\r{line}\x1b[K");
        let _ = stderr.flush();
    }

    fn finish(&mut self) {
        if self.drawn {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
            self.drawn = false;
        }
    }
}

impl Drop for StderrProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_requests_parse() {
        let request: Result<PcapRequest, _> = "dve1:3=/tmp/port 3.pcap".parse();
        assert_eq!(
            request,
            Ok(PcapRequest { port: "dve1:3".into(), path: PathBuf::from("/tmp/port 3.pcap") })
        );
        assert!("h1".parse::<PcapRequest>().is_err());
        assert!("=x.pcap".parse::<PcapRequest>().is_err());
        assert!("h1=".parse::<PcapRequest>().is_err());
    }

    #[test]
    fn pcap_requests_resolve_against_the_scenario() {
        let scenario = Scenario::default_scenario().unwrap_or_else(|err| panic!("{err}"));
        let ok = PcapRequest { port: "h1".into(), path: "h1.pcap".into() };
        assert!(ok.resolve(&scenario).is_ok());
        let bad = PcapRequest { port: "h9".into(), path: "h9.pcap".into() };
        assert!(bad.resolve(&scenario).is_err());
    }

    #[test]
    fn the_progress_line() {
        let line =
            StderrProgress::line(SimTime::from_ms(4200), SimTime::from_ms(10_000), Duration::from_secs(2));
        assert_eq!(line, "[#############-----------------] 4.200 s / 10.000 s   42%  (2.0 s wall)");
        let done = StderrProgress::line(SimTime::from_ms(20), SimTime::from_ms(10), Duration::ZERO);
        assert!(done.starts_with(&format!("[{}]", "#".repeat(BAR_WIDTH))));
        let empty = StderrProgress::line(SimTime::ZERO, SimTime::ZERO, Duration::ZERO);
        assert!(empty.contains("100%"));
    }

    #[test]
    fn options_apply_overrides_and_pick_a_sink() {
        let scenario = Scenario::default_scenario().unwrap_or_else(|err| panic!("{err}"));
        let options =
            RunOptions { seed_override: Some(5), duration_override_ms: Some(2000), ..RunOptions::default() };
        let effective = options.effective_scenario(&scenario);
        assert_eq!((effective.seed, effective.duration_ms), (5, 2000));
        assert_eq!(options.effective_scenario(&effective), effective);
        let mut sink = options.progress_sink();
        sink.update(SimTime::ZERO, SimTime::from_ms(1));
        sink.finish();
    }
}
