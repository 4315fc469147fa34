//! Scenario files: the TOML model, its validation, and the validated [`Scenario`] a run uses.
//!
//! A scenario describes the topology (engines, hosts, disks and the links between them), the
//! volumes and where their data lives, the workloads, and a timeline of events. A bad scenario
//! is rejected before the run with a [`ScenarioError`] that reads `FILE:LINE:COL: reason`: the
//! parser's errors (syntax, types, unknown or missing fields) and every semantic rule below
//! point at the offending value.
//!
//! # Schema
//!
//! Unknown fields are errors everywhere. Sizes are integers; the block size is fixed at
//! [`BLOCK_BYTES`] (512 bytes).
//!
//! ```toml
//! [simulation]
//! name = "default"          # optional, default: the file's stem
//! seed = 1                  # optional, default 1
//! duration_ms = 10000       # >= 1
//! sample_interval_ms = 100  # optional, default 100 (or the duration if shorter);
//!                           # 1..=duration_ms, at most 100000 samples per run
//! block_bytes = 512         # optional; only 512 is accepted
//!
//! [defaults.link]           # optional; every link starts from these values
//! latency_ns = 500          # propagation latency, default 500
//! gbps = 10.0               # bandwidth, > 0, default 10
//! queue_limit_kib = 16384   # tail-drop limit per direction, default 16384 (FCoE runs on
//!                           # lossless Ethernet: a deep queue stands for PFC pause)
//! loss = 0.0                # probability a frame is lost, 0..=1, default 0
//! corrupt = 0.0             # probability a frame arrives with a flipped bit, 0..=1
//!
//! [[engine]]
//! name = "dve1"
//! workers = 2               # fast-path workers, 1..=15, default 1
//!
//! [[host]]
//! name = "h1"
//! engine = "dve1"           # the host's ports are cabled to this engine
//! paths = 1                 # optional, 1..=8; the simulated initiator has one port and
//!                           # uses path 0 only (host multipath software is not simulated):
//!                           # further paths only take engine ports and WWPNs
//! wwpn = "21:00:00:00:00:00:00:01"  # optional, derived from the name when absent
//! link = { latency_ns = 2000 }      # optional, overrides [defaults.link] for its links
//!
//! [[disk]]
//! name = "d1"
//! engine = "dve1"
//! capacity_mib = 256        # >= 1
//! latency_us = 80.0         # optional, fixed service time per command, default 80
//! ns_per_kib = 200          # optional, transfer time per KiB, default 200
//! queue_depth = 32          # optional, commands served at once, 1..=1024, default 32
//! paths = 1                 # optional, 1..=8: the disk's ports, each cabled to an engine
//!                           # port of its own, all showing the same logical unit (same
//!                           # VPD 0x83 designator and blocks): the switch's multipath
//! wwpn = "22:00:00:00:00:00:00:01"  # optional
//! link = { gbps = 25.0 }    # optional
//!
//! [[volume]]
//! name = "linear0"
//! layout = "linear"         # linear | stripe | mirror | raid10 | journal | incremental
//! size_mib = 64             # >= 1
//! disks = ["d1"]            # linear: >= 1 (concatenated); stripe: >= 2; mirror: >= 2 sides;
//!                           # raid10: even, >= 4 (consecutive pairs mirror each other);
//!                           # journal: exactly 1, the primary; incremental: exactly 1, the
//!                           # private store
//! stripe_kib = 64           # stripe and raid10 only, power of two, default 64
//! journal_disk = "d6"       # journal only, required, not the primary
//! base = "linear0"          # incremental only, required: an earlier volume of the same size
//!                           # and engine; it becomes read-only (its workloads only read)
//! prefill = true            # optional, not for incrementals: stamped data at set-up
//! exposed_to = ["h1"]       # optional, hosts that see the volume
//!
//! [[workload]]
//! host = "h1"               # must be in the volume's exposed_to
//! volume = "linear0"
//! read_fraction = 0.7       # optional, 0..=1, default 0.5
//! block_kib = 4             # optional, 1..=1024 and within the volume, default 4
//! queue_depth = 8           # optional, 1..=1024, default 1
//! pattern = "random"        # optional, random | sequential, default random
//! think_us = 0              # optional, pause between an I/O's end and the next, default 0
//! verify = true             # optional, check reads against the oracle, default true
//! span_mib = 4              # optional, only the volume's first span_mib MiB, default all
//! start_ms = 0              # optional, default 0
//! stop_ms = 10000           # optional, default duration_ms; start_ms < stop_ms <= duration
//!
//! [[event]]
//! at_ms = 3000              # 0 <= at_ms < duration_ms; events run in time order, ties in
//!                           # file order
//! action = "fail-disk"
//! disk = "d3"
//! ```
//!
//! Each event action takes these fields and no others:
//!
//! | action | fields |
//! |---|---|
//! | `fail-disk`, `restore-disk`, `disk-hang` | `disk` |
//! | `disk-write-errors` | `disk`, `fraction` (optional, share of writes failed, default 1) |
//! | `fail-link`, `restore-link`, `fail-path`, `restore-path` | `host` or `disk`, `path` (optional, 0-based, default 0) |
//! | `snapshot` | `volume`, `name` (the snapshot's name), `copy_granularity_blocks` (optional, blocks a write to the source pushes at least: a power of two up to 2048, default 128) |
//! | `group-snapshot` | `volumes` (two or more), `name` (each member's snapshot is `name.volume`), `copy_granularity_blocks` (optional, for every member) |
//! | `migrate` | `volume` (linear, stripe or journal at that time, not the base of an incremental), `to` (as many disks as the volume has data disks), `rate_mib_per_s` (optional, the copy's rate limit, 1..=100000; default unlimited) |
//! | `cancel-migration` | `volume` (migrated earlier in the timeline, with no mirror side added or removed since: what was moved goes back, the volume stays on its disks) |
//! | `resync` | `volume` (mirror or raid10 at that time), `disk` (optional, one of its disks) |
//! | `add-mirror-side` | `volume` (a mirror of fewer than 8 sides, or linear on one disk, at that time; not the base of an incremental), `disk` (not one of its disks) |
//! | `remove-mirror-side` | `volume` (a mirror or raid10 at that time; not the base of an incremental), `disk` (one of its sides; for raid10, any disk of the stripe set that goes) |
//!
//! A volume's layout follows the timeline as the control path changes it: a side added to a
//! linear volume on one disk makes it a mirror (so it takes more sides, can lose one and is
//! resynchronized), a mirror left with one side is linear on it again (so it can be migrated
//! and take a side again, but has none to remove), a raid10 that loses a side is a stripe over
//! the other, and a migration moves the data disks.
//! | `replicate` | `volume` (journal), `disk` (the replica's, not one of the volume's), `interval_ms` (optional, between consistency points, 1..=60000, default 500) |
//! | `pause-replication`, `resume-replication` | `volume` (replicated earlier in the timeline; paused, its replica keeps the last consistency point it shows, and resuming copies what was written meanwhile) |
//! | `kill-engine`, `restart-engine` | `engine` |
//! | `split-segment` | `volume`, `at_kib` (inside a segment; a striped volume splits between whole stripe rows) |
//! | `merge-segments` | `volume`, `at_kib` (where a segment starts, not 0: it joins the one before, whose storage it must continue) |
//!
//! `fail-link` takes a cable down (both ends see the loss of signal); `fail-path` leaves it up
//! but silently loses every frame on it (a black hole), so only timeouts reveal it.
//! `restore-disk` ends every failure mode of the disk (failed, hung, write errors).
//! `kill-engine` is a power loss: the engine's workers and control path forget everything
//! but the metadata they committed, and every cable to it loses signal (I/O in flight fails;
//! workloads wait). `restart-engine` starts it from that metadata: its disk ports come up at
//! once, set-up is redone for what had not been committed, then its host ports come up and
//! the hosts log in again.
//!
//! # Names, ports and addresses
//!
//! Names are 1 to 64 characters from `A-Z a-z 0-9 _ . -`, unique across engines, hosts, disks,
//! volumes and snapshots. An engine's ports are numbered from 0: first every host path cabled
//! to it (hosts in file order, paths in order), then every disk path; port `i` belongs to
//! worker `i % workers`. A port is named on the command line as `h1` or `h1:1` (a host's
//! port, path 0 or 1), `d2` (a disk's), or `dve1:3` (an engine's port 3); see
//! [`Scenario::resolve_port`]. A node's WWPN is that of its path 0; path `k` adds `k` to the
//! 12-bit port field (the second and third hex digits), see [`HostSpec::port_wwpn`]. Derived
//! WWPNs are `21:00:` (hosts) or `22:00:` (disks) followed by 48 bits of a hash of the name.
//! Every port's WWPN must be unique.
//!
//! # Placement and capacity
//!
//! Each disk is filled from block 0 in the order volumes appear in the file, then migration
//! destinations in timeline order; space is never freed (a migrated volume's old place stays
//! reserved). A volume of `S` MiB on `n` disks takes, per disk: linear `S/n` (the last disk
//! takes the remainder; the disks are concatenated in order), stripe `S/n`, mirror `S` per side,
//! raid10 `S/(n/2)`, journal `S` on the primary plus a journal region of `max(S/4, 4)` MiB on
//! the journal disk; a replica `S` on its disk, at its `replicate` event. Stripe and raid10 sizes must be a whole number of stripe rows
//! (`stripe_kib` times the number of columns). Snapshots take no space here. The sums must fit
//! each disk's `capacity_mib`. The resulting [`Region`]s are part of the validated scenario.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use dve_controlpath::control_path::copy_granularity_refusal;
use dve_controlpath::text_position::line_column;
use serde::Deserialize;
use toml::Spanned;

use crate::engine::{NS_PER_MS, NS_PER_US, SimTime};
use crate::link::LinkParams;

/// Bytes per block: fixed.
pub const BLOCK_BYTES: u64 = 512;
/// Blocks per KiB.
pub const BLOCKS_PER_KIB: u64 = 1024 / BLOCK_BYTES;
/// Blocks per MiB.
pub const BLOCKS_PER_MIB: u64 = 1024 * BLOCKS_PER_KIB;
/// Most paths (ports) a host or disk may have.
pub const MAX_PATHS: u64 = 8;
/// Most fast-path workers per engine (exchange ids name the worker in 4 bits, one value
/// reserved for the control path).
pub const MAX_WORKERS: u64 = 15;
/// Most time-series samples per run.
pub const MAX_SAMPLES: u64 = 100_000;
/// Most sides a mirror may have (the engine's own limit, so a scenario it refuses is
/// rejected before the run).
pub const MAX_MIRROR_SIDES: usize = dve_fp_api::mapping::MirrorSet::MAX_SIDES;
// The volume rule's message names the number.
const _: () = assert!(MAX_MIRROR_SIDES == 8);
/// Smallest journal region, MiB.
pub const MIN_JOURNAL_MIB: u64 = 4;
/// Longest name.
pub const MAX_NAME_LEN: usize = 64;
/// Largest queue depth (workloads and disks) and block size in KiB.
pub const MAX_QUEUE_DEPTH: u64 = 1024;
/// Largest workload block, KiB.
pub const MAX_BLOCK_KIB: u64 = 1024;

/// The built-in default scenario's text.
pub const DEFAULT_SCENARIO_TOML: &str = include_str!("../scenarios/default.toml");
/// The name the built-in default scenario's errors (if any) are reported under.
pub const DEFAULT_SCENARIO_FILE: &str = "sim/scenarios/default.toml";

/// Why a scenario was rejected, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file, as given.
    pub file: String,
    /// 1-based line, or 0 when the error is about the whole file (e.g. it cannot be read).
    pub line: usize,
    /// 1-based column in characters, or 0 with `line`.
    pub column: usize,
    /// What is wrong.
    pub reason: String,
}

impl ScenarioError {
    /// An error about the whole file.
    pub fn whole_file(file: &str, reason: impl Into<String>) -> ScenarioError {
        ScenarioError { file: file.to_string(), line: 0, column: 0, reason: reason.into() }
    }
}

impl fmt::Display for ScenarioError {
    /// `FILE:LINE:COL: reason`, or `FILE: reason` for whole-file errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.reason)
        }
    }
}

impl std::error::Error for ScenarioError {}

// ---------------------------------------------------------------------------------------------
// The file as written: every value someone may need to point at keeps its span.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    simulation: Spanned<RawSimulation>,
    #[serde(default)]
    defaults: Option<RawDefaults>,
    #[serde(default)]
    engine: Vec<Spanned<RawEngine>>,
    #[serde(default)]
    host: Vec<Spanned<RawHost>>,
    #[serde(default)]
    disk: Vec<Spanned<RawDisk>>,
    #[serde(default)]
    volume: Vec<Spanned<RawVolume>>,
    #[serde(default)]
    workload: Vec<Spanned<RawWorkload>>,
    #[serde(default)]
    event: Vec<Spanned<RawEvent>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimulation {
    name: Option<Spanned<String>>,
    seed: Option<u64>,
    duration_ms: Spanned<u64>,
    sample_interval_ms: Option<Spanned<u64>>,
    block_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    link: Option<RawLink>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    latency_ns: Option<u64>,
    gbps: Option<Spanned<f64>>,
    queue_limit_kib: Option<Spanned<u64>>,
    loss: Option<Spanned<f64>>,
    corrupt: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    name: Spanned<String>,
    workers: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    engine: Spanned<String>,
    paths: Option<Spanned<u64>>,
    wwpn: Option<Spanned<String>>,
    link: Option<RawLink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    name: Spanned<String>,
    engine: Spanned<String>,
    capacity_mib: Spanned<u64>,
    latency_us: Option<Spanned<f64>>,
    ns_per_kib: Option<u64>,
    queue_depth: Option<Spanned<u64>>,
    paths: Option<Spanned<u64>>,
    wwpn: Option<Spanned<String>>,
    link: Option<RawLink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    name: Spanned<String>,
    layout: Spanned<LayoutKind>,
    size_mib: Spanned<u64>,
    disks: Spanned<Vec<Spanned<String>>>,
    stripe_kib: Option<Spanned<u64>>,
    journal_disk: Option<Spanned<String>>,
    base: Option<Spanned<String>>,
    prefill: Option<Spanned<bool>>,
    #[serde(default)]
    exposed_to: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    host: Spanned<String>,
    volume: Spanned<String>,
    read_fraction: Option<Spanned<f64>>,
    block_kib: Option<Spanned<u64>>,
    queue_depth: Option<Spanned<u64>>,
    pattern: Option<Pattern>,
    think_us: Option<u64>,
    verify: Option<bool>,
    span_mib: Option<Spanned<u64>>,
    start_ms: Option<Spanned<u64>>,
    stop_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at_ms: Spanned<u64>,
    action: Spanned<ActionKind>,
    disk: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    path: Option<Spanned<u64>>,
    volume: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    to: Option<Spanned<Vec<Spanned<String>>>>,
    volumes: Option<Spanned<Vec<Spanned<String>>>>,
    engine: Option<Spanned<String>>,
    fraction: Option<Spanned<f64>>,
    interval_ms: Option<Spanned<u64>>,
    at_kib: Option<Spanned<u64>>,
    rate_mib_per_s: Option<Spanned<u64>>,
    copy_granularity_blocks: Option<Spanned<u64>>,
}

/// A volume's layout kind, as written in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayoutKind {
    /// Concatenation.
    Linear,
    /// Striping (RAID 0).
    Stripe,
    /// Mirroring (RAID 1).
    Mirror,
    /// Striping over mirrored pairs.
    Raid10,
    /// A primary disk with a write journal on another disk.
    Journal,
    /// A writable volume over an earlier volume (its base, which becomes read-only), with
    /// its own writes in a private store on one disk.
    Incremental,
}

impl LayoutKind {
    /// The name used in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            LayoutKind::Linear => "linear",
            LayoutKind::Stripe => "stripe",
            LayoutKind::Mirror => "mirror",
            LayoutKind::Raid10 => "raid10",
            LayoutKind::Journal => "journal",
            LayoutKind::Incremental => "incremental",
        }
    }
}

/// The order in which a workload visits the volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Uniformly random block-aligned offsets.
    #[default]
    Random,
    /// Consecutive blocks, wrapping at the end of the volume.
    Sequential,
}

/// An event's action, as written in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Fail a disk: it stops answering and its link goes down.
    FailDisk,
    /// Bring a disk back and end every failure mode.
    RestoreDisk,
    /// Take a cable down.
    FailLink,
    /// Bring a cable back.
    RestoreLink,
    /// Black-hole a path: the link stays up and loses every frame.
    FailPath,
    /// End a black hole.
    RestorePath,
    /// Take a snapshot of a volume.
    Snapshot,
    /// Take mutually consistent snapshots of several volumes at one instant.
    GroupSnapshot,
    /// Move a volume's data to other disks.
    Migrate,
    /// Cancel a volume's migration: what it moved is copied back.
    CancelMigration,
    /// Resynchronize a mirror.
    Resync,
    /// Add a mirror side on a disk (a single-disk linear volume becomes a mirror).
    AddMirrorSide,
    /// Remove the mirror side on a disk (a mirror left with one side becomes linear).
    RemoveMirrorSide,
    /// Replicate a journaled volume asynchronously to a disk.
    Replicate,
    /// Pause a volume's replication.
    PauseReplication,
    /// Resume a volume's paused replication.
    ResumeReplication,
    /// Kill an engine (its fast path and control path stop at once).
    KillEngine,
    /// Restart a killed engine.
    RestartEngine,
    /// Make a disk fail writes (medium errors).
    DiskWriteErrors,
    /// Make a disk accept commands and never answer.
    DiskHang,
    /// Split a volume's segment in two.
    SplitSegment,
    /// Merge a volume's segment into the one before it.
    MergeSegments,
}

