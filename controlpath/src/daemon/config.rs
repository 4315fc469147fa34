//! The daemon's configuration file (TOML): the engine's FC domain, its ports and their
//! backends, the number of fast-path workers, the metadata store, the management listen
//! address, the timers, and DPDK's EAL arguments. [`DaemonConfig::load`] checks all of it before anything starts; a
//! bad file is a [`ConfigError`] naming the file, the line (when there is one) and what is
//! wrong. `controlpath/dved.example.toml` documents every field.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::ControlPathConfig;
use crate::text_position::line_column;

/// CPU numbers `cpus` may name: the size of the kernel's CPU set.
pub const MAX_CPUS: usize = 1024;

/// Most workers an engine runs: exchange ids carry the worker in 4 bits and the control
/// path's exchanges use number 15.
pub const MAX_WORKERS: u8 = 15;
/// Most ports an engine has: areas 1 to 239 of its domain (see `AddressPlan`).
pub const MAX_PORTS: usize = 239;
/// The tick interval when the file gives none: the resync and migration steps run once a
/// tick, and login retries and drains are looked at each tick.
pub const DEFAULT_TICK_INTERVAL: Duration = Duration::from_millis(1);
/// The downstream timeout when the file gives none (the worker's default).
pub const DEFAULT_DOWNSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// A configuration file that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line and column of what is wrong, when it is one place of the file.
    pub at: Option<(usize, usize)>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

/// How a port reaches the wire.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PortBackend {
    /// An in-memory cable whose far end only users inside the process can reach (tests,
    /// demos): `dve_fastpath::port::SoftwarePort`.
    Software,
    /// A DPDK ethdev (its PCI address or vdev name), opened with one transmit queue per
    /// worker. Only a build with feature `dpdk` accepts it.
    Dpdk {
        /// The device DPDK is to open.
        device: String,
    },
}

impl PortBackend {
    /// The backend's name in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            PortBackend::Software => "software",
            PortBackend::Dpdk { .. } => "dpdk",
        }
    }
}

/// One port of the engine.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PortSpec {
    /// Its name (for messages and `dved check`).
    pub name: String,
    /// How it reaches the wire.
    pub backend: PortBackend,
}

/// A checked daemon configuration.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DaemonConfig {
    /// The engine's FC domain (1 to 239).
    pub domain: u8,
    /// The ports, numbered in file order from 0.
    pub ports: Vec<PortSpec>,
    /// Fast-path workers; ports are dealt to them round robin.
    pub workers: u8,
    /// The CPU each worker's thread is pinned to, in worker order; empty: not pinned.
    pub cpus: Vec<usize>,
    /// The redb file holding the metadata (created if missing).
    pub metadata: PathBuf,
    /// Where the management gRPC API listens (port 0: any free port).
    pub listen: SocketAddr,
    /// How often the control path's timers run.
    pub tick_interval: Duration,
    /// How long a device I/O may go unanswered before the worker aborts it.
    pub downstream_timeout: Duration,
    /// DPDK's settings (used when the ports are DPDK ports).
    pub dpdk: DpdkSettings,
}

/// The `[dpdk]` table.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct DpdkSettings {
    /// EAL's arguments after the program name (e.g. `-l 0-2`, `--vdev=net_pcap0,iface=eth1`).
    pub eal_args: Vec<String>,
    /// How long an idle worker sleeps before polling again; `None` (the default) keeps
    /// polling, a core per worker, as DPDK is meant to run.
    pub idle_pause: Option<Duration>,
}

impl DpdkSettings {
    /// The arguments `Eal::init` takes: the program name, then [`DpdkSettings::eal_args`].
    pub fn eal_argv(&self) -> Vec<String> {
        std::iter::once("dved".to_string()).chain(self.eal_args.iter().cloned()).collect()
    }
}

