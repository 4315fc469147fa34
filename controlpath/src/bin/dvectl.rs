//! `dvectl`: the command-line client of the DVE management gRPC API. It builds volumes,
//! exposes them, takes snapshots, starts migrations and reads tasks and statistics,
//! printing readable tables; on error it prints the server's status message and exits
//! non-zero.
//!
//! Point it at a running `dved` (`--endpoint http://ADDRESS`, the `listen` address of the
//! daemon's `[management]` section; the default matches `controlpath/dved.example.toml`),
//! or at any other server of `dve.management.v1.Management`.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dve_proto::management as pb;
use dve_proto::management::management_client::ManagementClient;
use tonic::transport::Channel;

/// Command-line client of the DVE management API.
#[derive(Debug, Parser)]
#[command(name = "dvectl", version)]
struct Cli {
    /// The management endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051", global = true)]
    endpoint: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Physical devices the engine discovered.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Online migration.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Asynchronous replication of a journaled volume.
    Replicate {
        /// The journaled volume.
        volume: String,
        /// The target WWPN of the device (the remote site's volume) that holds the replica.
        #[arg(long)]
        to: String,
        /// Milliseconds between consistency points.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u32,
    },
    /// Long-running tasks (migrations, resyncs, replications).
    #[command(subcommand)]
    Task(TaskCommand),
    /// Fast-path and control-path counters.
    Stats,
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// List devices.
    List,
}

/// Volume layouts as `--layout` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LayoutKind {
    /// One device.
    Linear,
    /// RAID 0 over the devices.
    Stripe,
    /// RAID 1, one side per device.
    Mirror,
    /// RAID 10: the first half of the devices is side 0, the second half side 1.
    Raid10,
    /// The first device journaled to the second.
    Journal,
}

#[derive(Debug, Args)]
struct CreateVolume {
    /// The volume's name.
    name: String,
    /// Size in MiB.
    #[arg(long)]
    size_mib: u64,
    /// The layout.
    #[arg(long, value_enum, default_value_t = LayoutKind::Linear)]
    layout: LayoutKind,
    /// A device by target WWPN (repeat for several, in layout order).
    #[arg(long = "device", required = true)]
    devices: Vec<String>,
    /// Block size in bytes (512 or 4096).
    #[arg(long, default_value_t = 512)]
    block_size: u32,
    /// Stripe unit in blocks (stripe and RAID 10).
    #[arg(long, default_value_t = 128)]
    stripe_unit: u32,
    /// Journal size in blocks (journal layout).
    #[arg(long, default_value_t = 4096)]
    journal_blocks: u64,
}