impl ActionKind {
    /// The name used in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::FailDisk => "fail-disk",
            ActionKind::RestoreDisk => "restore-disk",
            ActionKind::FailLink => "fail-link",
            ActionKind::RestoreLink => "restore-link",
            ActionKind::FailPath => "fail-path",
            ActionKind::RestorePath => "restore-path",
            ActionKind::Snapshot => "snapshot",
            ActionKind::GroupSnapshot => "group-snapshot",
            ActionKind::Migrate => "migrate",
            ActionKind::CancelMigration => "cancel-migration",
            ActionKind::Resync => "resync",
            ActionKind::AddMirrorSide => "add-mirror-side",
            ActionKind::RemoveMirrorSide => "remove-mirror-side",
            ActionKind::Replicate => "replicate",
            ActionKind::PauseReplication => "pause-replication",
            ActionKind::ResumeReplication => "resume-replication",
            ActionKind::KillEngine => "kill-engine",
            ActionKind::RestartEngine => "restart-engine",
            ActionKind::DiskWriteErrors => "disk-write-errors",
            ActionKind::DiskHang => "disk-hang",
            ActionKind::SplitSegment => "split-segment",
            ActionKind::MergeSegments => "merge-segments",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The validated model.
// ---------------------------------------------------------------------------------------------

/// A validated scenario. Cross references are indexes into its vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The scenario's name (`[simulation] name`, or the file's stem).
    pub name: String,
    /// The file it came from, as given.
    pub file: String,
    /// The seed of the run's random source.
    pub seed: u64,
    /// How long the run lasts, milliseconds of virtual time.
    pub duration_ms: u64,
    /// The time-series resolution of the report, milliseconds.
    pub sample_interval_ms: u64,
    /// The engines, in file order.
    pub engines: Vec<EngineSpec>,
    /// The hosts, in file order.
    pub hosts: Vec<HostSpec>,
    /// The disks, in file order.
    pub disks: Vec<DiskSpec>,
    /// The volumes, in file order.
    pub volumes: Vec<VolumeSpec>,
    /// The workloads, in file order.
    pub workloads: Vec<WorkloadSpec>,
    /// The timeline, by time, ties in file order.
    pub events: Vec<TimelineEvent>,
}

/// An engine (a DVE switch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineSpec {
    /// Its name.
    pub name: String,
    /// Fast-path workers, `1..=15`.
    pub workers: usize,
}

/// A host: an FCP initiator cabled to one engine.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSpec {
    /// Its name.
    pub name: String,
    /// Index of the engine its ports are cabled to.
    pub engine: usize,
    /// Number of ports (each with its own link), `1..=8`.
    pub paths: usize,
    /// The WWPN of path 0.
    pub wwpn: u64,
    /// The parameters of its links.
    pub link: LinkParams,
}

impl HostSpec {
    /// The WWPN of port `path`.
    pub fn port_wwpn(&self, path: usize) -> u64 {
        port_wwpn(self.wwpn, path)
    }
}

/// A physical disk: an FCP target cabled to one engine.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskSpec {
    /// Its name.
    pub name: String,
    /// Index of the engine its ports are cabled to.
    pub engine: usize,
    /// Capacity, MiB.
    pub capacity_mib: u64,
    /// Fixed service time per command, nanoseconds.
    pub latency_ns: u64,
    /// Transfer time per KiB, nanoseconds.
    pub ns_per_kib: u64,
    /// Commands served at once.
    pub queue_depth: usize,
    /// Number of ports, `1..=8`.
    pub paths: usize,
    /// The WWPN of path 0.
    pub wwpn: u64,
    /// The parameters of its links.
    pub link: LinkParams,
}

impl DiskSpec {
    /// Capacity in blocks.
    pub fn capacity_blocks(&self) -> u64 {
        self.capacity_mib * BLOCKS_PER_MIB
    }

    /// The WWPN of port `path`.
    pub fn port_wwpn(&self, path: usize) -> u64 {
        port_wwpn(self.wwpn, path)
    }

    /// Whether `wwpn` names one of its ports.
    pub fn has_port(&self, wwpn: u64) -> bool {
        (0..self.paths).any(|path| self.port_wwpn(path) == wwpn)
    }

    /// Service time of a command moving `bytes`: the fixed part plus the per-KiB part.
    pub fn service_ns(&self, bytes: u64) -> u64 {
        self.latency_ns.saturating_add(self.ns_per_kib.saturating_mul(bytes) / 1024)
    }
}

/// The WWPN of port `path` of a node whose path-0 WWPN is `base`.
fn port_wwpn(base: u64, path: usize) -> u64 {
    base.wrapping_add((path as u64) << 48)
}

/// A contiguous range of blocks on one disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region {
    /// Index of the disk.
    pub disk: usize,
    /// First block.
    pub start_block: u64,
    /// Length in blocks.
    pub blocks: u64,
}

/// A volume's layout with its disks (indexes into [`Scenario::disks`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The disks concatenated in order.
    Linear {
        /// The disks, in address order.
        disks: Vec<usize>,
    },
    /// Striped over the disks in order.
    Stripe {
        /// The columns.
        disks: Vec<usize>,
        /// The stripe unit, KiB (a power of two).
        stripe_kib: u64,
    },
    /// Every disk is a full copy (a side).
    Mirror {
        /// The sides.
        disks: Vec<usize>,
    },
    /// Striped over mirrored pairs: `disks[2k]` and `disks[2k+1]` form column `k`.
    Raid10 {
        /// The disks, pair by pair.
        disks: Vec<usize>,
        /// The stripe unit, KiB (a power of two).
        stripe_kib: u64,
    },
    /// A primary disk whose writes go through a journal on another disk.
    Journal {
        /// The primary.
        primary: usize,
        /// The disk holding the journal.
        journal_disk: usize,
    },
    /// An incremental of an earlier volume.
    Incremental {
        /// Index of the base volume.
        base: usize,
        /// The disk holding the private store.
        store: usize,
    },
}

impl Layout {
    /// The kind of layout.
    pub fn kind(&self) -> LayoutKind {
        match self {
            Layout::Linear { .. } => LayoutKind::Linear,
            Layout::Stripe { .. } => LayoutKind::Stripe,
            Layout::Mirror { .. } => LayoutKind::Mirror,
            Layout::Raid10 { .. } => LayoutKind::Raid10,
            Layout::Journal { .. } => LayoutKind::Journal,
            Layout::Incremental { .. } => LayoutKind::Incremental,
        }
    }

    /// The disks holding the volume's data (for a journal, the primary only).
    pub fn data_disks(&self) -> Vec<usize> {
        match self {
            Layout::Linear { disks }
            | Layout::Stripe { disks, .. }
            | Layout::Mirror { disks }
            | Layout::Raid10 { disks, .. } => disks.clone(),
            Layout::Journal { primary, .. } => vec![*primary],
            Layout::Incremental { store, .. } => vec![*store],
        }
    }

    /// Every disk the volume's creation needs: its data disks and a journal's disk.
    pub fn disks(&self) -> Vec<usize> {
        let mut disks = self.data_disks();
        if let Layout::Journal { journal_disk, .. } = self {
            disks.push(*journal_disk);
        }
        disks
    }

    /// The layout once a mirror side on `disk` is added, as the control path makes it: a
    /// mirror of fewer than [`MAX_MIRROR_SIDES`] sides gains one, a linear volume on one
    /// disk becomes a two-sided mirror; `None` when the control path refuses a side, or
    /// `disk` already holds the volume.
    fn with_side(&self, disk: usize) -> Option<Layout> {
        if !self.takes_a_side() || self.data_disks().contains(&disk) {
            return None;
        }
        let mut disks = self.data_disks();
        disks.push(disk);
        Some(Layout::Mirror { disks })
    }

    /// Whether the control path adds a mirror side to this layout.
    fn takes_a_side(&self) -> bool {
        match self {
            Layout::Mirror { disks } => disks.len() < MAX_MIRROR_SIDES,
            Layout::Linear { disks } => disks.len() == 1,
            _ => false,
        }
    }

    /// The layout once the mirror side holding `disk` is removed, as the control path leaves
    /// it: a mirror left with one side is linear on it, a raid10 loses the whole stripe set
    /// `disk` is in and is a stripe over the other; `None` when `disk` is no side of a
    /// mirror or raid10.
    fn without_side(&self, disk: usize) -> Option<Layout> {
        match self {
            Layout::Mirror { disks } if disks.contains(&disk) => {
                let left: Vec<usize> = disks.iter().copied().filter(|d| *d != disk).collect();
                Some(if left.len() == 1 {
                    Layout::Linear { disks: left }
                } else {
                    Layout::Mirror { disks: left }
                })
            }
            Layout::Raid10 { disks, stripe_kib } => {
                let position = disks.iter().position(|d| *d == disk)?;
                let other = disks.iter().enumerate().filter(|(i, _)| i % 2 != position % 2);
                Some(Layout::Stripe { disks: other.map(|(_, d)| *d).collect(), stripe_kib: *stripe_kib })
            }
            _ => None,
        }
    }

    /// The layout once migrated to `to` (its data disks replaced one for one); `None` for
    /// the layouts the control path does not migrate (mirrors, raid10, incrementals).
    fn migrated(&self, to: &[usize]) -> Option<Layout> {
        match self {
            Layout::Linear { .. } => Some(Layout::Linear { disks: to.to_vec() }),
            Layout::Stripe { stripe_kib, .. } => {
                Some(Layout::Stripe { disks: to.to_vec(), stripe_kib: *stripe_kib })
            }
            Layout::Journal { journal_disk, .. } => {
                to.first().map(|&primary| Layout::Journal { primary, journal_disk: *journal_disk })
            }
            Layout::Mirror { .. } | Layout::Raid10 { .. } | Layout::Incremental { .. } => None,
        }
    }

    /// How a timeline's rejection names the layout: its kind and disk count.
    fn shape(&self) -> String {
        let count = self.data_disks().len();
        match self {
            Layout::Mirror { .. } => format!("a mirror of {count} sides"),
            Layout::Raid10 { .. } => format!("raid10 on {count} disks"),
            Layout::Linear { .. } | Layout::Stripe { .. } => {
                format!("{} on {count} disk(s)", self.kind().name())
            }
            Layout::Journal { .. } | Layout::Incremental { .. } => self.kind().name().to_string(),
        }
    }
}

/// A host's view of a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Exposure {
    /// Index of the host.
    pub host: usize,
    /// The LUN it sees the volume as: each host numbers its volumes from 0 in file order.
    pub lun: u16,
}

/// A volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Its name.
    pub name: String,
    /// Its layout and disks.
    pub layout: Layout,
    /// Size, MiB.
    pub size_mib: u64,
    /// The hosts that see it, in the order written.
    pub exposures: Vec<Exposure>,
    /// Where its data lives: one region per data disk, in the layout's disk order.
    pub regions: Vec<Region>,
    /// For a journal volume, the journal region.
    pub journal_region: Option<Region>,
    /// Filled with stamped data at set-up, before anything else uses it.
    pub prefill: bool,
}

impl VolumeSpec {
    /// Size in blocks.
    pub fn size_blocks(&self) -> u64 {
        self.size_mib * BLOCKS_PER_MIB
    }

    /// The LUN under which `host` sees the volume, if it does.
    pub fn lun_for(&self, host: usize) -> Option<u16> {
        self.exposures.iter().find(|exposure| exposure.host == host).map(|exposure| exposure.lun)
    }
}

/// A workload: one host driving one volume.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    /// Index of the host.
    pub host: usize,
    /// Index of the volume.
    pub volume: usize,
    /// Share of I/Os that are reads, `0..=1`.
    pub read_fraction: f64,
    /// I/O size, KiB.
    pub block_kib: u64,
    /// I/Os kept outstanding.
    pub queue_depth: usize,
    /// Offset pattern.
    pub pattern: Pattern,
    /// Pause between an I/O's completion and the next one in its slot, nanoseconds.
    pub think_ns: u64,
    /// Whether reads are checked against the oracle.
    pub verify: bool,
    /// Blocks from LBA 0 the workload touches.
    pub span_blocks: u64,
    /// When it starts, milliseconds.
    pub start_ms: u64,
    /// When it stops issuing, milliseconds.
    pub stop_ms: u64,
}

impl WorkloadSpec {
    /// I/O size in blocks.
    pub fn block_blocks(&self) -> u64 {
        self.block_kib * BLOCKS_PER_KIB
    }
}

/// One end of a cable to an engine: a host or a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeRef {
    /// Index of a host.
    Host(usize),
    /// Index of a disk.
    Disk(usize),
}

/// What a timeline event does (indexes into the [`Scenario`]'s vectors).
#[derive(Clone, Debug, PartialEq)]
pub enum EventAction {
    /// Fail a disk.
    FailDisk {
        /// Index of the disk.
        disk: usize,
    },
    /// Restore a disk (ends every failure mode).
    RestoreDisk {
        /// Index of the disk.
        disk: usize,
    },
    /// Make a disk fail a share of its writes.
    DiskWriteErrors {
        /// Index of the disk.
        disk: usize,
        /// Share of writes that fail, `0..=1`.
        fraction: f64,
    },
    /// Make a disk stop answering.
    DiskHang {
        /// Index of the disk.
        disk: usize,
    },
    /// Take down the cable of a node's path.
    FailLink {
        /// The node at the far end from the engine.
        node: NodeRef,
        /// Which of its paths.
        path: usize,
    },
    /// Bring that cable back.
    RestoreLink {
        /// The node.
        node: NodeRef,
        /// Which of its paths.
        path: usize,
    },
    /// Black-hole a node's path.
    FailPath {
        /// The node.
        node: NodeRef,
        /// Which of its paths.
        path: usize,
    },
    /// End the black hole.
    RestorePath {
        /// The node.
        node: NodeRef,
        /// Which of its paths.
        path: usize,
    },
    /// Snapshot several volumes at one instant; snapshot `k` is named `{name}.{volume}`.
    GroupSnapshot {
        /// Indexes of the volumes.
        volumes: Vec<usize>,
        /// The group's name.
        name: String,
        /// Blocks a write to a member pushes at least, if not the default.
        copy_granularity_blocks: Option<u64>,
    },
    /// Snapshot a volume.
    Snapshot {
        /// Index of the volume.
        volume: usize,
        /// The snapshot's name.
        name: String,
        /// Blocks a write to the source pushes at least, if not the default.
        copy_granularity_blocks: Option<u64>,
    },
    /// Migrate a volume's data disks to others, keeping the layout.
    Migrate {
        /// Index of the volume.
        volume: usize,
        /// The new data disks, replacing the current ones position by position.
        to: Vec<usize>,
        /// The destination regions, one per new disk.
        regions: Vec<Region>,
        /// The copy's rate limit in MiB per second, if any.
        rate_mib_per_s: Option<u64>,
    },
    /// Cancel the migration of a volume.
    CancelMigration {
        /// Index of the volume.
        volume: usize,
    },
    /// Resynchronize a mirror (or raid10).
    Resync {
        /// Index of the volume.
        volume: usize,
        /// Only this disk, if given.
        disk: Option<usize>,
    },
    /// Add a mirror side to a volume.
    AddMirrorSide {
        /// Index of the volume.
        volume: usize,
        /// The new side's disk.
        disk: usize,
    },
    /// Remove a mirror side from a volume.
    RemoveMirrorSide {
        /// Index of the volume.
        volume: usize,
        /// The side's disk.
        disk: usize,
    },
    /// Replicate a journaled volume asynchronously.
    Replicate {
        /// Index of the volume.
        volume: usize,
        /// The replica's disk.
        disk: usize,
        /// Between consistency points, ms.
        interval_ms: u64,
        /// Where the replica image goes.
        region: Region,
    },
    /// Pause (`paused`) or resume a volume's replication.
    PauseReplication {
        /// Index of the volume.
        volume: usize,
        /// Pause rather than resume.
        paused: bool,
    },
    /// Kill an engine.
    KillEngine {
        /// Index of the engine.
        engine: usize,
    },
    /// Restart an engine.
    RestartEngine {
        /// Index of the engine.
        engine: usize,
    },
    /// Split the segment of a volume holding `at_block` there.
    SplitSegment {
        /// Index of the volume.
        volume: usize,
        /// Where, in blocks from the volume's start.
        at_block: u64,
    },
    /// Merge the segment of a volume starting at `at_block` into the one before.
    MergeSegments {
        /// Index of the volume.
        volume: usize,
        /// Where, in blocks from the volume's start.
        at_block: u64,
    },
}

/// An event on the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineEvent {
    /// When, milliseconds.
    pub at_ms: u64,
    /// What.
    pub action: EventAction,
    /// A readable description with names, e.g. `fail-disk d5`.
    pub description: String,
    /// The line of its `[[event]]` table in the file.
    pub line: usize,
}

impl TimelineEvent {
    /// When, as virtual time.
    pub fn at(&self) -> SimTime {
        SimTime(self.at_ms.saturating_mul(NS_PER_MS))
    }
}

/// An engine port: which node and path it is cabled to, and which worker owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnginePort {
    /// Index of the engine.
    pub engine: usize,
    /// The port's number on the engine.
    pub port: usize,
    /// The worker that polls it (`port % workers`).
    pub worker: usize,
    /// The node at the other end.
    pub peer: NodeRef,
    /// Which of the node's paths the cable is.
    pub path: usize,
}

/// A port named on the command line (e.g. for a capture).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortRef {
    /// A host's or disk's port.
    Node {
        /// The node.
        node: NodeRef,
        /// Which of its paths.
        path: usize,
    },
    /// An engine's port.
    Engine {
        /// Index of the engine.
        engine: usize,
        /// The port number.
        port: usize,
    },
}

impl Scenario {
    /// Parses and validates a scenario; `file_name` is used in error messages and for the
    /// default name.
    pub fn from_toml_str(text: &str, file_name: &str) -> Result<Scenario, ScenarioError> {
        let source = Source { file: file_name, text };
        let raw: RawScenario = toml::from_str(text).map_err(|err| source.parse_error(&err))?;
        Builder::new(source).build(raw)
    }