/// Whether this build has the DPDK port (feature `dpdk`).
pub const DPDK_BUILT_IN: bool = cfg!(feature = "dpdk");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    engine: Spanned<RawEngine>,
    management: Spanned<RawManagement>,
    #[serde(default)]
    port: Vec<Spanned<RawPort>>,
    dpdk: Option<Spanned<RawDpdk>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDpdk {
    #[serde(default)]
    eal_args: Vec<Spanned<String>>,
    idle_pause_us: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    domain: Spanned<i64>,
    workers: Option<Spanned<i64>>,
    cpus: Option<Spanned<Vec<Spanned<i64>>>>,
    metadata: Spanned<String>,
    tick_interval_us: Option<Spanned<i64>>,
    downstream_timeout_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManagement {
    listen: Spanned<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawBackend {
    Software,
    Dpdk,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: Spanned<String>,
    backend: Spanned<RawBackend>,
    device: Option<Spanned<String>>,
}

/// The text being checked, to turn byte spans into lines and columns.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error_at(&self, span: Range<usize>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            at: Some(line_column(self.text, span.start)),
            reason: reason.into(),
        }
    }

    fn error<T>(&self, value: &Spanned<T>, reason: impl Into<String>) -> ConfigError {
        self.error_at(value.span(), reason)
    }

    /// `cpus`: one CPU number per worker, each at most once (a poll-mode worker keeps its CPU
    /// busy: two on one CPU would take turns).
    fn cpus(&self, list: &Spanned<Vec<Spanned<i64>>>, workers: u8) -> Result<Vec<usize>, ConfigError> {
        let items = list.get_ref();
        if items.len() != usize::from(workers) {
            return Err(self.error(
                list,
                format!(
                    "cpus lists {} CPU(s) for {workers} worker(s): one per worker, in worker order",
                    items.len()
                ),
            ));
        }
        let mut cpus = Vec::with_capacity(items.len());
        for item in items {
            let cpu = self.within("cpus", item, 0..MAX_CPUS as i64)? as usize;
            if cpus.contains(&cpu) {
                return Err(self.error(
                    item,
                    format!("cpus: CPU {cpu} is listed twice: each worker polls a CPU of its own"),
                ));
            }
            cpus.push(cpu);
        }
        Ok(cpus)
    }

    /// `value` if it is within `range`, else an error naming `field`.
    fn within(&self, field: &str, value: &Spanned<i64>, range: Range<i64>) -> Result<u64, ConfigError> {
        let v = *value.get_ref();
        if range.contains(&v) {
            u64::try_from(v).map_err(|_| self.error(value, format!("{field} must not be negative")))
        } else {
            Err(self
                .error(value, format!("{field} = {v} is out of range: {} to {}", range.start, range.end - 1)))
        }
    }
}