#[derive(Debug, Subcommand)]
enum VolumeCommand {
    /// Create a volume.
    Create(CreateVolume),
    /// List volumes.
    List,
    /// Show one volume and its segments.
    Show {
        /// The volume.
        name: String,
    },
    /// Grow a linear volume by a segment on one device.
    Grow {
        /// The volume.
        name: String,
        /// MiB to add.
        #[arg(long)]
        add_mib: u64,
        /// The device (target WWPN) of the new segment.
        #[arg(long)]
        device: String,
        /// Block size of the volume in bytes.
        #[arg(long, default_value_t = 512)]
        block_size: u32,
    },
    /// Split the segment holding a block in two there (the volume's I/O pauses first).
    Split {
        /// The volume.
        name: String,
        /// Where, as a block of the volume.
        #[arg(long)]
        at_lba: u64,
    },
    /// Merge the segment starting at a block into the one before it.
    Merge {
        /// The volume.
        name: String,
        /// Where the second segment starts, as a block of the volume.
        #[arg(long)]
        at_lba: u64,
    },
    /// Expose a volume to hosts on the engine's virtual target.
    Expose {
        /// The volume.
        name: String,
        /// A host by WWPN (repeat for several).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// The LUN to expose it as (by default the one it has, else the lowest free one).
        #[arg(long)]
        lun: Option<u32>,
    },
    /// List exposures.
    Exposures,
    /// Withdraw a LUN of the engine's virtual target from every host (the volume stays).
    Hide {
        /// The LUN.
        lun: u32,
    },
    /// Delete a volume: it must be hidden, and no task, snapshot or incremental may use it.
    Delete {
        /// The volume.
        name: String,
    },
    /// Add a mirror side on one device (a single-device linear volume becomes a mirror); the
    /// whole volume is copied onto it online, as a resync task.
    AddSide {
        /// The volume.
        name: String,
        /// The device (target WWPN) of the new side.
        #[arg(long)]
        device: String,
    },
    /// Remove a mirror side, named by its device or its index (a mirror left with one side
    /// becomes linear); its space is free once the fast path has let go of it. The side must
    /// not be the only one holding current data.
    RemoveSide {
        /// The volume.
        name: String,
        /// The device (target WWPN) of the side.
        #[arg(long, required_unless_present = "index")]
        device: Option<String>,
        /// The side's index (the order `volume show` lists the sides in).
        #[arg(long)]
        index: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Take a copy-on-write snapshot of SOURCE named NAME.
    Create {
        /// The source volume.
        source: String,
        /// The snapshot's name.
        name: String,
        /// Let hosts write the snapshot.
        #[arg(long)]
        writable: bool,
        /// The device (target port name) the pushed blocks go to; unset: the online device
        /// with most room outside the source.
        #[arg(long)]
        store: Option<String>,
        /// Blocks a write to the source pushes at least (a power of two up to 2048); unset:
        /// 128.
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        copy_granularity_blocks: u32,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Move a volume's data devices, one for one, to new devices.
    Start {
        /// The volume.
        volume: String,
        /// A new device by target WWPN (one per data device, in layout order).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// Copy at most this many MiB per second (default: unlimited).
        #[arg(long = "rate-mib", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        rate_mib: Option<u64>,
    },
    /// Pause a migration.
    Pause {
        /// The task id (from `task list`).
        id: String,
    },
    /// Resume a migration.
    Resume {
        /// The task id (from `task list`).
        id: String,
    },
    /// Cancel a migration: what it moved is copied back online, then its task is cancelled.
    Cancel {
        /// The task id (from `task list`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// List tasks with their progress.
    List,
    /// Follow a running task until it ends, a line per change.
    Watch {
        /// The task id (as `task list` shows it).
        id: String,
    },
    /// Pause a migration, a resync, a snapshot completion or a replication (its replica keeps
    /// the last consistency point it shows; resuming copies what was written meanwhile).
    Pause {
        /// The task id (as `task list` shows it).
        id: String,
    },
    /// Resume a paused task.
    Resume {
        /// The task id (as `task list` shows it).
        id: String,
    },
    /// Cancel a migration (what it moved is copied back first) or stop a replication.
    Cancel {
        /// The task id (as `task list` shows it).
        id: String,
    },
}

fn placement(device: &str) -> pb::Placement {
    pb::Placement { device_id: device.to_string(), start_lba: 0 }
}

fn linear(device: &str) -> pb::Layout {
    pb::Layout { kind: Some(pb::layout::Kind::Linear(pb::Linear { placement: Some(placement(device)) })) }
}

fn stripe(unit_blocks: u32, devices: &[String]) -> pb::Layout {
    pb::Layout {
        kind: Some(pb::layout::Kind::Stripe(pb::Stripe {
            unit_blocks,
            members: devices.iter().map(|d| placement(d)).collect(),
        })),
    }
}

/// The layout `create` asks for; `Err` names what is wrong with the devices given.
fn layout(c: &CreateVolume) -> Result<pb::Layout, String> {
    let d = &c.devices;
    let kind = match c.layout {
        LayoutKind::Linear => {
            let [device] = &d[..] else { return Err("a linear volume takes one --device".into()) };
            return Ok(linear(device));
        }
        LayoutKind::Stripe => return Ok(stripe(c.stripe_unit, d)),
        LayoutKind::Mirror => {
            pb::layout::Kind::Mirror(pb::Mirror { sides: d.iter().map(|x| linear(x)).collect() })
        }
        LayoutKind::Raid10 => {
            if !d.len().is_multiple_of(2) {
                return Err("RAID 10 takes an even number of --device: side 0 first, then side 1".into());
            }
            let (a, b) = d.split_at(d.len() / 2);
            pb::layout::Kind::Mirror(pb::Mirror {
                sides: vec![stripe(c.stripe_unit, a), stripe(c.stripe_unit, b)],
            })
        }
        LayoutKind::Journal => {
            let [primary, journal] = &d[..] else {
                return Err("a journaled volume takes two --device: the primary, then the journal".into());
            };
            pb::layout::Kind::Journaled(Box::new(pb::Journaled {
                primary: Some(Box::new(linear(primary))),
                journals: vec![placement(journal)],
                journal_blocks: c.journal_blocks,
            }))
        }
    };
    Ok(pb::Layout { kind: Some(kind) })
}

/// Blocks in `mib` MiB of `block_size`-byte blocks.
fn blocks_of(mib: u64, block_size: u32) -> Result<u64, String> {
    if block_size == 0 {
        return Err("--block-size must not be 0".into());
    }
    mib.checked_mul(1 << 20)
        .map(|b| b / u64::from(block_size))
        .ok_or_else(|| format!("{mib} MiB is too large"))
}

/// Print rows as a table with a header, columns padded to their widest cell.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// A layout in a few words.
fn describe(layout: Option<&pb::Layout>) -> String {
    let Some(kind) = layout.and_then(|l| l.kind.as_ref()) else { return "-".into() };
    let place = |p: &pb::Placement| format!("{}@{}", p.device_id, p.start_lba);
    match kind {
        pb::layout::Kind::Linear(l) => format!("linear {}", l.placement.as_ref().map_or("-".into(), place)),
        pb::layout::Kind::Stripe(s) => {
            format!(
                "stripe/{} [{}]",
                s.unit_blocks,
                s.members.iter().map(place).collect::<Vec<_>>().join(", ")
            )
        }
        pb::layout::Kind::Mirror(m) => {
            format!("mirror ({})", m.sides.iter().map(|s| describe(Some(s))).collect::<Vec<_>>().join(" | "))
        }
        pb::layout::Kind::Journaled(j) => format!(
            "journaled {} -> [{}] {} blocks",
            describe(j.primary.as_deref()),
            j.journals.iter().map(place).collect::<Vec<_>>().join(", "),
            j.journal_blocks
        ),
    }
}

fn print_volumes(volumes: &[pb::Volume]) {
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            let layouts: Vec<String> = v.segments.iter().map(|s| describe(s.layout.as_ref())).collect();
            vec![
                v.name.clone(),
                v.blocks.to_string(),
                v.block_size.to_string(),
                format!("{:.1}", v.blocks as f64 * f64::from(v.block_size) / f64::from(1 << 20)),
                v.segments.len().to_string(),
                layouts.join("; "),
            ]
        })
        .collect();
    print_table(&["NAME", "BLOCKS", "BLOCK", "MiB", "SEGMENTS", "LAYOUT"], &rows);
}

fn print_tasks(tasks: &[pb::Task]) {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let percent =
                if t.total_blocks == 0 { 0.0 } else { 100.0 * t.done_blocks as f64 / t.total_blocks as f64 };
            let state = pb::TaskState::try_from(t.state)
                .map_or("?", |s| s.as_str_name().strip_prefix("TASK_STATE_").unwrap_or(s.as_str_name()));
            vec![
                format!("{:#x}", t.id),
                t.kind.clone(),
                t.volume.clone(),
                if t.cancelling {
                    format!("{} (cancelling)", state.to_lowercase())
                } else {
                    state.to_lowercase()
                },
                format!("{}/{}", t.done_blocks, t.total_blocks),
                format!("{percent:.1}%"),
            ]
        })
        .collect();
    print_table(&["ID", "KIND", "VOLUME", "STATE", "BLOCKS", "DONE"], &rows);
}