    /// Reads, parses and validates the scenario in `path`.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|err| ScenarioError::whole_file(&file, format!("cannot read the scenario: {err}")))?;
        Scenario::from_toml_str(&text, &file)
    }

    /// The built-in default scenario (`sim/scenarios/default.toml`).
    pub fn default_scenario() -> Result<Scenario, ScenarioError> {
        Scenario::from_toml_str(DEFAULT_SCENARIO_TOML, DEFAULT_SCENARIO_FILE)
    }

    /// The run's length as virtual time.
    pub fn duration(&self) -> SimTime {
        SimTime(self.duration_ms.saturating_mul(NS_PER_MS))
    }

    /// The sample interval, nanoseconds.
    pub fn sample_interval_ns(&self) -> u64 {
        self.sample_interval_ms.saturating_mul(NS_PER_MS)
    }

    /// This scenario with another seed and/or a different length. Workloads that ran to the
    /// end run to the new end; a shorter run also stops the others at the new end, drops events
    /// at or after it and shortens the sample interval if needed (a much longer one lengthens
    /// it to stay within [`MAX_SAMPLES`]). A duration of 0 is ignored. Applying the same
    /// overrides twice changes nothing.
    pub fn with_overrides(&self, seed: Option<u64>, duration_ms: Option<u64>) -> Scenario {
        let mut scenario = self.clone();
        if let Some(seed) = seed {
            scenario.seed = seed;
        }
        if let Some(duration_ms) = duration_ms.filter(|&ms| ms > 0) {
            scenario.duration_ms = duration_ms;
            scenario.sample_interval_ms = scenario.sample_interval_ms.min(duration_ms);
            scenario.sample_interval_ms =
                scenario.sample_interval_ms.max(duration_ms.div_ceil(MAX_SAMPLES)).max(1);
            scenario.events.retain(|event| event.at_ms < duration_ms);
            for workload in &mut scenario.workloads {
                // A workload that ran to the end still does; others stop where they did, or at
                // the new end if that is sooner.
                workload.stop_ms = if workload.stop_ms == self.duration_ms {
                    duration_ms
                } else {
                    workload.stop_ms.min(duration_ms)
                };
                workload.start_ms = workload.start_ms.min(workload.stop_ms);
            }
        }
        scenario
    }

    /// Index of the engine named `name`.
    pub fn engine_index(&self, name: &str) -> Option<usize> {
        self.engines.iter().position(|engine| engine.name == name)
    }

    /// Index of the host named `name`.
    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|host| host.name == name)
    }

    /// Index of the disk named `name`.
    pub fn disk_index(&self, name: &str) -> Option<usize> {
        self.disks.iter().position(|disk| disk.name == name)
    }

    /// Index of the volume named `name`.
    pub fn volume_index(&self, name: &str) -> Option<usize> {
        self.volumes.iter().position(|volume| volume.name == name)
    }

    /// The name of a host or disk.
    pub fn node_name(&self, node: NodeRef) -> &str {
        match node {
            NodeRef::Host(host) => self.hosts.get(host).map_or("?", |host| host.name.as_str()),
            NodeRef::Disk(disk) => self.disks.get(disk).map_or("?", |disk| disk.name.as_str()),
        }
    }

    /// The ports of engine `engine` in port order: host paths (hosts in file order), then
    /// disk paths.
    pub fn engine_ports(&self, engine: usize) -> Vec<EnginePort> {
        let workers = self.engines.get(engine).map_or(1, |spec| spec.workers.max(1));
        let hosts = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, host)| host.engine == engine)
            .flat_map(|(index, host)| (0..host.paths).map(move |path| (NodeRef::Host(index), path)));
        let disks = self
            .disks
            .iter()
            .enumerate()
            .filter(|(_, disk)| disk.engine == engine)
            .flat_map(|(index, disk)| (0..disk.paths).map(move |path| (NodeRef::Disk(index), path)));
        hosts
            .chain(disks)
            .enumerate()
            .map(|(port, (peer, path))| EnginePort { engine, port, worker: port % workers, peer, path })
            .collect()
    }

    /// The engine port cabled to path `path` of `node`.
    pub fn engine_port_of(&self, node: NodeRef, path: usize) -> Option<EnginePort> {
        let engine = match node {
            NodeRef::Host(host) => self.hosts.get(host)?.engine,
            NodeRef::Disk(disk) => self.disks.get(disk)?.engine,
        };
        self.engine_ports(engine).into_iter().find(|port| port.peer == node && port.path == path)
    }

    /// Resolves a port name: `h1` or `h1:1` (a host's path 0 or 1), `d2`, `d2:1` (a disk's),
    /// `dve1:3` (an engine's port 3).
    pub fn resolve_port(&self, text: &str) -> Result<PortRef, String> {
        let (name, index) = match text.split_once(':') {
            Some((name, index)) => {
                let index: usize =
                    index.parse().map_err(|_| format!("port `{text}`: `{index}` is not a port number"))?;
                (name, Some(index))
            }
            None => (text, None),
        };
        let node_path = |node: NodeRef, paths: usize| {
            let path = index.unwrap_or(0);
            if path < paths {
                Ok(PortRef::Node { node, path })
            } else {
                Err(format!("port `{text}`: `{name}` has {paths} path(s), numbered from 0"))
            }
        };
        if let Some(host) = self.host_index(name) {
            return node_path(NodeRef::Host(host), self.hosts[host].paths);
        }
        if let Some(disk) = self.disk_index(name) {
            return node_path(NodeRef::Disk(disk), self.disks[disk].paths);
        }
        if let Some(engine) = self.engine_index(name) {
            let ports = self.engine_ports(engine).len();
            return match index {
                Some(port) if port < ports => Ok(PortRef::Engine { engine, port }),
                _ => Err(format!(
                    "port `{text}`: name an engine port as `{name}:N`, N from 0 to {}",
                    ports.max(1) - 1
                )),
            };
        }
        Err(format!("port `{text}`: no host, disk or engine is named `{name}`"))
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------------------------

/// The text being validated, to turn byte spans into lines and columns.
#[derive(Clone, Copy, Debug)]
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error_at(&self, span: Range<usize>, reason: impl Into<String>) -> ScenarioError {
        let (line, column) = line_column(self.text, span.start);
        ScenarioError { file: self.file.to_string(), line, column, reason: reason.into() }
    }

    fn error<T>(&self, value: &Spanned<T>, reason: impl Into<String>) -> ScenarioError {
        self.error_at(value.span(), reason)
    }

    fn parse_error(&self, err: &toml::de::Error) -> ScenarioError {
        let reason = err.message().trim().to_string();
        match err.span() {
            Some(span) => self.error_at(span, reason),
            None => ScenarioError::whole_file(self.file, reason),
        }
    }
}

/// What kind of thing a name belongs to, for "already used" messages.
#[derive(Clone, Copy, Debug)]
struct NameOwner {
    kind: &'static str,
    line: usize,
}

/// Builds the validated [`Scenario`] from the raw file, rule by rule.
#[derive(Debug)]
struct Builder<'a> {
    source: Source<'a>,
    /// Every name used so far (engines, hosts, disks, volumes, snapshots).
    names: BTreeMap<String, NameOwner>,
    engines: BTreeMap<String, usize>,
    hosts: BTreeMap<String, usize>,
    disks: BTreeMap<String, usize>,
    volumes: BTreeMap<String, usize>,
    /// Next free block on each disk.
    disk_fill: Vec<u64>,
    /// The layout each volume had before its migration, for a migration the timeline so far
    /// could still cancel.
    migrated_from: BTreeMap<usize, Layout>,
    /// Volumes replicated earlier in the timeline.
    replicated: BTreeSet<usize>,
}

/// What a validation step returns.
type Checked<T> = Result<T, ScenarioError>;

impl<'a> Builder<'a> {
    fn new(source: Source<'a>) -> Self {
        Builder {
            source,
            names: BTreeMap::new(),
            engines: BTreeMap::new(),
            hosts: BTreeMap::new(),
            disks: BTreeMap::new(),
            volumes: BTreeMap::new(),
            disk_fill: Vec::new(),
            migrated_from: BTreeMap::new(),
            replicated: BTreeSet::new(),
        }
    }

    fn build(mut self, raw: RawScenario) -> Checked<Scenario> {
        let simulation = raw.simulation.get_ref();
        let duration_ms = *simulation.duration_ms.get_ref();
        if duration_ms == 0 {
            return Err(self.source.error(&simulation.duration_ms, "duration_ms must be at least 1"));
        }
        let sample_interval_ms = match &simulation.sample_interval_ms {
            None => 100.min(duration_ms).max(duration_ms.div_ceil(MAX_SAMPLES)),
            Some(interval) => {
                let value = *interval.get_ref();
                if value == 0 || value > duration_ms {
                    return Err(self.source.error(
                        interval,
                        format!("sample_interval_ms must be from 1 to duration_ms ({duration_ms})"),
                    ));
                }
                if duration_ms.div_ceil(value) > MAX_SAMPLES {
                    return Err(self.source.error(
                        interval,
                        format!(
                            "sample_interval_ms {value} gives more than {MAX_SAMPLES} samples over {duration_ms} ms"
                        ),
                    ));
                }
                value
            }
        };
        if let Some(block_bytes) = &simulation.block_bytes
            && *block_bytes.get_ref() != BLOCK_BYTES
        {
            return Err(self
                .source
                .error(block_bytes, format!("only {BLOCK_BYTES}-byte blocks are supported")));
        }
        let name = match &simulation.name {
            Some(name) => {
                self.check_name_syntax(name)?;
                name.get_ref().clone()
            }
            None => Path::new(self.source.file)
                .file_stem()
                .map_or_else(|| "scenario".to_string(), |stem| stem.to_string_lossy().into_owned()),
        };
        let seed = simulation.seed.unwrap_or(1);

        let default_link = match raw.defaults.as_ref().and_then(|defaults| defaults.link.as_ref()) {
            Some(link) => self.link_params(&LinkParams::default(), link)?,
            None => LinkParams::default(),
        };

        let engines = raw.engine.iter().map(|engine| self.engine(engine)).collect::<Checked<Vec<_>>>()?;
        let hosts =
            raw.host.iter().map(|host| self.host(host, &default_link)).collect::<Checked<Vec<_>>>()?;
        let disks =
            raw.disk.iter().map(|disk| self.disk(disk, &default_link)).collect::<Checked<Vec<_>>>()?;
        self.check_wwpns(&raw, &hosts, &disks)?;
        self.disk_fill = vec![0; disks.len()];

        let mut volumes = Vec::with_capacity(raw.volume.len());
        let mut luns_per_host = vec![0u16; hosts.len()];
        for volume in &raw.volume {
            let spec = self.volume(volume, &disks, &volumes, &mut luns_per_host)?;
            volumes.push(spec);
        }
        let workloads = raw
            .workload
            .iter()
            .map(|workload| self.workload(workload, duration_ms, &volumes))
            .collect::<Checked<Vec<_>>>()?;

        let mut raw_events: Vec<&Spanned<RawEvent>> = raw.event.iter().collect();
        raw_events.sort_by_key(|event| *event.get_ref().at_ms.get_ref());
        // Each volume's layout as the control path will have it once the events so far ran:
        // adding and removing sides and migrating change more than the disks.
        let mut layouts: Vec<Layout> = volumes.iter().map(|volume| volume.layout.clone()).collect();
        let mut events = Vec::with_capacity(raw_events.len());
        for event in raw_events {
            events.push(self.event(event, duration_ms, &hosts, &disks, &volumes, &mut layouts)?);
        }

        Ok(Scenario {
            name,
            file: self.source.file.to_string(),
            seed,
            duration_ms,
            sample_interval_ms,
            engines,
            hosts,
            disks,
            volumes,
            workloads,
            events,
        })
    }

    fn line_of<T>(&self, value: &Spanned<T>) -> usize {
        line_column(self.source.text, value.span().start).0
    }

