//! Replies built from the control path's state: devices, volumes with their segments and
//! layouts (devices named by target port name), exposures, tasks (migrations, resyncs and
//! snapshot completions, with the id scheme that lets `ControlTask` find them again) and
//! statistics.

use dve_fp_api::ids::{DeviceId, LvId, Wwn};
use dve_fp_api::mapping::{Placement, SideLayout, SideState, StorageDescriptor};
use dve_fp_api::stats::FpStatistics;
use dve_proto::management as pb;

use crate::ControlPath;
use crate::control_path::{MigrationProgress, ReplicationProgress, ResyncProgress, SnapshotProgress};
use crate::device::{Device, PathState};
use crate::scsi::SystemIdentity;
use crate::scsi::lun::naa6;
use crate::volume::{LayoutSpec, Volume};

/// The IEEE company id in the NAA designators of virtual LUNs (the control path's SCSI
/// emulation uses the same value; it keeps its constant private).
const DVE_OUI: u32 = 0x00_D5_E0;

/// The worker number reserved for the control path's own exchanges: its counters are
/// reported under it in [`pb::Statistics`].
pub const CONTROL_PATH_WORKER: u32 = 15;

/// A device's target port name as replies spell it (`50:06:01:60:3b:20:19:a1`).
pub fn wwpn_text(wwn: Wwn) -> String {
    wwn.to_string()
}

/// The target port name of `device`, or its id if the control path does not know it.
fn device_name(control: &ControlPath, device: DeviceId) -> String {
    control.devices().get(device).map_or_else(|| device.to_string(), |d| wwpn_text(d.target))
}

/// A device as `ListDevices` reports it.
pub fn device_reply(device: &Device) -> pb::Device {
    pb::Device {
        id: wwpn_text(device.target),
        target_wwpn: wwpn_text(device.target),
        lun: u32::from(device.lun.0),
        block_size: device.block_size,
        blocks: device.blocks,
        paths: device
            .paths
            .iter()
            .map(|p| {
                let state = match p.state {
                    PathState::Active => "active",
                    PathState::Standby => "standby",
                    PathState::Failed => "failed",
                };
                format!("{} -> {:06x} ({}, {state})", p.port, p.fc_id.get(), wwpn_text(p.target))
            })
            .collect(),
    }
}

fn placement(control: &ControlPath, p: Placement) -> pb::Placement {
    pb::Placement { device_id: device_name(control, p.device), start_lba: p.lba }
}

fn linear(control: &ControlPath, p: Placement) -> pb::Layout {
    pb::Layout { kind: Some(pb::layout::Kind::Linear(pb::Linear { placement: Some(placement(control, p)) })) }
}

fn stripe(control: &ControlPath, set: &dve_fp_api::mapping::StripeSet) -> pb::Layout {
    pb::Layout {
        kind: Some(pb::layout::Kind::Stripe(pb::Stripe {
            unit_blocks: u32::try_from(set.unit_blocks()).unwrap_or(u32::MAX),
            members: set.members().iter().map(|p| placement(control, *p)).collect(),
        })),
    }
}

fn side(control: &ControlPath, layout: &SideLayout) -> pb::Layout {
    match layout {
        SideLayout::Single(p) => linear(control, *p),
        SideLayout::Stripe(set) => stripe(control, set),
    }
}

/// The layout of a segment, from the storage of its first redirect entry (during a
/// migration: the old storage; for a snapshot: the source's).
fn segment_layout(control: &ControlPath, volume: &Volume, descriptor: &StorageDescriptor) -> pb::Layout {
    match descriptor {
        StorageDescriptor::Single(p) => linear(control, *p),
        StorageDescriptor::Stripe(set) => stripe(control, set),
        StorageDescriptor::Mirror(set) => pb::Layout {
            kind: Some(pb::layout::Kind::Mirror(pb::Mirror {
                sides: set.sides().iter().map(|s| side(control, &s.layout)).collect(),
            })),
        },
        StorageDescriptor::Journaled(j) => {
            let (journals, journal_blocks) = match volume.record.layout {
                LayoutSpec::Journal { journal, journal_blocks, .. } => {
                    let lba =
                        volume.record.allocations.iter().find(|a| a.device == journal).map_or(0, |a| a.lba);
                    (vec![placement(control, Placement { device: journal, lba })], journal_blocks)
                }
                _ => (Vec::new(), 0),
            };
            pb::Layout {
                kind: Some(pb::layout::Kind::Journaled(Box::new(pb::Journaled {
                    primary: Some(Box::new(side(control, &j.primary))),
                    journals,
                    journal_blocks,
                }))),
            }
        }
    }
}