impl DaemonConfig {
    /// Read and check the configuration file at `path`. A relative `metadata` path is taken
    /// from the file's directory, so a configuration means the same from any working
    /// directory.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            at: None,
            reason: format!("cannot read it: {e}"),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        DaemonConfig::parse(&file, &text, base)
    }

    /// Check the configuration `text` of file `file`; relative paths are under `base`.
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<DaemonConfig, ConfigError> {
        let source = Source { file, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let reason = e.message().trim().to_string();
            match e.span() {
                Some(span) => source.error_at(span, reason),
                None => ConfigError { file: file.to_string(), at: None, reason },
            }
        })?;
        let engine = raw.engine.get_ref();
        let domain = source.within("domain", &engine.domain, 1..240)? as u8;

        if raw.port.is_empty() {
            return Err(source.error(&raw.engine, "no [[port]]: the engine needs at least one port"));
        }
        if raw.port.len() > MAX_PORTS {
            let extra = &raw.port[MAX_PORTS];
            return Err(source.error(extra, format!("too many ports: an engine has at most {MAX_PORTS}")));
        }
        let mut ports: Vec<PortSpec> = Vec::with_capacity(raw.port.len());
        for port in &raw.port {
            let p = port.get_ref();
            let name = p.name.get_ref().trim();
            if name.is_empty() {
                return Err(source.error(&p.name, "a port needs a name"));
            }
            if let Some(earlier) = ports.iter().position(|q| q.name == name) {
                return Err(
                    source.error(&p.name, format!("port name `{name}` is used by port {earlier} already"))
                );
            }
            let backend = match (*p.backend.get_ref(), &p.device) {
                (RawBackend::Software, None) => PortBackend::Software,
                (RawBackend::Software, Some(device)) => {
                    return Err(source.error(device, format!("port `{name}`: a software port has no device")));
                }
                (RawBackend::Dpdk, _) if !DPDK_BUILT_IN => {
                    return Err(source.error(
                        &p.backend,
                        format!(
                            "port `{name}`: backend `dpdk`: dved was built without the dpdk feature; \
                             build it with `--features dve-controlpath/dpdk` (needs DPDK 22.11: \
                             libdpdk-dev, pkg-config, clang), or use backend = \"software\""
                        ),
                    ));
                }
                (RawBackend::Dpdk, None) => {
                    return Err(source.error(
                        port,
                        format!(
                            "port `{name}`: a dpdk port needs device = \"...\": a PCI address \
                             (\"0000:03:00.0\") or a virtual device made by EAL's --vdev (\"net_pcap0\")"
                        ),
                    ));
                }
                (RawBackend::Dpdk, Some(device)) => {
                    let device_name = device.get_ref().trim();
                    if device_name.is_empty() {
                        return Err(
                            source.error(device, format!("port `{name}`: device must name a DPDK device"))
                        );
                    }
                    if let Some(earlier) = ports.iter().position(
                        |q| matches!(&q.backend, PortBackend::Dpdk { device } if device == device_name),
                    ) {
                        return Err(source.error(
                            device,
                            format!("port `{name}`: device `{device_name}` is port {earlier}'s already"),
                        ));
                    }
                    PortBackend::Dpdk { device: device_name.to_string() }
                }
            };
            // One engine's workers poll one kind of port: software ports pause when idle,
            // DPDK ports own cores; a mix would be neither.
            if let Some(first) = ports.first()
                && std::mem::discriminant(&first.backend) != std::mem::discriminant(&backend)
            {
                return Err(source.error(
                    &p.backend,
                    format!(
                        "port `{name}`: backend `{}`, but port 0 `{}` is `{}`: all ports of an engine are \
                         on one backend",
                        backend.kind(),
                        first.name,
                        first.backend.kind()
                    ),
                ));
            }
            ports.push(PortSpec { name: name.to_string(), backend });
        }

        let workers = match &engine.workers {
            Some(w) => {
                let most = i64::from(MAX_WORKERS).min(ports.len() as i64);
                let n = *w.get_ref();
                if !(1..=most).contains(&n) {
                    return Err(source.error(
                        w,
                        format!(
                            "workers = {n}: from 1 to {most} (at most {MAX_WORKERS}, and no more than the {} ports, \
                             since each worker serves a port of its own)",
                            ports.len()
                        ),
                    ));
                }
                n as u8
            }
            None => 1,
        };

        let cpus = match &engine.cpus {
            Some(list) => source.cpus(list, workers)?,
            None => Vec::new(),
        };

        let metadata = engine.metadata.get_ref();
        if metadata.trim().is_empty() {
            return Err(source.error(&engine.metadata, "metadata must name the redb file"));
        }
        let metadata = base.join(metadata);

        let listen = raw.management.get_ref().listen.get_ref();
        let listen: SocketAddr = listen.parse().map_err(|e| {
            source.error(
                &raw.management.get_ref().listen,
                format!(
                    "listen = {listen:?} is not an IP address and port, such as \"127.0.0.1:50051\": {e}"
                ),
            )
        })?;

        let tick_interval = match &engine.tick_interval_us {
            Some(t) => Duration::from_micros(source.within("tick_interval_us", t, 1..60_000_001)?),
            None => DEFAULT_TICK_INTERVAL,
        };
        let downstream_timeout = match &engine.downstream_timeout_ms {
            Some(t) => Duration::from_millis(source.within("downstream_timeout_ms", t, 1..3_600_001)?),
            None => DEFAULT_DOWNSTREAM_TIMEOUT,
        };
        let dpdk = match &raw.dpdk {
            None => DpdkSettings::default(),
            Some(table) => {
                if !ports.iter().any(|p| matches!(p.backend, PortBackend::Dpdk { .. })) {
                    return Err(source.error(table, "[dpdk] is set, but no port has backend = \"dpdk\""));
                }
                let raw_dpdk = table.get_ref();
                let mut eal_args = Vec::with_capacity(raw_dpdk.eal_args.len());
                for arg in &raw_dpdk.eal_args {
                    let text = arg.get_ref();
                    if text.trim().is_empty() || text.contains('\0') {
                        return Err(source.error(arg, format!("eal_args: {text:?} is not an EAL argument")));
                    }
                    eal_args.push(text.clone());
                }
                let idle_pause = match &raw_dpdk.idle_pause_us {
                    Some(t) => {
                        Some(Duration::from_micros(source.within("idle_pause_us", t, 1..1_000_001)?))
                    }
                    None => None,
                };
                DpdkSettings { eal_args, idle_pause }
            }
        };
        Ok(DaemonConfig {
            domain,
            ports,
            workers,
            cpus,
            metadata,
            listen,
            tick_interval,
            downstream_timeout,
            dpdk,
        })
    }

    /// Whether the engine's ports are DPDK ports (all of them are, or none).
    pub fn uses_dpdk(&self) -> bool {
        self.ports.iter().any(|p| matches!(p.backend, PortBackend::Dpdk { .. }))
    }

    /// The control path's configuration for this engine.
    pub fn control_path_config(&self) -> ControlPathConfig {
        // `parse` bounds the ports to MAX_PORTS, so the count fits.
        ControlPathConfig::new(self.domain, self.ports.len() as u16, self.workers)
    }

    /// What the daemon would run, for `dved check`.
    pub fn describe(&self) -> String {
        let plan = crate::address::AddressPlan::new(self.domain, self.ports.len() as u16, self.workers);
        let mut out = format!(
            "FC domain {} ({:#04x}), {} fast-path worker(s) on {} port(s)\n",
            self.domain,
            self.domain,
            self.workers,
            self.ports.len()
        );
        for (spec, port) in self.ports.iter().zip(plan.ports()) {
            let backend = match &spec.backend {
                PortBackend::Software => "software".to_string(),
                PortBackend::Dpdk { device } => format!("dpdk {device}"),
            };
            out.push_str(&format!(
                "  port {} `{}`: {backend}, served by worker {}, MAC {}\n",
                port.id.0, spec.name, port.worker.0, port.mac
            ));
        }
        if self.uses_dpdk() {
            let pause = match self.dpdk.idle_pause {
                Some(p) => format!("idle workers pause {} us", p.as_micros()),
                None => "workers poll without pausing".to_string(),
            };
            out.push_str(&format!("DPDK EAL arguments: {:?}; {pause}\n", self.dpdk.eal_argv()));
        }
        if self.cpus.is_empty() {
            out.push_str("workers not pinned to CPUs\n");
        } else {
            let cpus: Vec<String> = self.cpus.iter().map(usize::to_string).collect();
            out.push_str(&format!("workers pinned to CPUs {} (worker 0 first)\n", cpus.join(", ")));
        }
        out.push_str(&format!("metadata: {}\n", self.metadata.display()));
        out.push_str(&format!("management API: {}\n", self.listen));
        out.push_str(&format!(
            "tick every {} us, downstream timeout {} ms\n",
            self.tick_interval.as_micros(),
            self.downstream_timeout.as_millis()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[engine]
domain = 3
workers = 2
metadata = "engine.redb"
tick_interval_us = 500
downstream_timeout_ms = 1500

[management]
listen = "127.0.0.1:50051"

[[port]]
name = "hosts"
backend = "software"

[[port]]
name = "disks"
backend = "software"
"#;

    fn parse(text: &str) -> Result<DaemonConfig, ConfigError> {
        DaemonConfig::parse("dved.toml", text, Path::new("/etc/dve"))
    }

    fn refused(text: &str) -> ConfigError {
        parse(text).expect_err("the configuration is refused")
    }

    #[test]
    fn a_full_configuration_is_read() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.domain, 3);
        assert_eq!(config.workers, 2);
        assert_eq!(config.metadata, Path::new("/etc/dve/engine.redb"), "relative to the file");
        assert_eq!(config.listen, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(config.tick_interval, Duration::from_micros(500));
        assert_eq!(config.downstream_timeout, Duration::from_millis(1500));
        assert_eq!(
            config.ports,
            vec![
                PortSpec { name: "hosts".into(), backend: PortBackend::Software },
                PortSpec { name: "disks".into(), backend: PortBackend::Software },
            ]
        );
        let cp = config.control_path_config();
        assert_eq!((cp.domain, cp.ports, cp.workers), (3, 2, 2));
        let described = config.describe();
        assert!(described.contains("port 1 `disks`: software, served by worker 1"), "{described}");
        assert!(described.contains("/etc/dve/engine.redb"), "{described}");
    }

    #[test]
    fn optional_fields_take_their_defaults_and_absolute_paths_stay() {
        let text = r#"
[engine]
domain = 1
metadata = "/var/lib/dve/e.redb"
[management]
listen = "[::1]:0"
[[port]]
name = "p0"
backend = "software"
"#;
        let config = parse(text).unwrap();
        assert_eq!(config.workers, 1);
        assert_eq!(config.metadata, Path::new("/var/lib/dve/e.redb"));
        assert_eq!(config.tick_interval, DEFAULT_TICK_INTERVAL);
        assert_eq!(config.downstream_timeout, DEFAULT_DOWNSTREAM_TIMEOUT);
        assert_eq!(config.listen.port(), 0);
    }

    #[test]
    fn workers_are_pinned_to_one_cpu_each() {
        let config = parse(&GOOD.replace("workers = 2", "workers = 2\ncpus = [3, 1]")).unwrap();
        assert_eq!(config.cpus, [3, 1]);
        assert!(
            config.describe().contains("workers pinned to CPUs 3, 1 (worker 0 first)"),
            "{}",
            config.describe()
        );
        assert!(parse(GOOD).unwrap().cpus.is_empty(), "not pinned unless asked");
        let cases = [
            ("[1]", "cpus lists 1 CPU(s) for 2 worker(s): one per worker"),
            ("[1, 1]", "cpus: CPU 1 is listed twice"),
            ("[0, 1024]", "cpus = 1024 is out of range: 0 to 1023"),
            ("[0, -1]", "cpus = -1 is out of range"),
            ("[0, \"a\"]", "invalid type"),
            ("7", "invalid type"),
        ];
        for (cpus, words) in cases {
            let error = refused(&GOOD.replace("workers = 2", &format!("workers = 2\ncpus = {cpus}")));
            assert_eq!(error.at.map(|(line, _)| line), Some(5), "{cpus}: {error}");
            assert!(error.to_string().contains(words), "{cpus}: {error}");
        }
    }

    /// Each bad edit of the good file: the line it names and words of its reason.
    #[test]
    fn bad_configurations_name_the_line_and_what_is_wrong() {
        let cases: &[(&str, &str, Option<usize>, &str)] = &[
            ("domain = 3", "domain = 0", Some(3), "domain = 0 is out of range: 1 to 239"),
            ("domain = 3", "domain = 240", Some(3), "out of range"),
            ("domain = 3", "domain = \"three\"", Some(3), "invalid type"),
            ("workers = 2", "workers = 3", Some(4), "workers = 3: from 1 to 2"),
            ("workers = 2", "workers = 0", Some(4), "from 1 to 2"),
            ("metadata = \"engine.redb\"", "metadata = \" \"", Some(5), "metadata must name the redb file"),
            (
                "tick_interval_us = 500",
                "tick_interval_us = 0",
                Some(6),
                "tick_interval_us = 0 is out of range",
            ),
            ("downstream_timeout_ms = 1500", "downstream_timeout_ms = -5", Some(7), "out of range"),
            ("\"127.0.0.1:50051\"", "\"localhost\"", Some(10), "is not an IP address and port"),
            ("name = \"disks\"", "name = \"hosts\"", Some(17), "port name `hosts` is used by port 0"),
            ("name = \"disks\"", "name = \"\"", Some(17), "a port needs a name"),
            (
                "backend = \"software\"\n\n[[port]]",
                "backend = \"sofware\"\n\n[[port]]",
                Some(14),
                "unknown variant",
            ),
            ("domain = 3", "domain = 3\ncolour = \"blue\"", Some(4), "unknown field `colour`"),
            ("[management]", "[managment]", Some(9), "unknown field `managment`"),
            ("listen =", "listen = = ", Some(10), ""),
        ];
        for (from, to, line, reason) in cases {
            assert!(GOOD.contains(from), "{from:?} is in the good file");
            let error = refused(&GOOD.replacen(from, to, 1));
            assert_eq!(error.file, "dved.toml");
            assert_eq!(error.at.map(|(l, _)| l), *line, "{to:?}: {error}");
            assert!(error.reason.contains(reason), "{to:?}: {error}");
        }
    }

    /// The good file with both ports on DPDK devices, and `extra` appended.
    fn on_dpdk(extra: &str) -> String {
        let text = GOOD
            .replacen("backend = \"software\"", "backend = \"dpdk\"\ndevice = \"0000:03:00.0\"", 1)
            .replacen("backend = \"software\"", "backend = \"dpdk\"\ndevice = \"net_pcap0\"", 1);
        format!("{text}{extra}")
    }

    #[cfg(not(feature = "dpdk"))]
    #[test]
    fn a_dpdk_port_is_refused_by_this_build() {
        let error = refused(&on_dpdk(""));
        assert_eq!(error.at.map(|(l, _)| l), Some(14), "{error}");
        assert!(error.reason.contains("built without the dpdk feature"), "{error}");
        assert!(error.reason.contains("--features dve-controlpath/dpdk"), "{error}");
        assert!(error.to_string().starts_with("dved.toml:14:"), "{error}");
    }

    #[cfg(feature = "dpdk")]
    #[test]
    fn dpdk_ports_and_their_eal_arguments_are_read() {
        let config = parse(&on_dpdk("\n[dpdk]\neal_args = [\"-l\", \"0-2\"]\nidle_pause_us = 20\n")).unwrap();
        assert!(config.uses_dpdk());
        assert_eq!(config.ports[1].backend, PortBackend::Dpdk { device: "net_pcap0".into() });
        assert_eq!(config.dpdk.eal_argv(), ["dved", "-l", "0-2"]);
        assert_eq!(config.dpdk.idle_pause, Some(Duration::from_micros(20)));
        let described = config.describe();
        assert!(described.contains("port 0 `hosts`: dpdk 0000:03:00.0, served by worker 0"), "{described}");
        assert!(described.contains("idle workers pause 20 us"), "{described}");
        let polling = parse(&on_dpdk("")).unwrap();
        assert_eq!(polling.dpdk, DpdkSettings::default(), "no [dpdk]: no arguments, polling");
        assert_eq!(polling.dpdk.eal_argv(), ["dved"]);
    }

    #[cfg(feature = "dpdk")]
    #[test]
    fn bad_dpdk_settings_name_the_line() {
        let cases: &[(String, usize, &str)] = &[
            (
                on_dpdk("").replacen("device = \"net_pcap0\"", "device = \"0000:03:00.0\"", 1),
                20,
                "is port 0's already",
            ),
            (on_dpdk("").replacen("device = \"net_pcap0\"\n", "", 1), 17, "a dpdk port needs device"),
            (
                on_dpdk("").replacen("device = \"net_pcap0\"", "device = \" \"", 1),
                20,
                "must name a DPDK device",
            ),
            (on_dpdk("[dpdk]\neal_args = [\"-l\", \"\"]\n"), 22, "is not an EAL argument"),
            (on_dpdk("[dpdk]\nidle_pause_us = 0\n"), 22, "idle_pause_us = 0 is out of range"),
            (on_dpdk("[dpdk]\nhugepages = 1\n"), 22, "unknown field `hugepages`"),
            (format!("{GOOD}[dpdk]\neal_args = []\n"), 19, "no port has backend = \"dpdk\""),
            (
                GOOD.replacen(
                    "backend = \"software\"\n\n[[port]]",
                    "backend = \"dpdk\"\ndevice = \"x\"\n\n[[port]]",
                    1,
                ),
                19,
                "all ports of an engine are on one backend",
            ),
        ];
        for (text, line, reason) in cases {
            let error = refused(text);
            assert_eq!(error.at.map(|(l, _)| l), Some(*line), "{error}\n{text}");
            assert!(error.reason.contains(reason), "{error}");
        }
    }

    #[test]
    fn missing_parts_are_named() {
        let no_ports = GOOD.split("[[port]]").next().unwrap();
        assert!(refused(no_ports).reason.contains("at least one port"));
        let no_management = GOOD.replace("[management]\nlisten = \"127.0.0.1:50051\"\n", "");
        assert!(refused(&no_management).reason.contains("missing field `management`"));
        let no_domain = GOOD.replace("domain = 3\n", "");
        assert!(refused(&no_domain).reason.contains("missing field `domain`"));
        let device_on_software =
            GOOD.replacen("backend = \"software\"\n", "backend = \"software\"\ndevice = \"x\"\n", 1);
        assert!(refused(&device_on_software).reason.contains("a software port has no device"));
    }

    #[test]
    fn an_unreadable_file_is_an_error_without_a_line() {
        let error = DaemonConfig::load(Path::new("/nonexistent/dved.toml")).unwrap_err();
        assert_eq!(error.at, None);
        assert!(error.to_string().starts_with("/nonexistent/dved.toml: cannot read it"), "{error}");
    }

    #[test]
    fn garbage_never_panics() {
        for text in
            ["", "\u{0}", "[[port]]\n[[port]]", "engine = 1", "[engine]\ndomain = 99999999999999999999"]
        {
            assert!(parse(text).is_err(), "{text:?}");
        }
    }
}