    fn check_name_syntax(&self, name: &Spanned<String>) -> Checked<()> {
        let text = name.get_ref();
        if text.is_empty() || text.len() > MAX_NAME_LEN {
            return Err(self
                .source
                .error(name, format!("a name must be 1 to {MAX_NAME_LEN} characters long")));
        }
        if let Some(bad) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(self.source.error(
                name,
                format!("name `{text}` contains `{bad}`; use letters, digits, `_`, `-` and `.`"),
            ));
        }
        Ok(())
    }

    /// Checks a new name's syntax and uniqueness and records it.
    fn claim_name(&mut self, name: &Spanned<String>, kind: &'static str) -> Checked<String> {
        self.check_name_syntax(name)?;
        let text = name.get_ref();
        if let Some(owner) = self.names.get(text) {
            return Err(self.source.error(
                name,
                format!("name `{text}` is already used by the {} on line {}", owner.kind, owner.line),
            ));
        }
        self.names.insert(text.clone(), NameOwner { kind, line: self.line_of(name) });
        Ok(text.clone())
    }

    /// A snapshot's copy granularity, if the event chooses one: what the control path would
    /// refuse is refused here, before the run.
    fn copy_granularity(&self, event: &RawEvent) -> Checked<Option<u64>> {
        let Some(blocks) = &event.copy_granularity_blocks else { return Ok(None) };
        match copy_granularity_refusal(*blocks.get_ref()) {
            Some(why) => Err(self.source.error(blocks, format!("copy_granularity_blocks {why}"))),
            None => Ok(Some(*blocks.get_ref())),
        }
    }

    /// The disk `reference` names, which must hold a side of volume `volume` (its disks at
    /// that point of the timeline are `current`).
    fn side_disk(&self, reference: &Spanned<String>, current: &[usize], volume: &str) -> Checked<usize> {
        let disk = self.lookup(&self.disks, "disk", reference)?;
        if !current.contains(&disk) {
            return Err(self.source.error(
                reference,
                format!("disk `{}` is not a side of `{volume}` at that time", reference.get_ref()),
            ));
        }
        Ok(disk)
    }

    fn lookup(
        &self,
        table: &BTreeMap<String, usize>,
        kind: &str,
        reference: &Spanned<String>,
    ) -> Checked<usize> {
        table.get(reference.get_ref()).copied().ok_or_else(|| {
            self.source.error(reference, format!("no {kind} is named `{}`", reference.get_ref()))
        })
    }

    fn fraction(&self, value: &Spanned<f64>, what: &str) -> Checked<f64> {
        let fraction = *value.get_ref();
        if !(0.0..=1.0).contains(&fraction) {
            return Err(self.source.error(value, format!("{what} must be from 0 to 1, not {fraction}")));
        }
        Ok(fraction)
    }

    fn link_params(&self, base: &LinkParams, raw: &RawLink) -> Checked<LinkParams> {
        let mut params = base.clone();
        if let Some(latency_ns) = raw.latency_ns {
            params.latency_ns = latency_ns;
        }
        if let Some(gbps) = &raw.gbps {
            let value = *gbps.get_ref();
            if !(value.is_finite() && value > 0.0) {
                return Err(self.source.error(gbps, format!("gbps must be a positive number, not {value}")));
            }
            params.gbps = value;
        }
        if let Some(queue) = &raw.queue_limit_kib {
            params.queue_limit_bytes = queue
                .get_ref()
                .checked_mul(1024)
                .ok_or_else(|| self.source.error(queue, "queue_limit_kib is too large"))?;
        }
        if let Some(loss) = &raw.loss {
            params.loss = self.fraction(loss, "loss")?;
        }
        if let Some(corrupt) = &raw.corrupt {
            params.corrupt = self.fraction(corrupt, "corrupt")?;
        }
        Ok(params)
    }

    fn paths(&self, paths: &Option<Spanned<u64>>) -> Checked<usize> {
        match paths {
            None => Ok(1),
            Some(paths) => {
                let value = *paths.get_ref();
                if value == 0 || value > MAX_PATHS {
                    return Err(self.source.error(paths, format!("paths must be from 1 to {MAX_PATHS}")));
                }
                Ok(value as usize)
            }
        }
    }

    fn wwpn(&self, wwpn: &Option<Spanned<String>>, prefix: u64, name: &str) -> Checked<u64> {
        match wwpn {
            None => Ok((prefix << 48) | (name_hash(name) & 0x0000_ffff_ffff_ffff)),
            Some(text) => parse_wwpn(text.get_ref()).ok_or_else(|| {
                self.source.error(
                    text,
                    format!("wwpn `{}` is not 8 hex bytes like 21:00:00:00:00:00:00:01", text.get_ref()),
                )
            }),
        }
    }

    fn engine(&mut self, raw: &Spanned<RawEngine>) -> Checked<EngineSpec> {
        let engine = raw.get_ref();
        let name = self.claim_name(&engine.name, "engine")?;
        let workers = match &engine.workers {
            None => 1,
            Some(workers) => {
                let value = *workers.get_ref();
                if value == 0 || value > MAX_WORKERS {
                    return Err(self
                        .source
                        .error(workers, format!("workers must be from 1 to {MAX_WORKERS}")));
                }
                value as usize
            }
        };
        self.engines.insert(name.clone(), self.engines.len());
        Ok(EngineSpec { name, workers })
    }

    fn host(&mut self, raw: &Spanned<RawHost>, default_link: &LinkParams) -> Checked<HostSpec> {
        let host = raw.get_ref();
        let name = self.claim_name(&host.name, "host")?;
        let engine = self.lookup(&self.engines, "engine", &host.engine)?;
        let paths = self.paths(&host.paths)?;
        let wwpn = self.wwpn(&host.wwpn, 0x2100, &name)?;
        let link = match &host.link {
            Some(link) => self.link_params(default_link, link)?,
            None => default_link.clone(),
        };
        self.hosts.insert(name.clone(), self.hosts.len());
        Ok(HostSpec { name, engine, paths, wwpn, link })
    }

    fn disk(&mut self, raw: &Spanned<RawDisk>, default_link: &LinkParams) -> Checked<DiskSpec> {
        let disk = raw.get_ref();
        let name = self.claim_name(&disk.name, "disk")?;
        let engine = self.lookup(&self.engines, "engine", &disk.engine)?;
        let capacity_mib = *disk.capacity_mib.get_ref();
        if capacity_mib == 0 || capacity_mib > u64::MAX / BLOCKS_PER_MIB {
            return Err(self.source.error(&disk.capacity_mib, "capacity_mib must be at least 1 (and sane)"));
        }
        let latency_ns = match &disk.latency_us {
            None => 80 * NS_PER_US,
            Some(latency) => {
                let value = *latency.get_ref();
                if !(value.is_finite() && (0.0..=1e9).contains(&value)) {
                    return Err(self
                        .source
                        .error(latency, format!("latency_us must be a number from 0 to 1e9, not {value}")));
                }
                (value * NS_PER_US as f64).round() as u64
            }
        };
        let queue_depth = match &disk.queue_depth {
            None => 32,
            Some(depth) => self.queue_depth(depth)?,
        };
        let paths = self.paths(&disk.paths)?;
        let wwpn = self.wwpn(&disk.wwpn, 0x2200, &name)?;
        let link = match &disk.link {
            Some(link) => self.link_params(default_link, link)?,
            None => default_link.clone(),
        };
        self.disks.insert(name.clone(), self.disks.len());
        Ok(DiskSpec {
            name,
            engine,
            capacity_mib,
            latency_ns,
            ns_per_kib: disk.ns_per_kib.unwrap_or(200),
            queue_depth,
            paths,
            wwpn,
            link,
        })
    }

    fn queue_depth(&self, depth: &Spanned<u64>) -> Checked<usize> {
        let value = *depth.get_ref();
        if value == 0 || value > MAX_QUEUE_DEPTH {
            return Err(self.source.error(depth, format!("queue_depth must be from 1 to {MAX_QUEUE_DEPTH}")));
        }
        Ok(value as usize)
    }

    /// Every port's WWPN is unique; the error points at the later node's `wwpn` (or name).
    fn check_wwpns(&self, raw: &RawScenario, hosts: &[HostSpec], disks: &[DiskSpec]) -> Checked<()> {
        let mut seen: BTreeMap<u64, String> = BTreeMap::new();
        let nodes = hosts
            .iter()
            .zip(&raw.host)
            .map(|(host, raw)| {
                (host.name.as_str(), host.wwpn, host.paths, &raw.get_ref().wwpn, &raw.get_ref().name)
            })
            .chain(disks.iter().zip(&raw.disk).map(|(disk, raw)| {
                (disk.name.as_str(), disk.wwpn, disk.paths, &raw.get_ref().wwpn, &raw.get_ref().name)
            }));
        for (name, base, paths, raw_wwpn, raw_name) in nodes {
            for path in 0..paths {
                let wwpn = port_wwpn(base, path);
                if let Some(other) = seen.get(&wwpn) {
                    let reason = format!(
                        "WWPN {} of `{name}` path {path} is already used by {other}",
                        format_wwpn(wwpn)
                    );
                    return Err(match raw_wwpn {
                        Some(text) => self.source.error(text, reason),
                        None => self.source.error(raw_name, reason),
                    });
                }
                seen.insert(wwpn, format!("`{name}` path {path}"));
            }
        }
        Ok(())
    }

    /// Resolves a list of disk references: each exists, none repeats.
    fn disk_list(&self, list: &[Spanned<String>]) -> Checked<Vec<usize>> {
        let mut disks = Vec::with_capacity(list.len());
        for reference in list {
            let disk = self.lookup(&self.disks, "disk", reference)?;
            if disks.contains(&disk) {
                return Err(self
                    .source
                    .error(reference, format!("disk `{}` is listed twice", reference.get_ref())));
            }
            disks.push(disk);
        }
        Ok(disks)
    }

    /// Reserves `blocks` on `disk`, or explains (at `at`) why they do not fit.
    fn allocate(
        &mut self,
        disks: &[DiskSpec],
        disk: usize,
        blocks: u64,
        what: &str,
        at: &Spanned<String>,
    ) -> Checked<Region> {
        let spec = &disks[disk];
        let start_block = self.disk_fill[disk];
        let free = spec.capacity_blocks().saturating_sub(start_block);
        if blocks > free {
            return Err(self.source.error(
                at,
                format!(
                    "disk `{}` is full: {what} needs {} on it but only {} of its {} MiB are free",
                    spec.name,
                    format_blocks(blocks),
                    format_blocks(free),
                    spec.capacity_mib
                ),
            ));
        }
        self.disk_fill[disk] = start_block + blocks;
        Ok(Region { disk, start_block, blocks })
    }

    /// The per-disk share of a volume of `size_blocks` on `count` data disks of `kind`: one
    /// entry per disk.
    fn shares(kind: LayoutKind, size_blocks: u64, count: usize) -> Vec<u64> {
        let count_u64 = count.max(1) as u64;
        match kind {
            LayoutKind::Linear => {
                let each = size_blocks / count_u64;
                let mut shares = vec![each; count];
                if let Some(last) = shares.last_mut() {
                    *last = size_blocks - each * (count_u64 - 1);
                }
                shares
            }
            LayoutKind::Stripe => vec![size_blocks / count_u64; count],
            LayoutKind::Mirror | LayoutKind::Journal | LayoutKind::Incremental => vec![size_blocks; count],
            LayoutKind::Raid10 => vec![size_blocks / (count_u64 / 2).max(1); count],
        }
    }

    fn volume(
        &mut self,
        raw: &Spanned<RawVolume>,
        disks: &[DiskSpec],
        earlier: &[VolumeSpec],
        luns_per_host: &mut [u16],
    ) -> Checked<VolumeSpec> {
        let volume = raw.get_ref();
        let name = self.claim_name(&volume.name, "volume")?;
        let kind = *volume.layout.get_ref();
        let size_mib = *volume.size_mib.get_ref();
        if size_mib == 0 || size_mib > u64::MAX / BLOCKS_PER_MIB {
            return Err(self.source.error(&volume.size_mib, "size_mib must be at least 1 (and sane)"));
        }
        let size_blocks = size_mib * BLOCKS_PER_MIB;
        let listed = self.disk_list(volume.disks.get_ref())?;
        let count = listed.len();
        let count_rule = match kind {
            LayoutKind::Linear if count < 1 => Some("a linear volume needs at least 1 disk"),
            LayoutKind::Stripe if count < 2 => Some("a stripe volume needs at least 2 disks"),
            LayoutKind::Mirror if count < 2 => Some("a mirror volume needs at least 2 disks (sides)"),
            LayoutKind::Mirror if count > MAX_MIRROR_SIDES => {
                Some("a mirror volume has at most 8 disks (sides)")
            }
            LayoutKind::Raid10 if count < 4 || count % 2 != 0 => {
                Some("a raid10 volume needs an even number of disks, at least 4 (mirrored pairs)")
            }
            LayoutKind::Journal if count != 1 => {
                Some("a journal volume takes exactly 1 disk, its primary (plus journal_disk)")
            }
            LayoutKind::Incremental if count != 1 => {
                Some("an incremental volume takes exactly 1 disk, its private store (plus base)")
            }
            _ => None,
        };
        if let Some(rule) = count_rule {
            return Err(self.source.error(&volume.disks, format!("{rule}; {count} given")));
        }

        let striped = matches!(kind, LayoutKind::Stripe | LayoutKind::Raid10);
        let stripe_kib = match (&volume.stripe_kib, striped) {
            (Some(stripe), false) => {
                return Err(self
                    .source
                    .error(stripe, "stripe_kib applies only to stripe and raid10 volumes"));
            }
            (None, _) => 64,
            (Some(stripe), true) => {
                let value = *stripe.get_ref();
                if !value.is_power_of_two() {
                    return Err(self
                        .source
                        .error(stripe, format!("stripe_kib must be a power of two, not {value}")));
                }
                value
            }
        };
        if striped {
            let columns = if kind == LayoutKind::Raid10 { count / 2 } else { count } as u64;
            let row_blocks = stripe_kib.saturating_mul(BLOCKS_PER_KIB).saturating_mul(columns);
            if row_blocks == 0 || !size_blocks.is_multiple_of(row_blocks) {
                return Err(self.source.error(
                    &volume.size_mib,
                    format!(
                        "size_mib {size_mib} is not a whole number of stripe rows ({columns} columns of {stripe_kib} KiB)"
                    ),
                ));
            }
        }

        let journal_disk = match (&volume.journal_disk, kind == LayoutKind::Journal) {
            (Some(journal), false) => {
                return Err(self.source.error(journal, "journal_disk applies only to journal volumes"));
            }
            (None, true) => {
                return Err(self.source.error(&volume.layout, "a journal volume needs a journal_disk"));
            }
            (None, false) => None,
            (Some(journal), true) => {
                let disk = self.lookup(&self.disks, "disk", journal)?;
                if listed.contains(&disk) {
                    return Err(self.source.error(journal, "the journal disk must not be the primary"));
                }
                Some((disk, journal))
            }
        };

        let base = match (&volume.base, kind == LayoutKind::Incremental) {
            (Some(base), false) => {
                return Err(self.source.error(base, "base applies only to incremental volumes"));
            }
            (None, true) => {
                return Err(self.source.error(&volume.layout, "an incremental volume needs a base"));
            }
            (None, false) => None,
            (Some(reference), true) => {
                let base = self.lookup(&self.volumes, "volume", reference)?;
                let spec = &earlier[base];
                if spec.layout.kind() == LayoutKind::Incremental {
                    return Err(self
                        .source
                        .error(reference, format!("`{}` is itself an incremental", spec.name)));
                }
                if spec.size_mib != size_mib {
                    return Err(self.source.error(
                        &volume.size_mib,
                        format!(
                            "an incremental is as large as its base: `{}` has {} MiB",
                            spec.name, spec.size_mib
                        ),
                    ));
                }
                let store_engine = disks[listed[0]].engine;
                if spec.layout.data_disks().first().is_some_and(|d| disks[*d].engine != store_engine) {
                    return Err(self.source.error(
                        &volume.disks,
                        format!("the private store must be on the engine of `{}`", spec.name),
                    ));
                }
                Some(base)
            }
        };
        let prefill = match &volume.prefill {
            Some(prefill) if kind == LayoutKind::Incremental => {
                return Err(self
                    .source
                    .error(prefill, "prefill applies to the base, not to its incrementals"));
            }
            Some(prefill) => *prefill.get_ref(),
            None => false,
        };

        let layout = match kind {
            LayoutKind::Linear => Layout::Linear { disks: listed.clone() },
            LayoutKind::Stripe => Layout::Stripe { disks: listed.clone(), stripe_kib },
            LayoutKind::Mirror => Layout::Mirror { disks: listed.clone() },
            LayoutKind::Raid10 => Layout::Raid10 { disks: listed.clone(), stripe_kib },
            LayoutKind::Journal => {
                let journal = journal_disk.map_or(listed[0], |(disk, _)| disk);
                Layout::Journal { primary: listed[0], journal_disk: journal }
            }
            LayoutKind::Incremental => Layout::Incremental { base: base.unwrap_or(0), store: listed[0] },
        };

        let mut regions = Vec::with_capacity(count);
        let what = format!("volume `{name}`");
        for ((&disk, share), reference) in
            listed.iter().zip(Self::shares(kind, size_blocks, count)).zip(volume.disks.get_ref())
        {
            regions.push(self.allocate(disks, disk, share, &what, reference)?);
        }
        let journal_region = match journal_disk {
            Some((disk, reference)) => {
                let journal_blocks = (size_blocks / 4).max(MIN_JOURNAL_MIB * BLOCKS_PER_MIB);
                Some(self.allocate(
                    disks,
                    disk,
                    journal_blocks,
                    &format!("the journal of `{name}`"),
                    reference,
                )?)
            }
            None => None,
        };

        let mut exposures: Vec<Exposure> = Vec::with_capacity(volume.exposed_to.len());
        for reference in &volume.exposed_to {
            let host = self.lookup(&self.hosts, "host", reference)?;
            if exposures.iter().any(|exposure| exposure.host == host) {
                return Err(self
                    .source
                    .error(reference, format!("host `{}` is listed twice", reference.get_ref())));
            }
            let lun = luns_per_host[host];
            luns_per_host[host] = lun
                .checked_add(1)
                .ok_or_else(|| self.source.error(reference, "a host can see at most 65535 volumes"))?;
            exposures.push(Exposure { host, lun });
        }

        self.volumes.insert(name.clone(), self.volumes.len());
        Ok(VolumeSpec { name, layout, size_mib, exposures, regions, journal_region, prefill })
    }

    fn workload(
        &self,
        raw: &Spanned<RawWorkload>,
        duration_ms: u64,
        volumes: &[VolumeSpec],
    ) -> Checked<WorkloadSpec> {
        let workload = raw.get_ref();
        let host = self.lookup(&self.hosts, "host", &workload.host)?;
        let volume = self.lookup(&self.volumes, "volume", &workload.volume)?;
        let spec = &volumes[volume];
        if spec.lun_for(host).is_none() {
            return Err(self.source.error(
                &workload.host,
                format!(
                    "host `{}` does not see volume `{}`: add it to the volume's exposed_to",
                    workload.host.get_ref(),
                    spec.name
                ),
            ));
        }
        let read_fraction = match &workload.read_fraction {
            Some(fraction) => self.fraction(fraction, "read_fraction")?,
            None => 0.5,
        };
        let is_base =
            volumes.iter().any(|v| matches!(v.layout, Layout::Incremental { base, .. } if base == volume));
        if is_base && read_fraction < 1.0 {
            let at = workload.read_fraction.as_ref().map_or_else(|| workload.volume.span(), |f| f.span());
            return Err(self.source.error_at(
                at,
                format!("`{}` is the base of incrementals and read-only: its workloads must only read (read_fraction = 1)", spec.name),
            ));
        }
        let block_kib = match &workload.block_kib {
            None => 4,
            Some(block) => {
                let value = *block.get_ref();
                if value == 0
                    || value > MAX_BLOCK_KIB
                    || value.saturating_mul(BLOCKS_PER_KIB) > spec.size_blocks()
                {
                    return Err(self.source.error(
                        block,
                        format!("block_kib must be from 1 to {MAX_BLOCK_KIB} and fit in the volume"),
                    ));
                }
                value
            }
        };
        let queue_depth = match &workload.queue_depth {
            None => 1,
            Some(depth) => self.queue_depth(depth)?,
        };
        let span_blocks = match &workload.span_mib {
            None => spec.size_blocks(),
            Some(span) => {
                let blocks = span.get_ref().saturating_mul(1024 * BLOCKS_PER_KIB);
                if blocks == 0 || blocks > spec.size_blocks() || blocks < block_kib * BLOCKS_PER_KIB {
                    return Err(self.source.error(
                        span,
                        format!(
                            "span_mib must be at least one I/O and at most the volume's {} MiB",
                            spec.size_mib
                        ),
                    ));
                }
                blocks
            }
        };
        let start_ms = workload.start_ms.as_ref().map_or(0, |start| *start.get_ref());
        let stop_ms = workload.stop_ms.as_ref().map_or(duration_ms, |stop| *stop.get_ref());
        if let Some(stop) = &workload.stop_ms
            && stop_ms > duration_ms
        {
            return Err(self
                .source
                .error(stop, format!("stop_ms {stop_ms} is after the end (duration_ms {duration_ms})")));
        }
        if start_ms >= stop_ms {
            let reason = format!("start_ms {start_ms} must be before stop_ms {stop_ms}");
            return Err(match &workload.start_ms {
                Some(start) => self.source.error(start, reason),
                None => self.source.error(raw, reason),
            });
        }
        Ok(WorkloadSpec {
            host,
            volume,
            read_fraction,
            block_kib,
            queue_depth,
            pattern: workload.pattern.unwrap_or_default(),
            think_ns: workload.think_us.unwrap_or(0).saturating_mul(NS_PER_US),
            verify: workload.verify.unwrap_or(true),
            span_blocks,
            start_ms,
            stop_ms,
        })
    }

    fn event(
        &mut self,
        raw: &Spanned<RawEvent>,
        duration_ms: u64,
        hosts: &[HostSpec],
        disks: &[DiskSpec],
        volumes: &[VolumeSpec],
        layouts: &mut [Layout],
    ) -> Checked<TimelineEvent> {
        let event = raw.get_ref();
        let at_ms = *event.at_ms.get_ref();
        if at_ms >= duration_ms {
            return Err(self.source.error(
                &event.at_ms,
                format!("at_ms {at_ms} is not before the end of the run (duration_ms {duration_ms})"),
            ));
        }
        let kind = *event.action.get_ref();
        self.check_event_fields(event, kind)?;
        let missing =
            |field: &str| self.source.error(&event.action, format!("`{}` needs `{field}`", kind.name()));

        let disk_of = |this: &Self| -> Checked<usize> {
            let reference = event.disk.as_ref().ok_or_else(|| missing("disk"))?;
            this.lookup(&this.disks, "disk", reference)
        };
        let node_of = |this: &Self| -> Checked<(NodeRef, usize)> {
            let (node, paths) = match (&event.host, &event.disk) {
                (Some(host), None) => {
                    let host = this.lookup(&this.hosts, "host", host)?;
                    (NodeRef::Host(host), hosts[host].paths)
                }
                (None, Some(disk)) => {
                    let disk = this.lookup(&this.disks, "disk", disk)?;
                    (NodeRef::Disk(disk), disks[disk].paths)
                }
                (Some(_), Some(disk)) => {
                    return Err(this.source.error(disk, "give either `host` or `disk`, not both"));
                }
                (None, None) => return Err(missing("host` or `disk")),
            };
            let path = event.path.as_ref().map_or(0, |path| *path.get_ref());
            if path >= paths as u64 {
                let at = event.path.as_ref().map_or_else(|| event.action.span(), |path| path.span());
                return Err(this.source.error_at(
                    at,
                    format!("path {path} does not exist: it has {paths} path(s), numbered from 0"),
                ));
            }
            Ok((node, path as usize))
        };
        let volume_of = |this: &Self| -> Checked<usize> {
            let reference = event.volume.as_ref().ok_or_else(|| missing("volume"))?;
            this.lookup(&this.volumes, "volume", reference)
        };
        let volume_span =
            || event.volume.as_ref().map_or_else(|| event.action.span(), |volume| volume.span());
        // The control path refuses to change a base's layout for as long as an incremental
        // reads through it, which is the whole run.
        let incremental_of = |volume: usize| {
            volumes
                .iter()
                .find(|v| matches!(v.layout, Layout::Incremental { base, .. } if base == volume))
                .map(|v| v.name.as_str())
        };
        let engine_of = |this: &Self| -> Checked<usize> {
            let reference = event.engine.as_ref().ok_or_else(|| missing("engine"))?;
            this.lookup(&this.engines, "engine", reference)
        };

        let action = match kind {
            ActionKind::FailDisk => EventAction::FailDisk { disk: disk_of(self)? },
            ActionKind::RestoreDisk => EventAction::RestoreDisk { disk: disk_of(self)? },
            ActionKind::DiskHang => EventAction::DiskHang { disk: disk_of(self)? },
            ActionKind::DiskWriteErrors => {
                let disk = disk_of(self)?;
                let fraction = match &event.fraction {
                    Some(fraction) => self.fraction(fraction, "fraction")?,
                    None => 1.0,
                };
                EventAction::DiskWriteErrors { disk, fraction }
            }
            ActionKind::FailLink => {
                let (node, path) = node_of(self)?;
                EventAction::FailLink { node, path }
            }
            ActionKind::RestoreLink => {
                let (node, path) = node_of(self)?;
                EventAction::RestoreLink { node, path }
            }
            ActionKind::FailPath => {
                let (node, path) = node_of(self)?;
                EventAction::FailPath { node, path }
            }
            ActionKind::RestorePath => {
                let (node, path) = node_of(self)?;
                EventAction::RestorePath { node, path }
            }
            ActionKind::Snapshot => {
                let volume = volume_of(self)?;
                let name = event.name.as_ref().ok_or_else(|| missing("name"))?;
                let name = self.claim_name(name, "snapshot")?;
                let copy_granularity_blocks = self.copy_granularity(event)?;
                EventAction::Snapshot { volume, name, copy_granularity_blocks }
            }
            ActionKind::GroupSnapshot => {
                let list = event.volumes.as_ref().ok_or_else(|| missing("volumes"))?;
                let mut members = Vec::new();
                for reference in list.get_ref() {
                    let volume = self.lookup(&self.volumes, "volume", reference)?;
                    if members.contains(&volume) {
                        return Err(self
                            .source
                            .error(reference, format!("volume `{}` is listed twice", reference.get_ref())));
                    }
                    members.push(volume);
                }
                if members.len() < 2 {
                    return Err(self.source.error(list, "a group snapshot needs at least two volumes"));
                }
                let name = event.name.as_ref().ok_or_else(|| missing("name"))?;
                let name = self.claim_name(name, "group snapshot")?;
                let copy_granularity_blocks = self.copy_granularity(event)?;
                EventAction::GroupSnapshot { volumes: members, name, copy_granularity_blocks }
            }
            ActionKind::Migrate => {
                let volume = volume_of(self)?;
                let to = event.to.as_ref().ok_or_else(|| missing("to"))?;
                let destinations = self.disk_list(to.get_ref())?;
                let spec = &volumes[volume];
                let layout = &layouts[volume];
                let Some(moved) = layout.migrated(&destinations) else {
                    return Err(self.source.error_at(
                        volume_span(),
                        format!(
                            "migrate needs a linear, stripe or journal volume (a mirror's disk is replaced \
                             by adding a side on the new disk, then removing the old one); `{}` is {} at \
                             that time",
                            spec.name,
                            layout.shape()
                        ),
                    ));
                };
                if let Some(incremental) = incremental_of(volume) {
                    return Err(self.source.error_at(
                        volume_span(),
                        format!(
                            "`{}` is the base of incremental `{incremental}`: the control path does not \
                             migrate it",
                            spec.name
                        ),
                    ));
                }
                let current = layout.data_disks();
                if destinations.len() != current.len() {
                    return Err(self.source.error(
                        to,
                        format!(
                            "`to` must list {} disk(s), one for each data disk of `{}`; {} given",
                            current.len(),
                            spec.name,
                            destinations.len()
                        ),
                    ));
                }
                for (&disk, reference) in destinations.iter().zip(to.get_ref()) {
                    let clash = current.contains(&disk)
                        || matches!(spec.layout, Layout::Journal { journal_disk, .. } if journal_disk == disk);
                    if clash {
                        return Err(self.source.error(
                            reference,
                            format!("disk `{}` already holds volume `{}`", reference.get_ref(), spec.name),
                        ));
                    }
                }
                let what = format!("the migration of `{}`", spec.name);
                let shares = Self::shares(layout.kind(), spec.size_blocks(), destinations.len());
                let mut regions = Vec::with_capacity(destinations.len());
                for ((&disk, share), reference) in destinations.iter().zip(shares).zip(to.get_ref()) {
                    regions.push(self.allocate(disks, disk, share, &what, reference)?);
                }
                let from = std::mem::replace(&mut layouts[volume], moved);
                self.migrated_from.insert(volume, from);
                let rate_mib_per_s = match &event.rate_mib_per_s {
                    None => None,
                    Some(rate) if (1..=100_000).contains(rate.get_ref()) => Some(*rate.get_ref()),
                    Some(rate) => {
                        return Err(self.source.error(
                            rate,
                            format!("rate_mib_per_s {} is not from 1 to 100000", rate.get_ref()),
                        ));
                    }
                };
                EventAction::Migrate { volume, to: destinations, regions, rate_mib_per_s }
            }
            ActionKind::CancelMigration => {
                let volume = volume_of(self)?;
                let Some(from) = self.migrated_from.remove(&volume) else {
                    return Err(self.source.error_at(
                        volume_span(),
                        format!(
                            "`{}` has no migration earlier in the timeline to cancel (a mirror side \
                             added or removed since means the migration had ended)",
                            volumes[volume].name
                        ),
                    ));
                };
                // Its destinations' regions stay reserved: space is never freed.
                layouts[volume] = from;
                EventAction::CancelMigration { volume }
            }
            ActionKind::Resync => {
                let volume = volume_of(self)?;
                let spec = &volumes[volume];
                let layout = &layouts[volume];
                if !matches!(layout, Layout::Mirror { .. } | Layout::Raid10 { .. }) {
                    return Err(self.source.error_at(
                        volume_span(),
                        format!(
                            "resync needs a mirror or raid10 volume; `{}` is {} at that time",
                            spec.name,
                            layout.shape()
                        ),
                    ));
                }
                let disk = match &event.disk {
                    None => None,
                    Some(reference) => Some(self.side_disk(reference, &layout.data_disks(), &spec.name)?),
                };
                EventAction::Resync { volume, disk }
            }
            ActionKind::AddMirrorSide => {
                let volume = volume_of(self)?;
                let spec = &volumes[volume];
                let layout = &layouts[volume];
                if !layout.takes_a_side() {
                    return Err(self.source.error_at(
                        volume_span(),
                        format!(
                            "add-mirror-side needs a mirror of fewer than {MAX_MIRROR_SIDES} sides or a \
                             linear volume on one disk; `{}` is {} at that time",
                            spec.name,
                            layout.shape()
                        ),
                    ));
                }
                if let Some(incremental) = incremental_of(volume) {
                    return Err(self.source.error_at(
                        volume_span(),
                        format!(
                            "`{}` is the base of incremental `{incremental}`: the control path adds no \
                             side to it",
                            spec.name
                        ),
                    ));
                }
                let reference = event.disk.as_ref().ok_or_else(|| missing("disk"))?;
                let disk = self.lookup(&self.disks, "disk", reference)?;
                let Some(grown) = layout.with_side(disk) else {
                    return Err(self.source.error(
                        reference,
                        format!("disk `{}` already holds volume `{}`", reference.get_ref(), spec.name),
                    ));
                };
                let what = format!("the new mirror side of `{}`", spec.name);
                self.allocate(disks, disk, spec.size_blocks(), &what, reference)?;
                layouts[volume] = grown;
                // A migration that let a side be added had ended: there is nothing to cancel.
                self.migrated_from.remove(&volume);
                EventAction::AddMirrorSide { volume, disk }
            }
            ActionKind::RemoveMirrorSide => {
                let volume = volume_of(self)?;
                let spec = &volumes[volume];
                let layout = &layouts[volume];
                if !matches!(layout, Layout::Mirror { .. } | Layout::Raid10 { .. }) {
                    return Err(self.source.error_at(
                        volume_span(),
                        format!(
                            "remove-mirror-side needs a mirror or raid10 volume (a linear volume counts once \
                             a side was added, and is linear again when one side is left); `{}` is {} at \
                             that time",
                            spec.name,
                            layout.shape()
                        ),
                    ));
                }
                if let Some(incremental) = incremental_of(volume) {
                    return Err(self.source.error_at(
                        volume_span(),
                        format!(
                            "`{}` is the base of incremental `{incremental}`: the control path removes no \
                             side from it",
                            spec.name
                        ),
                    ));
                }
                let reference = event.disk.as_ref().ok_or_else(|| missing("disk"))?;
                let disk = self.lookup(&self.disks, "disk", reference)?;
                let Some(shrunk) = layout.without_side(disk) else {
                    return Err(self.source.error(
                        reference,
                        format!(
                            "disk `{}` is not a side of `{}` at that time",
                            reference.get_ref(),
                            spec.name
                        ),
                    ));
                };
                layouts[volume] = shrunk;
                self.migrated_from.remove(&volume);
                EventAction::RemoveMirrorSide { volume, disk }
            }
            ActionKind::Replicate => {
                let volume = volume_of(self)?;
                let spec = &volumes[volume];
                if spec.layout.kind() != LayoutKind::Journal {
                    let at =
                        event.volume.as_ref().map_or_else(|| event.action.span(), |volume| volume.span());
                    return Err(self.source.error_at(
                        at,
                        format!(
                            "replicate needs a journal volume; `{}` is {}",
                            spec.name,
                            spec.layout.kind().name()
                        ),
                    ));
                }
                let reference = event.disk.as_ref().ok_or_else(|| missing("disk"))?;
                let disk = self.lookup(&self.disks, "disk", reference)?;
                let clash = layouts[volume].data_disks().contains(&disk)
                    || matches!(spec.layout, Layout::Journal { journal_disk, .. } if journal_disk == disk);
                if clash {
                    return Err(self.source.error(
                        reference,
                        format!("disk `{}` already holds volume `{}`", reference.get_ref(), spec.name),
                    ));
                }
                let interval_ms = match &event.interval_ms {
                    None => 500,
                    Some(interval) if (1..=60_000).contains(interval.get_ref()) => *interval.get_ref(),
                    Some(interval) => {
                        return Err(self.source.error(
                            interval,
                            format!("interval_ms must be from 1 to 60000, not {}", interval.get_ref()),
                        ));
                    }
                };
                let what = format!("the replica of `{}`", spec.name);
                let region = self.allocate(disks, disk, spec.size_blocks(), &what, reference)?;
                self.replicated.insert(volume);
                EventAction::Replicate { volume, disk, interval_ms, region }
            }
            ActionKind::PauseReplication | ActionKind::ResumeReplication => {
                let volume = volume_of(self)?;
                if !self.replicated.contains(&volume) {
                    let at =
                        event.volume.as_ref().map_or_else(|| event.action.span(), |volume| volume.span());
                    return Err(self.source.error_at(
                        at,
                        format!("`{}` is not replicated earlier in the timeline", volumes[volume].name),
                    ));
                }
                EventAction::PauseReplication { volume, paused: kind == ActionKind::PauseReplication }
            }
            ActionKind::KillEngine => EventAction::KillEngine { engine: engine_of(self)? },
            ActionKind::RestartEngine => EventAction::RestartEngine { engine: engine_of(self)? },
            ActionKind::SplitSegment | ActionKind::MergeSegments => {
                let volume = volume_of(self)?;
                let at = event.at_kib.as_ref().ok_or_else(|| missing("at_kib"))?;
                let size = volumes[volume].size_blocks();
                let at_block = at.get_ref().saturating_mul(BLOCKS_PER_KIB);
                if at_block == 0 || at_block >= size {
                    return Err(self.source.error(
                        at,
                        format!(
                            "at_kib must be inside volume `{}` (1 to {} KiB), not {}",
                            volumes[volume].name,
                            size / BLOCKS_PER_KIB - 1,
                            at.get_ref()
                        ),
                    ));
                }
                if kind == ActionKind::SplitSegment {
                    EventAction::SplitSegment { volume, at_block }
                } else {
                    EventAction::MergeSegments { volume, at_block }
                }
            }
        };
        let description = describe(kind, &action, hosts, disks, volumes, self.engines_by_index());
        Ok(TimelineEvent { at_ms, action, description, line: self.line_of(raw) })
    }

    fn engines_by_index(&self) -> Vec<&str> {
        let mut names = vec![""; self.engines.len()];
        for (name, &index) in &self.engines {
            names[index] = name.as_str();
        }
        names
    }

    /// Rejects fields that do not apply to the action (each points at itself).
    fn check_event_fields(&self, event: &RawEvent, kind: ActionKind) -> Checked<()> {
        use ActionKind::*;
        let disk_ok = matches!(
            kind,
            FailDisk
                | RestoreDisk
                | DiskHang
                | DiskWriteErrors
                | FailLink
                | RestoreLink
                | FailPath
                | RestorePath
                | Resync
                | AddMirrorSide
                | RemoveMirrorSide
                | Replicate
        );
        let node_ok = matches!(kind, FailLink | RestoreLink | FailPath | RestorePath);
        let volume_ok = matches!(
            kind,
            Snapshot
                | Migrate
                | CancelMigration
                | Resync
                | AddMirrorSide
                | RemoveMirrorSide
                | Replicate
                | PauseReplication
                | ResumeReplication
                | SplitSegment
                | MergeSegments
        );
        let checks: [(Option<Range<usize>>, bool, &str); 12] = [
            (event.disk.as_ref().map(Spanned::span), disk_ok, "disk"),
            (event.host.as_ref().map(Spanned::span), node_ok, "host"),
            (event.path.as_ref().map(Spanned::span), node_ok, "path"),
            (event.volume.as_ref().map(Spanned::span), volume_ok, "volume"),
            (event.name.as_ref().map(Spanned::span), matches!(kind, Snapshot | GroupSnapshot), "name"),
            (event.volumes.as_ref().map(Spanned::span), kind == GroupSnapshot, "volumes"),
            (event.to.as_ref().map(Spanned::span), kind == Migrate, "to"),
            (event.rate_mib_per_s.as_ref().map(Spanned::span), kind == Migrate, "rate_mib_per_s"),
            (
                event.copy_granularity_blocks.as_ref().map(Spanned::span),
                matches!(kind, Snapshot | GroupSnapshot),
                "copy_granularity_blocks",
            ),
            (event.engine.as_ref().map(Spanned::span), matches!(kind, KillEngine | RestartEngine), "engine"),
            (event.interval_ms.as_ref().map(Spanned::span), kind == Replicate, "interval_ms"),
            (
                event.at_kib.as_ref().map(Spanned::span),
                matches!(kind, SplitSegment | MergeSegments),
                "at_kib",
            ),
        ];
        for (span, allowed, field) in checks {
            if let (Some(span), false) = (span, allowed) {
                return Err(self
                    .source
                    .error_at(span, format!("`{field}` does not apply to `{}`", kind.name())));
            }
        }
        if let (Some(fraction), false) = (&event.fraction, kind == DiskWriteErrors) {
            return Err(self
                .source
                .error(fraction, format!("`fraction` does not apply to `{}`", kind.name())));
        }
        Ok(())
    }
}