/// A volume as `GetVolume` and `ListVolumes` report it.
pub fn volume_reply(control: &ControlPath, volume: &Volume) -> pb::Volume {
    let system = SystemIdentity { oui: DVE_OUI, serial: control.config().switch_name.0 };
    pb::Volume {
        name: volume.record.name.clone(),
        blocks: volume.record.blocks,
        block_size: volume.record.block_size,
        naa_id: naa6(system, volume.record.id.0).to_vec(),
        segments: volume
            .segments
            .iter()
            .map(|map| {
                let d = map.descriptor();
                pb::Segment {
                    id: u64::from(d.id.0),
                    start_lba: d.start,
                    blocks: d.blocks,
                    extents: u32::try_from(map.rmap().len()).unwrap_or(u32::MAX),
                    layout: map
                        .redirects()
                        .iter()
                        .next()
                        .map(|(_, entry)| segment_layout(control, volume, &entry.descriptor)),
                }
            })
            .collect(),
        read_only: control.is_read_only(volume.record.id),
    }
}

/// The exposure of `volume` on the engine's virtual target, if it is exposed.
pub fn exposure_reply(control: &ControlPath, lv: LvId) -> Option<pb::Exposure> {
    let target = control.exposure();
    let mapping = target.luns.iter().find(|m| m.lv == lv)?;
    let volume = control.volume(lv)?;
    Some(pb::Exposure {
        target_wwpn: wwpn_text(target.port_name),
        fc_id: target.fc_id.get(),
        lun: u32::from(mapping.lun.0),
        volume: volume.record.name.clone(),
        host_wwpns: volume.record.hosts.iter().map(|h| wwpn_text(*h)).collect(),
    })
}

/// What kind of task an id names: the kind sits in the top 16 bits, the volume in the low
/// 32 and, for resyncs, the side in between.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TaskId {
    /// A volume's migration.
    Migration(LvId),
    /// A mirror side's resync.
    Resync(LvId, u16),
    /// The completion of a snapshot (by the snapshot volume).
    SnapshotCompletion(LvId),
    /// A volume's asynchronous replication.
    Replication(LvId),
}

impl TaskId {
    const MIGRATION: u64 = 1;
    const RESYNC: u64 = 2;
    const SNAPSHOT: u64 = 3;
    const REPLICATION: u64 = 4;

    /// The wire id.
    pub fn to_wire(self) -> u64 {
        match self {
            TaskId::Migration(lv) => Self::MIGRATION << 48 | u64::from(lv.0),
            TaskId::Resync(lv, side) => Self::RESYNC << 48 | u64::from(side) << 32 | u64::from(lv.0),
            TaskId::SnapshotCompletion(lv) => Self::SNAPSHOT << 48 | u64::from(lv.0),
            TaskId::Replication(lv) => Self::REPLICATION << 48 | u64::from(lv.0),
        }
    }

    /// The task a wire id names, if it is well formed.
    pub fn from_wire(id: u64) -> Option<TaskId> {
        let lv = LvId(u32::try_from(id & 0xffff_ffff).ok()?);
        let side = u16::try_from(id >> 32 & 0xffff).ok()?;
        match id >> 48 {
            Self::MIGRATION if side == 0 => Some(TaskId::Migration(lv)),
            Self::RESYNC => Some(TaskId::Resync(lv, side)),
            Self::SNAPSHOT if side == 0 => Some(TaskId::SnapshotCompletion(lv)),
            Self::REPLICATION if side == 0 => Some(TaskId::Replication(lv)),
            _ => None,
        }
    }
}

fn volume_name(control: &ControlPath, lv: LvId) -> String {
    control.volume(lv).map_or_else(|| lv.to_string(), |v| v.record.name.clone())
}

fn running_or_paused(paused: bool) -> pb::TaskState {
    if paused { pb::TaskState::Paused } else { pb::TaskState::Running }
}