fn parse_task_id(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("task id {text:?}: {e}"))
}

/// What went wrong: the server's status, or a local problem.
enum Failure {
    Status(tonic::Status),
    Local(String),
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Failure {
        Failure::Status(status)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Local(message)
    }
}

/// Pause, resume or cancel the task named `id`; its state after.
async fn control_task(
    client: &mut ManagementClient<Channel>,
    id: &str,
    control: pb::TaskControl,
) -> Result<pb::Task, Failure> {
    let request = pb::ControlTaskRequest { id: parse_task_id(id)?, control: control.into() };
    Ok(client.control_task(request).await?.into_inner())
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // Refuse a malformed request before reaching for the server.
    if let Command::Volume(VolumeCommand::Create(c)) = &cli.command {
        layout(c)?;
        blocks_of(c.size_mib, c.block_size)?;
    }
    let mut client = ManagementClient::<Channel>::connect(cli.endpoint.clone())
        .await
        .map_err(|e| format!("cannot reach {}: {e}", cli.endpoint))?;
    match cli.command {
        Command::Device(DeviceCommand::List) => {
            let devices = client.list_devices(pb::ListDevicesRequest {}).await?.into_inner().devices;
            let rows: Vec<Vec<String>> = devices
                .iter()
                .map(|d| {
                    vec![
                        d.target_wwpn.clone(),
                        d.lun.to_string(),
                        d.block_size.to_string(),
                        d.blocks.to_string(),
                        d.paths.join(", "),
                    ]
                })
                .collect();
            print_table(&["TARGET WWPN", "LUN", "BLOCK", "BLOCKS", "PATHS"], &rows);
        }
        Command::Volume(VolumeCommand::Create(c)) => {
            let request = pb::CreateVolumeRequest {
                name: c.name.clone(),
                blocks: blocks_of(c.size_mib, c.block_size)?,
                block_size: c.block_size,
                layout: Some(layout(&c)?),
            };
            let volume = client.create_volume(request).await?.into_inner();
            print_volumes(&[volume]);
        }
        Command::Volume(VolumeCommand::List) => {
            let volumes = client.list_volumes(pb::Empty {}).await?.into_inner().volumes;
            print_volumes(&volumes);
        }
        Command::Volume(VolumeCommand::Show { name }) => {
            let v = client.get_volume(pb::VolumeRef { name }).await?.into_inner();
            print_volumes(std::slice::from_ref(&v));
            println!();
            let rows: Vec<Vec<String>> = v
                .segments
                .iter()
                .map(|s| {
                    vec![
                        format!("{:#x}", s.id),
                        s.start_lba.to_string(),
                        s.blocks.to_string(),
                        s.extents.to_string(),
                        describe(s.layout.as_ref()),
                    ]
                })
                .collect();
            print_table(&["SEGMENT", "START", "BLOCKS", "EXTENTS", "LAYOUT"], &rows);
        }
        Command::Volume(VolumeCommand::Grow { name, add_mib, device, block_size }) => {
            let request = pb::GrowVolumeRequest {
                name,
                add_blocks: blocks_of(add_mib, block_size)?,
                layout: Some(linear(&device)),
            };
            let volume = client.grow_volume(request).await?.into_inner();
            print_volumes(&[volume]);
        }
        Command::Volume(VolumeCommand::Split { name, at_lba }) => {
            client.split_segment(pb::SegmentChangeRequest { volume: name.clone(), at_lba }).await?;
            println!(
                "{name}: split at block {at_lba} accepted; `dvectl volume show {name}` shows the segments"
            );
        }
        Command::Volume(VolumeCommand::Merge { name, at_lba }) => {
            client.merge_segments(pb::SegmentChangeRequest { volume: name.clone(), at_lba }).await?;
            println!(
                "{name}: merge at block {at_lba} accepted; `dvectl volume show {name}` shows the segments"
            );
        }
        Command::Volume(VolumeCommand::Expose { name, hosts, lun }) => {
            let request =
                pb::ExposeVolumeRequest { volume: name, target_wwpn: String::new(), lun, host_wwpns: hosts };
            let e = client.expose_volume(request).await?.into_inner();
            print_exposures(&[e]);
        }
        Command::Volume(VolumeCommand::Exposures) => {
            let exposures = client.list_exposures(pb::Empty {}).await?.into_inner().exposures;
            print_exposures(&exposures);
        }
        Command::Volume(VolumeCommand::Hide { lun }) => {
            client.hide_volume(pb::HideVolumeRequest { target_wwpn: String::new(), lun }).await?;
            println!("LUN {lun} hidden from every host");
        }
        Command::Volume(VolumeCommand::Delete { name }) => {
            client.delete_volume(pb::VolumeRef { name: name.clone() }).await?;
            println!("{name} deleted; its space is free once every worker has let go of it");
        }
        Command::Volume(VolumeCommand::AddSide { name, device }) => {
            let request = pb::AddMirrorSideRequest { volume: name, segment: 0, side: Some(linear(&device)) };
            print_tasks(&[client.add_mirror_side(request).await?.into_inner()]);
        }
        Command::Volume(VolumeCommand::RemoveSide { name, device, index }) => {
            let request = pb::RemoveMirrorSideRequest {
                volume: name,
                segment: 0,
                side: device.as_deref().map(linear),
                side_index: index,
            };
            print_volumes(&[client.remove_mirror_side(request).await?.into_inner()]);
        }
        Command::Snapshot(SnapshotCommand::Create {
            source,
            name,
            writable,
            store,
            copy_granularity_blocks,
        }) => {
            let request = pb::CreateSnapshotRequest {
                source,
                snapshot: name,
                store: store.as_deref().map(placement),
                writable,
                copy_granularity_blocks,
            };
            let task = client.create_snapshot(request).await?.into_inner();
            print_tasks(&[task]);
        }
        Command::Migrate(MigrateCommand::Start { volume, to, rate_mib }) => {
            let destination = match &to[..] {
                [one] => linear(one),
                several => stripe(0, several),
            };
            let request = pb::StartMigrationRequest {
                volume,
                segment: 0,
                destination: Some(destination),
                rate_limit_bytes_per_sec: rate_mib.map_or(0, |mib| mib << 20),
            };
            let task = client.start_migration(request).await?.into_inner();
            print_tasks(&[task]);
        }
        Command::Migrate(MigrateCommand::Pause { id }) | Command::Task(TaskCommand::Pause { id }) => {
            print_tasks(&[control_task(&mut client, &id, pb::TaskControl::Pause).await?]);
        }
        Command::Migrate(MigrateCommand::Resume { id }) | Command::Task(TaskCommand::Resume { id }) => {
            print_tasks(&[control_task(&mut client, &id, pb::TaskControl::Resume).await?]);
        }
        Command::Migrate(MigrateCommand::Cancel { id }) | Command::Task(TaskCommand::Cancel { id }) => {
            print_tasks(&[control_task(&mut client, &id, pb::TaskControl::Cancel).await?]);
        }
        Command::Replicate { volume, to, interval_ms } => {
            let request =
                pb::StartReplicationRequest { volume, replica: to, consistency_interval_ms: interval_ms };
            print_tasks(&[client.start_replication(request).await?.into_inner()]);
        }
        Command::Task(TaskCommand::List) => {
            let tasks = client.list_tasks(pb::Empty {}).await?.into_inner().tasks;
            print_tasks(&tasks);
        }
        Command::Task(TaskCommand::Watch { id }) => {
            let mut updates = client.watch_task(pb::TaskRef { id: parse_task_id(&id)? }).await?.into_inner();
            while let Some(task) = updates.message().await? {
                print_tasks(&[task]);
            }
        }
        Command::Stats => {
            let stats = client.get_statistics(pb::Empty {}).await?.into_inner();
            let rows: Vec<Vec<String>> = stats
                .workers
                .iter()
                .map(|w| {
                    let faults: Vec<String> =
                        w.faults.iter().map(|f| format!("{}={}", f.cause, f.count)).collect();
                    vec![
                        w.worker.to_string(),
                        w.hits.to_string(),
                        w.frames_in.to_string(),
                        w.frames_out.to_string(),
                        w.bytes_in.to_string(),
                        w.bytes_out.to_string(),
                        faults.join(" "),
                    ]
                })
                .collect();
            print_table(
                &["WORKER", "HITS", "IN", "OUT", "BYTES IN", "BYTES OUT", "FAULTS / COUNTERS"],
                &rows,
            );
            println!("control path downcalls waiting: {}", stats.cp_queue_depth);
        }
    }
    Ok(())
}

fn print_exposures(exposures: &[pb::Exposure]) {
    let rows: Vec<Vec<String>> = exposures
        .iter()
        .map(|e| {
            vec![
                e.target_wwpn.clone(),
                format!("{:06x}", e.fc_id),
                e.lun.to_string(),
                e.volume.clone(),
                e.host_wwpns.join(", "),
            ]
        })
        .collect();
    print_table(&["TARGET WWPN", "FC_ID", "LUN", "VOLUME", "HOSTS"], &rows);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dvectl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Status(status)) => {
            eprintln!("dvectl: {:?}: {}", status.code(), status.message());
            ExitCode::FAILURE
        }
        Err(Failure::Local(message)) => {
            eprintln!("dvectl: {message}");
            ExitCode::FAILURE
        }
    }
}