/// A readable description of an event, with names.
fn describe(
    kind: ActionKind,
    action: &EventAction,
    hosts: &[HostSpec],
    disks: &[DiskSpec],
    volumes: &[VolumeSpec],
    engines: Vec<&str>,
) -> String {
    let disk = |index: usize| disks.get(index).map_or("?", |disk| disk.name.as_str());
    let volume = |index: usize| volumes.get(index).map_or("?", |volume| volume.name.as_str());
    let granularity =
        |blocks: Option<u64>| blocks.map_or_else(String::new, |b| format!(" pushing {b}-block granules"));
    let node = |node: NodeRef, path: usize| {
        let name = match node {
            NodeRef::Host(index) => hosts.get(index).map_or("?", |host| host.name.as_str()),
            NodeRef::Disk(index) => disk(index),
        };
        if path == 0 { name.to_string() } else { format!("{name}:{path}") }
    };
    let detail = match action {
        EventAction::FailDisk { disk: index }
        | EventAction::RestoreDisk { disk: index }
        | EventAction::DiskHang { disk: index } => disk(*index).to_string(),
        EventAction::DiskWriteErrors { disk: index, fraction } => {
            format!("{} ({:.0}% of writes)", disk(*index), fraction * 100.0)
        }
        EventAction::FailLink { node: target, path }
        | EventAction::RestoreLink { node: target, path }
        | EventAction::FailPath { node: target, path }
        | EventAction::RestorePath { node: target, path } => node(*target, *path),
        EventAction::Snapshot { volume: index, name, copy_granularity_blocks } => {
            format!("{} as {name}{}", volume(*index), granularity(*copy_granularity_blocks))
        }
        EventAction::GroupSnapshot { volumes, name, copy_granularity_blocks } => {
            let names: Vec<&str> = volumes.iter().map(|&index| volume(index)).collect();
            format!("{} as {name}{}", names.join(","), granularity(*copy_granularity_blocks))
        }
        EventAction::Migrate { volume: index, to, rate_mib_per_s, .. } => {
            let names: Vec<&str> = to.iter().map(|&index| disk(index)).collect();
            let rate = rate_mib_per_s.map_or_else(String::new, |r| format!(" at {r} MiB/s"));
            format!("{} to {}{rate}", volume(*index), names.join(","))
        }
        EventAction::CancelMigration { volume: index }
        | EventAction::PauseReplication { volume: index, .. } => volume(*index).to_string(),
        EventAction::Resync { volume: index, disk: None } => volume(*index).to_string(),
        EventAction::Resync { volume: index, disk: Some(side) } => {
            format!("{} ({})", volume(*index), disk(*side))
        }
        EventAction::AddMirrorSide { volume: index, disk: side }
        | EventAction::RemoveMirrorSide { volume: index, disk: side } => {
            format!("{} on {}", volume(*index), disk(*side))
        }
        EventAction::Replicate { volume: index, disk: replica, interval_ms, .. } => {
            format!("{} to {} (consistency point every {interval_ms} ms)", volume(*index), disk(*replica))
        }
        EventAction::KillEngine { engine } | EventAction::RestartEngine { engine } => {
            engines.get(*engine).copied().unwrap_or("?").to_string()
        }
        EventAction::SplitSegment { volume: index, at_block }
        | EventAction::MergeSegments { volume: index, at_block } => {
            format!("{} at {} KiB", volume(*index), at_block / BLOCKS_PER_KIB)
        }
    };
    format!("{} {detail}", kind.name())
}

/// FNV-1a of a name: the stable hash derived WWPNs come from.
fn name_hash(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in name.as_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Parses `21:00:00:00:00:00:00:01` (or the same 16 hex digits without colons).
pub fn parse_wwpn(text: &str) -> Option<u64> {
    let digits: String = if text.contains(':') {
        let parts: Vec<&str> = text.split(':').collect();
        if parts.len() != 8 || parts.iter().any(|part| part.len() != 2) {
            return None;
        }
        parts.concat()
    } else {
        text.to_string()
    };
    if digits.len() != 16 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&digits, 16).ok()
}

/// Formats a WWPN as `21:00:00:00:00:00:00:01`.
pub fn format_wwpn(wwpn: u64) -> String {
    let bytes = wwpn.to_be_bytes();
    let parts: Vec<String> = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    parts.join(":")
}