/// A migration as a task.
pub fn migration_task(control: &ControlPath, m: &MigrationProgress) -> pb::Task {
    let state = running_or_paused(m.paused);
    pb::Task {
        id: TaskId::Migration(m.lv).to_wire(),
        kind: "migration".into(),
        volume: volume_name(control, m.lv),
        state: state.into(),
        done_blocks: m.copied,
        total_blocks: m.total,
        error: String::new(),
        cancelling: m.cancelling,
    }
}

/// A resync as a task (its progress counted in age-list extents, reported in blocks).
pub fn resync_task(control: &ControlPath, r: &ResyncProgress) -> pb::Task {
    let extent = control.config().age_extent_blocks;
    pb::Task {
        id: TaskId::Resync(r.lv, u16::try_from(r.side).unwrap_or(u16::MAX)).to_wire(),
        kind: "resync".into(),
        volume: volume_name(control, r.lv),
        state: running_or_paused(r.paused).into(),
        done_blocks: r.copied.saturating_mul(extent),
        total_blocks: r.total.saturating_mul(extent),
        error: String::new(),
        cancelling: false,
    }
}

/// The completion task of snapshot volume `snapshot`, with its progress while it runs (a
/// snapshot being taken has pushed nothing yet).
pub fn snapshot_task(control: &ControlPath, snapshot: LvId) -> pb::Task {
    let progress = control.snapshot_completions().into_iter().find(|p| p.snapshot == snapshot);
    let total = control.volume(snapshot).map_or(0, |v| v.record.blocks);
    let taking = SnapshotProgress { snapshot, pushed: 0, total, paused: false };
    snapshot_progress_task(control, &progress.unwrap_or(taking))
}

fn snapshot_progress_task(control: &ControlPath, p: &SnapshotProgress) -> pb::Task {
    pb::Task {
        id: TaskId::SnapshotCompletion(p.snapshot).to_wire(),
        kind: "snapshot-completion".into(),
        volume: volume_name(control, p.snapshot),
        state: running_or_paused(p.paused).into(),
        done_blocks: p.pushed,
        total_blocks: p.total,
        error: String::new(),
        cancelling: false,
    }
}

/// A replication as a task: it never ends; its blocks are the progress of its copy from the
/// primary (the baseline, or the catch-up after a pause); its error says why it waits when
/// its journal is out of service.
pub fn replication_task(control: &ControlPath, r: &ReplicationProgress) -> pb::Task {
    pb::Task {
        id: TaskId::Replication(r.lv).to_wire(),
        kind: "replication".into(),
        volume: volume_name(control, r.lv),
        state: running_or_paused(r.paused).into(),
        done_blocks: r.baseline_blocks,
        total_blocks: r.copy_blocks,
        // Still running: the journal is tried again and the replica copied whole once back.
        error: if r.journal_failed {
            "the volume's journal failed a write and is out of service: nothing is applied until it is back"
                .into()
        } else {
            String::new()
        },
        cancelling: r.stopping,
    }
}

/// A task that ended: every block done when DONE, none counted when FAILED.
fn finished(
    control: &ControlPath,
    id: TaskId,
    kind: &str,
    lv: LvId,
    state: pb::TaskState,
    error: &str,
) -> pb::Task {
    let blocks = control.volume(lv).map_or(0, |v| v.record.blocks);
    pb::Task {
        id: id.to_wire(),
        kind: kind.into(),
        volume: volume_name(control, lv),
        state: state.into(),
        done_blocks: if state == pb::TaskState::Done { blocks } else { 0 },
        total_blocks: blocks,
        error: error.into(),
        cancelling: false,
    }
}

/// Task `id` as it stands, for a task known to have run: running or paused while the control
/// path works on it, then DONE, or FAILED for a resync whose side died again. `None` when
/// its volume is gone, or for a replication no longer running.
pub fn task(control: &ControlPath, id: TaskId) -> Option<pb::Task> {
    let volume = |lv: LvId| control.volume(lv);
    match id {
        TaskId::Migration(lv) => match control.migrations().iter().find(|m| m.lv == lv) {
            Some(m) => Some(migration_task(control, m)),
            None => volume(lv).map(|_| {
                let state = if control.migration_cancelled(lv) {
                    pb::TaskState::Cancelled
                } else {
                    pb::TaskState::Done
                };
                finished(control, id, "migration", lv, state, "")
            }),
        },
        TaskId::Resync(lv, side) => {
            if let Some(r) = control.resyncs().iter().find(|r| r.lv == lv && r.side == usize::from(side)) {
                return Some(resync_task(control, r));
            }
            let state = volume(lv)?.record.side_states.get(usize::from(side)).copied()?;
            Some(match state {
                SideState::Alive => finished(control, id, "resync", lv, pb::TaskState::Done, ""),
                _ => finished(control, id, "resync", lv, pb::TaskState::Failed, "the side failed again"),
            })
        }
        TaskId::SnapshotCompletion(lv) => {
            volume(lv)?;
            Some(if control.snapshot_completing(lv) {
                snapshot_task(control, lv)
            } else {
                finished(control, id, "snapshot-completion", lv, pb::TaskState::Done, "")
            })
        }
        TaskId::Replication(lv) => {
            control.replications().iter().find(|r| r.lv == lv).map(|r| replication_task(control, r))
        }
    }
}

/// Whether a task's state is final.
pub fn task_ended(task: &pb::Task) -> bool {
    matches!(
        pb::TaskState::try_from(task.state),
        Ok(pb::TaskState::Done | pb::TaskState::Failed | pb::TaskState::Cancelled)
    )
}

/// Every task the control path reports: migrations, resyncs, then replications.
pub fn tasks(control: &ControlPath) -> Vec<pb::Task> {
    let migrations = control.migrations();
    let resyncs = control.resyncs();
    migrations
        .iter()
        .map(|m| migration_task(control, m))
        .chain(resyncs.iter().map(|r| resync_task(control, r)))
        .chain(control.replications().iter().map(|r| replication_task(control, r)))
        .chain(control.snapshot_completions().iter().map(|p| snapshot_progress_task(control, p)))
        .collect()
}

fn faults(counters: &dve_fp_api::fault::FaultCounters) -> Vec<pb::FaultCount> {
    counters
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(cause, count)| pb::FaultCount { cause: cause.to_string(), count })
        .collect()
}

/// One fast-path worker's counters. The FP API counts I/Os and bytes, not frames: a worker's
/// `frames_in` is its host I/Os and `frames_out` its downstream I/Os.
pub fn worker_statistics(stats: &FpStatistics) -> pb::WorkerStatistics {
    pb::WorkerStatistics {
        worker: u32::from(stats.worker.0),
        hits: stats.hits,
        frames_in: stats.upstream_ios,
        frames_out: stats.downstream_ios,
        bytes_in: stats.write_bytes,
        bytes_out: stats.read_bytes,
        faults: faults(&stats.faults),
    }
}

/// The control path's counters, under the reserved worker number
/// [`CONTROL_PATH_WORKER`]: faults received by cause, then its other counters by name.
pub fn control_statistics(control: &ControlPath) -> pb::WorkerStatistics {
    let c = control.counters();
    let mut counts = faults(&c.faults);
    let named = [
        ("misses_continued", c.misses_continued),
        ("misses_queued", c.misses_queued),
        ("scsi_commands", c.scsi_commands),
        ("scsi_check_conditions", c.scsi_check_conditions),
        ("manual_reads", c.manual.reads),
        ("manual_writes", c.manual.writes),
        ("manual_serialized_writes", c.manual.serialized_writes),
        ("manual_errors", c.manual.errors),
        ("failed_requests", c.failed_requests),
        ("failed_commits", c.failed_commits),
        ("revocations", c.revocations),
    ];
    counts.extend(
        named.into_iter().map(|(cause, count)| pb::FaultCount { cause: format!("cp.{cause}"), count }),
    );
    pb::WorkerStatistics {
        worker: CONTROL_PATH_WORKER,
        hits: 0,
        frames_in: 0,
        frames_out: 0,
        bytes_in: 0,
        bytes_out: 0,
        faults: counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_round_trip_and_garbage_is_refused() {
        for id in
            [TaskId::Migration(LvId(7)), TaskId::Resync(LvId(3), 1), TaskId::SnapshotCompletion(LvId(9))]
        {
            assert_eq!(TaskId::from_wire(id.to_wire()), Some(id));
        }
        assert_eq!(TaskId::from_wire(0), None);
        assert_eq!(TaskId::from_wire(42 << 48), None);
    }
}