/// A block count as MiB or KiB, e.g. `16 MiB`, `1.5 MiB`, `64 KiB`.
fn format_blocks(blocks: u64) -> String {
    if blocks.is_multiple_of(BLOCKS_PER_MIB) {
        format!("{} MiB", blocks / BLOCKS_PER_MIB)
    } else if blocks >= BLOCKS_PER_MIB {
        format!("{:.2} MiB", blocks as f64 / BLOCKS_PER_MIB as f64)
    } else {
        format!("{} KiB", blocks as f64 / BLOCKS_PER_KIB as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small valid scenario the rejection tests start from.
    const BASE: &str = r#"[simulation]
duration_ms = 1000

[[engine]]
name = "e1"
workers = 2

[[host]]
name = "h1"
engine = "e1"

[[host]]
name = "h2"
engine = "e1"
paths = 2

[[disk]]
name = "d1"
engine = "e1"
capacity_mib = 64

[[disk]]
name = "d2"
engine = "e1"
capacity_mib = 64

[[disk]]
name = "d3"
engine = "e1"
capacity_mib = 64

[[disk]]
name = "d4"
engine = "e1"
capacity_mib = 64

[[volume]]
name = "v1"
layout = "mirror"
size_mib = 16
disks = ["d1", "d2"]
exposed_to = ["h1"]
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_toml_str(text, "test.toml")
    }

    /// Asserts that `text` is rejected on the line marked `# <-` (the first one), with a
    /// reason containing `needle`.
    #[track_caller]
    fn rejects(text: &str, needle: &str) {
        let want_line = text.lines().position(|line| line.contains("# <-")).map(|index| index + 1);
        match parse(text) {
            Ok(_) => panic!("accepted, wanted an error containing {needle:?}:\n{text}"),
            Err(err) => {
                assert!(err.reason.contains(needle), "wanted {needle:?}, got: {err}");
                if let Some(line) = want_line {
                    assert_eq!(err.line, line, "wrong line for: {err}");
                }
                assert!(err.column >= 1, "{err}");
                assert_eq!(err.file, "test.toml");
            }
        }
    }

    /// BASE with `extra` appended.
    fn with(extra: &str) -> String {
        format!("{BASE}{extra}")
    }

    /// BASE with one piece replaced.
    fn replaced(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from:?} not in BASE");
        BASE.replacen(from, to, 1)
    }

    #[test]
    fn base_is_valid() {
        let scenario = parse(BASE).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(scenario.name, "test");
        assert_eq!(scenario.seed, 1);
        assert_eq!(scenario.sample_interval_ms, 100);
        assert_eq!(scenario.hosts[1].paths, 2);
        assert_eq!(scenario.volumes[0].regions.len(), 2);
    }

    #[test]
    fn the_default_scenario_is_valid_and_as_described() {
        let scenario = Scenario::default_scenario().unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(scenario.name, "default");
        assert_eq!(scenario.duration_ms, 10_000);
        assert_eq!(scenario.engines.len(), 1);
        assert_eq!(scenario.engines[0].workers, 2);
        assert_eq!(scenario.hosts.len(), 4);
        assert_eq!(scenario.disks.len(), 6);
        let kinds: Vec<_> = scenario.volumes.iter().map(|volume| volume.layout.kind()).collect();
        assert_eq!(kinds, [LayoutKind::Linear, LayoutKind::Stripe, LayoutKind::Mirror, LayoutKind::Journal]);
        assert_eq!(scenario.workloads.len(), 4);
        assert!(scenario.workloads.iter().all(|workload| workload.verify));
        let descriptions: Vec<_> = scenario.events.iter().map(|event| event.description.as_str()).collect();
        assert_eq!(
            descriptions,
            [
                "replicate journal0 to d2 (consistency point every 1000 ms)",
                "snapshot linear0 as snap0",
                "migrate linear0 to d4",
                "fail-disk d5",
                "restore-disk d5",
                "resync mirror0 (d5)"
            ]
        );
    }

    #[test]
    fn the_example_scenario_is_valid() {
        let text = include_str!("../scenarios/example.toml");
        let scenario = Scenario::from_toml_str(text, "example.toml").unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(scenario.seed, 7);
        assert_eq!(scenario.engines[0].workers, 3);
        assert_eq!(scenario.hosts[0].wwpn, 0x2100_0000_0000_0001);
        assert_eq!(scenario.hosts[0].port_wwpn(1), 0x2101_0000_0000_0001);
        assert_eq!(scenario.hosts[1].link.latency_ns, 5000);
        assert_eq!(scenario.hosts[1].link.gbps, 1.0);
        assert_eq!(scenario.hosts[1].link.loss, 0.00001);
        assert_eq!(scenario.disks[4].link.gbps, 25.0);
        assert_eq!(scenario.disks[0].latency_ns, 80_000);
        assert_eq!(scenario.disks[1].queue_depth, 32);
        assert_eq!(scenario.workloads[1].pattern, Pattern::Sequential);
        assert_eq!(scenario.workloads[1].start_ms, 500);
        assert_eq!(scenario.events.len(), 14);
        // h2 sees r10 as LUN 0 and jvol as LUN 1.
        assert_eq!(scenario.volumes[0].lun_for(1), Some(0));
        assert_eq!(scenario.volumes[1].lun_for(1), Some(1));
        assert_eq!(scenario.volumes[1].lun_for(0), None);
    }

    #[test]
    fn placement_fills_disks_in_file_order() {
        let scenario = Scenario::default_scenario().unwrap_or_else(|err| panic!("{err}"));
        let mib = BLOCKS_PER_MIB;
        let d = |name: &str| scenario.disk_index(name).unwrap_or(usize::MAX);
        assert_eq!(scenario.volumes[0].regions, [Region { disk: d("d1"), start_block: 0, blocks: 32 * mib }]);
        // Stripe: 16 MiB on each of d2, d3, d4.
        assert!(
            scenario.volumes[1]
                .regions
                .iter()
                .all(|region| region.blocks == 16 * mib && region.start_block == 0)
        );
        // Journal: primary after the stripe's part of d3; journal region of 4 MiB on d6 after
        // the mirror's side.
        assert_eq!(
            scenario.volumes[3].regions,
            [Region { disk: d("d3"), start_block: 16 * mib, blocks: 16 * mib }]
        );
        assert_eq!(
            scenario.volumes[3].journal_region,
            Some(Region { disk: d("d6"), start_block: 32 * mib, blocks: 4 * mib })
        );
        // The migration's destination comes after the stripe's part of d4.
        let migrate = scenario.events.iter().find_map(|event| match &event.action {
            EventAction::Migrate { regions, .. } => Some(regions.clone()),
            _ => None,
        });
        assert_eq!(migrate, Some(vec![Region { disk: d("d4"), start_block: 16 * mib, blocks: 32 * mib }]));
    }

    #[test]
    fn linear_and_raid10_shares() {
        assert_eq!(Builder::shares(LayoutKind::Linear, 10, 3), [3, 3, 4]);
        assert_eq!(Builder::shares(LayoutKind::Stripe, 12, 3), [4, 4, 4]);
        assert_eq!(Builder::shares(LayoutKind::Mirror, 12, 2), [12, 12]);
        assert_eq!(Builder::shares(LayoutKind::Raid10, 12, 4), [6, 6, 6, 6]);
        assert_eq!(Builder::shares(LayoutKind::Journal, 12, 1), [12]);
    }

    #[test]
    fn events_are_sorted_by_time_then_file_order() {
        let scenario = parse(&with(
            r#"
[[event]]
at_ms = 500
action = "fail-disk"
disk = "d2"

[[event]]
at_ms = 100
action = "fail-disk"
disk = "d1"

[[event]]
at_ms = 500
action = "restore-disk"
disk = "d2"
"#,
        ))
        .unwrap_or_else(|err| panic!("{err}"));
        let order: Vec<_> =
            scenario.events.iter().map(|event| (event.at_ms, event.description.clone())).collect();
        assert_eq!(
            order,
            [
                (100, "fail-disk d1".to_string()),
                (500, "fail-disk d2".to_string()),
                (500, "restore-disk d2".to_string())
            ]
        );
        assert_eq!(scenario.events[1].at(), SimTime::from_ms(500));
        assert_eq!(scenario.events[0].line, BASE.lines().count() + 7);
    }

    #[test]
    fn ports_are_numbered_hosts_then_disks() {
        let scenario = parse(BASE).unwrap_or_else(|err| panic!("{err}"));
        let ports = scenario.engine_ports(0);
        // h1 (1 path), h2 (2 paths), d1..d4.
        assert_eq!(ports.len(), 7);
        assert_eq!(ports[0].peer, NodeRef::Host(0));
        assert_eq!((ports[2].peer, ports[2].path), (NodeRef::Host(1), 1));
        assert_eq!(ports[3].peer, NodeRef::Disk(0));
        assert_eq!(ports.iter().map(|port| port.worker).collect::<Vec<_>>(), [0, 1, 0, 1, 0, 1, 0]);
        assert_eq!(scenario.engine_port_of(NodeRef::Disk(3), 0).map(|port| port.port), Some(6));
        assert_eq!(scenario.resolve_port("h1"), Ok(PortRef::Node { node: NodeRef::Host(0), path: 0 }));
        assert_eq!(scenario.resolve_port("h2:1"), Ok(PortRef::Node { node: NodeRef::Host(1), path: 1 }));
        assert_eq!(scenario.resolve_port("d2"), Ok(PortRef::Node { node: NodeRef::Disk(1), path: 0 }));
        assert_eq!(scenario.resolve_port("e1:6"), Ok(PortRef::Engine { engine: 0, port: 6 }));
        assert!(scenario.resolve_port("e1:7").is_err());
        assert!(scenario.resolve_port("e1").is_err());
        assert!(scenario.resolve_port("h1:1").is_err());
        assert!(scenario.resolve_port("h1:x").is_err());
        assert!(scenario.resolve_port("nope").is_err());
    }

    #[test]
    fn overrides_shorten_the_run_and_are_idempotent() {
        let scenario = Scenario::default_scenario().unwrap_or_else(|err| panic!("{err}"));
        let short = scenario.with_overrides(Some(9), Some(3000));
        assert_eq!(short.seed, 9);
        assert_eq!(short.duration_ms, 3000);
        assert_eq!(short.duration(), SimTime::from_ms(3000));
        assert_eq!(short.events.len(), 3);
        assert!(short.workloads.iter().all(|workload| workload.stop_ms == 3000));
        assert_eq!(short.with_overrides(Some(9), Some(3000)), short);
        assert_eq!(scenario.with_overrides(None, Some(0)), scenario);
        let tiny = scenario.with_overrides(None, Some(10));
        assert_eq!(tiny.sample_interval_ms, 10);
        let long = scenario.with_overrides(None, Some(20_000));
        assert!(long.workloads.iter().all(|workload| workload.stop_ms == 20_000));
        assert_eq!(long.events, scenario.events);
    }

    #[test]
    fn wwpns_parse_and_format() {
        assert_eq!(parse_wwpn("21:00:00:00:00:00:00:01"), Some(0x2100_0000_0000_0001));
        assert_eq!(parse_wwpn("2100000000000001"), Some(0x2100_0000_0000_0001));
        assert_eq!(parse_wwpn("21:00:00:00:00:00:00"), None);
        assert_eq!(parse_wwpn("21:00:00:00:00:00:00:0g"), None);
        assert_eq!(parse_wwpn("210:0:00:00:00:00:00:01"), None);
        assert_eq!(format_wwpn(0x2100_0000_0000_00ab), "21:00:00:00:00:00:00:ab");
        let scenario = parse(BASE).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(scenario.hosts[0].wwpn >> 48, 0x2100);
        assert_eq!(scenario.disks[0].wwpn >> 48, 0x2200);
        assert_ne!(scenario.disks[0].wwpn, scenario.disks[1].wwpn);
    }

    #[test]
    fn errors_display_file_line_column() {
        let err = parse(&replaced("duration_ms = 1000", "duration_ms = 0")).err();
        let err = err.unwrap_or_else(|| panic!("accepted"));
        assert_eq!(err.to_string(), "test.toml:2:15: duration_ms must be at least 1");
        let missing = Scenario::load(Path::new("/nonexistent/dir/s.toml")).err();
        let missing = missing.unwrap_or_else(|| panic!("loaded"));
        assert!(
            missing.to_string().starts_with("/nonexistent/dir/s.toml: cannot read the scenario"),
            "{missing}"
        );
    }

    // --- Parser-level rejections -------------------------------------------------------

    #[test]
    fn rejects_bad_toml() {
        rejects(&replaced("workers = 2", "workers = = 2 # <-"), "");
    }

    #[test]
    fn rejects_unknown_fields() {
        rejects(&replaced("workers = 2", "workers = 2\ncolour = \"red\" # <-"), "unknown field");
        rejects(&with("[defaults.link]\nlatency = 5 # <-\n"), "unknown field");
        rejects(&with("[surprise] # <-\nx = 1\n"), "unknown field");
    }

    #[test]
    fn rejects_missing_fields() {
        rejects(&replaced("[simulation]\nduration_ms = 1000", "[simulation] # <-\nseed = 3"), "duration_ms");
        rejects(
            &replaced(
                "capacity_mib = 64\n\n[[disk]]\nname = \"d2\"\nengine = \"e1\"\ncapacity_mib = 64",
                "capacity_mib = 64\n\n[[disk]] # <-\nname = \"d2\"\nengine = \"e1\"",
            ),
            "capacity_mib",
        );
    }

    #[test]
    fn rejects_wrong_types_and_negative_sizes() {
        rejects(&replaced("workers = 2", "workers = \"two\" # <-"), "");
        rejects(&replaced("size_mib = 16", "size_mib = -16 # <-"), "");
    }

    #[test]
    fn rejects_unknown_layouts_patterns_and_actions() {
        rejects(&replaced("layout = \"mirror\"", "layout = \"raid5\" # <-"), "raid5");
        rejects(&with("[[workload]]\nhost = \"h1\"\nvolume = \"v1\"\npattern = \"zigzag\" # <-\n"), "zigzag");
        rejects(&with("[[event]]\nat_ms = 1\naction = \"explode\" # <-\n"), "explode");
    }

    // --- [simulation] --------------------------------------------------------------------

    #[test]
    fn rejects_zero_duration() {
        rejects(&replaced("duration_ms = 1000", "duration_ms = 0 # <-"), "duration_ms must be at least 1");
    }

    #[test]
    fn rejects_bad_sample_intervals() {
        rejects(
            &replaced("duration_ms = 1000", "duration_ms = 1000\nsample_interval_ms = 0 # <-"),
            "sample_interval_ms",
        );
        rejects(
            &replaced("duration_ms = 1000", "duration_ms = 1000\nsample_interval_ms = 2000 # <-"),
            "sample_interval_ms",
        );
        rejects(
            &replaced("duration_ms = 1000", "duration_ms = 1000000\nsample_interval_ms = 1 # <-"),
            "samples",
        );
    }

    #[test]
    fn rejects_other_block_sizes() {
        rejects(&replaced("duration_ms = 1000", "duration_ms = 1000\nblock_bytes = 4096 # <-"), "512-byte");
        assert!(parse(&replaced("duration_ms = 1000", "duration_ms = 1000\nblock_bytes = 512")).is_ok());
    }

    #[test]
    fn rejects_bad_scenario_names() {
        rejects(&replaced("duration_ms = 1000", "duration_ms = 1000\nname = \"a b\" # <-"), "contains");
    }

    // --- Names and references ------------------------------------------------------------

    #[test]
    fn rejects_bad_names() {
        rejects(&replaced("name = \"h1\"", "name = \"h:1\" # <-"), "contains `:`");
        rejects(&replaced("name = \"h1\"", "name = \"\" # <-"), "1 to 64");
        rejects(&replaced("name = \"h1\"", &format!("name = \"{}\" # <-", "x".repeat(65))), "1 to 64");
    }

    #[test]
    fn rejects_duplicate_names() {
        rejects(&replaced("name = \"d1\"", "name = \"h1\" # <-"), "already used by the host on line 9");
        rejects(&replaced("name = \"d2\"", "name = \"d1\" # <-"), "already used by the disk");
        rejects(&replaced("name = \"v1\"", "name = \"e1\" # <-"), "already used by the engine");
    }

    #[test]
    fn rejects_unknown_engines() {
        rejects(
            &replaced("name = \"h1\"\nengine = \"e1\"", "name = \"h1\"\nengine = \"e9\" # <-"),
            "no engine is named `e9`",
        );
        rejects(
            &replaced("name = \"d1\"\nengine = \"e1\"", "name = \"d1\"\nengine = \"e9\" # <-"),
            "no engine is named `e9`",
        );
    }

    #[test]
    fn rejects_bad_worker_counts() {
        rejects(&replaced("workers = 2", "workers = 0 # <-"), "workers must be from 1 to 15");
        rejects(&replaced("workers = 2", "workers = 16 # <-"), "workers must be from 1 to 15");
    }

    #[test]
    fn rejects_bad_path_counts() {
        rejects(&replaced("paths = 2", "paths = 0 # <-"), "paths must be from 1 to 8");
        rejects(&replaced("paths = 2", "paths = 9 # <-"), "paths must be from 1 to 8");
    }

    #[test]
    fn rejects_bad_and_duplicate_wwpns() {
        rejects(&replaced("paths = 2", "paths = 2\nwwpn = \"21:00\" # <-"), "not 8 hex bytes");
        rejects(
            &replaced(
                "name = \"d1\"\nengine = \"e1\"",
                "name = \"d1\"\nengine = \"e1\"\nwwpn = \"22:00:00:00:00:00:00:07\"",
            )
            .replacen(
                "name = \"d2\"\nengine = \"e1\"",
                "name = \"d2\"\nengine = \"e1\"\nwwpn = \"22:00:00:00:00:00:00:07\" # <-",
                1,
            ),
            "already used by `d1` path 0",
        );
        // h2's path 1 is 21:01:..., colliding with h1's explicit WWPN.
        rejects(
            &replaced(
                "name = \"h1\"\nengine = \"e1\"",
                "name = \"h1\"\nengine = \"e1\"\nwwpn = \"21:01:00:00:00:00:00:05\"",
            )
            .replacen("paths = 2", "paths = 2\nwwpn = \"21:00:00:00:00:00:00:05\" # <-", 1),
            "path 1 is already used by `h1` path 0",
        );
    }

    // --- Disks and links -----------------------------------------------------------------

    #[test]
    fn rejects_bad_disk_parameters() {
        rejects(&replaced("capacity_mib = 64", "capacity_mib = 0 # <-"), "capacity_mib");
        rejects(&replaced("capacity_mib = 64", "capacity_mib = 64\nlatency_us = -1.0 # <-"), "latency_us");
        rejects(&replaced("capacity_mib = 64", "capacity_mib = 64\nlatency_us = nan # <-"), "latency_us");
        rejects(&replaced("capacity_mib = 64", "capacity_mib = 64\nqueue_depth = 0 # <-"), "queue_depth");
    }

    #[test]
    fn rejects_bad_link_parameters() {
        rejects(&with("[defaults.link]\ngbps = 0.0 # <-\n"), "gbps must be a positive number");
        rejects(&with("[defaults.link]\nloss = 1.5 # <-\n"), "loss must be from 0 to 1");
        rejects(&with("[defaults.link]\ncorrupt = -0.1 # <-\n"), "corrupt must be from 0 to 1");
        rejects(&replaced("paths = 2", "paths = 2\nlink = { gbps = -1 } # <-"), "gbps");
    }

    // --- Volumes ---------------------------------------------------------------------------

    #[test]
    fn rejects_unknown_and_repeated_volume_disks() {
        rejects(
            &replaced("disks = [\"d1\", \"d2\"]", "disks = [\"d1\", \"d9\"] # <-"),
            "no disk is named `d9`",
        );
        rejects(&replaced("disks = [\"d1\", \"d2\"]", "disks = [\"d1\", \"d1\"] # <-"), "listed twice");
    }

    #[test]
    fn rejects_layout_disk_counts() {
        let volume = |layout: &str, disks: &str| {
            replaced(
                "layout = \"mirror\"\nsize_mib = 16\ndisks = [\"d1\", \"d2\"]",
                &format!("layout = \"{layout}\"\nsize_mib = 16\ndisks = [{disks}] # <-"),
            )
        };
        rejects(&volume("linear", ""), "at least 1 disk");
        rejects(&volume("stripe", "\"d1\""), "at least 2 disks");
        rejects(&volume("mirror", "\"d1\""), "at least 2 disks");
        rejects(&volume("raid10", "\"d1\", \"d2\""), "even number");
        rejects(&volume("raid10", "\"d1\", \"d2\", \"d3\""), "even number");
        rejects(&volume("journal", "\"d1\", \"d2\""), "exactly 1 disk");
        assert!(parse(&volume("raid10", "\"d1\", \"d2\", \"d3\", \"d4\"")).is_ok());
        assert!(parse(&volume("linear", "\"d1\", \"d2\", \"d3\"")).is_ok());
    }

    #[test]
    fn rejects_bad_stripes() {
        let stripe = replaced("layout = \"mirror\"", "layout = \"stripe\"");
        rejects(&stripe.replacen("size_mib = 16", "size_mib = 16\nstripe_kib = 48 # <-", 1), "power of two");
        rejects(&stripe.replacen("size_mib = 16", "size_mib = 16\nstripe_kib = 0 # <-", 1), "power of two");
        // 3 MiB over 2 columns of 1 MiB is not a whole number of rows.
        rejects(&stripe.replacen("size_mib = 16", "size_mib = 3 # <-\nstripe_kib = 1024", 1), "stripe rows");
        rejects(&replaced("size_mib = 16", "size_mib = 16\nstripe_kib = 64 # <-"), "applies only to stripe");
    }

    #[test]
    fn rejects_bad_journals() {
        let journal = replaced(
            "layout = \"mirror\"\nsize_mib = 16\ndisks = [\"d1\", \"d2\"]",
            "layout = \"journal\" # <-\nsize_mib = 16\ndisks = [\"d1\"]",
        );
        rejects(&journal, "needs a journal_disk");
        rejects(
            &journal.replace(" # <-", "").replacen(
                "disks = [\"d1\"]",
                "disks = [\"d1\"]\njournal_disk = \"d1\" # <-",
                1,
            ),
            "must not be the primary",
        );
        rejects(
            &journal.replace(" # <-", "").replacen(
                "disks = [\"d1\"]",
                "disks = [\"d1\"]\njournal_disk = \"d7\" # <-",
                1,
            ),
            "no disk is named `d7`",
        );
        rejects(
            &replaced("size_mib = 16", "size_mib = 16\njournal_disk = \"d3\" # <-"),
            "applies only to journal",
        );
    }

    #[test]
    fn rejects_volumes_that_do_not_fit() {
        // The mirror takes 16 MiB of d1 and d2; 50 more on d2 does not fit in 64.
        rejects(
            &with(
                "\n[[volume]]\nname = \"big\"\nlayout = \"linear\"\nsize_mib = 50\ndisks = [\"d2\"] # <-\n",
            ),
            "disk `d2` is full: volume `big` needs 50 MiB on it but only 48 MiB of its 64 MiB are free",
        );
        // A stripe over d3, d4 of 130 MiB needs 65 MiB each (rows of 2 x 64 KiB divide it).
        rejects(
            &with(
                "\n[[volume]]\nname = \"big\"\nlayout = \"stripe\"\nsize_mib = 130\ndisks = [\"d3\", \"d4\"] # <-\n",
            ),
            "disk `d3` is full",
        );
        // Raid10: 128 MiB over 2 pairs is 64 MiB per disk; d1 already holds 16.
        rejects(
            &with(
                "\n[[volume]]\nname = \"big\"\nlayout = \"raid10\"\nsize_mib = 128\ndisks = [\"d3\", \"d4\", \"d1\", \"d2\"] # <-\n",
            ),
            "disk `d1` is full",
        );
        // A 200 MiB journal volume needs a 50 MiB journal region.
        let journal_disk_full = with(
            "\n[[volume]]\nname = \"j\"\nlayout = \"journal\"\nsize_mib = 60\ndisks = [\"d3\"]\njournal_disk = \"d1\" # <-\n",
        );
        // 60 MiB needs a 15 MiB journal; d1 has 48 free: fits.
        assert!(parse(&journal_disk_full.replace(" # <-", "")).is_ok());
        rejects(
            &journal_disk_full.replace("name = \"j\"", "name = \"j0\"\nlayout = \"linear\"\nsize_mib = 40\ndisks = [\"d1\"]\n\n[[volume]]\nname = \"j\""),
            "the journal of `j` needs 15 MiB",
        );
        // Exactly full is fine.
        assert!(
            parse(&with(
                "\n[[volume]]\nname = \"full\"\nlayout = \"linear\"\nsize_mib = 48\ndisks = [\"d2\"]\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn rejects_bad_exposures() {
        rejects(
            &replaced("exposed_to = [\"h1\"]", "exposed_to = [\"h1\", \"h7\"] # <-"),
            "no host is named `h7`",
        );
        rejects(&replaced("exposed_to = [\"h1\"]", "exposed_to = [\"h1\", \"h1\"] # <-"), "listed twice");
    }

    #[test]
    fn rejects_zero_volume_size() {
        rejects(&replaced("size_mib = 16", "size_mib = 0 # <-"), "size_mib must be at least 1");
    }

    // --- Workloads ---------------------------------------------------------------------------

    fn workload(fields: &str) -> String {
        with(&format!("\n[[workload]]\nhost = \"h1\"\nvolume = \"v1\"\n{fields}\n"))
    }

    #[test]
    fn accepts_a_minimal_workload_with_defaults() {
        let scenario = parse(&workload("")).unwrap_or_else(|err| panic!("{err}"));
        let workload = &scenario.workloads[0];
        assert_eq!((workload.read_fraction, workload.block_kib, workload.queue_depth), (0.5, 4, 1));
        assert_eq!((workload.start_ms, workload.stop_ms, workload.verify), (0, 1000, true));
        assert_eq!(workload.block_blocks(), 8);
    }

    #[test]
    fn rejects_workload_references() {
        rejects(&with("\n[[workload]]\nhost = \"h9\" # <-\nvolume = \"v1\"\n"), "no host is named `h9`");
        rejects(&with("\n[[workload]]\nhost = \"h1\"\nvolume = \"v9\" # <-\n"), "no volume is named `v9`");
        rejects(&with("\n[[workload]]\nhost = \"h2\" # <-\nvolume = \"v1\"\n"), "does not see volume `v1`");
    }

    #[test]
    fn rejects_workload_parameters() {
        rejects(&workload("read_fraction = 1.5 # <-"), "read_fraction must be from 0 to 1");
        rejects(&workload("read_fraction = -0.5 # <-"), "read_fraction must be from 0 to 1");
        rejects(&workload("block_kib = 0 # <-"), "block_kib");
        rejects(&workload("block_kib = 2048 # <-"), "block_kib");
        rejects(&workload("queue_depth = 0 # <-"), "queue_depth");
        rejects(&workload("span_mib = 0 # <-"), "span_mib");
        rejects(&workload("span_mib = 100000 # <-"), "span_mib");
    }

    #[test]
    fn rejects_workload_times() {
        rejects(&workload("stop_ms = 1001 # <-"), "after the end");
        rejects(&workload("start_ms = 500 # <-\nstop_ms = 500"), "must be before stop_ms");
        rejects(&workload("start_ms = 1000 # <-"), "must be before stop_ms");
    }

    // --- Events ------------------------------------------------------------------------------

    fn event(fields: &str) -> String {
        with(&format!("\n[[event]]\n{fields}\n"))
    }

    /// BASE with `v1` striped over its two disks instead of mirrored, for migrations.
    fn striped() -> String {
        replaced("layout = \"mirror\"", "layout = \"stripe\"")
    }

    /// [`striped`] with one event.
    fn striped_event(fields: &str) -> String {
        format!("{}\n[[event]]\n{fields}\n", striped())
    }

    #[test]
    fn rejects_events_outside_the_run() {
        rejects(&event("at_ms = 1000 # <-\naction = \"fail-disk\"\ndisk = \"d1\""), "not before the end");
        assert!(parse(&event("at_ms = 999\naction = \"fail-disk\"\ndisk = \"d1\"")).is_ok());
    }

    #[test]
    fn rejects_missing_event_fields() {
        rejects(&event("at_ms = 1\naction = \"fail-disk\" # <-"), "`fail-disk` needs `disk`");
        rejects(&event("at_ms = 1\naction = \"snapshot\" # <-\nvolume = \"v1\""), "needs `name`");
        rejects(&event("at_ms = 1\naction = \"migrate\" # <-\nvolume = \"v1\""), "needs `to`");
        rejects(&event("at_ms = 1\naction = \"kill-engine\" # <-"), "needs `engine`");
        rejects(&event("at_ms = 1\naction = \"fail-link\" # <-"), "needs `host` or `disk`");
    }

    #[test]
    fn rejects_fields_that_do_not_apply() {
        rejects(
            &event("at_ms = 1\naction = \"fail-disk\"\ndisk = \"d1\"\nvolume = \"v1\" # <-"),
            "`volume` does not apply to `fail-disk`",
        );
        rejects(
            &event("at_ms = 1\naction = \"kill-engine\"\nengine = \"e1\"\nhost = \"h1\" # <-"),
            "`host` does not apply",
        );
        rejects(
            &event("at_ms = 1\naction = \"fail-disk\"\ndisk = \"d1\"\nfraction = 0.5 # <-"),
            "`fraction` does not apply",
        );
        rejects(
            &event("at_ms = 1\naction = \"snapshot\"\nvolume = \"v1\"\nname = \"s\"\nto = [\"d3\"] # <-"),
            "`to` does not apply",
        );
    }

    #[test]
    fn rejects_unknown_event_references() {
        rejects(&event("at_ms = 1\naction = \"fail-disk\"\ndisk = \"d9\" # <-"), "no disk is named `d9`");
        rejects(&event("at_ms = 1\naction = \"fail-link\"\nhost = \"h9\" # <-"), "no host is named `h9`");
        rejects(&event("at_ms = 1\naction = \"resync\"\nvolume = \"v9\" # <-"), "no volume is named `v9`");
        rejects(
            &event("at_ms = 1\naction = \"restart-engine\"\nengine = \"e9\" # <-"),
            "no engine is named `e9`",
        );
    }

    #[test]
    fn rejects_bad_link_and_path_events() {
        rejects(&event("at_ms = 1\naction = \"fail-link\"\nhost = \"h1\"\ndisk = \"d1\" # <-"), "not both");
        rejects(
            &event("at_ms = 1\naction = \"fail-path\"\nhost = \"h1\"\npath = 1 # <-"),
            "path 1 does not exist",
        );
        let ok = parse(&event("at_ms = 1\naction = \"fail-path\"\nhost = \"h2\"\npath = 1"));
        let ok = ok.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(ok.events[0].action, EventAction::FailPath { node: NodeRef::Host(1), path: 1 });
        assert_eq!(ok.events[0].description, "fail-path h2:1");
        let link = parse(&event("at_ms = 1\naction = \"restore-link\"\ndisk = \"d3\""));
        let link = link.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(link.events[0].action, EventAction::RestoreLink { node: NodeRef::Disk(2), path: 0 });
    }

    #[test]
    fn snapshot_copy_granularities_are_checked_before_the_run() {
        let snapshot = "at_ms = 1\naction = \"snapshot\"\nvolume = \"v1\"\nname = \"s\"";
        rejects(
            &event(&format!("{snapshot}\ncopy_granularity_blocks = 96 # <-")),
            "copy_granularity_blocks 96 blocks: a power of two from 1 to 2048",
        );
        rejects(&event(&format!("{snapshot}\ncopy_granularity_blocks = 4096 # <-")), "a power of two");
        rejects(
            &event("at_ms = 1\naction = \"fail-disk\"\ndisk = \"d1\"\ncopy_granularity_blocks = 8 # <-"),
            "`copy_granularity_blocks` does not apply",
        );
        let ok = parse(&event(&format!("{snapshot}\ncopy_granularity_blocks = 16")));
        let ok = ok.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            ok.events[0].action,
            EventAction::Snapshot { volume: 0, name: "s".into(), copy_granularity_blocks: Some(16) }
        );
        assert_eq!(ok.events[0].description, "snapshot v1 as s pushing 16-block granules");
        let plain = parse(&event(snapshot)).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(plain.events[0].description, "snapshot v1 as s");
    }

    #[test]
    fn cancels_only_a_migration_made_earlier_and_rates_are_bounded() {
        rejects(
            &striped_event("at_ms = 1\naction = \"cancel-migration\"\nvolume = \"v1\" # <-"),
            "`v1` has no migration earlier in the timeline to cancel",
        );
        let migrate = "at_ms = 1\naction = \"migrate\"\nvolume = \"v1\"\nto = [\"d3\", \"d4\"]";
        rejects(
            &striped_event(&format!("{migrate}\nrate_mib_per_s = 0 # <-")),
            "rate_mib_per_s 0 is not from 1",
        );
        rejects(
            &striped_event(
                "at_ms = 1\naction = \"snapshot\"\nvolume = \"v1\"\nname = \"s\"\nrate_mib_per_s = 5 # <-",
            ),
            "`rate_mib_per_s` does not apply",
        );
        let cancel = "\n[[event]]\nat_ms = 2\naction = \"cancel-migration\"\nvolume = \"v1\"";
        let ok = parse(&striped_event(&format!("{migrate}\nrate_mib_per_s = 5\n{cancel}")));
        let ok = ok.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(ok.events[0].description, "migrate v1 to d3,d4 at 5 MiB/s");
        assert_eq!(ok.events[1].action, EventAction::CancelMigration { volume: 0 });
        // Cancelled, the volume is on d1 and d2 again: a migration to d2 is refused.
        let back =
            "\n[[event]]\nat_ms = 3\naction = \"migrate\"\nvolume = \"v1\"\nto = [\"d3\", \"d2\"] # <-";
        rejects(&striped_event(&format!("{migrate}\n{cancel}{back}")), "disk `d2` already holds volume `v1`");
        // A second cancel has no migration left to cancel.
        let again = "\n[[event]]\nat_ms = 3\naction = \"cancel-migration\" # <-\nvolume = \"v1\"";
        assert!(parse(&striped_event(&format!("{migrate}\n{cancel}{again}"))).is_err());
    }

    #[test]
    fn mirror_sides_are_removed_only_from_mirrors_that_have_them() {
        let remove = |disk: &str, at: u64| {
            format!(
                "\n[[event]]\nat_ms = {at}\naction = \"remove-mirror-side\"\nvolume = \"v1\"\ndisk = \"{disk}\""
            )
        };
        rejects(&event("at_ms = 1\naction = \"remove-mirror-side\" # <-\nvolume = \"v1\""), "needs `disk`");
        rejects(
            &event("at_ms = 1\naction = \"remove-mirror-side\"\nvolume = \"v1\"\ndisk = \"d3\" # <-"),
            "disk `d3` is not a side of `v1`",
        );
        // The first removal leaves one side, linear on it: a second is refused, naming the
        // volume's line.
        let twice = with(&format!(
            "{}{}",
            remove("d1", 1),
            remove("d2", 2).replace("volume = \"v1\"", "volume = \"v1\" # <-")
        ));
        rejects(&twice, "needs a mirror or raid10 volume");
        // Once a side is added, one can be removed again (the disk replaced), and the
        // removed disk is no side any more.
        let add = "\n[[event]]\nat_ms = 1\naction = \"add-mirror-side\"\nvolume = \"v1\"\ndisk = \"d3\"";
        let ok = parse(&with(&format!("{add}{}", remove("d1", 2)))).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(ok.events[1].action, EventAction::RemoveMirrorSide { volume: 0, disk: 0 });
        assert_eq!(ok.events[1].description, "remove-mirror-side v1 on d1");
        let again = with(&format!(
            "{add}{}{}",
            remove("d1", 2),
            remove("d1", 3).replace("disk = \"d1\"", "disk = \"d1\" # <-")
        ));
        rejects(&again, "disk `d1` is not a side of `v1`");
    }

    #[test]
    fn rejects_bad_write_error_fractions() {
        rejects(
            &event("at_ms = 1\naction = \"disk-write-errors\"\ndisk = \"d1\"\nfraction = 2.0 # <-"),
            "fraction must be from 0 to 1",
        );
        let ok = parse(&event("at_ms = 1\naction = \"disk-write-errors\"\ndisk = \"d1\""));
        let ok = ok.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(ok.events[0].action, EventAction::DiskWriteErrors { disk: 0, fraction: 1.0 });
    }

    #[test]
    fn rejects_segment_changes_outside_the_volume() {
        rejects(&event("at_ms = 1\naction = \"split-segment\" # <-\nvolume = \"v1\""), "needs `at_kib`");
        rejects(
            &event("at_ms = 1\naction = \"split-segment\"\nvolume = \"v1\"\nat_kib = 0 # <-"),
            "at_kib must be inside volume `v1`",
        );
        rejects(
            &event("at_ms = 1\naction = \"merge-segments\"\nvolume = \"v1\"\nat_kib = 99999999 # <-"),
            "at_kib must be inside volume `v1`",
        );
        rejects(
            &event("at_ms = 1\naction = \"snapshot\"\nvolume = \"v1\"\nname = \"s\"\nat_kib = 4 # <-"),
            "`at_kib` does not apply to `snapshot`",
        );
    }

    #[test]
    fn rejects_snapshot_names_in_use() {
        rejects(
            &event("at_ms = 1\naction = \"snapshot\"\nvolume = \"v1\"\nname = \"d1\" # <-"),
            "already used by the disk",
        );
        let twice = format!(
            "{}\n[[event]]\nat_ms = 2\naction = \"snapshot\"\nvolume = \"v1\"\nname = \"s1\" # <-\n",
            event("at_ms = 1\naction = \"snapshot\"\nvolume = \"v1\"\nname = \"s1\"")
        );
        rejects(&twice, "already used by the snapshot");
    }

    #[test]
    fn rejects_bad_migrations() {
        // The control path migrates no mirror (nor raid10, nor an incremental's base).
        rejects(
            &event("at_ms = 1\naction = \"migrate\"\nvolume = \"v1\" # <-\nto = [\"d3\", \"d4\"]"),
            "migrate needs a linear, stripe or journal volume",
        );
        rejects(
            &striped_event("at_ms = 1\naction = \"migrate\"\nvolume = \"v1\"\nto = [\"d3\"] # <-"),
            "must list 2 disk(s)",
        );
        rejects(
            &striped_event("at_ms = 1\naction = \"migrate\"\nvolume = \"v1\"\nto = [\"d3\", \"d2\"] # <-"),
            "already holds volume `v1`",
        );
        rejects(
            &striped_event("at_ms = 1\naction = \"migrate\"\nvolume = \"v1\"\nto = [\"d3\", \"d3\"] # <-"),
            "listed twice",
        );
        // The destination must have room: fill d4 first.
        let full = format!(
            "{}\n[[volume]]\nname = \"filler\"\nlayout = \"linear\"\nsize_mib = 60\ndisks = [\"d4\"]\n\n[[event]]\nat_ms = 1\naction = \"migrate\"\nvolume = \"v1\"\nto = [\"d3\", \"d4\"] # <-\n",
            striped()
        );
        rejects(&full, "the migration of `v1` needs 8 MiB");
        // After a migration, the volume's disks are the new ones.
        let chained = format!(
            "{}\n[[event]]\nat_ms = 2\naction = \"migrate\"\nvolume = \"v1\"\nto = [\"d1\", \"d3\"] # <-\n",
            striped_event("at_ms = 1\naction = \"migrate\"\nvolume = \"v1\"\nto = [\"d3\", \"d4\"]")
        );
        rejects(&chained, "disk `d3` already holds volume `v1`");
    }

    #[test]
    fn rejects_bad_replications() {
        let journal = "\n[[volume]]\nname = \"j\"\nlayout = \"journal\"\nsize_mib = 8\ndisks = [\"d3\"]\njournal_disk = \"d4\"\n";
        let replicate = |fields: &str| {
            with(&format!("{journal}\n[[event]]\nat_ms = 1\naction = \"replicate\"\n{fields}\n"))
        };
        rejects(&replicate("volume = \"v1\" # <-\ndisk = \"d3\""), "needs a journal volume; `v1` is mirror");
        rejects(&replicate("volume = \"j\"\ndisk = \"d3\" # <-"), "disk `d3` already holds volume `j`");
        rejects(&replicate("volume = \"j\"\ndisk = \"d4\" # <-"), "disk `d4` already holds volume `j`");
        rejects(
            &with(&format!("{journal}\n[[event]]\nat_ms = 1\naction = \"replicate\" # <-\nvolume = \"j\"\n")),
            "`replicate` needs `disk`",
        );
        rejects(
            &replicate("volume = \"j\"\ndisk = \"d1\"\ninterval_ms = 0 # <-"),
            "interval_ms must be from 1 to 60000, not 0",
        );
        rejects(
            &event("at_ms = 1\naction = \"snapshot\"\nvolume = \"v1\"\nname = \"s\"\ninterval_ms = 5 # <-"),
            "`interval_ms` does not apply",
        );
        let ok = parse(&replicate("volume = \"j\"\ndisk = \"d1\"\ninterval_ms = 250"));
        let ok = ok.unwrap_or_else(|err| panic!("{err}"));
        let last = ok.events.last().unwrap_or_else(|| panic!("an event"));
        assert!(matches!(last.action, EventAction::Replicate { volume: 1, disk: 0, interval_ms: 250, .. }));
        assert_eq!(last.description, "replicate j to d1 (consistency point every 250 ms)");

        // Pausing and resuming need a replication earlier in the timeline, and only `volume`.
        let pause = |action: &str, fields: &str| {
            with(&format!("{journal}\n[[event]]\nat_ms = 1\naction = \"{action}\"\n{fields}\n"))
        };
        rejects(
            &pause("pause-replication", "volume = \"j\" # <-"),
            "`j` is not replicated earlier in the timeline",
        );
        rejects(&pause("resume-replication", "volume = \"v1\" # <-"), "`v1` is not replicated earlier");
        let replicated = replicate("volume = \"j\"\ndisk = \"d1\"");
        let then = |action: &str, fields: &str| {
            format!("{replicated}\n[[event]]\nat_ms = 2\naction = \"{action}\"\n{fields}\n")
        };
        rejects(&then("pause-replication", "volume = \"j\"\ndisk = \"d1\" # <-"), "`disk` does not apply");
        rejects(
            &format!("{replicated}\n[[event]]\nat_ms = 2\naction = \"resume-replication\" # <-\n"),
            "`resume-replication` needs `volume`",
        );
        let ok = parse(&then("resume-replication", "volume = \"j\"")).unwrap_or_else(|err| panic!("{err}"));
        let last = ok.events.last().unwrap_or_else(|| panic!("an event"));
        assert_eq!(last.action, EventAction::PauseReplication { volume: 1, paused: false });
        assert_eq!(last.description, "resume-replication j");
    }

    #[test]
    fn rejects_bad_incrementals() {
        let inc =
            |fields: &str| with(&format!("\n[[volume]]\nname = \"i\"\nlayout = \"incremental\"\n{fields}\n"));
        rejects(
            &with(
                "\n[[volume]]\nname = \"i\"\nlayout = \"incremental\" # <-\nsize_mib = 16\ndisks = [\"d3\"]\n",
            ),
            "needs a base",
        );
        rejects(&inc("base = \"v9\" # <-\nsize_mib = 16\ndisks = [\"d3\"]"), "no volume is named `v9`");
        rejects(&inc("base = \"v1\"\nsize_mib = 8 # <-\ndisks = [\"d3\"]"), "as large as its base");
        rejects(&inc("base = \"v1\"\nsize_mib = 16\ndisks = [\"d3\", \"d4\"] # <-"), "exactly 1 disk");
        rejects(
            &inc("base = \"v1\"\nsize_mib = 16\ndisks = [\"d3\"]\nprefill = true # <-"),
            "prefill applies to the base",
        );
        rejects(
            &with(
                "\n[[volume]]\nname = \"l\"\nlayout = \"linear\"\nsize_mib = 4\ndisks = [\"d3\"]\nbase = \"v1\" # <-\n",
            ),
            "base applies only to incremental volumes",
        );
        rejects(
            &inc(
                "base = \"v1\"\nsize_mib = 16\ndisks = [\"d3\"]\n\n[[workload]]\nhost = \"h1\"\nvolume = \"v1\" # <-",
            ),
            "`v1` is the base of incrementals and read-only",
        );
        let ok = parse(&inc("base = \"v1\"\nsize_mib = 16\ndisks = [\"d3\"]"));
        let ok = ok.unwrap_or_else(|err| panic!("{err}"));
        let last = ok.volumes.last().unwrap_or_else(|| panic!("a volume"));
        assert_eq!(last.layout, Layout::Incremental { base: 0, store: 2 });
    }

    #[test]
    fn rejects_bad_resyncs() {
        let linear = replaced(
            "layout = \"mirror\"\nsize_mib = 16\ndisks = [\"d1\", \"d2\"]",
            "layout = \"linear\"\nsize_mib = 16\ndisks = [\"d1\"]",
        );
        rejects(
            &format!("{linear}\n[[event]]\nat_ms = 1\naction = \"resync\"\nvolume = \"v1\" # <-\n"),
            "needs a mirror or raid10 volume",
        );
        rejects(
            &event("at_ms = 1\naction = \"resync\"\nvolume = \"v1\"\ndisk = \"d3\" # <-"),
            "not a side of `v1`",
        );
        let ok = parse(&event("at_ms = 1\naction = \"resync\"\nvolume = \"v1\"\ndisk = \"d2\""));
        assert!(ok.is_ok());
    }

    // --- A volume's layout along the timeline ------------------------------------------------

    /// BASE with `v1` linear on d1 alone (it is a mirror there) and the given events.
    fn linear_with(events: &str) -> String {
        let linear = replaced(
            "layout = \"mirror\"\nsize_mib = 16\ndisks = [\"d1\", \"d2\"]",
            "layout = \"linear\"\nsize_mib = 16\ndisks = [\"d1\"]",
        );
        format!("{linear}{events}")
    }

    /// A side event on `v1` at `at_ms`: `action` is `add` or `remove`; `mark` is appended to
    /// the volume's line (`# <-` to expect the rejection there).
    fn side(at_ms: u64, action: &str, disk: &str, mark: &str) -> String {
        format!(
            "\n[[event]]\nat_ms = {at_ms}\naction = \"{action}-mirror-side\"\nvolume = \"v1\"{mark}\ndisk = \"{disk}\"\n"
        )
    }

    #[track_caller]
    fn accepts(text: &str) -> Scenario {
        parse(text).unwrap_or_else(|err| panic!("{err}\n{text}"))
    }

    #[test]
    fn a_linear_volume_takes_a_side_loses_it_and_takes_one_again() {
        let snapshot = "\n[[event]]\nat_ms = 2\naction = \"snapshot\"\nvolume = \"v1\"\nname = \"s\"\n";
        let text = linear_with(&format!(
            "{}{snapshot}{}{}",
            side(1, "add", "d2", ""),
            side(3, "remove", "d2", ""),
            side(4, "add", "d3", "")
        ));
        let ok = accepts(&text);
        let actions: Vec<_> = ok.events.iter().map(|e| e.action.clone()).collect();
        assert_eq!(actions[0], EventAction::AddMirrorSide { volume: 0, disk: 1 });
        assert_eq!(actions[2], EventAction::RemoveMirrorSide { volume: 0, disk: 1 });
        assert_eq!(actions[3], EventAction::AddMirrorSide { volume: 0, disk: 2 });
        // The disk it started on may go instead, and come back as a new side (its first
        // place stays reserved: space is never freed).
        accepts(&linear_with(&format!(
            "{}{}{}",
            side(1, "add", "d2", ""),
            side(2, "remove", "d1", ""),
            side(3, "add", "d1", "")
        )));
    }

    #[test]
    fn mirrors_grow_and_shrink_side_by_side_as_the_control_path_allows() {
        // Two sides added make a three-way mirror; a resync names any of them, and the sides
        // go in any order until one is left, which is linear again and takes another.
        let resync = "\n[[event]]\nat_ms = 3\naction = \"resync\"\nvolume = \"v1\"\ndisk = \"d3\"\n";
        accepts(&linear_with(&format!(
            "{}{}{resync}{}{}{}",
            side(1, "add", "d2", ""),
            side(2, "add", "d3", ""),
            side(4, "remove", "d1", ""),
            side(5, "remove", "d3", ""),
            side(6, "add", "d4", "")
        )));
        // BASE's two-way mirror: one side removed leaves it linear, and it takes one again.
        let ok = accepts(&with(&format!(
            "{}{}{}",
            side(1, "remove", "d2", ""),
            side(2, "add", "d3", ""),
            side(3, "remove", "d1", "")
        )));
        assert_eq!(ok.events[2].action, EventAction::RemoveMirrorSide { volume: 0, disk: 0 });
        // Linear again, it migrates; a mirror never does (the hint says how to move a side).
        let migrate = |at: u64, to: &str, mark: &str| {
            format!(
                "\n[[event]]\nat_ms = {at}\naction = \"migrate\"\nvolume = \"v1\"{mark}\nto = [\"{to}\"]\n"
            )
        };
        accepts(&with(&format!("{}{}", side(1, "remove", "d2", ""), migrate(2, "d3", ""))));
        rejects(
            &linear_with(&format!("{}{}", side(1, "add", "d2", ""), migrate(2, "d3", " # <-"))),
            "`v1` is a mirror of 2 sides at that time",
        );
        // A mirror goes up to 8 sides.
        let more_disks: String = (5..=9)
            .map(|n| format!("\n[[disk]]\nname = \"d{n}\"\nengine = \"e1\"\ncapacity_mib = 64\n"))
            .collect();
        let grow = |mark_last: &str| -> String {
            (2..=8).map(|n| side(n, "add", &format!("d{n}"), if n == 8 { mark_last } else { "" })).collect()
        };
        accepts(&linear_with(&format!("{more_disks}{}", grow(""))));
        rejects(
            &linear_with(&format!("{more_disks}{}{}", side(1, "add", "d9", ""), grow(" # <-"))),
            "needs a mirror of fewer than 8 sides or a linear volume on one disk; `v1` is a mirror of 8 sides",
        );
    }

    #[test]
    fn a_raid10_loses_a_whole_stripe_set_and_is_striped_over_the_other() {
        let raid10 = replaced(
            "layout = \"mirror\"\nsize_mib = 16\ndisks = [\"d1\", \"d2\"]",
            "layout = \"raid10\"\nsize_mib = 16\ndisks = [\"d1\", \"d2\", \"d3\", \"d4\"]",
        );
        // d3 is in the first stripe set (d1, d3): d2 and d4 are left, striped, and migrate.
        let migrate =
            "\n[[event]]\nat_ms = 2\naction = \"migrate\"\nvolume = \"v1\"\nto = [\"d1\", \"d3\"]\n";
        let ok = accepts(&format!("{raid10}{}{migrate}", side(1, "remove", "d3", "")));
        assert_eq!(ok.events[0].action, EventAction::RemoveMirrorSide { volume: 0, disk: 2 });
        rejects(
            &format!("{raid10}{}{}", side(1, "remove", "d3", ""), side(2, "remove", "d2", " # <-")),
            "`v1` is stripe on 2 disk(s) at that time",
        );
        rejects(&format!("{raid10}{}", side(1, "add", "d1", " # <-")), "`v1` is raid10 on 4 disks");
    }

    #[test]
    fn side_changes_the_control_path_refuses_are_rejected_where_they_are() {
        // A linear volume that never took a side has none to remove.
        rejects(
            &linear_with(&side(1, "remove", "d1", " # <-")),
            "needs a mirror or raid10 volume (a linear volume counts once a side was added, and is \
             linear again when one side is left); `v1` is linear on 1 disk(s) at that time",
        );
        // Added and removed, it is linear again: the disk it is left on is no side.
        rejects(
            &linear_with(&format!(
                "{}{}{}",
                side(1, "add", "d2", ""),
                side(2, "remove", "d2", ""),
                side(3, "remove", "d1", " # <-")
            )),
            "`v1` is linear on 1 disk(s) at that time",
        );
        // A linear volume concatenated over two disks is no mirror: no side goes or comes.
        let concatenated = replaced("layout = \"mirror\"", "layout = \"linear\"");
        rejects(
            &format!("{concatenated}{}", side(1, "remove", "d2", " # <-")),
            "`v1` is linear on 2 disk(s)",
        );
        rejects(&format!("{concatenated}{}", side(1, "add", "d3", " # <-")), "`v1` is linear on 2 disk(s)");
        // A side's disk is named once; a side to remove is one of the volume's at that time.
        let again =
            "\n[[event]]\nat_ms = 2\naction = \"add-mirror-side\"\nvolume = \"v1\"\ndisk = \"d2\" # <-\n";
        rejects(
            &linear_with(&format!("{}{again}", side(1, "add", "d2", ""))),
            "disk `d2` already holds volume `v1`",
        );
        let gone = again.replace("add-mirror-side", "remove-mirror-side").replace("d2", "d3");
        rejects(
            &linear_with(&format!("{}{gone}", side(1, "add", "d2", ""))),
            "disk `d3` is not a side of `v1` at that time",
        );
        // A migration ended before a side could be added: there is none to cancel after it.
        let migrate = "\n[[event]]\nat_ms = 1\naction = \"migrate\"\nvolume = \"v1\"\nto = [\"d4\"]\n";
        let cancel = "\n[[event]]\nat_ms = 3\naction = \"cancel-migration\"\nvolume = \"v1\" # <-\n";
        rejects(
            &linear_with(&format!("{migrate}{}{cancel}", side(2, "add", "d2", ""))),
            "`v1` has no migration earlier in the timeline to cancel",
        );
        // An incremental's base keeps its layout for good.
        let incremental = "\n[[volume]]\nname = \"i\"\nlayout = \"incremental\"\nbase = \"v1\"\nsize_mib = 16\ndisks = [\"d4\"]\n";
        rejects(
            &linear_with(&format!("{incremental}{}", side(1, "add", "d2", " # <-"))),
            "`v1` is the base of incremental `i`",
        );
        rejects(
            &with(&format!("{incremental}{}", side(1, "remove", "d2", " # <-"))),
            "base of incremental `i`",
        );
        // A mirror is created with at most 8 sides, as the engine makes them.
        let nine: Vec<String> = (1..=9).map(|n| format!("\"d{n}\"")).collect();
        let more_disks: String = (5..=9)
            .map(|n| format!("\n[[disk]]\nname = \"d{n}\"\nengine = \"e1\"\ncapacity_mib = 64\n"))
            .collect();
        rejects(
            &format!(
                "{}{more_disks}",
                replaced("disks = [\"d1\", \"d2\"]", &format!("disks = [{}] # <-", nine.join(", ")))
            ),
            "at most 8 disks",
        );
    }
}
